"""Rejection of a whole sorted tile at once (numba): the pixels iterate side by side.

Layout: a tile is a float32 array ``t[N, TILE]`` whose column ``t[:, p]``
holds the N values of pixel ``p`` sorted in ascending order; the first
``nvalid[p]`` of them are valid and the rest are +inf.  Rejection keeps a
contiguous range ``[lo[p], hi[p])`` of each column.

:func:`reject_tile` gives, for every pixel, exactly the integers that the
per-pixel definition of each algorithm gives (``_reject`` in
``tests/test_combine_reject_tile.py``, which the tests compare it with),
but it runs the pixels of the tile in lock-step:

* the state of each pixel (its kept range, centre, scale, whether it is
  still iterating, ...) lives in rows of small scratch arrays, one entry per
  pixel (a *slot*);
* every sum over a pixel's values becomes a loop over the rows of the tile,
  ``for i in range(N): row = t[i, :k]; for q in range(k): ...``, whose inner
  loop runs over the slots along contiguous 1-D views and has no branches (a
  value outside a slot's kept range is masked, not skipped), so that the
  compiler vectorises it.  Rows that every slot keeps need no mask, and rows
  that no slot keeps are not visited.  Below ``_FEW`` slots the per-row
  overhead outweighs the gain and the sums run down each slot's column;
* an iteration of an algorithm is one pass of such loops over the slots
  still iterating, and the tile stops iterating when no slot does.  Slots
  that stop are packed away: once an eighth of them has stopped, the
  columns of those still iterating are moved into the holes (of a copy of
  the tile, ``tp``), so that an iteration costs in proportion to the pixels
  that need it, not to the slowest pixel of the tile.  Until then a stopped
  slot stays in place, its updates masked.  The inner loop of winsorized
  clipping packs its own copy of the values the same way.

Work that is O(1) per pixel stays a short loop per slot: the middle values,
the statistics' final arithmetic, and the walks in from the ends of a kept
range that clip it (a pass clips few values, so reading them where they are
is cheaper than a count over all rows).  Their reads at ranks that differ
from slot to slot are gathers.

The floating-point results are bit-identical to the per-pixel code: the same
expressions are evaluated in the same order, and every sum runs over a
pixel's kept values in ascending rank, as there.  A masked value adds +0.0,
which leaves any sum unchanged (a sum that starts at +0.0 is never -0.0).
The median absolute deviation, which the per-pixel code finds by walking
outwards from the centre, is found as a minimum over windows of the sorted
values, which selects the same numbers (``_mad_tile``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._stats import MAD_TO_SIGMA, WINSOR_MAXITER, WINSOR_SIGMA_FACTOR, WINSOR_TOLERANCE
from ._codes import (
    P_CENTER_MEAN,
    P_CUTOFF,
    P_FRACTION,
    P_HIGH,
    P_LOW,
    P_MAXITERS,
    P_NHIGH,
    P_NLOW,
    P_SCALE_MAD,
    REJ_GESD,
    REJ_LINEARFIT,
    REJ_MINMAX,
    REJ_PERCENTILE,
    REJ_SIGMA,
    REJ_WINSORIZED,
    TILE,
)

__all__ = ["NFSTATE", "NISTATE", "reject_scratch", "reject_tile"]

#: rows of the float64 and int32 per-pixel state arrays (``fs``, ``ist``)
NFSTATE = 9
NISTATE = 12

_BIG = 1 << 30
#: below this many slots a loop over rows costs more in overhead than it saves:
#: sums run along each slot's column instead (same order, same numbers)
_FEW = 8


@njit(nogil=True, cache=True)
def reject_scratch(nf):  # pragma: no cover
    """Scratch arrays of :func:`reject_tile` for tiles of ``nf`` frames.

    Returns ``(tp, wt, fs, ist)``: float32 ``(nf, TILE)`` (the packed copy
    of the tile), float64 ``(nf, TILE)`` (the winsorized values), float64
    ``(NFSTATE, TILE)`` and int32 ``(NISTATE, TILE)`` (per-pixel state).
    Allocate them once and reuse them for every tile.
    """
    n = max(nf, 1)
    tp = np.empty((n, TILE), dtype=np.float32)
    wt = np.empty((n, TILE), dtype=np.float64)
    fs = np.empty((NFSTATE, TILE), dtype=np.float64)
    ist = np.empty((NISTATE, TILE), dtype=np.int32)
    return tp, wt, fs, ist


# ----------------------------------------------------------------------------
# tile-wide building blocks: per-slot state in 1-D arrays, loops along rows

@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _median_tile(t, k, lo, hi, out):  # pragma: no cover
    """Median of the sorted values t[lo:hi, q] (``_median_sorted``)."""
    nf = t.shape[0]
    for q in range(k):
        n = hi[q] - lo[q]
        a = min(max(lo[q] + (n - 1) // 2, 0), nf - 1)
        b = min(max(lo[q] + n // 2, 0), nf - 1)
        out[q] = 0.5 * (np.float64(t[a, q]) + np.float64(t[b, q]))


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _row_spans(k, lo, hi):  # pragma: no cover
    """Rows ``[r0, r3)`` hold every slot's kept values; in rows ``[r1, r2)`` all are kept.

    A loop over the rows visits only ``[r0, r3)`` and needs no mask in
    ``[r1, r2)`` (empty when ``r1 >= r2``).
    """
    r0 = _BIG
    r1 = 0
    r2 = _BIG
    r3 = 0
    for q in range(k):
        a = lo[q]
        b = hi[q]
        r0 = min(r0, a)
        r1 = max(r1, a)
        r2 = min(r2, b)
        r3 = max(r3, b)
    return r0, r1, r2, r3


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _mean_std_tile(t, k, lo, hi, mean, std, acc):  # pragma: no cover
    """Mean and sample standard deviation of t[lo:hi, q] (``_mean_std``, same arithmetic).

    ``acc`` (float64) is scratch.
    """
    nf = t.shape[0]
    m1 = mean[:k]
    s2 = std[:k]
    s1 = acc[:k]
    kl = lo[:k]
    kh = hi[:k]
    for q in range(k):
        # ``mean`` holds the reference value and ``std`` the sum of squares meanwhile
        m1[q] = np.float64(t[min(kl[q], nf - 1), q])
        s1[q] = 0.0
        s2[q] = 0.0
    if k < _FEW:
        for q in range(k):
            ref = m1[q]
            a = 0.0
            b = 0.0
            for i in range(kl[q], kh[q]):
                d = np.float64(t[i, q]) - ref
                a += d
                b += d * d
            s1[q] = a
            s2[q] = b
    r0, r1, r2, r3 = _row_spans(k if k >= _FEW else 0, kl, kh)
    for i in range(r0, r3):
        row = t[i, :k]
        if r1 <= i < r2:
            for q in range(k):
                d = np.float64(row[q]) - m1[q]
                s1[q] += d
                s2[q] += d * d
        else:
            for q in range(k):
                keep = (i >= kl[q]) & (i < kh[q])
                d = np.float64(row[q]) - m1[q]
                d = d if keep else 0.0
                s1[q] += d
                s2[q] += d * d
    for q in range(k):
        n = kh[q] - kl[q]
        ref = m1[q]
        mu = s1[q] / max(n, 1)
        var = (s2[q] - s1[q] * mu) / max(n - 1, 1)
        m1[q] = ref + mu if n > 0 else np.nan
        s2[q] = (math.sqrt(var) if var > 0 else 0.0) if n >= 2 else (0.0 if n == 1 else np.nan)


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _mad_windows(t, k, lo, hi, c, act, n, g, d1, d2):  # pragma: no cover
    """``_mad_tile`` for the ``g`` iterating slots that keep ``n`` values: a pass over rows.

    ``d1`` (``d2``) becomes the smallest, over the windows ``[s, s+ka]``
    (``[s, s+kb]``) inside the kept range, of ``max(c - x[s], x[s+ka] - c)``
    (``x[s+kb]``).  When every slot is in the group, the rows where every
    window lies inside every kept range need no mask.
    """
    nf = t.shape[0]
    ka = (n - 1) // 2
    kb = n // 2
    kl = lo[:k]
    kh = hi[:k]
    cc = c[:k]
    e1 = d1[:k]
    e2 = d2[:k]
    s0 = _BIG
    s1 = 0
    u0 = 0
    u1 = _BIG
    for q in range(k):
        s0 = min(s0, kl[q])
        s1 = max(s1, kh[q] - ka)
        u0 = max(u0, kl[q])
        u1 = min(u1, kh[q] - kb)
    if g < k:
        u1 = u0
    for s in range(s0, s1):
        ra = t[s, :k]
        rb = t[s + ka, :k]
        rc = t[min(s + kb, nf - 1), :k]
        if u0 <= s < u1:
            for q in range(k):
                cq = cc[q]
                x = cq - np.float64(ra[q])
                y = np.float64(rb[q]) - cq
                f = x if x > y else y
                e1[q] = f if f < e1[q] else e1[q]
                y = np.float64(rc[q]) - cq
                f = x if x > y else y
                e2[q] = f if f < e2[q] else e2[q]
        else:
            for q in range(k):
                ing = (act[q] != 0) & (kh[q] - kl[q] == n) & (s >= kl[q])
                cq = cc[q]
                x = cq - np.float64(ra[q])
                y = np.float64(rb[q]) - cq
                f = x if x > y else y
                u = ing & (s < kh[q] - ka) & (f < e1[q])
                e1[q] = f if u else e1[q]
                y = np.float64(rc[q]) - cq
                f = x if x > y else y
                u = ing & (s < kh[q] - kb) & (f < e2[q])
                e2[q] = f if u else e2[q]


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _mad_search(t, lo, hi, c, q, nsteps):  # pragma: no cover
    """``_mad_tile`` for one slot, by a binary search: the deviations of steps ka and kb."""
    nf = t.shape[0]
    l0 = lo[q]
    h0 = hi[q]
    n = h0 - l0
    ka = (n - 1) // 2
    cq = c[q]
    # first s in [l0, h0 - ka) with c - x[s] <= x[s+ka] - c
    a0 = l0
    a1 = h0 - ka
    for _ in range(nsteps):
        mid = (a0 + a1) // 2
        ok = cq - np.float64(t[min(mid, nf - 1), q]) <= np.float64(
            t[min(mid + ka, nf - 1), q]) - cq
        go = a0 < a1
        a1 = mid if go & ok else a1
        a0 = mid + 1 if go & (not ok) else a0
    s = a0
    # the better of the windows [s-1, s-1+ka] and [s, s+ka]
    da = cq - np.float64(t[max(s - 1, 0), q]) if s > l0 else np.inf
    db = np.float64(t[min(s + ka, nf - 1), q]) - cq if s < h0 - ka else np.inf
    if db < da:
        d1 = db
    else:
        d1 = da
        s -= 1
    if n % 2 == 1:
        return d1, d1
    # one value more, below or above the window [s, s+ka]
    x = np.float64(t[max(s - 1, 0), q])
    e1 = max(d1, max(cq - x, x - cq)) if s > l0 else np.inf
    x = np.float64(t[min(s + ka + 1, nf - 1), q])
    e2 = max(d1, max(cq - x, x - cq)) if s + ka + 1 < h0 else np.inf
    return d1, (e2 if e2 < e1 else e1)


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _mad_tile(t, k, lo, hi, c, out, d2, act, lst):  # pragma: no cover
    """Median absolute deviation from ``c`` of the sorted values t[lo:hi, q] (``_mad_sorted``).

    The per-pixel code merges the deviations ``c - x`` (values <= c, walking
    down) and ``x - c`` (values > c, walking up) into ascending order and
    averages those of steps ``ka = (n-1)//2`` and ``kb = n//2``.  Rounding
    is monotone, so these floating-point deviations still fall towards ``c``
    and rise away from it: the ``j + 1`` smallest of them belong to a window
    of ``j + 1`` consecutive sorted values, and a window's largest deviation
    is at one of its ends.  Hence the step-``j`` deviation is the smallest,
    over the windows ``[s, s+j]`` of the kept range, of
    ``max(c - x[s], x[s+j] - c)``: the same number the walk takes.

    Slots that keep the same number of values share ``ka`` and ``kb``, and
    their minima are one pass over pairs of rows (``_mad_windows``).  Groups
    too small for a pass over all slots to pay use a binary search per slot
    instead (``_mad_search``): ``c - x[s]`` falls and ``x[s+ka] - c`` rises
    with ``s``, so the best window is next to where they cross, and the
    step-``ka + 1`` deviation is that of the better of the two windows one
    value longer (the smallest deviations form a contiguous range that
    contains the best window).  Only slots with ``act`` set are computed;
    ``d2`` (float64) and ``lst`` (int32) are scratch.
    """
    nf = t.shape[0]
    for q in range(k):
        out[q] = np.inf
        d2[q] = np.inf
    nb = 0
    nprev = -1
    while True:
        ncur = _BIG
        for q in range(k):
            n = hi[q] - lo[q]
            ncur = min(ncur, n if (act[q] != 0) & (n > nprev) else _BIG)
        if ncur == _BIG:
            break
        g = 0
        for q in range(k):
            g += (act[q] != 0) & (hi[q] - lo[q] == ncur)
        if g >= 16 and 8 * g >= k:
            _mad_windows(t, k, lo, hi, c, act, ncur, g, out, d2)
        else:
            for q in range(k):
                lst[nb] = q
                nb += (act[q] != 0) & (hi[q] - lo[q] == ncur)
        nprev = ncur
    nsteps = 0
    while (1 << nsteps) <= nf:
        nsteps += 1
    for j in range(nb):
        q = lst[j]
        out[q], d2[q] = _mad_search(t, lo, hi, c, q, nsteps)
    for q in range(k):
        out[q] = 0.5 * (out[q] + d2[q]) if act[q] != 0 else np.nan


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _clip_ends(t, k, lo, hi, blo, bhi, nlo, nhi):  # pragma: no cover
    """``_clip_range`` of every slot: [nlo, nhi) = values of [lo, hi) within [blo, bhi].

    Each slot walks in from both ends of its kept range, as the per-pixel
    code does: a pass clips few values, so this reads about two values per
    slot, far less than a count over the rows would.
    """
    for q in range(k):
        a = lo[q]
        b = hi[q]
        x = blo[q]
        y = bhi[q]
        while a < b and t[a, q] < x:
            a += 1
        while b > a and t[b - 1, q] > y:
            b -= 1
        nlo[q] = a
        nhi[q] = b


# ----------------------------------------------------------------------------
# packing: the slots still iterating fill the holes left by those that stopped

@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _count(k, act):  # pragma: no cover
    """Number of slots ``q < k`` with ``act[q]`` set."""
    nact = 0
    for q in range(k):
        nact += act[q] != 0
    return nact


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _plan(k, nact, act, to, frm):  # pragma: no cover
    """Moves that pack the ``nact`` slots with ``act`` set into ``[0, nact)``.

    The holes (stopped slots below ``nact``) go to ``to``, the iterating
    slots at or above ``nact`` to ``frm``.  Returns the number of moves.
    """
    h = 0
    for q in range(nact):
        to[h] = q
        h += act[q] == 0
    m = 0
    for q in range(nact, k):
        frm[m] = q
        m += act[q] != 0
    return h


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _move_cols(src, dst, to, frm, nm):  # pragma: no cover
    """Columns ``frm[:nm]`` of ``src`` to columns ``to[:nm]`` of ``dst`` (may be ``src``)."""
    for i in range(src.shape[0]):
        a = src[i]
        b = dst[i]
        for m in range(nm):
            b[to[m]] = a[frm[m]]


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _move(a, to, frm, nm):  # pragma: no cover
    for m in range(nm):
        a[to[m]] = a[frm[m]]


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _pack(src, first, tp, k, idx, plo, phi, act, to, frm):  # pragma: no cover
    """Pack the iterating slots once an eighth of the ``k`` slots has stopped.

    Their columns of ``src`` (the tile when ``first``, else ``tp`` itself)
    end up in ``tp``.  Returns the new number of slots (0 when none
    iterates); when it is less than ``k`` the slots' values are in ``tp``.
    """
    nact = _count(k, act)
    if nact == 0:
        return 0
    if 8 * nact > 7 * k:
        return k
    nm = _plan(k, nact, act, to, frm)
    if first:
        for i in range(src.shape[0]):
            a = src[i, :nact]
            b = tp[i, :nact]
            for q in range(nact):
                b[q] = a[q]
    _move_cols(src, tp, to, frm, nm)
    _move(idx, to, frm, nm)
    _move(plo, to, frm, nm)
    _move(phi, to, frm, nm)
    for q in range(nact):
        act[q] = 1
    return nact


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _start(t, tw, nvalid, nmin, tp, idx, plo, phi, act, to, frm):  # pragma: no cover
    """Slot ``q`` = pixel ``q`` of the tile; pixels with fewer than ``nmin`` values do
    not iterate.  Returns the number of slots (see ``_pack``)."""
    for p in range(tw):
        idx[p] = p
        plo[p] = 0
        phi[p] = nvalid[p]
        act[p] = nvalid[p] >= nmin
    return _pack(t, True, tp, tw, idx, plo, phi, act, to, frm)


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _advance(src, first, tp, k, nmin, lo, hi, idx, plo, phi, nlo, nhi, act,
             to, frm):  # pragma: no cover
    """End of an iteration: iterating slots take their new ranges; a slot stops when its
    range did not change (or keeps fewer than ``nmin`` values: the next iteration would
    stop).  The ranges are written to the pixels.  Returns the number of slots (see
    ``_pack``)."""
    for q in range(k):
        a = act[q] & ((nlo[q] != plo[q]) | (nhi[q] != phi[q]))
        plo[q] = nlo[q] if a else plo[q]
        phi[q] = nhi[q] if a else phi[q]
        act[q] = a & (phi[q] - plo[q] >= nmin)
    for q in range(k):
        lo[idx[q]] = plo[q]
        hi[idx[q]] = phi[q]
    return _pack(src, first, tp, k, idx, plo, phi, act, to, frm)


# ----------------------------------------------------------------------------
# the iterative algorithms.  Slot q is column q of ``src``: the tile itself
# until the first packing, ``tp`` after it.

@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True, inline="always")
def _sigma_tile(t, tw, nvalid, lo, hi, params, tp, fs, ist):  # pragma: no cover
    """Sigma clipping (``REJ_SIGMA``) about the median or mean, std or MAD scale."""
    low, high = params[P_LOW], params[P_HIGH]
    center_mean = params[P_CENTER_MEAN] > 0.5
    use_mad = params[P_SCALE_MAD] > 0.5
    maxiters = int(params[P_MAXITERS])
    c, s, blo, bhi, mean, acc, d2 = fs[0], fs[1], fs[2], fs[3], fs[4], fs[5], fs[6]
    idx, plo, phi, act, nlo, nhi = ist[0], ist[1], ist[2], ist[3], ist[4], ist[5]
    to, frm = ist[6], ist[7]
    k = _start(t, tw, nvalid, 2, tp, idx, plo, phi, act, to, frm)
    first = k == tw
    src = t if first else tp
    it = 0
    while k > 0 and (maxiters < 0 or it < maxiters):
        it += 1
        if center_mean or not use_mad:
            _mean_std_tile(src, k, plo, phi, mean, s, acc)
        if center_mean:
            for q in range(k):
                c[q] = mean[q]
        else:
            _median_tile(src, k, plo, phi, c)
        if use_mad:
            _mad_tile(src, k, plo, phi, c, s, d2, act, ist[8])
            for q in range(k):
                s[q] = MAD_TO_SIGMA * s[q]
        for q in range(k):
            blo[q] = c[q] - low * s[q]
            bhi[q] = c[q] + high * s[q]
        _clip_ends(src, k, plo, phi, blo, bhi, nlo, nhi)
        kn = _advance(src, first, tp, k, 2, lo, hi, idx, plo, phi, nlo, nhi, act, to, frm)
        if kn < k:
            first = False
            src = tp
        k = kn


# one function, above the complexity limit: with its loops in helper functions
# (even ones numba inlines) winsorized clipping measured about 5% slower
@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _winsor_scale(src, k, plo, phi, act, med, sigma, cutoff, wt, fs,  # noqa: C901
                  ist):  # pragma: no cover
    """The inner loop of winsorized clipping for the iterating slots: ``sigma`` in place.

    The values are winsorized in a float64 copy ``wt`` until the scale
    changes by at most ``WINSOR_TOLERANCE`` (at most ``WINSOR_MAXITER``
    times), every slot in lock-step; slots whose scale has converged are
    packed away in turn (once half of them has).
    """
    nf = src.shape[0]
    w0, w1, s1, s2, imed, isig = fs[3], fs[4], fs[5], fs[6], fs[7], fs[8]
    to, frm, imap, ilo, ihi, iact = ist[6], ist[7], ist[8], ist[9], ist[10], ist[11]
    for i in range(nf):
        a = src[i, :k]
        b = wt[i, :k]
        for q in range(k):
            b[q] = a[q]
    for q in range(k):
        imap[q] = q
        ilo[q] = plo[q]
        ihi[q] = phi[q]
        imed[q] = med[q]
        isig[q] = sigma[q]
        iact[q] = act[q]
    n = k
    for _ in range(WINSOR_MAXITER):
        nact = _count(n, iact)
        if nact == 0:
            break
        if 2 * nact <= n:
            nm = _plan(n, nact, iact, to, frm)
            _move_cols(wt, wt, to, frm, nm)
            _move(imap, to, frm, nm)
            _move(ilo, to, frm, nm)
            _move(ihi, to, frm, nm)
            _move(imed, to, frm, nm)
            _move(isig, to, frm, nm)
            for q in range(nact):
                iact[q] = 1
            n = nact
        kl = ilo[:n]
        kh = ihi[:n]
        md = imed[:n]
        sg = isig[:n]
        a0 = w0[:n]
        a1 = w1[:n]
        m1 = s1[:n]
        m2 = s2[:n]
        for q in range(n):
            a0[q] = md[q] - cutoff * sg[q]
            a1[q] = md[q] + cutoff * sg[q]
            m1[q] = 0.0
            m2[q] = 0.0
        if n < _FEW:
            for q in range(n):
                x0 = a0[q]
                x1 = a1[q]
                acc = 0.0
                for i in range(kl[q], kh[q]):
                    v = wt[i, q]
                    v = x0 if v < x0 else (x1 if v > x1 else v)
                    wt[i, q] = v
                    acc += v
                mw = acc / max(kh[q] - kl[q], 1)
                m1[q] = mw
                acc = 0.0
                for i in range(kl[q], kh[q]):
                    d = wt[i, q] - mw
                    acc += d * d
                m2[q] = acc
        # rows outside every slot's kept range are left alone: they are never read
        r0, r1, r2, r3 = _row_spans(n if n >= _FEW else 0, kl, kh)
        for i in range(r0, r3):
            row = wt[i, :n]
            if r1 <= i < r2:
                for q in range(n):
                    v = row[q]
                    v = a0[q] if v < a0[q] else (a1[q] if v > a1[q] else v)
                    row[q] = v
                    m1[q] += v
            else:
                for q in range(n):
                    v = row[q]
                    v = a0[q] if v < a0[q] else (a1[q] if v > a1[q] else v)
                    row[q] = v
                    keep = (i >= kl[q]) & (i < kh[q])
                    m1[q] += v if keep else 0.0
        for q in range(n if n >= _FEW else 0):
            m1[q] = m1[q] / max(kh[q] - kl[q], 1)  # the winsorized mean
        for i in range(r0, r3):
            row = wt[i, :n]
            if r1 <= i < r2:
                for q in range(n):
                    d = row[q] - m1[q]
                    m2[q] += d * d
            else:
                for q in range(n):
                    keep = (i >= kl[q]) & (i < kh[q])
                    d = row[q] - m1[q]
                    m2[q] += d * d if keep else 0.0
        for q in range(n):
            m = kh[q] - kl[q]
            sigma0 = sg[q]
            snew = WINSOR_SIGMA_FACTOR * math.sqrt(m2[q] / max(m - 1, 1))
            going = iact[q] != 0
            sg[q] = snew if going else sigma0
            iact[q] = going & (not (abs(snew - sigma0) <= WINSOR_TOLERANCE * sigma0))
        for q in range(n):
            sigma[imap[q]] = sg[q]


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True, inline="always")
def _winsorized_tile(t, tw, nvalid, lo, hi, params, tp, wt, fs, ist):  # pragma: no cover
    """Winsorized sigma clipping (``REJ_WINSORIZED``); ``wt`` (float64, N x TILE) is the copy."""
    low, high = params[P_LOW], params[P_HIGH]
    maxiters = int(params[P_MAXITERS])
    cutoff = params[P_CUTOFF]
    med, sigma, mean, blo, bhi, acc = fs[0], fs[1], fs[2], fs[3], fs[4], fs[5]
    idx, plo, phi, act, nlo, nhi = ist[0], ist[1], ist[2], ist[3], ist[4], ist[5]
    to, frm = ist[6], ist[7]
    k = _start(t, tw, nvalid, 3, tp, idx, plo, phi, act, to, frm)
    first = k == tw
    src = t if first else tp
    it = 0
    while k > 0 and (maxiters < 0 or it < maxiters):
        it += 1
        _median_tile(src, k, plo, phi, med)
        _mean_std_tile(src, k, plo, phi, mean, sigma, acc)
        _winsor_scale(src, k, plo, phi, act, med, sigma, cutoff, wt, fs, ist)
        for q in range(k):
            blo[q] = med[q] - low * sigma[q]
            bhi[q] = med[q] + high * sigma[q]
        _clip_ends(src, k, plo, phi, blo, bhi, nlo, nhi)
        kn = _advance(src, first, tp, k, 3, lo, hi, idx, plo, phi, nlo, nhi, act, to, frm)
        if kn < k:
            first = False
            src = tp
        k = kn


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _line_sums(src, k, kl, kh, r0, kf, a1, a2):  # pragma: no cover
    """Sums of ``y = x - r0`` and ``j y`` over the kept values ``x`` of each slot, at rank
    ``j`` from the start of its range; ``r0`` (its first kept value) and ``kf`` (the
    start as a float) are set here."""
    nf = src.shape[0]
    for q in range(k):
        r0[q] = np.float64(src[min(kl[q], nf - 1), q])
        kf[q] = np.float64(kl[q])
        a1[q] = 0.0
        a2[q] = 0.0
    if k < _FEW:
        for q in range(k):
            l0 = kl[q]
            ref = r0[q]
            u = 0.0
            w = 0.0
            for i in range(l0, kh[q]):
                y = np.float64(src[i, q]) - ref
                u += y
                w += (i - l0) * y
            a1[q] = u
            a2[q] = w
        return
    # the rank j = i - lo as a float: float(i) - float(lo) is the same exact integer
    i0, i1, i2, i3 = _row_spans(k, kl, kh)
    for i in range(i0, i3):
        row = src[i, :k]
        fi = np.float64(i)
        if i1 <= i < i2:
            for q in range(k):
                y = np.float64(row[q]) - r0[q]
                a1[q] += y
                a2[q] += (fi - kf[q]) * y
        else:
            for q in range(k):
                keep = (i >= kl[q]) & (i < kh[q])
                y = np.float64(row[q]) - r0[q]
                y = y if keep else 0.0
                a1[q] += y
                a2[q] += (fi - kf[q]) * y if keep else 0.0


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _line_deviation(src, k, kl, kh, kf, ca, cb, ad):  # pragma: no cover
    """Mean absolute deviation of each slot's kept values from its line ``ca + cb j``."""
    for q in range(k):
        ad[q] = 0.0
    if k < _FEW:
        for q in range(k):
            l0 = kl[q]
            aq = ca[q]
            bq = cb[q]
            u = 0.0
            for i in range(l0, kh[q]):
                u += abs(np.float64(src[i, q]) - (aq + bq * (i - l0)))
            ad[q] = u
    else:
        i0, i1, i2, i3 = _row_spans(k, kl, kh)
        for i in range(i0, i3):
            row = src[i, :k]
            fi = np.float64(i)
            if i1 <= i < i2:
                for q in range(k):
                    ad[q] += abs(np.float64(row[q]) - (ca[q] + cb[q] * (fi - kf[q])))
            else:
                for q in range(k):
                    keep = (i >= kl[q]) & (i < kh[q])
                    d = abs(np.float64(row[q]) - (ca[q] + cb[q] * (fi - kf[q])))
                    ad[q] += d if keep else 0.0
    for q in range(k):
        ad[q] = ad[q] / max(kh[q] - kl[q], 1)


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
def _peel_ends(src, k, kl, kh, ca, cb, ad, low, high, act, nlo, nhi):  # pragma: no cover
    """Peel outliers off the ends of each kept range: the first value within ``low``
    (``high``) deviations below (above) the line stops each side.  A slot whose
    deviation is 0 stops iterating."""
    for q in range(k):
        a = kl[q]
        b = kh[q]
        sq = ad[q]
        if act[q] == 0 or sq <= 0:
            act[q] = 0
            nlo[q] = a
            nhi[q] = b
            continue
        l0 = a
        aq = ca[q]
        bq = cb[q]
        while a < b and (aq + bq * (a - l0) - src[a, q]) > low * sq:
            a += 1
        while b > a and (src[b - 1, q] - (aq + bq * (b - 1 - l0))) > high * sq:
            b -= 1
        nlo[q] = a
        nhi[q] = b


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True, inline="always")
def _linearfit_tile(t, tw, nvalid, lo, hi, params, tp, fs, ist):  # pragma: no cover
    """Linear fit clipping (``REJ_LINEARFIT``): line through the sorted values vs rank."""
    low, high = params[P_LOW], params[P_HIGH]
    maxiters = int(params[P_MAXITERS])
    y0, sy, sxy, fa, fb, sig, fl = fs[0], fs[1], fs[2], fs[3], fs[4], fs[5], fs[6]
    idx, plo, phi, act, nlo, nhi = ist[0], ist[1], ist[2], ist[3], ist[4], ist[5]
    to, frm = ist[6], ist[7]
    k = _start(t, tw, nvalid, 3, tp, idx, plo, phi, act, to, frm)
    first = k == tw
    src = t if first else tp
    it = 0
    while k > 0 and (maxiters < 0 or it < maxiters):
        it += 1
        kl = plo[:k]
        kh = phi[:k]
        r0 = y0[:k]
        a1 = sy[:k]
        a2 = sxy[:k]
        kf = fl[:k]
        _line_sums(src, k, kl, kh, r0, kf, a1, a2)
        ca = fa[:k]
        cb = fb[:k]
        for q in range(k):
            m = np.int64(max(kh[q] - kl[q], 1))
            # sums of the exact integers j and j*j (< 2**53) are exact: closed forms
            sx = np.float64(m * (m - 1) // 2)
            sxx = np.float64((m - 1) * m * (2 * m - 1) // 6)
            den = m * sxx - sx * sx
            b = (m * a2[q] - sx * a1[q]) / den
            cb[q] = b
            ca[q] = (a1[q] - b * sx) / m + r0[q]
        ad = sig[:k]
        _line_deviation(src, k, kl, kh, kf, ca, cb, ad)
        _peel_ends(src, k, kl, kh, ca, cb, ad, low, high, act, nlo, nhi)
        kn = _advance(src, first, tp, k, 3, lo, hi, idx, plo, phi, nlo, nhi, act, to, frm)
        if kn < k:
            first = False
            src = tp
        k = kn


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True, inline="always")
def _gesd_tile(t, tw, nvalid, lo, hi, params, lam, fs, ist):  # pragma: no cover
    """Generalized ESD (``REJ_GESD``): every pixel's step ``k`` at once.

    The number of outliers is the last step whose statistic exceeds its
    critical value, and the steps remove values in order, so the kept range
    is the one left after that step: it is recorded there and then.
    """
    nf = t.shape[0]
    frac = params[P_FRACTION]
    mean, std, acc = fs[0], fs[1], fs[2]
    act, nr, clo, chi = ist[0], ist[1], ist[2], ist[3]
    rmax = 0
    for p in range(tw):
        n = nvalid[p]
        r = math.floor(n * frac)
        if r > n - 2:
            r = n - 2
        nr[p] = r
        rmax = max(rmax, r)
        clo[p] = lo[p]
        chi[p] = hi[p]
    for k in range(rmax):
        nact = 0
        for p in range(tw):
            a = k < nr[p]
            act[p] = a
            nact += a
        if nact == 0:
            break
        _mean_std_tile(t, tw, clo, chi, mean, std, acc)
        # no branch on the data: which end goes is a coin toss for the predictor
        for p in range(tw):
            a = clo[p]
            b = chi[p]
            mu = mean[p]
            sd = std[p]
            on = act[p] != 0
            stop = on & (sd <= 0)
            go = on & (not (sd <= 0))
            nr[p] = 0 if stop else nr[p]
            dlo = mu - np.float64(t[min(a, nf - 1), p])
            dhi = np.float64(t[max(b - 1, 0), p]) - mu
            up = dhi >= dlo
            stat = (dhi if up else dlo) / sd
            a1 = a if up else a + 1
            b1 = b - 1 if up else b
            clo[p] = a1 if go else a
            chi[p] = b1 if go else b
            hit = go & (stat > lam[nvalid[p], k])
            lo[p] = a1 if hit else lo[p]
            hi[p] = b1 if hit else hi[p]


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True, inline="always")
def _percentile_tile(t, tw, lo, hi, params, fs, ist):  # pragma: no cover
    """Percentile clipping (``REJ_PERCENTILE``): one pass about the median."""
    med, blo, bhi = fs[0], fs[1], fs[2]
    _median_tile(t, tw, lo, hi, med)
    for p in range(tw):
        m = med[p]
        am = abs(m)
        skip = (m == 0) | (hi[p] - lo[p] == 0)
        # NaN bounds: no comparison holds, nothing is clipped
        blo[p] = np.nan if skip else m - params[P_LOW] * am
        bhi[p] = np.nan if skip else m + params[P_HIGH] * am
    _clip_ends(t, tw, lo, hi, blo, bhi, ist[0], ist[1])
    for p in range(tw):
        lo[p] = ist[0, p]
        hi[p] = ist[1, p]


