"""numba kernels of the distortion correction (plain ndarrays)."""

from __future__ import annotations

import math

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


@numba.njit(cache=True)
def _disk_normal(cut, wt, X, Y, p, r0, JTJ, JTr):
    """Cost of the soft-edged disk model for one spot, and its normal equations.

    Fills the upper triangle of ``JTJ`` (8x8) and ``JTr`` (8) with the
    weighted Gauss-Newton sums at ``p``; returns the weighted squared residual.
    """
    norm = 1.0 / np.sqrt(2.0 * np.pi)
    J = np.empty(8)
    JTJ[:] = 0.0
    JTr[:] = 0.0
    w = abs(p[4]) + 0.05
    iw = 1.0 / w
    its = iw / np.sqrt(2.0)
    ir0 = 1.0 / r0
    A = p[2]
    gx = p[6] * ir0
    gy = p[7] * ir0
    c = 0.0
    for k in range(cut.size):
        wk = wt[k]
        if wk == 0.0:
            continue
        dx = X[k] - p[0]
        dy = Y[k] - p[1]
        rho = np.sqrt(dx * dx + dy * dy) + 1e-9
        t = (rho - p[3]) * its
        P = 0.5 * math.erfc(t)
        L = 1.0 + gx * dx + gy * dy
        r = cut[k] - (p[5] + A * L * P)
        c += wk * r * r
        ALG = A * L * math.exp(-t * t) * norm * iw
        AP = A * P
        irho = 1.0 / rho
        J[0] = ALG * dx * irho - AP * gx
        J[1] = ALG * dy * irho - AP * gy
        J[2] = L * P
        J[3] = ALG
        J[4] = ALG * (rho - p[3]) * iw
        J[5] = 1.0
        J[6] = AP * dx * ir0
        J[7] = AP * dy * ir0
        for a in range(8):
            wa = wk * J[a]
            JTr[a] += wa * r
            for b in range(a, 8):
                JTJ[a, b] += wa * J[b]
    return c


@numba.njit(cache=True)
def _disk_cost(cut, wt, X, Y, p, r0):
    """Weighted squared residual of the soft-edged disk model for one spot."""
    w = abs(p[4]) + 0.05
    its = (1.0 / w) / np.sqrt(2.0)
    ir0 = 1.0 / r0
    gx = p[6] * ir0
    gy = p[7] * ir0
    c = 0.0
    for k in range(cut.size):
        if wt[k] == 0.0:
            continue
        dx = X[k] - p[0]
        dy = Y[k] - p[1]
        rho = np.sqrt(dx * dx + dy * dy) + 1e-9
        t = (rho - p[3]) * its
        P = 0.5 * math.erfc(t)
        L = 1.0 + gx * dx + gy * dy
        d = cut[k] - (p[5] + p[2] * L * P)
        c += wt[k] * d * d
    return c


@numba.njit(cache=True)
def _solve8(A, b, out):
    """Gaussian elimination with partial pivoting (in place); False if singular."""
    n = b.size
    for i in range(n):
        piv = i
        best = abs(A[i, i])
        for r in range(i + 1, n):
            if abs(A[r, i]) > best:
                best = abs(A[r, i])
                piv = r
        if not best > 0.0 or not np.isfinite(best):
            return False
        if piv != i:
            for c in range(n):
                tmp = A[i, c]
                A[i, c] = A[piv, c]
                A[piv, c] = tmp
            tmp = b[i]
            b[i] = b[piv]
            b[piv] = tmp
        for r in range(i + 1, n):
            f = A[r, i] / A[i, i]
            if f != 0.0:
                for c in range(i, n):
                    A[r, c] -= f * A[i, c]
                b[r] -= f * b[i]
    for i in range(n - 1, -1, -1):
        s = b[i]
        for c in range(i + 1, n):
            s -= A[i, c] * out[c]
        out[i] = s / A[i, i]
    return True


