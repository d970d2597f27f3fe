"""Block means for the report's images, in a compiled kernel (private)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["block_nanmean"]


def block_nanmean(array: np.ndarray, mask: np.ndarray | None, factor: int) -> np.ndarray:
    """The mean of every ``factor`` x ``factor`` block, masked and NaN pixels left out.

    Rows and columns beyond the last whole block are dropped; a block without
    a usable pixel is NaN.  The same as ``np.nanmean`` of the blocks of
    ``np.where(mask, nan, array)`` in float64, summed in another order (the
    last bits may differ), without the float64 copy of the frame.
    """
    array = np.asarray(array)
    by, bx = array.shape[0] // factor, array.shape[1] // factor
    out = np.empty((by, bx), np.float64)
    has_mask = mask is not None
    m = np.asarray(mask, dtype=bool) if has_mask else np.zeros((1, 1), bool)
    _block_nanmean(array, m, has_mask, int(factor), out)
    return out


@njit(parallel=True, cache=True, nogil=True)
def _block_nanmean(a, mask, has_mask, factor, out):  # pragma: no cover - compiled
    by, bx = out.shape
    for i in prange(by):
        sums = np.zeros(bx, np.float64)
        counts = np.zeros(bx, np.int64)
        for y in range(i * factor, (i + 1) * factor):
            for j in range(bx):
                for x in range(j * factor, (j + 1) * factor):
                    v = np.float64(a[y, x])
                    if np.isnan(v) or (has_mask and mask[y, x]):
                        continue
                    sums[j] += v
                    counts[j] += 1
        for j in range(bx):
            out[i, j] = sums[j] / counts[j] if counts[j] else np.nan
