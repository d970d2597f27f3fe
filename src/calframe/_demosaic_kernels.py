"""Array kernels of :mod:`calframe.demosaicing` (numba, plain ndarrays).

``index`` arrays hold each pixel's CFA channel (0 R, 1 G1, 2 G2, 3 B); the
RGB plane of channel ``c`` is ``(0, 1, 1, 2)[c]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# 3x3 bilinear weights (x4) for R/B and for G, and the 5x5 fallback (triangle).
_W_RB = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
_W_G = np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]])
_TRI = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
_W_WIDE = np.outer(_TRI, _TRI)


@njit(cache=True, nogil=True, inline="always")
def _plane(chan):
    return 0 if chan == 0 else (2 if chan == 3 else 1)


@njit(cache=True, nogil=True, inline="always")
def _gather(data, var, bad, index, y, x, p, w, r, has_var):
    """Sums of the samples of plane ``p`` around ``(y, x)``, weighted by ``w[dy+r, dx+r]``.

    Returns ``(num, den, vnum, touched)``: the sums of ``w * data``, ``w``
    and ``w**2 * var`` over the good samples of non-zero weight inside the
    frame, and whether a bad one was among them.
    """
    ny, nx = data.shape
    num = 0.0
    den = 0.0
    vnum = 0.0
    touched = False
    for dy in range(-r, r + 1):
        yy = y + dy
        if yy < 0 or yy >= ny:
            continue
        for dx in range(-r, r + 1):
            xx = x + dx
            if xx < 0 or xx >= nx:
                continue
            wt = w[dy + r, dx + r]
            if wt == 0.0 or _plane(index[yy, xx]) != p:
                continue
            if bad[yy, xx]:
                touched = True
                continue
            num += wt * data[yy, xx]
            den += wt
            if has_var:
                vnum += wt * wt * var[yy, xx]
    return num, den, vnum, touched


@njit(cache=True, nogil=True, parallel=True)
def bilinear(data, var, bad, index, w_rb, w_g, w_wide, values, variances, flags, has_var):
    """Normalised-convolution bilinear demosaic.

    values, variances: float64 (3, ny, nx) outputs; flags: bool (3, ny, nx).
    ``w_wide`` has no zero weight.
    """
    ny, nx = data.shape
    for y in prange(ny):
        for x in range(nx):
            for p in range(3):
                w = w_g if p == 1 else w_rb
                num, den, vnum, touched = _gather(data, var, bad, index, y, x, p, w, 1,
                                                  has_var)
                if den <= 0.0:
                    # no valid sample in 3x3: widen to 5x5 same-colour samples
                    num, den, vnum, touched = _gather(data, var, bad, index, y, x, p,
                                                      w_wide, 2, has_var)
                if den > 0.0:
                    values[p, y, x] = num / den
                    if has_var:
                        variances[p, y, x] = vnum / (den * den)
                    flags[p, y, x] = touched
                else:
                    values[p, y, x] = np.nan
                    if has_var:
                        variances[p, y, x] = np.nan
                    flags[p, y, x] = True


@njit(cache=True, nogil=True, inline="always")
def _mirror(i, n):
    period = 2 * (n - 1)
    i = i % period
    if i < 0:
        i += period
    return period - i if i >= n else i


@njit(cache=True, nogil=True, parallel=True)
def linear5_variance(var, index, kernels, out):
    """Exact variance of a per-class 5x5 linear filter with mirrored edges.

    kernels: float64 (3, 4, 5, 5), the weight of the sample at offset (dy, dx)
    for RGB plane p at a pixel of channel c (correlation orientation).
    """
    ny, nx = var.shape
    src = np.empty(25, dtype=np.int64)
    wts = np.empty(25)
    for y in prange(ny):
        src = np.empty(25, dtype=np.int64)
        wts = np.empty(25)
        border = y < 2 or y >= ny - 2
        for x in range(nx):
            c = index[y, x]
            edge = border or x < 2 or x >= nx - 2
            for p in range(3):
                k = kernels[p, c]
                acc = 0.0
                if not edge:
                    for dy in range(5):
                        for dx in range(5):
                            wt = k[dy, dx]
                            if wt != 0.0:
                                acc += wt * wt * var[y + dy - 2, x + dx - 2]
                else:
                    n = 0
                    for dy in range(5):
                        yy = _mirror(y + dy - 2, ny)
                        for dx in range(5):
                            wt = k[dy, dx]
                            if wt == 0.0:
                                continue
                            s = yy * nx + _mirror(x + dx - 2, nx)
                            found = False
                            for m in range(n):
                                if src[m] == s:
                                    wts[m] += wt
                                    found = True
                                    break
                            if not found:
                                src[n] = s
                                wts[n] = wt
                                n += 1
                    for m in range(n):
                        acc += wts[m] * wts[m] * var[src[m] // nx, src[m] % nx]
                out[p, y, x] = acc


@njit(cache=True, nogil=True, parallel=True)
def linear5_flags(bad, index, kernels, out):
    """Flag (p, y, x) when any sample with a non-zero weight (mirrored edges) is bad."""
    ny, nx = bad.shape
    for y in prange(ny):
        for x in range(nx):
            c = index[y, x]
            for p in range(3):
                k = kernels[p, c]
                hit = False
                for dy in range(5):
                    if hit:
                        break
                    yy = _mirror(y + dy - 2, ny)
                    for dx in range(5):
                        if k[dy, dx] != 0.0 and bad[yy, _mirror(x + dx - 2, nx)]:
                            hit = True
                            break
                out[p, y, x] = hit
