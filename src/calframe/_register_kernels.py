"""Numba kernels of :mod:`calframe.register`: resampling with exact variance."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _weight(t: float, order: int) -> float:
    t = abs(t)
    if order == 0:
        return 1.0 if t < 0.5 or t == 0.5 else 0.0
    if order == 1:
        return 1.0 - t if t < 1.0 else 0.0
    # Keys cubic convolution, a = -0.5
    a = -0.5
    if t <= 1.0:
        return (a + 2.0) * t**3 - (a + 3.0) * t**2 + 1.0
    if t < 2.0:
        return a * t**3 - 5.0 * a * t**2 + 8.0 * a * t - 4.0 * a
    return 0.0


@numba.njit(cache=True, inline="always")
def _bilinear_inside(data, bad, var, has_var, xs, ys):
    """Order 1 at ``(xs, ys)`` when its four taps lie inside the frame: the taps unrolled.

    Returns ``(inside, masked, value, variance)``; ``inside`` False: the
    position needs the general path (:func:`_taps`).
    """
    in_ny, in_nx = data.shape
    x0 = int(np.floor(xs))
    y0 = int(np.floor(ys))
    if not (x0 >= 0 and y0 >= 0 and x0 + 1 < in_nx and y0 + 1 < in_ny):
        return False, False, 0.0, 0.0
    tx = xs - x0
    ty = ys - y0
    if (bad[y0, x0] and (1.0 - tx) * (1.0 - ty) != 0.0) or \
            (bad[y0, x0 + 1] and tx * (1.0 - ty) != 0.0) or \
            (bad[y0 + 1, x0] and (1.0 - tx) * ty != 0.0) or \
            (bad[y0 + 1, x0 + 1] and tx * ty != 0.0):
        return True, True, 0.0, 0.0
    a = (1.0 - tx) * (1.0 - ty)
    b = tx * (1.0 - ty)
    c = (1.0 - tx) * ty
    e = tx * ty
    value = (a * data[y0, x0] + b * data[y0, x0 + 1]
             + c * data[y0 + 1, x0] + e * data[y0 + 1, x0 + 1])
    variance = 0.0
    if has_var:
        variance = (a * a * var[y0, x0] + b * b * var[y0, x0 + 1]
                    + c * c * var[y0 + 1, x0] + e * e * var[y0 + 1, x0 + 1])
    return True, False, value, variance


@numba.njit(cache=True, inline="always")
def _taps(data, bad, var, has_var, xs, ys, order):
    """Any order at ``(xs, ys)``, tap by tap: ``(masked, value, variance)``.

    Masked when a tap of non-zero weight is bad or outside the frame.
    """
    in_ny, in_nx = data.shape
    if order == 0:
        width = 1
        bx = int(np.floor(xs + 0.5))
        by = int(np.floor(ys + 0.5))
    else:
        first = 0 if order == 1 else -1
        width = 2 if order == 1 else 4
        bx = int(np.floor(xs)) + first
        by = int(np.floor(ys)) + first
    acc = 0.0
    acc_var = 0.0
    masked = False
    for q in range(width):
        iy = by + q
        wy = 1.0 if order == 0 else _weight(ys - iy, order)
        if wy == 0.0:
            continue
        for p in range(width):
            ix = bx + p
            wt = wy * (1.0 if order == 0 else _weight(xs - ix, order))
            if wt == 0.0:
                continue
            if ix < 0 or ix >= in_nx or iy < 0 or iy >= in_ny or bad[iy, ix]:
                masked = True
                continue
            acc += wt * data[iy, ix]
            if has_var:
                acc_var += wt * wt * var[iy, ix]
    return masked, acc, acc_var


@numba.njit(cache=True, inline="always")
def _warp_pixel(data, bad, var, has_var, xs, ys, order):
    """``(masked, value, variance)`` of the resampling at ``(xs, ys)``."""
    if order == 1:
        # interior fast path
        inside, masked, value, variance = _bilinear_inside(data, bad, var, has_var, xs, ys)
        if inside:
            return masked, value, variance
    return _taps(data, bad, var, has_var, xs, ys, order)


@numba.njit(parallel=True, cache=True)
def warp_kernel(data, bad, var, has_var, matrix, ny, nx, order):
    """Resample ``data`` at the positions ``matrix @ (x, y, 1)`` of each output pixel.

    Returns (values, variances, mask): values = sum(w * d), variances =
    sum(w**2 * var), mask = True where any input with w != 0 is bad or outside.
    """
    out = np.zeros((ny, nx), np.float32)
    out_var = np.zeros((ny, nx) if has_var else (1, 1), np.float32)
    out_bad = np.zeros((ny, nx), np.bool_)
    for j in numba.prange(ny):
        for i in range(nx):
            w = matrix[2, 0] * i + matrix[2, 1] * j + matrix[2, 2]
            xs = (matrix[0, 0] * i + matrix[0, 1] * j + matrix[0, 2]) / w
            ys = (matrix[1, 0] * i + matrix[1, 1] * j + matrix[1, 2]) / w
            masked, value, variance = _warp_pixel(data, bad, var, has_var, xs, ys, order)
            if masked:
                out_bad[j, i] = True
            else:
                out[j, i] = value
                if has_var:
                    out_var[j, i] = variance
    return out, out_var, out_bad