@numba.njit(parallel=True, cache=True)
def fit_disks(cut, wt, X, Y, p, r0, iterations):
    """Levenberg-Marquardt fit of a soft-edged disk with a linear amplitude slope.

    One independent fit per row (spot) of ``cut`` (background-removed pixel
    values), ``wt`` (weights), ``X``, ``Y`` (pixel coordinates).  Model:
    ``p5 + p2 (1 + p6 dx/r0 + p7 dy/r0) erfc((rho - p3)/(sqrt2 w))/2`` with
    ``dx = X - p0``, ``dy = Y - p1``, ``w = |p4| + 0.05``.  ``p`` (n, 8) holds
    the starting values and is updated in place; returns the final costs.
    A step is kept only if it lowers the cost (damping x0.3), otherwise the
    damping grows x10.  A spot stops early once an accepted step moves the
    centre, radius and edge width by less than 1e-6 px.
    """
    n = cut.shape[0]
    costs = np.empty(n)
    tol = 1e-6
    for i in numba.prange(n):
        pi = p[i].copy()
        JTJ = np.empty((8, 8))
        JTr = np.empty(8)
        nJTJ = np.empty((8, 8))
        nJTr = np.empty(8)
        M = np.empty((8, 8))
        b = np.empty(8)
        step = np.empty(8)
        pn = np.empty(8)
        # one pass over the pixels per trial step: the cost at the trial
        # parameters comes with their normal equations, kept if the step is taken
        c = _disk_normal(cut[i], wt[i], X[i], Y[i], pi, r0, JTJ, JTr)
        lam = 1e-3
        for it in range(iterations):
            for a in range(8):
                b[a] = JTr[a]
                for q in range(a, 8):
                    M[a, q] = JTJ[a, q]
                    M[q, a] = JTJ[a, q]
                M[a, a] += lam * (JTJ[a, a] + 1e-12)
            if not _solve8(M, b, step):
                break
            for a in range(8):
                pn[a] = pi[a] + step[a]
            if it == iterations - 1:
                cn = _disk_cost(cut[i], wt[i], X[i], Y[i], pn, r0)
            else:
                cn = _disk_normal(cut[i], wt[i], X[i], Y[i], pn, r0, nJTJ, nJTr)
            if cn < c:
                pi[:] = pn
                c = cn
                lam *= 0.3
                JTJ[:] = nJTJ
                JTr[:] = nJTr
                # converged: centre, radius and edge width moved by < 1e-6 px
                if (abs(step[0]) < tol and abs(step[1]) < tol and abs(step[3]) < tol
                        and abs(step[4]) < tol):
                    break
            else:
                lam *= 10.0
        p[i] = pi
        costs[i] = c
    return costs


@numba.njit(cache=True)
def _cubic_basis(x, t, out):
    """The 4 non-zero cubic B-spline basis values at ``x`` (clamped to the knot range).

    Fills ``out`` and returns the index of the first of them; the same values
    as ``scipy.interpolate.BSpline.design_matrix`` (Cox-de Boor recursion).
    """
    k = 3
    n = t.size - k - 1
    if x < t[k]:
        x = t[k]
    if x > t[n]:
        x = t[n]
    if x >= t[n]:
        span = n - 1
        while span > k and t[span] >= t[span + 1]:
            span -= 1
    else:
        lo = k
        hi = n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if x >= t[mid]:
                lo = mid
            else:
                hi = mid
        span = lo
    left = np.empty(k + 1)
    right = np.empty(k + 1)
    out[0] = 1.0
    for j in range(1, k + 1):
        left[j] = x - t[span + 1 - j]
        right[j] = t[span + j] - x
        saved = 0.0
        for r in range(j):
            temp = out[r] / (right[r + 1] + left[j - r])
            out[r] = saved + right[r + 1] * temp
            saved = left[j - r] * temp
        out[j] = saved
    return span - k


