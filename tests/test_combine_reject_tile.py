"""Tile rejection (reject_tile): the kept ranges of the per-pixel rejection, pixel by pixel.

The per-pixel functions below are the definitions of the rejection
algorithms: each works on one pixel's sorted values, walking its kept range
``[lo, hi)`` as the algorithm reads.  The compiled combine uses only the
tile version (``calframe.combining._reject_tile``), which runs the pixels of a
tile side by side and must give exactly the same integers.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numpy.testing import assert_array_equal

from calframe import (
    GESD,
    LinearFitClip,
    MinMaxClip,
    PercentileClip,
    SigmaClip,
    WinsorizedSigmaClip,
)
from calframe._stats import MAD_TO_SIGMA, WINSOR_MAXITER, WINSOR_SIGMA_FACTOR, WINSOR_TOLERANCE
from calframe.combining._codes import (
    NPARAMS,
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
    REJ_NONE,
    REJ_PERCENTILE,
    REJ_SIGMA,
    REJ_WINSORIZED,
    REJECTION_CODES,
    TILE,
)
from calframe.combining._reject_tile import reject_scratch, reject_tile
from calframe.combining._rejection import gesd_critical_values

NFRAMES = [1, 2, 3, 5, 10, 30, 64]

SETTINGS = {
    "sigma": [
        SigmaClip(),
        SigmaClip(low=1.5, high=1.0, maxiters=None),
        SigmaClip(low=2.0, high=4.0, center="mean", maxiters=3),
        SigmaClip(scale="mad"),
        SigmaClip(low=1.5, high=1.0, scale="mad", maxiters=None),
        SigmaClip(low=2.5, high=2.0, center="mean", scale="mad", maxiters=None),
        SigmaClip(low=3.0, high=3.0, scale="mad", maxiters=1),
    ],
    "winsorized": [
        WinsorizedSigmaClip(),
        WinsorizedSigmaClip(low=2.0, high=2.0, maxiters=None),
        WinsorizedSigmaClip(low=1.5, high=1.0, maxiters=None, cutoff=0.8),
        WinsorizedSigmaClip(low=3.0, high=2.0, maxiters=1, cutoff=2.5),
    ],
    "linearfit": [
        LinearFitClip(),
        LinearFitClip(low=1.0, high=1.0, maxiters=None),
        LinearFitClip(low=2.0, high=1.5, maxiters=3),
    ],
    "percentile": [
        PercentileClip(),
        PercentileClip(low=0.01, high=0.01),
        PercentileClip(low=0.002, high=0.5),
    ],
    "minmax": [MinMaxClip(), MinMaxClip(nlow=3, nhigh=2), MinMaxClip(nlow=0, nhigh=2),
               MinMaxClip(nlow=5, nhigh=5)],
    "gesd": [GESD(), GESD(outliers_fraction=0.45, significance=0.01),
             GESD(outliers_fraction=0.1, significance=0.2)],
}
CASES = [pytest.param(r, id=f"{name}-{i}")
         for name, rs in SETTINGS.items() for i, r in enumerate(rs)]


# ----------------------------------------------------------------------------
# the per-pixel definitions: column p of a sorted tile t, its n valid values first

@njit(cache=True)
def _median_sorted(t, p, lo, hi):  # pragma: no cover
    n = hi - lo
    a = lo + (n - 1) // 2
    b = lo + n // 2
    return 0.5 * (np.float64(t[a, p]) + np.float64(t[b, p]))


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def _clip_range(t, p, lo, hi, low_bound, high_bound):  # pragma: no cover
    """Shrink [lo, hi) of sorted values to those within [low_bound, high_bound]."""
    while lo < hi and t[lo, p] < low_bound:
        lo += 1
    while hi > lo and t[hi - 1, p] > high_bound:
        hi -= 1
    return lo, hi


@njit(cache=True)
def _sigma_clip(t, p, n, params):  # pragma: no cover
    """Sigma clipping about the median or mean, by the standard deviation or the MAD."""
    lo, hi = 0, n
    low, high = params[P_LOW], params[P_HIGH]
    center_mean = params[P_CENTER_MEAN] > 0.5
    use_mad = params[P_SCALE_MAD] > 0.5
    maxiters = int(params[P_MAXITERS])
    it = 0
    while maxiters < 0 or it < maxiters:
        it += 1
        if hi - lo < 2:
            break
        mean, std = _mean_std(t, p, lo, hi)
        med = _median_sorted(t, p, lo, hi)
        c = mean if center_mean else med
        s = MAD_TO_SIGMA * _mad_sorted(t, p, lo, hi, c) if use_mad else std
        nlo, nhi = _clip_range(t, p, lo, hi, c - low * s, c + high * s)
        if nlo == lo and nhi == hi:
            break
        lo, hi = nlo, nhi
    return lo, hi


@njit(cache=True)
def _winsorized_scale(t, p, lo, hi, med, sigma, cutoff, scratch):  # pragma: no cover
    """The scale of winsorized clipping: winsorize a copy until the scale settles."""
    m = hi - lo
    for j in range(m):
        scratch[j] = t[lo + j, p]
    for _ in range(WINSOR_MAXITER):
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
        sigma = WINSOR_SIGMA_FACTOR * math.sqrt(s2 / (m - 1))
        if abs(sigma - sigma0) <= WINSOR_TOLERANCE * sigma0:
            break
    return sigma


@njit(cache=True)
def _winsorized_clip(t, p, n, params, scratch):  # pragma: no cover
    """Winsorized sigma clipping (Siril / PixInsight) about the median."""
    lo, hi = 0, n
    low, high = params[P_LOW], params[P_HIGH]
    maxiters = int(params[P_MAXITERS])
    it = 0
    while maxiters < 0 or it < maxiters:
        it += 1
        if hi - lo < 3:
            break
        med = _median_sorted(t, p, lo, hi)
        _, sigma = _mean_std(t, p, lo, hi)
        sigma = _winsorized_scale(t, p, lo, hi, med, sigma, params[P_CUTOFF], scratch)
        nlo, nhi = _clip_range(t, p, lo, hi, med - low * sigma, med + high * sigma)
        if nlo == lo and nhi == hi:
            break
        lo, hi = nlo, nhi
    return lo, hi


@njit(cache=True)
def _linear_fit_clip(t, p, n, params):  # pragma: no cover
    """Linear fit clipping (Siril): a line through the sorted values against their rank."""
    lo, hi = 0, n
    low, high = params[P_LOW], params[P_HIGH]
    maxiters = int(params[P_MAXITERS])
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


@njit(cache=True)
def _percentile_clip(t, p, n, params):  # pragma: no cover
    """Percentile clipping (Siril): distance from the median as a fraction of it."""
    med = _median_sorted(t, p, 0, n)
    if med == 0:
        return 0, n
    am = abs(med)
    return _clip_range(t, p, 0, n, med - params[P_LOW] * am, med + params[P_HIGH] * am)


@njit(cache=True)
def _minmax_clip(n, params):  # pragma: no cover
    """Min/max: drop the nlow lowest and the nhigh highest values (keep the middle one)."""
    nlow = int(params[P_NLOW])
    nhigh = int(params[P_NHIGH])
    if n - nlow - nhigh >= 1:
        return nlow, n - nhigh
    mid = (n - 1) // 2
    return mid, mid + 1


@njit(cache=True)
def _gesd(t, p, n, params, lam, scratch):  # pragma: no cover
    """Generalized ESD (Rosner 1983): the outliers are the values of the last step
    whose statistic exceeds its critical value ``lam[n, k]``, and all before it."""
    lo, hi = 0, n
    r = math.floor(n * params[P_FRACTION])
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


@njit(cache=True)
def _reject(t, p, n, rej, params, lam, scratch):  # pragma: no cover
    """Kept range [lo, hi) of the n valid sorted values of pixel p."""
    if rej == REJ_NONE or n == 0:
        return 0, n
    if rej == REJ_SIGMA:
        return _sigma_clip(t, p, n, params)
    if rej == REJ_WINSORIZED:
        return _winsorized_clip(t, p, n, params, scratch)
    if rej == REJ_LINEARFIT:
        return _linear_fit_clip(t, p, n, params)
    if rej == REJ_PERCENTILE:
        return _percentile_clip(t, p, n, params)
    if rej == REJ_MINMAX:
        return _minmax_clip(n, params)
    if rej == REJ_GESD:
        return _gesd(t, p, n, params, lam, scratch)
    return 0, n


@njit(cache=True)
def _per_pixel(t, tw, nvalid, rej, params, lam, lo, hi):  # pragma: no cover
    scratch = np.empty(t.shape[0] + 2)
    for p in range(tw):
        a, b = _reject(t, p, nvalid[p], rej, params, lam, scratch)
        lo[p] = a
        hi[p] = b


def _tile(rng, nf, kind):
    """A sorted (nf, TILE) float32 tile and its valid counts; invalid values are +inf."""
    shape = (nf, TILE)
    if kind == "noise":  # Gaussian, with outliers on both sides
        x = rng.normal(1000.0, 10.0, shape)
        hit = rng.random(shape) < 0.06
        x[hit] += rng.choice([-1.0, 1.0], hit.sum()) * rng.uniform(30.0, 3000.0, hit.sum())
    elif kind == "ties":  # a few distinct values: many equal ones
        x = 100.0 + 3.0 * rng.integers(0, 4, shape)
    elif kind == "integer":  # whole ADU values about a level
        x = np.round(rng.normal(50.0, 3.0, shape))
    else:  # "flat": every third pixel constant, the others a drift with noise
        x = rng.normal(0.0, 1.0, shape) + np.linspace(-5.0, 5.0, nf)[:, None]
        x[:, ::3] = 7.0
    x = x.astype(np.float32)
    # invalid values: none, some, or all of a pixel's; the first pixels keep 0..3
    ninvalid = rng.integers(0, nf + 1, TILE) * (rng.random(TILE) < 0.3)
    ninvalid[:4] = np.clip(nf - np.arange(4), 0, nf)
    x[np.arange(nf)[:, None] < ninvalid[None, :]] = np.inf
    x.sort(axis=0)
    return np.ascontiguousarray(x), np.isfinite(x).sum(axis=0).astype(np.int32)


def _compare(t, nvalid, rejection, tw=TILE):
    nf = t.shape[0]
    rej = REJECTION_CODES[rejection._code]
    params = rejection._params()
    lam = (gesd_critical_values(nf, rejection.significance) if rej == REJ_GESD
           else np.zeros((1, 1)))
    want_lo = np.full(TILE, -1, np.int64)
    want_hi = want_lo.copy()
    got_lo = want_lo.copy()
    got_hi = want_lo.copy()
    before = t.copy()
    _per_pixel(t, tw, nvalid, rej, params, lam, want_lo, want_hi)
    reject_tile(t, tw, nvalid, rej, params, lam, got_lo, got_hi, *reject_scratch(nf))
    assert_array_equal(got_lo, want_lo)
    assert_array_equal(got_hi, want_hi)
    assert_array_equal(t, before)  # the tile is left as it was
    return want_hi[:tw] - want_lo[:tw]


@pytest.mark.parametrize("rejection", CASES)
def test_reject_tile_equals_per_pixel(rejection):
    rng = np.random.default_rng(zlib.crc32(rejection.describe().encode()))
    clipped = 0
    for nf in NFRAMES:
        for kind in ("noise", "ties", "integer", "flat"):
            t, nvalid = _tile(rng, nf, kind)
            kept = _compare(t, nvalid, rejection)
            clipped += int((nvalid - kept).sum())
    assert clipped > 0  # the cases do reject something


@pytest.mark.parametrize("tw", [1, 7, 100])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_reject_tile_partial_tile(name, tw):
    rng = np.random.default_rng(tw)
    for nf in (5, 30):
        t, nvalid = _tile(rng, nf, "noise")
        # pixels past ``tw`` are left alone (checked by the -1 sentinels in _compare)
        _compare(t, nvalid, SETTINGS[name][1], tw=tw)


def test_reject_tile_scratch_shapes():
    tp, wt, fs, ist = reject_scratch(12)
    assert tp.shape == (12, TILE) and tp.dtype == np.float32
    assert wt.shape == (12, TILE) and wt.dtype == np.float64
    assert fs.dtype == np.float64 and ist.dtype == np.int32
    assert fs.shape[1] == ist.shape[1] == TILE


_ALL = [r for rs in SETTINGS.values() for r in rs]


def test_parameters_sit_at_their_named_indices():
    # the settings objects fill the array the kernels read by name
    sigma = SigmaClip(low=1.5, high=2.5, center="mean", scale="mad", maxiters=4)._params()
    assert sigma.shape == (NPARAMS,)
    assert (sigma[P_LOW], sigma[P_HIGH], sigma[P_MAXITERS]) == (1.5, 2.5, 4)
    assert sigma[P_CENTER_MEAN] > 0.5 and sigma[P_SCALE_MAD] > 0.5
    sigma = SigmaClip(center="median", scale="std", maxiters=None)._params()
    assert sigma[P_CENTER_MEAN] < 0.5 and sigma[P_SCALE_MAD] < 0.5 and sigma[P_MAXITERS] == -1
    winsor = WinsorizedSigmaClip(low=2.0, high=4.0, maxiters=7, cutoff=1.25)._params()
    assert (winsor[P_LOW], winsor[P_HIGH], winsor[P_MAXITERS], winsor[P_CUTOFF]) == (
        2.0, 4.0, 7, 1.25)
    line = LinearFitClip(low=1.0, high=2.0, maxiters=3)._params()
    assert (line[P_LOW], line[P_HIGH], line[P_MAXITERS]) == (1.0, 2.0, 3)
    pct = PercentileClip(low=0.1, high=0.3)._params()
    assert (pct[P_LOW], pct[P_HIGH]) == (0.1, 0.3)
    minmax = MinMaxClip(nlow=2, nhigh=5)._params()
    assert (minmax[P_NLOW], minmax[P_NHIGH]) == (2, 5)
    assert GESD(outliers_fraction=0.2)._params()[P_FRACTION] == 0.2
    for r in _ALL:
        assert r._params().shape == (NPARAMS,)


@settings(max_examples=150, deadline=None)
@given(nf=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       which=st.integers(0, len(_ALL) - 1), levels=st.integers(1, 6),
       scale=st.sampled_from([1.0, 0.1, 1e3, 1e-30]))
def test_reject_tile_equals_per_pixel_property(nf, seed, which, levels, scale):
    # few distinct levels, tiny or huge values: ties and exact cancellations
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, levels, (nf, TILE)) * scale + rng.normal(0.0, 0.01 * scale, (nf, TILE))
         * (rng.random((nf, TILE)) < 0.5)).astype(np.float32)
    x[rng.random((nf, TILE)) < 0.2] = np.inf
    x.sort(axis=0)
    _compare(np.ascontiguousarray(x), np.isfinite(x).sum(axis=0).astype(np.int32), _ALL[which])
