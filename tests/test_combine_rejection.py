"""Rejection algorithms: agreement with references, outliers removed, clean rates as theory."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.stats import mad_std, sigma_clip
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

from calframe import (
    GESD,
    LinearFitClip,
    MinMaxClip,
    PercentileClip,
    SigmaClip,
    WinsorizedSigmaClip,
    combine,
)
from calframe.combining._rejection import gesd_critical_values
from calframe.errors import InvalidSettingsError

LEVEL, NOISE = 1000.0, 10.0


def _clean(n, shape=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    # float32-representable values, so that float64 references see the same numbers
    return (LEVEL + NOISE * rng.standard_normal((n, *shape))).astype(np.float32).astype(
        np.float64)


def _ddof1(x, axis=None):
    return np.nanstd(x, axis=axis, ddof=1)


@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("maxiters", [1, 3, None])
def test_sigma_clip_equals_astropy(center, maxiters):
    stack = _clean(15, seed=11)
    rng = np.random.default_rng(12)
    hits = rng.random(stack.shape) < 0.03
    stack[hits] += rng.choice([-1, 1], hits.sum()) * rng.uniform(20, 200, hits.sum())
    stack = stack.astype(np.float32).astype(np.float64)
    ref = sigma_clip(stack, sigma_lower=2.5, sigma_upper=3.0, maxiters=maxiters, axis=0,
                     cenfunc=center, stdfunc=_ddof1)
    for method in ("mean", "median"):
        out = combine(list(stack), method=method,
                      rejection=SigmaClip(low=2.5, high=3.0, center=center, maxiters=maxiters))
        assert_array_equal(out.ncombine, (~ref.mask).sum(axis=0))
        func = np.ma.mean if method == "mean" else np.ma.median
        assert_allclose(out.data, func(ref, axis=0).filled(np.nan), rtol=1e-6)


def test_sigma_clip_mad_equals_astropy():
    stack = _clean(12, seed=3)
    stack[2, :5] += 300
    stack[7, 10:, 3] -= 150
    # a callable keeps astropy on its cumulative path (its compiled path for
    # the string "mad_std" re-admits values inside the last bounds)
    ref = sigma_clip(stack, sigma=3, maxiters=None, axis=0, cenfunc="median",
                     stdfunc=lambda x, axis=None: mad_std(x, axis=axis, ignore_nan=True))
    out = combine(list(stack), method="mean", rejection=SigmaClip(scale="mad", maxiters=None))
    assert_array_equal(out.ncombine, (~ref.mask).sum(axis=0))
    assert_allclose(out.data, ref.mean(axis=0).filled(np.nan), rtol=1e-6)


def _with_outliers(n=20, seed=5):
    """Clean frames plus a satellite trail, cosmic rays, hot and cold pixels."""
    stack = _clean(n, shape=(40, 40), seed=seed)
    rng = np.random.default_rng(seed + 1)
    truth = np.full(stack.shape[1:], LEVEL)
    trail = np.zeros(stack.shape[1:], bool)
    for x in range(40):                       # a diagonal trail in frame 3
        trail[(x * 3) // 4 + 3, x] = True
    stack[3][trail] += 800.0
    cosmic = np.zeros(stack.shape, bool)
    idx = rng.choice(stack.size, 60, replace=False)
    cosmic.flat[idx] = True
    cosmic[3][trail] = False
    stack[cosmic] += rng.uniform(300, 5000, cosmic.sum())
    hot = (np.array([5, 17, 33]), np.array([30, 2, 21]))
    stack[:, hot[0], hot[1]] += 2000.0         # hot pixels: in every frame, real signal
    truth[hot] += 2000.0
    dead = (np.array([8]), np.array([8]))
    stack[11, dead[0], dead[1]] = 0.0          # a value dropping out in one frame
    return stack, truth, trail, cosmic, hot, dead


ALGORITHMS = [
    SigmaClip(low=3, high=3),
    SigmaClip(low=3, high=3, scale="mad"),
    WinsorizedSigmaClip(low=3, high=3),
    LinearFitClip(low=5, high=3),
    PercentileClip(low=0.2, high=0.1),
    MinMaxClip(nlow=1, nhigh=3),  # up to three outliers coincide in a pixel
    GESD(outliers_fraction=0.3, significance=0.05),
]


@pytest.mark.parametrize("rejection", ALGORITHMS, ids=lambda r: r.describe())
def test_outliers_are_rejected(rejection):
    stack, truth, trail, cosmic, hot, dead = _with_outliers()
    n = stack.shape[0]
    out = combine(list(stack), method="mean", rejection=rejection)
    bad = cosmic.any(axis=0) | trail
    bad[dead] = True
    # every injected outlier is gone: the result is as good as a clean mean
    tol = 5 * NOISE / np.sqrt(n - 3)
    assert np.all(np.abs(out.data - truth)[bad] < tol)
    assert np.all(out.rejected[bad] >= 1)
    assert np.all(out.rejected[trail] >= 1)
    # hot pixels are real and stay
    assert_allclose(out.data[hot], truth[hot], atol=tol)
    # without rejection the outliers show
    plain = combine(list(stack), method="mean")
    assert np.abs(plain.data - truth)[trail].min() > 30
    assert_array_equal(out.ncombine + out.rejected, n)


def test_masked_outliers_take_no_part():
    stack, _, trail, *_ = _with_outliers()
    masks = np.zeros(stack.shape, bool)
    masks[3][trail] = True
    stack[3][trail] = 1e30
    ccds = [CCDData(d, mask=m, unit="adu") for d, m in zip(stack, masks, strict=True)]
    out = combine(ccds, method="mean", rejection=SigmaClip())
    assert np.all(out.ncombine[trail] + out.rejected[trail] == stack.shape[0] - 1)
    assert np.all(np.abs(out.data[trail] - LEVEL) < 20)


def _rate(out):
    return out.rejected.sum() / (out.rejected.sum() + out.ncombine.sum())


@pytest.mark.slow
def test_clean_gaussian_rejection_rates():
    n = 100
    stack = _clean(n, shape=(64, 64), seed=21)
    values = stack.size
    # one pass of 3-sigma clipping about the mean: exactly, for Gaussian data,
    # t = (x - mean) / s has n t^2 / (n-1)^2 ~ Beta(1/2, (n-2)/2), so the
    # rejected fraction is known at any n (0.2180% at n=100; 0.270% as n grows)
    one = combine(list(stack), method="mean", rejection=SigmaClip(center="mean", maxiters=1))
    expect = stats.beta.sf(9 * n / (n - 1) ** 2, 0.5, (n - 2) / 2)
    assert expect == pytest.approx(0.0021796, abs=1e-7)
    assert stats.beta.sf(9 * 1e6 / (1e6 - 1) ** 2, 0.5, (1e6 - 2) / 2) == pytest.approx(
        2 * stats.norm.sf(3), rel=1e-4)
    err = np.sqrt(expect / values)
    assert abs(_rate(one) - expect) < 4 * err
    # iterating removes a little more: each pass shrinks s by the lost tail;
    # the values equal astropy's (test above)
    many = combine(list(stack), method="mean", rejection=SigmaClip(center="mean",
                                                                      maxiters=None))
    assert _rate(one) < _rate(many) < 2 * expect
    tail = 2 * stats.norm.sf(3)
    # winsorized: 1.134 x std of data clamped at 1.5 sigma is unbiased for
    # a Gaussian, so one pass rejects the same 3-sigma tail
    wins = combine(list(stack), method="mean", rejection=WinsorizedSigmaClip(maxiters=1))
    assert 0.75 * tail < _rate(wins) < 1.25 * tail
    # percentile clipping at 10% of the median is 10 sigma: nothing
    perc = combine(list(stack), method="mean", rejection=PercentileClip(0.1, 0.1))
    assert perc.rejected.sum() == 0
    # min/max: exactly nlow + nhigh per pixel
    mm = combine(list(stack), method="mean", rejection=MinMaxClip(nlow=2, nhigh=3))
    assert_array_equal(mm.rejected, 5)


@pytest.mark.slow
def test_gesd_false_alarm_rate_is_its_significance():
    # Rosner's test declares one or more outliers in a clean Gaussian sample
    # with probability about equal to its significance
    n = 50
    stack = _clean(n, shape=(48, 48), seed=33)
    out = combine(list(stack), method="mean", rejection=GESD(0.2, 0.05))
    frac = np.mean(out.rejected > 0)
    pixels = out.rejected.size
    assert abs(frac - 0.05) < 4 * np.sqrt(0.05 * 0.95 / pixels)


def test_gesd_critical_values_match_grubbs():
    lam = gesd_critical_values(30, 0.05)
    for n in (10, 20, 30):
        t = stats.t.ppf(1 - 0.05 / (2 * n), n - 2)
        grubbs = (n - 1) / np.sqrt(n) * np.sqrt(t**2 / (n - 2 + t**2))
        assert lam[n, 0] == pytest.approx(grubbs, rel=1e-12)


def test_few_values_and_ties():
    # two valid values: nothing can be clipped by sigma; min/max keeps the lower middle
    a = np.array([[1.0, 5.0]])
    b = np.array([[3.0, 5.0]])
    out = combine([a, b], method="mean", rejection=SigmaClip())
    assert_allclose(out.data, [[2.0, 5.0]])
    mm = combine([a, b], method="mean", rejection=MinMaxClip(1, 1))
    assert_allclose(mm.data, [[1.0, 5.0]])
    assert_array_equal(mm.ncombine, 1)
    # ties: integer data, min/max removes exactly one copy
    frames = [np.full((1, 1), v) for v in (7.0, 7.0, 7.0, 9.0)]
    mm = combine(frames, method="mean", rejection=MinMaxClip(1, 0))
    assert_allclose(mm.data, [[(7 + 7 + 9) / 3]])
    w = combine(frames, method="mean", rejection=MinMaxClip(1, 0), weights=[1, 1, 1, 1.0])
    assert_allclose(w.data, mm.data)


def test_bad_settings():
    with pytest.raises(InvalidSettingsError, match="low=-1"):
        SigmaClip(low=-1)
    with pytest.raises(InvalidSettingsError, match="center='mode'"):
        SigmaClip(center="mode")
    with pytest.raises(InvalidSettingsError, match="scale='iqr'"):
        SigmaClip(scale="iqr")
    with pytest.raises(InvalidSettingsError, match="maxiters=0"):
        SigmaClip(maxiters=0)
    with pytest.raises(InvalidSettingsError, match="expected a number"):
        WinsorizedSigmaClip(high="x")
    with pytest.raises(InvalidSettingsError, match="cutoff=0"):
        WinsorizedSigmaClip(cutoff=0)
    with pytest.raises(InvalidSettingsError, match="nlow=-1"):
        MinMaxClip(nlow=-1)
    with pytest.raises(InvalidSettingsError, match="rejects nothing"):
        MinMaxClip(0, 0)
    with pytest.raises(InvalidSettingsError, match="between 0 and 1"):
        GESD(outliers_fraction=1.5)
    with pytest.raises(InvalidSettingsError, match="must be a finite number"):
        PercentileClip(low=float("nan"))
    with pytest.raises(InvalidSettingsError, match=r"maxiters=2\.5"):
        LinearFitClip(maxiters=2.5)


@pytest.mark.parametrize("rejection", ALGORITHMS, ids=lambda r: r.describe())
def test_vectorised_and_per_pixel_paths_agree(rejection):
    # equal weights take the tile-vectorised path, unequal ones the per-pixel path:
    # rejection does not depend on weights, so the counts must be identical
    stack, *_ = _with_outliers(n=12, seed=8)
    fast = combine(list(stack), method="mean", rejection=rejection)
    weights = np.ones(len(stack))
    weights[0] = 1 + 1e-9
    slow = combine(list(stack), method="mean", rejection=rejection, weights=weights)
    assert_array_equal(fast.ncombine, slow.ncombine)
    assert_allclose(fast.data, slow.data, rtol=1e-7)
