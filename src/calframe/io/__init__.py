"""Reading frames: FITS, camera RAW, EDF and TIFF into :class:`~astropy.nddata.CCDData`.

:func:`read_frame` reads one frame of any supported file, and
:func:`read_header` its header and shape without the pixels, through the same
readers (one table of formats, :data:`FORMATS`); :func:`iter_frames`
yields every frame of a multi-frame file (EDF, multi-page TIFF, FITS with
several image HDUs).  Every frame comes back in the same form: float32 data in
ADU, a mask, an uncertainty from the detector model when gain and read noise
are known, the normalised keywords of :mod:`calframe.metadata`, and provenance.
"""

from ._formats import FORMATS, FRAME_SUFFIXES, FileFormat, format_from_name
from ._mef import attach_extras, read_provenance, write_frame
from ._read import FrameInfo, detect_format, frame_count, iter_frames, read_frame, read_header

__all__ = ["FORMATS", "FRAME_SUFFIXES", "FileFormat", "FrameInfo", "attach_extras",
           "detect_format", "format_from_name", "frame_count", "iter_frames", "read_frame",
           "read_header", "read_provenance", "write_frame"]
