"""A square median filter in a compiled kernel (private).

The same values as ``scipy.ndimage.median_filter(plane, size=box,
mode="reflect")`` on finite float32 planes, computed with a sorting network
applied across a whole row of pixels at a time: the compare-exchange of two
network wires is a loop over the row that the compiler vectorises.  Only the
comparators that lead to the middle wire are kept, and those with a wire that
is known to hold +inf (the padding up to a power of two) are resolved when the
network is built.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

__all__ = ["median_filter"]


def _batcher(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort network of ``n`` (a power of two) wires."""
    def merge(lo, hi, r):
        step = r * 2
        if step < hi - lo:
            yield from merge(lo, hi, step)
            yield from merge(lo + r, hi, step)
            yield from ((i, i + r) for i in range(lo + r, hi - r, step))
        else:
            yield (lo, lo + r)

    def sort(lo, hi):
        if hi - lo >= 1:
            mid = lo + (hi - lo) // 2
            yield from sort(lo, mid)
            yield from sort(mid + 1, hi)
            yield from merge(lo, hi, 1)

    return list(sort(0, n - 1))


@functools.cache
def _network(count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Comparators ``(low, high)`` that put the median of ``count`` values (wires
    0..count-1; the others hold +inf) on the returned wire."""
    size = 1
    while size < count:
        size *= 2
    # wires holding +inf are renamed away instead of compared
    inf = set(range(count, size))
    place = list(range(size))  # wire -> where its value lives
    steps = []
    for a, b in _batcher(size):
        pa, pb = place[a], place[b]
        if pb in inf:      # min(x, inf) = x: nothing moves
            continue
        if pa in inf:      # the inf goes up: swap the names
            place[a], place[b] = pb, pa
            continue
        steps.append((pa, pb))
        # after the step the low value is at pa, the high one at pb
    target = place[count // 2]
    needed = {target}
    kept = []
    for pa, pb in reversed(steps):
        if pa in needed or pb in needed:
            kept.append((pa, pb))
            needed.update((pa, pb))
    kept.reverse()
    low = np.array([p for p, _ in kept], np.int64)
    high = np.array([q for _, q in kept], np.int64)
    return low, high, target


def median_filter(plane: np.ndarray, box: int) -> np.ndarray:
    """The median of the ``box`` x ``box`` window of every pixel (edges reflected).

    ``plane`` must be finite; the result is float32, as scipy gives for float32.
    """
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    low, high, target = _network(box * box)
    out = np.empty(plane.shape, np.float32)
    if plane.size:
        _median_rows(plane, int(box) // 2, low, high, target, out)
    return out


@njit(inline="always")
def _reflect(i, n):  # pragma: no cover - compiled
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - i - 1
    return i


@njit(parallel=True, cache=True, nogil=True)
def _median_rows(plane, radius, low, high, target, out):  # pragma: no cover - compiled
    ny, nx = plane.shape
    width = 2 * radius + 1
    wires = max(int(low.max()), int(high.max()), target) + 1 if low.size else target + 1
    for row in prange(ny):
        y = np.int64(row)
        buf = np.empty((wires, nx), np.float32)
        k = 0
        for dy in range(width):
            yy = _reflect(y + dy - radius, ny)
            for dx in range(width):
                shift = dx - radius
                for x in range(nx):
                    xx = x + shift
                    if xx < 0 or xx >= nx:
                        xx = _reflect(xx, nx)
                    buf[k, x] = plane[yy, xx]
                k += 1
        for p in range(low.size):
            i = low[p]
            j = high[p]
            for x in range(nx):
                a = buf[i, x]
                b = buf[j, x]
                buf[i, x] = min(a, b)
                buf[j, x] = max(a, b)
        for x in range(nx):
            out[y, x] = buf[target, x]
