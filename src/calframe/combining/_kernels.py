"""Compiled array kernels of the combine engine (plain ndarrays, numba).

Layout: a row block of N frames is a float32 array ``buf[N, R, X]``.  Each
row is cut into tiles of ``TILE`` pixels; a tile is copied into a small
``(N, TILE)`` scratch array that stays in L1 cache, where a compare-exchange
sorting network orders the N values of every pixel at once (the inner loop
runs over pixels, so the compiler vectorises it).  Rejection then works on
the sorted values of each pixel, always keeping a contiguous range
``[lo, hi)`` of them (:func:`._reject_tile.reject_tile` runs the pixels of
the tile side by side; ``_reject`` here is its per-pixel definition, which
the tests compare it with), and the kept range is turned into value bounds
with which the unsorted values (and their uncertainties and weights) are
summed.

numba's cache is keyed on this file: after a change to ``_reject_tile.py``
alone, touch this file (or empty the cache) so that ``combine_block`` is
compiled again.

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

from ._codes import METHOD_CODES, REJECTION_CODES
from ._reject_tile import reject_scratch, reject_tile

__all__ = [
    "METHOD_CODES",
    "REJECTION_CODES",
    "TILE",
    "combine_block",
    "decode_i2be",
    "sorting_network",
]

TILE = 256



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


@njit(nogil=True)
def _mean_std(t, p, lo, hi):  # pragma: no cover
    n = hi - lo
    if n <= 0:
        return np.nan, np.nan
    ref = np.float64(t[lo, p])
    s = 0.0
    ss = 0.0
    for j in range(lo, hi):
        d = np.float64(t[j, p]) - ref
        s += d
        ss += d * d
    mean = s / n
    if n < 2:
        return ref + mean, 0.0
    var = (ss - s * mean) / (n - 1)
    return ref + mean, math.sqrt(var) if var > 0 else 0.0


@njit(nogil=True)
def _mad_sorted(t, p, lo, hi, m):  # pragma: no cover
    """Median absolute deviation from ``m`` of the sorted values t[lo:hi, p]."""
    n = hi - lo
    # split point: first index with value > m
    k = lo
    while k < hi and t[k, p] <= m:
        k += 1
    left = k - 1  # walks down: deviations m - t grow
    right = k     # walks up: deviations t - m grow
    ka = (n - 1) // 2
    kb = n // 2
    da = 0.0
    db = 0.0
    for step in range(kb + 1):
        if left >= lo and (right >= hi or m - t[left, p] <= t[right, p] - m):
            d = m - np.float64(t[left, p])
            left -= 1
        else:
            d = np.float64(t[right, p]) - m
            right += 1
        if step == ka:
            da = d
        if step == kb:
            db = d
    return 0.5 * (da + db)


@njit(nogil=True)
def _clip_range(t, p, lo, hi, low_bound, high_bound):  # pragma: no cover
    """Shrink [lo, hi) of sorted values to those within [low_bound, high_bound]."""
    while lo < hi and t[lo, p] < low_bound:
        lo += 1
    while hi > lo and t[hi - 1, p] > high_bound:
        hi -= 1
    return lo, hi


@njit(nogil=True)
def _reject(t, p, n, rej, params, lam, scratch):  # pragma: no cover
    """Kept range [lo, hi) of the n valid sorted values of pixel p."""
    lo = 0
    hi = n
    if rej == 0 or n == 0:
        return lo, hi
    if rej == 1:  # sigma clipping
        low, high = params[0], params[1]
        center_mean = params[2] > 0.5
        use_mad = params[3] > 0.5
        maxiters = int(params[4])
        it = 0
        while maxiters < 0 or it < maxiters:
            it += 1
            if hi - lo < 2:
                break
            mean, std = _mean_std(t, p, lo, hi)
            med = _median_sorted(t, p, lo, hi)
            c = mean if center_mean else med
            if use_mad:
                s = 1.482602218505602 * _mad_sorted(t, p, lo, hi, c)
            else:
                s = std
            nlo, nhi = _clip_range(t, p, lo, hi, c - low * s, c + high * s)
            if nlo == lo and nhi == hi:
                break
            lo, hi = nlo, nhi
        return lo, hi
    if rej == 2:  # winsorized sigma clipping (Siril / PixInsight)
        low, high = params[0], params[1]
        maxiters = int(params[4])
        cutoff = params[5]
        it = 0
        while maxiters < 0 or it < maxiters:
            it += 1
            m = hi - lo
            if m < 3:
                break
            med = _median_sorted(t, p, lo, hi)
            _, sigma = _mean_std(t, p, lo, hi)
            for j in range(m):
                scratch[j] = t[lo + j, p]
            for _ in range(100):
                w0 = med - cutoff * sigma
                w1 = med + cutoff * sigma
                s1 = 0.0
                for j in range(m):
                    v = scratch[j]
                    v = w0 if v < w0 else (w1 if v > w1 else v)
                    scratch[j] = v
                    s1 += v
                mw = s1 / m
                s2 = 0.0
                for j in range(m):
                    d = scratch[j] - mw
                    s2 += d * d
                sigma0 = sigma
                sigma = 1.134 * math.sqrt(s2 / (m - 1))
                if abs(sigma - sigma0) <= 0.0005 * sigma0:
                    break
            nlo, nhi = _clip_range(t, p, lo, hi, med - low * sigma, med + high * sigma)
            if nlo == lo and nhi == hi:
                break
            lo, hi = nlo, nhi
        return lo, hi
    if rej == 3:  # linear fit clipping (Siril): line through sorted values vs rank
        low, high = params[0], params[1]
        maxiters = int(params[4])
        it = 0
        while maxiters < 0 or it < maxiters:
            it += 1
            m = hi - lo
            if m < 3:
                break
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            sxy = 0.0
            y0 = np.float64(t[lo, p])
            for j in range(m):
                y = np.float64(t[lo + j, p]) - y0
                sx += j
                sy += y
                sxx += j * j
                sxy += j * y
            den = m * sxx - sx * sx
            b = (m * sxy - sx * sy) / den
            a = (sy - b * sx) / m + y0
            sig = 0.0
            for j in range(m):
                sig += abs(np.float64(t[lo + j, p]) - (a + b * j))
            sig /= m
            if sig <= 0:
                break
            nlo = lo
            nhi = hi
            # outliers of a sorted stack are at its ends: peel them off
            while nlo < nhi and (a + b * (nlo - lo) - t[nlo, p]) > low * sig:
                nlo += 1
            while nhi > nlo and (t[nhi - 1, p] - (a + b * (nhi - 1 - lo))) > high * sig:
                nhi -= 1
            if nlo == lo and nhi == hi:
                break
            lo, hi = nlo, nhi
        return lo, hi
    if rej == 4:  # percentile clipping (Siril): distance from the median as a fraction of it
        med = _median_sorted(t, p, lo, hi)
        if med == 0:
            return lo, hi
        am = abs(med)
        return _clip_range(t, p, lo, hi, med - params[0] * am, med + params[1] * am)
    if rej == 5:  # min/max: drop nlow lowest and nhigh highest
        nlow = int(params[0])
        nhigh = int(params[1])
        if n - nlow - nhigh >= 1:
            return nlow, n - nhigh
        mid = (n - 1) // 2
        return mid, mid + 1
    if rej == 6:  # generalized ESD (Rosner 1983)
        frac = params[0]
        r = math.floor(n * frac)
        if r > n - 2:
            r = n - 2
        nout = 0
        clo = lo
        chi = hi
        for k in range(r):
            mean, std = _mean_std(t, p, clo, chi)
            if std <= 0:
                break
            dlo = mean - np.float64(t[clo, p])
            dhi = np.float64(t[chi - 1, p]) - mean
            if dhi >= dlo:
                stat = dhi / std
                scratch[k] = 1.0
                chi -= 1
            else:
                stat = dlo / std
                scratch[k] = 0.0
                clo += 1
            if stat > lam[n, k]:
                nout = k + 1
        for k in range(nout):
            if scratch[k] > 0.5:
                hi -= 1
            else:
                lo += 1
        return lo, hi
    return lo, hi


@njit(nogil=True)
def _per_n_constants(nf, medfac, c4, quant2):  # pragma: no cover
    """Per-count constants of the tile statistics, so that no pixel divides by ``n``.

    Rows, for ``n = 0 .. nf``: ``1/n``, ``1/(n-1)``, ``1/c4(n)``, ``1/sqrt(n)``,
    ``f(n)**2/n`` (the median's variance factor) and, for the rounding weight
    of an even-``n`` median, ``a/s = _A_SCALE/(n q)`` (-1 for odd ``n``: the
    weight is 1).  NaN where a statistic has too few values (``1/(n-1)``
    and ``1/c4`` for ``n < 2``, the others for ``n = 0``), so that NaN
    reaches the outputs with no test per pixel.
    """
    k = np.full((6, nf + 1), np.nan)
    q = math.sqrt(quant2)
    for n in range(1, nf + 1):
        k[0, n] = 1.0 / n
        k[3, n] = 1.0 / math.sqrt(n)
        k[4, n] = medfac[n] * medfac[n] / n
        k[5, n] = _A_SCALE / (n * q) if n % 2 == 0 and q > 0.0 else -1.0
        if n >= 2:
            k[1, n] = 1.0 / (n - 1)
            k[2, n] = 1.0 / c4[n]
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
    if not ranged and need_sort and rej == 1 and params[3] < 0.5:
        # sigma clipping with the standard deviation: iterate the whole tile
        low = params[0]
        high = params[1]
        center_mean = params[2] > 0.5
        maxiters = int(params[4])
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
    _tile_sums(t, tw, nf, lo, hi, need_sort and rej != 0, ref, s1, s2)
    # counts, and sigma from the scatter (NaN for n < 2; kn: see _per_n_constants)
    for p in range(tw):
        n = hi[p] - lo[p]
        out_n[r, x0 + p] = n
        out_rej[r, x0 + p] = nvalid[p] - n
        var = (s2[p] - s1[p] * s1[p] * kn[0, n]) * kn[1, n]
        blo[p] = math.sqrt(var if var > 0.0 else 0.0) * kn[2, n]
    if method == 0:
        for p in range(tw):
            n = hi[p] - lo[p]
            s = blo[p]
            out_unc[r, x0 + p] = math.sqrt(_median_variance(s * s, kn[4, n], kn[5, n], quant2))
            out_data[r, x0 + p] = _median_sorted(t, p, lo[p], hi[p]) if n > 0 else np.nan
    else:
        scale = nframes_total if method == 2 else 1.0
        for p in range(tw):
            n = hi[p] - lo[p]
            out_data[r, x0 + p] = (ref[p] + s1[p] * kn[0, n]) * scale
            out_unc[r, x0 + p] = blo[p] * kn[3, n] * scale


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
    method : 0 median, 1 mean, 2 sum.
    rej, params, lam : rejection code, its parameters, GESD critical values.
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
    T = 256
    t = np.empty((nf, T), dtype=np.float32)
    nvalid = np.zeros(T, dtype=np.int32)
    vlo = np.empty(T, dtype=np.float32)
    vhi = np.empty(T, dtype=np.float32)
    klo = np.zeros(T, dtype=np.int64)
    khi = np.zeros(T, dtype=np.int64)
    kept = np.zeros(T, dtype=np.int64)
    lo_i = np.zeros(T, dtype=np.int64)
    hi_i = np.zeros(T, dtype=np.int64)
    b_lo = np.zeros(T, dtype=np.float64)
    b_hi = np.zeros(T, dtype=np.float64)
    med = np.empty(T, dtype=np.float64)
    sw = np.zeros(T, dtype=np.float64)
    swx = np.zeros(T, dtype=np.float64)
    sw2 = np.zeros(T, dtype=np.float64)
    sw2u2 = np.zeros(T, dtype=np.float64)
    su2 = np.zeros(T, dtype=np.float64)
    sx = np.zeros(T, dtype=np.float64)
    sxx = np.zeros(T, dtype=np.float64)
    ref = np.zeros(T, dtype=np.float64)
    tp, wt, fs, ist = reject_scratch(nf if rej != 0 else 1)
    need_sort = method == 0 or rej != 0
    ranged = need_sort and rej != 0 and not (simple and rej == 1 and params[3] < 0.5)
    inf = np.float32(np.inf)
    npairs = pairs.shape[0]
    kn = _per_n_constants(nf, medfac, c4, quant2)
    for r in range(nr):
        for x0 in range(0, nx, T):
            tw = min(T, nx - x0)
            # 1. load and normalise; invalid -> +inf.  The loops run along 1-D
            # row views, which the compiler vectorises (indexing the 3-D block
            # inside the loop defeats that).
            nv = nvalid[:tw]
            nv[:] = 0
            for i in range(nf):
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
            # 2. sort across frames
            if need_sort:
                for k in range(npairs):
                    ra = t[pairs[k, 0], :tw]
                    rb = t[pairs[k, 1], :tw]
                    for p in range(tw):
                        xa = ra[p]
                        xb = rb[p]
                        ra[p] = min(xa, xb)
                        rb[p] = max(xa, xb)
            # 3. rejection -> kept ranges, for the whole tile at once (but sigma
            # clipping by the standard deviation, which _simple_tile iterates itself)
            if ranged:
                reject_tile(t, tw, nvalid, rej, params, lam, lo_i, hi_i, tp, wt, fs, ist)
            if simple:
                _simple_tile(t, tw, nf, nvalid, need_sort, method, rej, params, ranged,
                             kn, quant2, nframes_total, r, x0, lo_i, hi_i, ref,
                             sx, sxx, b_lo, b_hi, out_data, out_unc, out_n, out_rej)
                continue
            for p in range(tw):
                n = nvalid[p]
                lo, hi = 0, n
                if ranged:
                    lo, hi = lo_i[p], hi_i[p]
                kept[p] = hi - lo
                if hi > lo:
                    if need_sort:
                        vlo[p] = t[lo, p]
                        vhi[p] = t[hi - 1, p]
                        c = 0
                        for j in range(lo, hi):
                            if t[j, p] == vlo[p]:
                                c += 1
                        klo[p] = c
                        c = 0
                        for j in range(lo, hi):
                            if t[j, p] == vhi[p]:
                                c += 1
                        khi[p] = c
                        med[p] = _median_sorted(t, p, lo, hi)
                    else:
                        vlo[p] = -inf
                        vhi[p] = inf
                        klo[p] = nf
                        khi[p] = nf
                        med[p] = 0.0
                else:
                    vlo[p] = inf
                    vhi[p] = -inf
                    med[p] = np.nan
                sw[p] = 0.0
                swx[p] = 0.0
                sw2[p] = 0.0
                sw2u2[p] = 0.0
                su2[p] = 0.0
                sx[p] = 0.0
                sxx[p] = 0.0
                ref[p] = med[p] if need_sort and hi > lo else np.nan
            # 4. sums over kept values, in frame order
            if rej == 0:
                # every valid value is kept: branch-free, vectorised over pixels
                for p in range(tw):
                    if ref[p] != ref[p]:
                        ref[p] = 0.0
                        for i in range(nf):
                            if t[i, p] < inf:
                                ref[p] = np.float64(t[i, p])
                                break
                _weighted_sums(buf, ubuf, has_unc, ivar, mul, add, fweight, r, x0, tw,
                               ref, sw, swx, sw2, sw2u2, su2, sx, sxx)
            for i in range(nf if rej != 0 else 0):
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
            # 5. outputs
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
                if method == 0:
                    val = med[p]
                    var1 = su2[p] / n if has_unc else s * s
                    unc = math.sqrt(_median_variance(var1, kn[4, n], kn[5, n], quant2))
                else:
                    val = ref[p] + swx[p] / sw[p]
                    if has_unc:
                        unc = math.sqrt(sw2u2[p]) / sw[p]
                    else:
                        unc = s * math.sqrt(sw2[p]) / sw[p]
                    if method == 2:
                        val *= nframes_total
                        unc *= nframes_total
                out_data[r, ox] = val
                out_unc[r, ox] = unc
