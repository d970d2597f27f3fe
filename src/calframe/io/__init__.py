"""Reading frames: FITS, camera RAW, EDF and TIFF into :class:`~astropy.nddata.CCDData`.

:func:`read_frame` reads one frame of any supported file, and
:func:`read_header` its header and shape without the pixels, through the same
readers (one table of formats, :data:`FORMATS`); :func:`iter_frames`
yields every frame of a multi-frame file (EDF, multi-page TIFF, FITS with
several image HDUs).  Every frame comes back in the same form: float32 data in
ADU, a mask, an uncertainty from the detector model when gain and read noise
are known, the normalised keywords of :mod:`calframe.metadata`, and provenance.
"""

from importlib import import_module

# Names are imported on first use, so that ``calframe.io._formats`` (the format
# table the combine engine consults) does not load astropy.nddata.
_LAZY = {
    "FORMATS": "._formats", "FRAME_SUFFIXES": "._formats", "FileFormat": "._formats",
    "format_from_name": "._formats", "detect_format": "._formats",
    "attach_extras": "._mef", "read_provenance": "._mef", "write_frame": "._mef",
    "FrameInfo": "._read", "frame_count": "._read", "iter_frames": "._read",
    "read_frame": "._read", "read_header": "._read",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'calframe.io' has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
