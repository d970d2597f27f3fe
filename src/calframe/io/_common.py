"""What each format reader hands to :func:`calframe.read_frame` to finish."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from astropy.io import fits

from ..errors import FrameReadError


@dataclass
class Loaded:
    """A frame as read from one file, before masks, noise model and provenance.

    ``data`` are physical values (BZERO/BSCALE applied) in the requested
    float dtype; ``masks`` holds named boolean masks found by the reader
    (e.g. 'gap' for detector gap markers, 'blank' for FITS BLANK pixels).
    """

    data: np.ndarray
    header: fits.Header
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    #: level at and above which a pixel is saturated (data units), or None
    saturation: float | np.ndarray | None = None
    #: black/bias level that carries no photon noise (data units)
    pedestal: float | np.ndarray | None = None
    #: stored uncertainty (standard deviation, data units), e.g. a calframe MEF
    uncertainty: np.ndarray | None = None
    #: stored mask, e.g. a calframe MEF
    mask: np.ndarray | None = None
    unit: str | None = None
    #: the file has PROVENANCE / NCOMBINE / REJECTED extensions
    has_extras: bool = False
    #: the frame's own path part of the provenance (e.g. 'hdu': 1)
    location: dict = field(default_factory=dict)
    #: default value for the row order when the header has none
    row_order: str | None = None
    #: the stored values were integers (so all are finite)
    integer: bool = False


def integer_full_scale(dtype: np.dtype, bzero: float = 0.0, bscale: float = 1.0) -> float | None:
    """The largest physical value an integer array of ``dtype`` can hold."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return None
    return float(np.iinfo(dtype).max) * bscale + bzero


def open_for_reading(path) -> BinaryIO:
    """``open(path, 'rb')``, with the reasons a file cannot be opened as FrameReadError.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    FrameReadError
        If the file exists but cannot be opened: no permission, a loop of
        symbolic links, a folder...
    """
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError:
        raise
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno in (errno.EACCES, errno.EPERM):
            fix = "check the file's permissions (it must be readable by this user)"
        elif err.errno == errno.ELOOP:
            fix = "the symbolic link leads back to itself; point it at the real file"
        elif err.errno == errno.EISDIR:
            fix = "pass a file, not a folder"
        else:
            fix = "check that the file is accessible"
        raise FrameReadError(os.fsdecode(path), f"cannot be opened ({reason})", fix) from err


#: Integers above this magnitude are not all exact in float32 (24-bit significand).
FLOAT32_EXACT = 2 ** 24


def exact_float_dtype(raw: np.ndarray, dtype, header: fits.Header | None = None,
                      bzero: float = 0.0, bscale: float = 1.0):
    """``dtype``, or float64 when float32 would round the integers of ``raw``.

    A float32 holds every integer up to 2**24 = 16777216 exactly; summed
    frames of a counting detector (int32, uint32) go beyond, and 16777217
    would be read as 16777216.  Such a frame is read as float64 and the
    header says so (``RDDTYPE``).  The integer type's largest value is left
    out of the test: detectors write it as a marker of gaps and bad pixels.
    """
    if np.dtype(dtype) != np.float32 or raw.dtype.kind not in "iu" \
            or raw.dtype.itemsize < 4 or raw.size == 0:
        return dtype
    top = np.iinfo(raw.dtype).max
    high, low = raw.max(), raw.min()
    if high == top:
        below = raw[raw != top]
        high = below.max() if below.size else low
    big = max(abs(float(high) * bscale + bzero), abs(float(low) * bscale + bzero))
    if big <= FLOAT32_EXACT:
        return dtype
    if header is not None:
        header["RDDTYPE"] = ("float64", "integers above 2**24: read as float64 (exact)")
    return np.float64
