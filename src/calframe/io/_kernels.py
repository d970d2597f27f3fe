"""Array kernels of the readers: saturation and non-finite masks in one pass."""

from __future__ import annotations

import math

import numba
import numpy as np

from .._detector import as_tile, planes


@numba.njit(cache=True, nogil=True)
def _mask_kernel(data, tile, use_level, check_finite, mask):  # pragma: no cover - numba
    ny, nx = data.shape
    ty, tx = tile.shape
    nsat = 0
    nonfinite = 0
    for y in range(ny):
        row = tile[y % ty]
        xi = 0
        for x in range(nx):
            v = data[y, x]
            if check_finite and not math.isfinite(v):
                mask[y, x] = True
                nonfinite += 1
            elif use_level and v >= row[xi]:
                mask[y, x] = True
                nsat += 1
            xi += 1
            if xi == tx:
                xi = 0
    return nsat, nonfinite


def mask_levels(data: np.ndarray, level, *, check_finite: bool, mask: np.ndarray
                ) -> tuple[int, int]:
    """Set ``mask`` where data >= level (a tile) or non-finite; return both counts.

    A value that is both is counted as non-finite only (NaN >= x is false).
    """
    tile = as_tile(0.0 if level is None else level, data.shape)
    nsat = nonfinite = 0
    for plane, mask_plane in zip(planes(data), planes(mask), strict=True):
        n1, n2 = _mask_kernel(plane, tile, level is not None, check_finite, mask_plane)
        nsat += int(n1)
        nonfinite += int(n2)
    return nsat, nonfinite


def scaled_to_float(raw: np.ndarray, bscale: float, bzero: float, dtype) -> np.ndarray:
    """``raw * bscale + bzero`` as a new native-endian ``dtype`` array.

    numpy's conversion from a memory-mapped big-endian array is as fast as a
    hand-written byte-decoding kernel here (both are limited by reading the
    pages), so numpy does it.
    """
    dtype = np.dtype(dtype)
    scaled = bscale != 1.0 or bzero != 0.0
    # 32/64-bit values do not fit a float32 exactly: scale them in float64 and
    # round once at the end.
    work = np.float64 if scaled and raw.dtype.itemsize >= 4 else dtype
    out = raw.astype(work)
    if bscale != 1.0:
        out *= out.dtype.type(bscale)
    if bzero != 0.0:
        out += out.dtype.type(bzero)
    return out.astype(dtype, copy=False)
