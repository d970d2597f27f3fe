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


@numba.njit(cache=True, nogil=True)
def _be_int_kernel(buf, nbytes, bscale, bzero, out):  # pragma: no cover - numba
    # Big-endian signed integers of `nbytes` bytes (2 or 4), scaled, into `out`.
    ny, nx = out.shape
    top = np.int64(1) << (8 * nbytes - 1)
    span = np.int64(1) << (8 * nbytes)
    for y in range(ny):
        for x in range(nx):
            base = x * nbytes
            v = np.int64(0)
            for k in range(nbytes):
                v = (v << 8) | np.int64(buf[y, base + k])
            if v >= top:
                v -= span
            out[y, x] = v * bscale + bzero


def scaled_to_float(raw: np.ndarray, bscale: float, bzero: float, dtype) -> np.ndarray:
    """``raw * bscale + bzero`` as a new native ``dtype`` array, in one pass.

    Big-endian 16- and 32-bit integers (FITS on disk, memory-mapped) are
    decoded byte by byte in a kernel; anything else goes through numpy.
    """
    dtype = np.dtype(dtype)
    if (raw.ndim >= 2 and raw.dtype.kind == "i" and raw.dtype.itemsize in (2, 4)
            and raw.dtype.byteorder == ">" and raw.flags.c_contiguous):
        out = np.empty(raw.shape, dtype=dtype)
        buf = raw.view(np.uint8).reshape(-1, raw.shape[-1] * raw.dtype.itemsize)
        _be_int_kernel(buf, raw.dtype.itemsize, float(bscale), float(bzero),
                       out.reshape(-1, raw.shape[-1]))
        return out
    out = raw.astype(dtype)
    if bscale != 1.0:
        out *= dtype.type(bscale)
    if bzero != 0.0:
        out += dtype.type(bzero)
    return out
