"""numba kernels of the distortion correction (plain ndarrays)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def resample_bilinear(data, var, mask, valid, ix, iy, jac, use_var, use_jac):
    """Bilinear pull resampling; returns out, out_var, out_mask."""
    ny, nx = data.shape
    out = np.zeros((ny, nx), np.float32)
    ovar = np.zeros((ny, nx), np.float32)
    omask = np.ones((ny, nx), np.bool_)
    for r in numba.prange(ny):
        for c in range(nx):
            sx = c + ix[r, c]
            sy = r + iy[r, c]
            if not (sx >= 0.0 and sy >= 0.0 and sx <= nx - 1 and sy <= ny - 1):
                continue
            x0 = min(int(sx), nx - 2)
            y0 = min(int(sy), ny - 2)
            fx = sx - x0
            fy = sy - y0
            xn = x0 + 1 if fx >= 0.5 else x0
            yn = y0 + 1 if fy >= 0.5 else y0
            if not valid[yn, xn]:
                continue
            w00 = (1 - fx) * (1 - fy)
            w01 = fx * (1 - fy)
            w10 = (1 - fx) * fy
            w11 = fx * fy
            bad = ((w00 > 0 and mask[y0, x0]) or (w01 > 0 and mask[y0, x0 + 1])
                   or (w10 > 0 and mask[y0 + 1, x0]) or (w11 > 0 and mask[y0 + 1, x0 + 1]))
            if bad:
                continue
            v = (w00 * data[y0, x0] + w01 * data[y0, x0 + 1] + w10 * data[y0 + 1, x0]
                 + w11 * data[y0 + 1, x0 + 1])
            j = jac[r, c] if use_jac else 1.0
            out[r, c] = v * j
            if use_var:
                s = (w00 * w00 * var[y0, x0] + w01 * w01 * var[y0, x0 + 1]
                     + w10 * w10 * var[y0 + 1, x0] + w11 * w11 * var[y0 + 1, x0 + 1])
                ovar[r, c] = s * j * j
            omask[r, c] = False
    return out, ovar, omask
