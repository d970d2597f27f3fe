"""Compiled array kernels of the combine engine (plain ndarrays, numba).

Layout: a row block of N frames is a float32 array ``buf[N, R, X]``.  Each
row is cut into tiles of ``TILE`` pixels; a tile is copied into a small
``(N, TILE)`` scratch array that stays in L1 cache, where a compare-exchange
sorting network orders the N values of every pixel at once (the inner loop
runs over pixels, so the compiler vectorises it).  Rejection then works on
the sorted values of each pixel, always keeping a contiguous range
``[lo, hi)`` of them (:func:`._reject_tile.reject_tile` runs the pixels of
the tile side by side; the tests hold the per-pixel definitions of the
algorithms and compare it with them), and the kept range is turned into
value bounds with which the unsorted values (and their uncertainties and
weights) are summed.

numba's cache is keyed on this file: after a change to ``_reject_tile.py``,
``_codes.py`` or ``calframe._stats`` alone, touch this file (or empty the
cache) so that ``combine_block`` is compiled again.

Masked and non-finite values enter as NaN; they are set to +inf before the
sort, so that the ``n`` valid values of a pixel are its first ``n`` sorted
values and nothing invalid ever reaches a statistic.

All kernels are serial and release the GIL (``nogil=True``): parallelism
comes from running row blocks on several threads (or Dask workers), which
keeps each block's data in one core's cache and needs no thread
synchronisation inside a kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._codes import (
    METHOD_MEDIAN,
    METHOD_SUM,
    P_CENTER_MEAN,
    P_HIGH,
    P_LOW,
    P_MAXITERS,
    P_SCALE_MAD,
    REJ_NONE,
    REJ_SIGMA,
    TILE,
)
from ._reject_tile import reject_scratch, reject_tile

__all__ = ["combine_block", "decode_i2be", "sorting_network"]


def sorting_network(n: int) -> np.ndarray:
    """Comparator pairs ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort of ``n`` values.

    The network is built for the next power of two; comparators that touch
    an index ``>= n`` are dropped, which is exact because the padding values
    would be +inf and never move.

    Examples
    --------
    >>> sorting_network(4).tolist()
    [[0, 1], [2, 3], [0, 2], [1, 3], [1, 2]]
    """
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@njit(nogil=True, cache=True)
def decode_i2be(raw, out, bscale, bzero, blank, has_blank, saturate):  # pragma: no cover
    """Big-endian FITS int16 (read as native uint16 bytes) to float32 physical values.

    ``raw`` holds the file's bytes viewed as native ``uint16``; the bytes are
    swapped here, reinterpreted as signed, scaled, and BLANK or saturated
    (``>= saturate``) pixels become NaN.
    """
    nr, nx = raw.shape
    zero = np.float32(bzero)
    sat = np.float32(saturate)
    nan = np.float32(np.nan)
    # integer offsets up to 2**16 keep float32 arithmetic exact
    exact = bscale == 1.0 and bzero == math.floor(bzero) and abs(bzero) <= 65536.0
    for r in range(nr):
        for x in range(nx):
            u = np.uint32(raw[r, x])
            w = ((u & np.uint32(0xFF)) << np.uint32(8)) | (u >> np.uint32(8))
            s = np.int32(w) - np.int32(65536) * np.int32(w >= np.uint32(32768))
            if exact:
                v = np.float32(s) + zero
            else:
                v = np.float32(np.float64(s) * bscale + bzero)
            bad = (has_blank & (s == blank)) | (v >= sat)
            out[r, x] = nan if bad else v


# ----------------------------------------------------------------------------
# per-pixel helpers on a sorted tile column t[:, p]

@njit(nogil=True, inline="always")
def _median_sorted(t, p, lo, hi):  # pragma: no cover
    n = hi - lo
    a = lo + (n - 1) // 2
    b = lo + n // 2
    return 0.5 * (np.float64(t[a, p]) + np.float64(t[b, p]))


def _rounding_correlation(a):
    """Correlation of the roundings of the two middle values of an even-``n`` median.

    ``rho = E[1 - 6u + 6u**2]`` with ``u = D/q mod 1``, for an exponential
    spacing ``D`` of mean ``a q / (2 pi)``: ``1 - (3a/pi) coth(pi/a) +
    3a**2/pi**2``; 1 at ``a = 0`` (the two values share one rounding) and
    ``x**2/15 - 2x**4/315 + x**6/1575`` (``x = pi/a``) for large ``a``, where
    the closed form loses digits to cancellation.
    """
    a = np.asarray(a, dtype=np.float64)
    rho = np.ones_like(a)
    big = a > 0
    x = np.pi / a[big]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # (where x is small the series below is used)
        closed = 1.0 - 3.0 / (x * np.tanh(x)) + 3.0 / x**2
    series = x**2 / 15.0 - 2.0 * x**4 / 315.0 + x**6 / 1575.0
    rho[big] = np.where(x < 0.05, series, closed)
    return rho


#: nodes of the table of the rounding weight ``w = (1 + rho)/2`` of an
#: even-``n`` median, uniform in ``a/(1 + a)``; linear interpolation is
#: within 1e-7 of the closed form (checked in the tests)
_W_NODES = 4096
_W_TABLE = np.append(
    0.5 * (1.0 + _rounding_correlation(
        np.arange(_W_NODES) / (_W_NODES - np.arange(_W_NODES)))), [0.5, 0.5])
#: ``a = _A_SCALE sigma / (n q)``: ``2 pi`` times the mean spacing of ``n``
#: Gaussian values near their median (``sigma sqrt(2 pi) / n``) over ``q``
_A_SCALE = (2.0 * math.pi) ** 1.5


@njit(nogil=True, inline="always")
def _rounding_weight(a):  # pragma: no cover
    """``(1 + rho(a))/2`` from ``_W_TABLE`` (``a >= 0``; 0.5 for ``a = inf``)."""
    u = a / (1.0 + a) * _W_NODES if a < 1e300 else float(_W_NODES)
    i = int(u)
    return _W_TABLE[i] + (u - i) * (_W_TABLE[i + 1] - _W_TABLE[i])


@njit(nogil=True, inline="always")
def _median_variance(var1, f2n, a_per_s, quant2):  # pragma: no cover
    """Variance of the median of ``n`` values of variance ``var1`` each.

    ``f2n`` is ``f(n)**2 / n`` (``f`` the median's efficiency factor) and
    ``a_per_s`` the rounding weight's ``a`` per unit sigma for even ``n``
    (-1 for odd ``n``), both from :func:`_per_n_constants`; ``quant2`` the
    square of the step ``q`` the values are rounded to (0: continuous).
    Rounding errors average out of a mean but not out of a median: the
    median of rounded values carries the rounding of its middle value
    (variance ``q**2/12``), or for even ``n`` the average of the two middle
    values' roundings, which are correlated when the values' spacing near
    the median is small against ``q`` (see ``_rounding_correlation``).
    ``var1`` includes the values' own rounding (``q**2/12``), which is taken
    out of the continuous part.  NaN (no estimate) stays NaN.
    """
    if quant2 <= 0.0:
        return f2n * var1
    r = quant2 / 12.0
    cont = var1 - r
    if cont < 0.0:
        cont = 0.0
    w = 1.0 if a_per_s < 0.0 else _rounding_weight(a_per_s * math.sqrt(var1))
    return f2n * cont + r * w


#: rows of the table of :func:`_per_n_constants`
_K_INV_N = 0
_K_INV_N1 = 1
_K_INV_C4 = 2
_K_INV_SQRT_N = 3
_K_MEDIAN_F2N = 4
_K_ROUNDING_A = 5


@njit(nogil=True)
def _per_n_constants(nf, medfac, c4, quant2):  # pragma: no cover
    """Per-count constants of the tile statistics, so that no pixel divides by ``n``.

    Rows, for ``n = 0 .. nf``: ``1/n`` (``_K_INV_N``), ``1/(n-1)``
    (``_K_INV_N1``), ``1/c4(n)`` (``_K_INV_C4``), ``1/sqrt(n)``
    (``_K_INV_SQRT_N``), ``f(n)**2/n`` (``_K_MEDIAN_F2N``, the median's
    variance factor) and, for the rounding weight of an even-``n`` median,
    ``a/s = _A_SCALE/(n q)`` (``_K_ROUNDING_A``; -1 for odd ``n``: the
    weight is 1).  NaN where a statistic has too few values (``1/(n-1)``
    and ``1/c4`` for ``n < 2``, the others for ``n = 0``), so that NaN
    reaches the outputs with no test per pixel.
    """
    k = np.full((6, nf + 1), np.nan)
    q = math.sqrt(quant2)
    for n in range(1, nf + 1):
        k[_K_INV_N, n] = 1.0 / n
        k[_K_INV_SQRT_N, n] = 1.0 / math.sqrt(n)
        k[_K_MEDIAN_F2N, n] = medfac[n] * medfac[n] / n
        k[_K_ROUNDING_A, n] = _A_SCALE / (n * q) if n % 2 == 0 and q > 0.0 else -1.0
        if n >= 2:
            k[_K_INV_N1, n] = 1.0 / (n - 1)
            k[_K_INV_C4, n] = 1.0 / c4[n]
    return k


@njit(nogil=True)
def _simple_tile(t, tw, nf, nvalid, need_sort, method, rej, params, ranged,
                 kn, quant2, nframes_total, r, x0, lo, hi, ref, s1, s2, blo, bhi,
                 out_data, out_unc, out_n, out_rej):  # pragma: no cover
    """Equal weights, no input uncertainties: all from the tile, vectorised over pixels.

    ``lo``/``hi`` (int64), ``ref``/``s1``/``s2``/``blo``/``bhi`` (float64) are
    scratch arrays of the tile width.  ``ranged``: the caller has set the
    kept ranges ``lo``/``hi`` (:func:`reject_tile`).  Else sigma clipping
    with the standard deviation is iterated here, over the whole tile at
    once, or all valid values are kept.
    """
    if not ranged:
        for p in range(tw):
            lo[p] = 0
            hi[p] = nvalid[p]
    if not ranged and need_sort and rej == REJ_SIGMA and params[P_SCALE_MAD] < 0.5:
        # sigma clipping with the standard deviation: iterate the whole tile
        low = params[P_LOW]
        high = params[P_HIGH]
        center_mean = params[P_CENTER_MEAN] > 0.5
        maxiters = int(params[P_MAXITERS])
        it = 0
        while maxiters < 0 or it < maxiters:
            it += 1
            _tile_sums(t, tw, nf, lo, hi, True, ref, s1, s2)
            for p in range(tw):
                n = hi[p] - lo[p]
                if n < 2:
                    blo[p] = -np.inf
                    bhi[p] = np.inf
                    continue
                m1 = s1[p] / n
                mean = ref[p] + m1
                var = (s2[p] - s1[p] * m1) / (n - 1)
                sd = math.sqrt(var) if var > 0 else 0.0
                c = mean if center_mean else _median_sorted(t, p, lo[p], hi[p])
                blo[p] = c - low * sd
                bhi[p] = c + high * sd
            changed = 0
            for p in range(tw):
                a = lo[p]
                b = hi[p]
                while a < b and t[a, p] < blo[p]:
                    a += 1
                while b > a and t[b - 1, p] > bhi[p]:
                    b -= 1
                changed += (a != lo[p]) + (b != hi[p])
                lo[p] = a
                hi[p] = b
            if changed == 0:
                break
    # with no rejection the kept values are the valid ones: no rank test needed
    _tile_sums(t, tw, nf, lo, hi, need_sort and rej != REJ_NONE, ref, s1, s2)
    # counts, and sigma from the scatter (NaN for n < 2; kn: see _per_n_constants)
    for p in range(tw):
        n = hi[p] - lo[p]
        out_n[r, x0 + p] = n
        out_rej[r, x0 + p] = nvalid[p] - n
        var = (s2[p] - s1[p] * s1[p] * kn[_K_INV_N, n]) * kn[_K_INV_N1, n]
        blo[p] = math.sqrt(var if var > 0.0 else 0.0) * kn[_K_INV_C4, n]
    if method == METHOD_MEDIAN:
        for p in range(tw):
            n = hi[p] - lo[p]
            s = blo[p]
            out_unc[r, x0 + p] = math.sqrt(_median_variance(
                s * s, kn[_K_MEDIAN_F2N, n], kn[_K_ROUNDING_A, n], quant2))
            out_data[r, x0 + p] = _median_sorted(t, p, lo[p], hi[p]) if n > 0 else np.nan
    else:
        scale = nframes_total if method == METHOD_SUM else 1.0
        for p in range(tw):
            n = hi[p] - lo[p]
            out_data[r, x0 + p] = (ref[p] + s1[p] * kn[_K_INV_N, n]) * scale
            out_unc[r, x0 + p] = blo[p] * kn[_K_INV_SQRT_N, n] * scale


@njit(nogil=True)
def _tile_sums(t, tw, nf, lo, hi, by_rank, ref, s1, s2):  # pragma: no cover
    """Sums of (x - ref) and its square over the kept values of each pixel.

    ``by_rank``: the tile is sorted and rows ``lo[p]:hi[p]`` are kept; else
    every finite value is kept.  ``ref`` is a kept value (for precision).
    The loops run along rows of the tile (1-D views), which the compiler
    vectorises.
    """
    inf = np.float32(np.inf)
    for p in range(tw):
        s1[p] = 0.0
        s2[p] = 0.0
        if by_rank:
            ref[p] = np.float64(t[lo[p], p]) if hi[p] > lo[p] else 0.0
        else:
            ref[p] = 0.0
            for i in range(nf):
                if t[i, p] < inf:
                    ref[p] = np.float64(t[i, p])
                    break
    r1 = ref[:tw]
    a1 = s1[:tw]
    a2 = s2[:tw]
    if by_rank:
        klo = lo[:tw]
        khi = hi[:tw]
        for i in range(nf):
            row = t[i, :tw]
            for p in range(tw):
                keep = (i >= klo[p]) & (i < khi[p])
                d = np.float64(row[p]) - r1[p]
                d = d if keep else 0.0
                a1[p] += d
                a2[p] += d * d
    else:
        for i in range(nf):
            row = t[i, :tw]
            for p in range(tw):
                v = row[p]
                d = np.float64(v) - r1[p]
                d = d if v < inf else 0.0
                a1[p] += d
                a2[p] += d * d


@njit(nogil=True)
def _weighted_sums(buf, ubuf, has_unc, ivar, mul, add, fweight, r, x0, tw,
                   ref, sw, swx, sw2, sw2u2, su2, sx, sxx):  # pragma: no cover
    """Weighted sums over every valid value of a tile (no rejection)."""
    inf = np.float32(np.inf)
    nf = buf.shape[0]
    for i in range(nf):
        mi = np.float32(mul[i])
        ai = np.float32(add[i])
        am = abs(mul[i])
        fw = fweight[i]
        row = buf[i, r, x0:x0 + tw]
        urow = ubuf[i, r, x0:x0 + tw] if has_unc else row
        for p in range(tw):
            v = row[p]
            u = np.float64(urow[p]) * am if has_unc else 0.0
            ok = (abs(v) < inf) & ((abs(u) < np.inf) & ((u > 0) | (not ivar)))
            uu = u * u if ok else 1.0
            w = (fw / uu if ivar else fw) if ok else 0.0
            d = (np.float64(v * mi + ai) - ref[p]) if ok else 0.0
            sw[p] += w
            swx[p] += w * d
            sw2[p] += w * w
            sw2u2[p] += w * w * uu
            su2[p] += uu if ok else 0.0
            sx[p] += d
            sxx[p] += d * d


@njit(nogil=True)
def _load_tile(buf, ubuf, has_unc, ivar, mul, add, r, x0, tw, t, nv):  # pragma: no cover
    """Load and normalise a tile of row ``r`` into ``t``; invalid values become +inf.

    ``nv`` (int32, ``tw``) gets the number of valid values of each pixel.  The
    loops run along 1-D row views, which the compiler vectorises (indexing
    the 3-D block inside the loop defeats that).
    """
    inf = np.float32(np.inf)
    nv[:] = 0
    for i in range(buf.shape[0]):
        mi = np.float32(mul[i])
        ai = np.float32(add[i])
        row = buf[i, r, x0:x0 + tw]
        dst = t[i, :tw]
        if has_unc:
            urow = ubuf[i, r, x0:x0 + tw]
            for p in range(tw):
                v = row[p]
                u = urow[p]
                ok = (abs(v) < inf) & (abs(u) < inf) & ((u > 0) | (not ivar))
                dst[p] = v * mi + ai if ok else inf
                nv[p] += np.int32(ok)
        else:
            for p in range(tw):
                v = row[p]
                ok = abs(v) < inf
                dst[p] = v * mi + ai if ok else inf
                nv[p] += np.int32(ok)


@njit(nogil=True)
def _sort_tile(t, tw, pairs):  # pragma: no cover
    """Sort every column of the tile by the compare-exchange network ``pairs``."""
    for k in range(pairs.shape[0]):
        ra = t[pairs[k, 0], :tw]
        rb = t[pairs[k, 1], :tw]
        for p in range(tw):
            xa = ra[p]
            xb = rb[p]
            ra[p] = min(xa, xb)
            rb[p] = max(xa, xb)


@njit(nogil=True)
def _count_equal(t, p, lo, hi, v):  # pragma: no cover
    """How many of the sorted values t[lo:hi, p] equal ``v``."""
    c = 0
    for j in range(lo, hi):
        if t[j, p] == v:
            c += 1
    return c


@njit(nogil=True)
def _kept_bounds(t, tw, nf, nvalid, need_sort, ranged, lo_i, hi_i,
                 kept, vlo, vhi, klo, khi, med, ref):  # pragma: no cover
    """The kept values of each pixel as value bounds, for the sums over unsorted frames.

    A value is kept when it lies in ``[vlo, vhi]``; of the values equal to a
    bound only the first ``klo`` (``khi``) count, as many as the kept range
    holds.  Unsorted tiles keep every valid value.  ``med`` is the median of
    the kept values (sorted tiles) and ``ref`` the reference value of the
    sums: the median, or NaN (the first value summed becomes it).
    """
    inf = np.float32(np.inf)
    for p in range(tw):
        lo, hi = 0, nvalid[p]
        if ranged:
            lo, hi = lo_i[p], hi_i[p]
        kept[p] = hi - lo
        if hi <= lo:
            vlo[p] = inf
            vhi[p] = -inf
            med[p] = np.nan
        elif need_sort:
            vlo[p] = t[lo, p]
            vhi[p] = t[hi - 1, p]
            klo[p] = _count_equal(t, p, lo, hi, vlo[p])
            khi[p] = _count_equal(t, p, lo, hi, vhi[p])
            med[p] = _median_sorted(t, p, lo, hi)
        else:
            vlo[p] = -inf
            vhi[p] = inf
            klo[p] = nf
            khi[p] = nf
            med[p] = 0.0
        ref[p] = med[p] if need_sort and hi > lo else np.nan


@njit(nogil=True)
def _first_valid(t, tw, nf, ref):  # pragma: no cover
    """Where ``ref`` is NaN, the pixel's first valid value of the tile (0.0 if none)."""
    inf = np.float32(np.inf)
    for p in range(tw):
        if ref[p] != ref[p]:
            ref[p] = 0.0
            for i in range(nf):
                if t[i, p] < inf:
                    ref[p] = np.float64(t[i, p])
                    break


@njit(nogil=True)
def _kept_weighted_sums(buf, ubuf, has_unc, ivar, mul, add, fweight, r, x0, tw,
                        vlo, vhi, klo, khi, ref, sw, swx, sw2, sw2u2, su2, sx,
                        sxx):  # pragma: no cover
    """Weighted sums over the kept values (``_kept_bounds``) of a tile, in frame order.

    ``klo``/``khi`` are used up.  Where ``ref`` is NaN the first kept value
    becomes the reference.
    """
    inf = np.float32(np.inf)
    for i in range(buf.shape[0]):
        mi = np.float32(mul[i])
        ai = np.float32(add[i])
        am = abs(mul[i])
        for p in range(tw):
            v = buf[i, r, x0 + p]
            ok = abs(v) < inf
            u = 0.0
            if has_unc:
                u = np.float64(ubuf[i, r, x0 + p]) * am
                ok = ok and abs(u) < np.inf and (u > 0 or not ivar)
            if not ok:
                continue
            xv = v * mi + ai
            if xv < vlo[p] or xv > vhi[p]:
                continue
            if xv == vlo[p]:
                if klo[p] <= 0:
                    continue
                klo[p] -= 1
                if xv == vhi[p]:
                    khi[p] -= 1
            elif xv == vhi[p]:
                if khi[p] <= 0:
                    continue
                khi[p] -= 1
            w = fweight[i]
            if ivar:
                w = w / (u * u)
            xd = np.float64(xv)
            if ref[p] != ref[p]:
                ref[p] = xd
            d = xd - ref[p]
            sw[p] += w
            swx[p] += w * d
            sw2[p] += w * w
            sw2u2[p] += w * w * u * u
            su2[p] += u * u
            sx[p] += d
            sxx[p] += d * d


@njit(nogil=True)
def _weighted_outputs(r, x0, tw, nvalid, kept, has_unc, method, c4, kn, quant2,
                      nframes_total, med, ref, sw, swx, sw2, sw2u2, su2, sx, sxx,
                      out_data, out_unc, out_n, out_rej):  # pragma: no cover
    """Counts, values and uncertainties of a tile from its weighted sums."""
    for p in range(tw):
        n = kept[p]
        ox = x0 + p
        out_n[r, ox] = n
        out_rej[r, ox] = nvalid[p] - n
        if n == 0:
            out_data[r, ox] = np.nan
            out_unc[r, ox] = np.nan
            continue
        s = np.nan
        if n >= 2:
            var = (sxx[p] - sx[p] * sx[p] / n) / (n - 1)
            s = (math.sqrt(var) if var > 0 else 0.0) / c4[n]
        if method == METHOD_MEDIAN:
            val = med[p]
            var1 = su2[p] / n if has_unc else s * s
            unc = math.sqrt(_median_variance(var1, kn[_K_MEDIAN_F2N, n], kn[_K_ROUNDING_A, n],
                                             quant2))
        else:
            val = ref[p] + swx[p] / sw[p]
            if has_unc:
                unc = math.sqrt(sw2u2[p]) / sw[p]
            else:
                unc = s * math.sqrt(sw2[p]) / sw[p]
            if method == METHOD_SUM:
                val *= nframes_total
                unc *= nframes_total
        out_data[r, ox] = val
        out_unc[r, ox] = unc


@njit(nogil=True, cache=True)
def combine_block(buf, ubuf, nr, has_unc, mul, add, fweight, ivar, method, rej, params,
                  lam, pairs, medfac, c4, quant2, nframes_total, simple,
                  out_data, out_unc, out_n, out_rej):  # pragma: no cover
    """Combine the first ``nr`` rows of a block ``buf[N, R, X]`` into ``out_*[:nr, X]``.

    Parameters (all plain arrays/scalars)
    -------------------------------------
    buf, ubuf : float32 (N, R, X); values (NaN = invalid) and standard
        deviations (ignored unless ``has_unc``; may then be (N, 1, 1)).
    mul, add : float64 (N,); normalisation ``x' = x * mul + add``.
    fweight : float64 (N,); per-frame weights (mean and sum only).
    ivar : multiply the weights by 1/sigma^2 of each value.
    method : a ``METHOD_*`` code of :mod:`._codes`.
    rej, params, lam : rejection code (``REJ_*``), its parameters (read at
        the ``P_*`` indices of :mod:`._codes`), GESD critical values.
    pairs : int64 (K, 2) sorting network for N values.
    medfac : float64; sqrt(n Var(median_n)) for unit Gaussians, by n.
    c4 : float64; E[s]/sigma for n Gaussian values, by n.
    quant2 : square of the step the values are rounded to (0: continuous);
        enters the uncertainty of a median (see ``_median_variance``).
    simple : no input uncertainties and equal weights: every statistic is
        taken from the sorted tile with loops vectorised across pixels.
    """
    nf = buf.shape[0]
    nx = buf.shape[2]
    t = np.empty((nf, TILE), dtype=np.float32)
    nvalid = np.zeros(TILE, dtype=np.int32)
    vlo = np.empty(TILE, dtype=np.float32)
    vhi = np.empty(TILE, dtype=np.float32)
    klo = np.zeros(TILE, dtype=np.int64)
    khi = np.zeros(TILE, dtype=np.int64)
    kept = np.zeros(TILE, dtype=np.int64)
    lo_i = np.zeros(TILE, dtype=np.int64)
    hi_i = np.zeros(TILE, dtype=np.int64)
    b_lo = np.zeros(TILE, dtype=np.float64)
    b_hi = np.zeros(TILE, dtype=np.float64)
    med = np.empty(TILE, dtype=np.float64)
    sw = np.zeros(TILE, dtype=np.float64)
    swx = np.zeros(TILE, dtype=np.float64)
    sw2 = np.zeros(TILE, dtype=np.float64)
    sw2u2 = np.zeros(TILE, dtype=np.float64)
    su2 = np.zeros(TILE, dtype=np.float64)
    sx = np.zeros(TILE, dtype=np.float64)
    sxx = np.zeros(TILE, dtype=np.float64)
    ref = np.zeros(TILE, dtype=np.float64)
    tp, wt, fs, ist = reject_scratch(nf if rej != REJ_NONE else 1)
    need_sort = method == METHOD_MEDIAN or rej != REJ_NONE
    # sigma clipping by the standard deviation of a simple tile: _simple_tile iterates it
    ranged = need_sort and rej != REJ_NONE and not (
        simple and rej == REJ_SIGMA and params[P_SCALE_MAD] < 0.5)
    kn = _per_n_constants(nf, medfac, c4, quant2)
    for r in range(nr):
        for x0 in range(0, nx, TILE):
            tw = min(TILE, nx - x0)
            # 1. load and normalise; 2. sort across frames
            _load_tile(buf, ubuf, has_unc, ivar, mul, add, r, x0, tw, t, nvalid[:tw])
            if need_sort:
                _sort_tile(t, tw, pairs)
            # 3. rejection -> kept ranges, for the whole tile at once
            if ranged:
                reject_tile(t, tw, nvalid, rej, params, lam, lo_i, hi_i, tp, wt, fs, ist)
            if simple:
                _simple_tile(t, tw, nf, nvalid, need_sort, method, rej, params, ranged,
                             kn, quant2, nframes_total, r, x0, lo_i, hi_i, ref,
                             sx, sxx, b_lo, b_hi, out_data, out_unc, out_n, out_rej)
                continue
            _kept_bounds(t, tw, nf, nvalid, need_sort, ranged, lo_i, hi_i,
                         kept, vlo, vhi, klo, khi, med, ref)
            for acc in (sw, swx, sw2, sw2u2, su2, sx, sxx):
                acc[:tw] = 0.0
            # 4. sums over kept values, in frame order
            if rej == REJ_NONE:
                # every valid value is kept: branch-free, vectorised over pixels
                _first_valid(t, tw, nf, ref)
                _weighted_sums(buf, ubuf, has_unc, ivar, mul, add, fweight, r, x0, tw,
                               ref, sw, swx, sw2, sw2u2, su2, sx, sxx)
            else:
                _kept_weighted_sums(buf, ubuf, has_unc, ivar, mul, add, fweight, r, x0, tw,
                                    vlo, vhi, klo, khi, ref, sw, swx, sw2, sw2u2, su2,
                                    sx, sxx)
            # 5. outputs
            _weighted_outputs(r, x0, tw, nvalid, kept, has_unc, method, c4, kn, quant2,
                              nframes_total, med, ref, sw, swx, sw2, sw2u2, su2, sx, sxx,
                              out_data, out_unc, out_n, out_rej)