@numba.njit(parallel=True, cache=True)
def inverse_field(xi, yi, cx, cy, scale, k, tx, ty, coef_x, coef_y, T, iterations):
    """Displacement to the observed position of each ideal point (fixed-point iteration).

    The forward model at an observed ``p`` is ``T(p + R(p) + S(p)) - p`` with
    ``R`` the radial polynomial ``k_n r**n`` about ``(cx, cy)`` (``r`` in units of
    ``scale``) and ``S`` the tensor-product cubic spline with coefficients
    ``coef_x``/``coef_y`` of shape (len(ty) - 4, len(tx) - 4); the observed
    position of the ideal point ``q`` solves ``p = q - d(p)``, iterated
    ``iterations`` times from ``p = q``.  Returns ``(p - q)`` per axis.
    """
    n = xi.size
    ox = np.empty(n)
    oy = np.empty(n)
    for i in numba.prange(n):
        bx = np.empty(4)
        by = np.empty(4)
        qx = xi[i]
        qy = yi[i]
        px = qx
        py = qy
        for _ in range(iterations):
            u = (px - cx) / scale
            v = (py - cy) / scale
            r = np.sqrt(u * u + v * v)
            f = 0.0
            rn = 1.0
            for m in range(k.size):
                rn *= r
                f += k[m] * rn
            ux = px + u * f * scale
            uy = py + v * f * scale
            a0 = _cubic_basis(px, tx, bx)
            b0 = _cubic_basis(py, ty, by)
            sx = 0.0
            sy = 0.0
            for b in range(4):
                rx = 0.0
                ry = 0.0
                for a in range(4):
                    rx += coef_x[b0 + b, a0 + a] * bx[a]
                    ry += coef_y[b0 + b, a0 + a] * bx[a]
                sx += by[b] * rx
                sy += by[b] * ry
            ux += sx
            uy += sy
            dx = T[0, 0] + T[0, 1] * ux + T[0, 2] * uy - px
            dy = T[1, 0] + T[1, 1] * ux + T[1, 2] * uy - py
            px = qx - dx
            py = qy - dy
        ox[i] = px - qx
        oy[i] = py - qy
    return ox, oy


@numba.njit(parallel=True, cache=True)
def grid_ideal(xs, ys, cx, cy, scale, k, tx, ty, coef_x, coef_y, T):
    """Ideal positions ``T(p + R(p) + S(p))`` on the grid of columns ``xs`` x rows ``ys``.

    The same model as :func:`inverse_field` evaluates, once per grid point;
    the spline basis of each column and row is computed once.  Returns two
    ``(ys.size, xs.size)`` float64 arrays.
    """
    nx = xs.size
    ny = ys.size
    bxs = np.empty((nx, 4))
    axs = np.empty(nx, np.int64)
    for c in range(nx):
        axs[c] = _cubic_basis(xs[c], tx, bxs[c])
    bys = np.empty((ny, 4))
    ays = np.empty(ny, np.int64)
    for r in range(ny):
        ays[r] = _cubic_basis(ys[r], ty, bys[r])
    gx = np.empty((ny, nx))
    gy = np.empty((ny, nx))
    for r in numba.prange(ny):
        py = ys[r]
        b0 = ays[r]
        v = (py - cy) / scale
        for c in range(nx):
            px = xs[c]
            u = (px - cx) / scale
            rad = np.sqrt(u * u + v * v)
            f = 0.0
            rn = 1.0
            for m in range(k.size):
                rn *= rad
                f += k[m] * rn
            a0 = axs[c]
            sx = 0.0
            sy = 0.0
            for b in range(4):
                rx = 0.0
                ry = 0.0
                for a in range(4):
                    rx += coef_x[b0 + b, a0 + a] * bxs[c, a]
                    ry += coef_y[b0 + b, a0 + a] * bxs[c, a]
                sx += bys[r, b] * rx
                sy += bys[r, b] * ry
            ux = px + u * f * scale + sx
            uy = py + v * f * scale + sy
            gx[r, c] = T[0, 0] + T[0, 1] * ux + T[0, 2] * uy
            gy[r, c] = T[1, 0] + T[1, 1] * ux + T[1, 2] * uy
    return gx, gy


@numba.njit(parallel=True, cache=True)
def fill_corners(gx, gy, px, py, out):
    """pyFAI pixel corners ``(ny, nx, 4, 3)`` (z, y, x in metres) from corner positions.

    ``gx``, ``gy`` are the ideal positions of the ``(ny + 1, nx + 1)`` pixel
    corners (calframe pixel coordinates); pyFAI puts the corner of pixel 0 at
    0, so its position is ``(calframe position + 0.5) * size``.  Corner order
    A (r, c), B (r + 1, c), C (r + 1, c + 1), D (r, c + 1).
    """
    ny, nx = out.shape[0], out.shape[1]
    for r in numba.prange(ny):
        for c in range(nx):
            for n in range(4):
                a = 1 if (n == 1 or n == 2) else 0
                b = 1 if (n == 2 or n == 3) else 0
                out[r, c, n, 0] = 0.0
                out[r, c, n, 1] = (gy[r + a, c + b] + 0.5) * py
                out[r, c, n, 2] = (gx[r + a, c + b] + 0.5) * px
