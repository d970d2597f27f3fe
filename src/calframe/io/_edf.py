"""EDF (ESRF data format) reading through fabio: single and multi-frame files.

Signed integer EDF data from photon-counting detectors (Pilatus, Eiger...)
mark detector gaps and bad pixels with negative values (-1 gap, -2 bad on a
Pilatus); those pixels are masked.  A ``Dummy`` header value (pyFAI
convention, with ``DDummy`` as its tolerance) is masked too.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import FrameReadError
from ..metadata import mapping_to_header
from ._common import Loaded, integer_full_scale

log = logging.getLogger(__name__)


def _open(path):
    import fabio

    try:
        return fabio.open(str(path))
    except (OSError, ValueError, RuntimeError, TypeError, IndexError) as err:
        raise FrameReadError(path, f"not a readable EDF file ({err})",
                             "check that the file is complete and really is EDF") from err


def edf_frame_count(path) -> int:
    """Number of frames in an EDF file."""
    image = _open(path)
    try:
        return int(image.nframes)
    finally:
        image.close()


def load_edf(path, *, frame: int = 0, dtype=np.float32) -> Loaded:
    """Read frame ``frame`` of an EDF file."""
    image = _open(path)
    try:
        nframes = int(image.nframes)
        if not 0 <= frame < nframes:
            raise ValueError(f"frame={frame}: {path} has {nframes} frame(s) (0..{nframes - 1})")
        return _frame(image, path, frame, nframes, dtype)
    finally:
        image.close()


def iter_edf(path, *, dtype=np.float32):
    """Yield every frame of an EDF file, opening it once."""
    image = _open(path)
    try:
        nframes = int(image.nframes)
        for frame in range(nframes):
            yield _frame(image, path, frame, nframes, dtype)
    finally:
        image.close()


def _frame(image, path, frame: int, nframes: int, dtype) -> Loaded:
    try:
        one = image if frame == 0 else image.getframe(frame)
        raw = one.data
        if raw is None:
            raise FrameReadError(path, f"frame {frame} holds no data",
                                 "the file is probably truncated; copy it again")
        header_dict = dict(one.header)
    except (OSError, RuntimeError, IndexError) as err:
        raise FrameReadError(path, f"frame {frame} cannot be read ({err})",
                             "the file is probably truncated; copy it again") from err
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise FrameReadError(path, f"frame {frame} has {raw.ndim} axes, not 2",
                             "calframe reads 2-D EDF frames")
    header = mapping_to_header(header_dict)
    header["EDFFRAME"] = (frame, "frame index in the EDF file")
    header["EDFNFRAM"] = (nframes, "frames in the EDF file")
    data = raw.astype(dtype)
    loaded = Loaded(data=data, header=header, location={"frame": frame},
                    row_order="TOP-DOWN", saturation=integer_full_scale(raw.dtype),
                    integer=raw.dtype.kind in "iu")
    gaps = np.zeros(raw.shape, dtype=bool)
    if raw.dtype.kind == "i":
        gaps |= raw < 0
    dummy = _number(header_dict.get("Dummy"))
    if dummy is not None and dummy != 0:
        ddummy = _number(header_dict.get("DDummy")) or 0.0
        gaps |= np.abs(data - dummy) <= ddummy
    if gaps.any():
        loaded.masks["gap"] = gaps
    return loaded


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
