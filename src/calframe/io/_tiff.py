"""TIFF reading through tifffile.

A mono TIFF gives a 2-D frame; a multi-page mono TIFF (or a 3-D mono stack)
gives one frame per page (``frame=``, :func:`calframe.iter_frames`).  An RGB
TIFF gives a ``(3, ny, nx)`` cube (R, G, B planes), the layout calframe uses
for demosaiced colour, with the values as stored: an RGB TIFF written by a
camera or a raw converter is usually gamma-encoded and white-balanced, so it
is not linear data and should not be calibrated with linear masters.  Pixel
values are not rescaled (8-bit data stay 0-255 ADU).
"""

from __future__ import annotations

import numpy as np

from ..errors import FrameReadError, UnsupportedFormatError
from ..metadata import mapping_to_header
from ._common import Loaded, integer_full_scale


def _read(path) -> tuple[np.ndarray, str, dict]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            page = tif.pages[0]
            photometric = getattr(page.photometric, "name", str(page.photometric))
            tags = {}
            for tag in page.tags.values():
                if tag.name in ("ImageDescription", "Make", "Model", "DateTime", "Software",
                                "Artist"):
                    tags[tag.name] = tag.value
            axes = series.axes
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
        raise FrameReadError(path, f"not a readable TIFF file ({err})",
                             "check that the file is complete and really is TIFF") from err
    return data, photometric, {"axes": axes, **tags}


def _frames(data: np.ndarray, photometric: str, axes: str, path) -> np.ndarray:
    """The file's frames as (n, ny, nx) for mono, or (1, 3, ny, nx) for RGB."""
    if photometric == "RGB":
        if data.ndim == 3 and data.shape[-1] in (3, 4):
            return np.moveaxis(data[..., :3], -1, 0)[None]
        if data.ndim == 3 and data.shape[0] in (3, 4):
            return data[None, :3]
        if data.ndim == 4 and data.shape[-1] in (3, 4):
            return np.moveaxis(data[..., :3], -1, 1)
        raise UnsupportedFormatError(path, f"RGB TIFF of shape {data.shape} (axes {axes!r})",
                                     "calframe reads RGB TIFF as (ny, nx, 3) or (3, ny, nx)")
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3 and not axes.endswith("S"):
        return data
    raise UnsupportedFormatError(path, f"TIFF of shape {data.shape} (axes {axes!r}, "
                                 f"photometric {photometric})",
                                 "calframe reads mono or RGB TIFF images and mono stacks")


def tiff_frame_count(path) -> int:
    """Number of frames in a TIFF file (pages of a mono stack)."""
    data, photometric, info = _read(path)
    return _frames(data, photometric, info["axes"], path).shape[0]


def load_tiff(path, *, frame: int = 0, dtype=np.float32) -> Loaded:
    """Read frame ``frame`` of a TIFF file."""
    data, photometric, info = _read(path)
    frames = _frames(data, photometric, info.pop("axes"), path)
    if not 0 <= frame < frames.shape[0]:
        raise ValueError(f"frame={frame}: {path} has {frames.shape[0]} frame(s)")
    return _loaded(frames, frame, photometric, info, dtype)


def iter_tiff(path, *, dtype=np.float32):
    """Yield every frame of a TIFF file, reading it once."""
    data, photometric, info = _read(path)
    frames = _frames(data, photometric, info.pop("axes"), path)
    for frame in range(frames.shape[0]):
        yield _loaded(frames, frame, photometric, info, dtype)


def _loaded(frames, frame, photometric, info, dtype) -> Loaded:
    header = mapping_to_header({k.upper()[:8]: v for k, v in info.items()})
    header["TIFFPHOT"] = (photometric, "TIFF photometric interpretation")
    if frames.shape[0] > 1:
        header["TIFFPAGE"] = (frame, "page in the TIFF file")
    if photometric == "RGB":
        header["COLORSP"] = ("RGB", "planes R, G, B as stored (not linearised)")
    raw = frames[frame]
    return Loaded(data=raw.astype(dtype), header=header, location={"frame": frame},
                  row_order="TOP-DOWN", saturation=integer_full_scale(raw.dtype),
                  integer=raw.dtype.kind in "iu")
