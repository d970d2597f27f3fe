"""Array kernels of the readers: saturation and non-finite masks.

Rows are processed in blocks that stay in the CPU cache (numpy's compare and
``isfinite`` are vectorised; this is as fast as a compiled loop and needs no
compilation).
"""

from __future__ import annotations

import numpy as np

from .._detector import as_tile, blocks, planes


def mask_levels(data: np.ndarray, level, *, check_finite: bool, mask: np.ndarray
                ) -> tuple[int, int]:
    """Set ``mask`` where data >= level (a tile) or non-finite; return both counts.

    A value that is both is counted as non-finite only (NaN >= x is false).
    """
    nsat = nonfinite = 0
    tile = None if level is None else as_tile(level, data.shape).astype(data.dtype)
    for plane, mask_plane in zip(planes(data), planes(mask), strict=True):
        for rows, block_level in blocks(plane, tile if tile is not None
                                        else np.zeros((1, 1), data.dtype)):
            values = plane[rows]
            target = mask_plane[rows]
            flags = np.empty(values.shape, dtype=bool)
            if check_finite:
                np.isfinite(values, out=flags)
                np.logical_not(flags, out=flags)
                nonfinite += int(np.count_nonzero(flags))
                target |= flags
            if tile is not None:
                np.greater_equal(values, block_level, out=flags)
                nsat += int(np.count_nonzero(flags))
                target |= flags
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