@njit(nogil=True, cache=True, error_model="numpy")
def reject_tile(t, tw, nvalid, rej, params, lam, lo, hi, tp, wt, fs, ist):  # pragma: no cover
    """Kept ranges ``[lo[p], hi[p])`` of the pixels ``p < tw`` of a sorted tile.

    For every pixel the same integers as the per-pixel definition of the
    algorithm (see the module's docstring), computed for the whole tile at
    once.

    Parameters
    ----------
    t : float32 (N, >= tw)
        Sorted tile: every column ``t[:, p]`` ascending, its first
        ``nvalid[p]`` values valid, the rest +inf.  Not modified.
    tw : int
        Number of pixels (columns) in use, at most ``TILE``.
    nvalid : int (>= tw,)
        Number of valid values of each pixel.
    rej, params, lam :
        Rejection code (a ``REJ_*`` of :mod:`._codes`; ``REJ_NONE`` keeps
        every valid value), its parameters (read at the ``P_*`` indices of
        :mod:`._codes`) and the GESD critical values ``lam[n, k]``.
    lo, hi : int64 (>= tw,)
        Output: the kept ranges.
    tp, wt, fs, ist :
        Scratch from :func:`reject_scratch`: float32 (N, TILE), float64
        (N, TILE), float64 (NFSTATE, TILE), int32 (NISTATE, TILE).
    """
    for p in range(tw):
        lo[p] = 0
        hi[p] = nvalid[p]
    if rej == REJ_SIGMA:
        _sigma_tile(t, tw, nvalid, lo, hi, params, tp, fs, ist)
    elif rej == REJ_WINSORIZED:
        _winsorized_tile(t, tw, nvalid, lo, hi, params, tp, wt, fs, ist)
    elif rej == REJ_LINEARFIT:
        _linearfit_tile(t, tw, nvalid, lo, hi, params, tp, fs, ist)
    elif rej == REJ_PERCENTILE:
        _percentile_tile(t, tw, lo, hi, params, fs, ist)
    elif rej == REJ_MINMAX:
        nlow = int(params[P_NLOW])
        nhigh = int(params[P_NHIGH])
        for p in range(tw):
            n = hi[p]
            mid = (n - 1) // 2
            ok = n - nlow - nhigh >= 1
            a = nlow if ok else mid
            b = n - nhigh if ok else mid + 1
            # no valid value: nothing to keep
            lo[p] = a if n > 0 else 0
            hi[p] = b if n > 0 else 0
    elif rej == REJ_GESD:
        _gesd_tile(t, tw, nvalid, lo, hi, params, lam, fs, ist)
