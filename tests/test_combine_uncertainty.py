"""Monte Carlo: the uncertainty combine reports is the scatter the combined value really has.

Every pixel of a frame is an independent realisation (the frames are pure
Gaussian noise about a constant level), so a 64x64 frame repeated four times
gives 16,384 realisations: the measured standard deviation of the combined
values is then known to 0.6%, well inside the 3% that is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from calframe import SigmaClip, combine
from calframe.combining import _efficiency, _kernels, c4, median_efficiency_factor

SHAPE = (64, 64)
REPEATS = 4
LEVEL = 500.0

METHODS = {
    "mean": {"method": "mean"},
    "median": {"method": "median"},
    "sigma-clipped mean": {"method": "mean", "rejection": SigmaClip(low=3, high=3)},
}


def _run(n, settings, sigmas, *, with_unc, seed, **extra):
    rng = np.random.default_rng(seed)
    values, reported = [], []
    for _ in range(REPEATS):
        noise = rng.standard_normal((n, *SHAPE)) * sigmas[:, None, None]
        frames = LEVEL + noise
        if with_unc:
            frames = [CCDData(f, unit="electron",
                              uncertainty=StdDevUncertainty(np.full(SHAPE, s)))
                      for f, s in zip(frames, sigmas, strict=True)]
        else:
            frames = list(frames)
        out = combine(frames, **settings, **extra)
        values.append(out.data.astype(np.float64).ravel())
        reported.append(out.uncertainty.array.astype(np.float64).ravel())
    values = np.concatenate(values)
    reported = np.concatenate(reported)
    assert values.size >= 200
    return np.std(values, ddof=1), np.mean(reported)


@pytest.mark.slow
@pytest.mark.parametrize("n", [5, 10, 30])
@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("with_unc", [False, True], ids=["scatter", "propagated"])
def test_reported_sigma_matches_scatter(n, name, with_unc):
    sigmas = np.full(n, 7.0)
    measured, reported = _run(n, METHODS[name], sigmas, with_unc=with_unc,
                              seed=1000 * n + len(name) + with_unc)
    assert reported == pytest.approx(measured, rel=0.03), (measured, reported)


@pytest.mark.slow
@pytest.mark.parametrize("n", [5, 10, 30])
def test_unequal_input_uncertainties(n):
    rng = np.random.default_rng(n)
    sigmas = rng.uniform(3.0, 15.0, n)
    # plain mean: sqrt(sum sigma^2) / n
    measured, reported = _run(n, {"method": "mean"}, sigmas, with_unc=True, seed=n + 1)
    assert reported == pytest.approx(measured, rel=0.03)
    assert reported == pytest.approx(np.sqrt((sigmas**2).sum()) / n, rel=1e-5)
    # inverse-variance weighted mean: 1 / sqrt(sum 1/sigma^2)
    measured, reported = _run(n, {"method": "mean"}, sigmas, with_unc=True, seed=n + 2,
                              weights="inverse-variance")
    assert reported == pytest.approx(measured, rel=0.03)
    assert reported == pytest.approx(1 / np.sqrt((1 / sigmas**2).sum()), rel=1e-5)


@pytest.mark.slow
def test_ccdproc_style_estimates_would_fail():
    # the plain estimates (s/sqrt(n) for the mean; pi/2 for the median at small
    # n) are measurably off where ours are right: the test can tell them apart
    n = 5
    assert 1 - c4(n) > 0.05
    assert np.sqrt(np.pi / 2) / median_efficiency_factor(n) - 1 > 0.04
    measured, reported = _run(n, {"method": "mean"}, np.full(n, 7.0), with_unc=False, seed=9)
    naive = reported * c4(n)
    assert abs(naive / measured - 1) > 0.03


def test_median_factor_table_is_the_integral():

    table = _efficiency._F_TABLE
    for n in (1, 2, 3, 4, 7, 10, 31, 64, 200):
        assert table[n] == pytest.approx(np.sqrt(n * _efficiency._median_variance.__wrapped__(n)),
                                         rel=1e-9)
    # the tabulated variance of the median of 3 unit Gaussians is 0.4487
    assert table[3] ** 2 / 3 == pytest.approx(0.4487, abs=1e-4)
    assert 1.55 < table[200] ** 2 < np.pi / 2  # approaches pi/2 from below, as 1/n
    assert _efficiency.median_efficiency_factor(1001) ** 2 == pytest.approx(np.pi / 2, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 4, 6])
def test_median_factor_against_sampling(n):

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 400_000))
    measured = n * np.var(np.median(x, axis=0))
    # sampling error of a variance from 4e5 draws: 0.3%
    assert median_efficiency_factor(n) ** 2 == pytest.approx(measured, rel=0.012)


def _run_rounded(n, settings, sigma, *, kind, seed, tmp_path=None):
    """Like ``_run``, with values rounded to whole ADU (as a detector delivers them)."""

    rng = np.random.default_rng(seed)
    values, reported = [], []
    for rep in range(REPEATS):
        frames = np.round(LEVEL + 0.3 + sigma * rng.standard_normal((n, *SHAPE)))
        if kind == "uint16":
            frames = list(frames.astype(np.uint16))
        elif kind == "float":
            frames = list(frames.astype(np.float32))
        else:  # uint16 FITS files with BZERO, read by offset
            paths = []
            for i, frame in enumerate(frames):
                path = tmp_path / f"r{rep}_{i:02d}.fits"
                hdu = fits.PrimaryHDU(frame.astype(np.uint16))  # astropy writes BZERO 32768
                hdu.writeto(path)
                paths.append(path)
            frames = paths
        out = combine(frames, **settings)
        values.append(out.data.astype(np.float64).ravel())
        reported.append(out.uncertainty.array.astype(np.float64).ravel())
    return np.std(np.concatenate(values), ddof=1), np.mean(np.concatenate(reported))


@pytest.mark.slow
@pytest.mark.parametrize("n", [5, 10, 30])
@pytest.mark.parametrize("sigma", [2.5, 4.0])
@pytest.mark.parametrize("kind", ["uint16", "float", "fits"])
def test_median_of_whole_adu(n, sigma, kind, tmp_path):
    # a median keeps the rounding of its middle value(s): without the rounding
    # term the reported sigma of a 30-frame median of 2.5 ADU noise is ~8% low
    measured, reported = _run_rounded(n, {"method": "median"}, sigma, kind=kind,
                                      seed=10 * n + int(sigma), tmp_path=tmp_path)
    assert reported == pytest.approx(measured, rel=0.03), (measured, reported)


@pytest.mark.slow
def test_median_rounding_term_is_needed():

    n, sigma = 30, 2.5
    measured, reported = _run_rounded(n, {"method": "median"}, sigma, kind="uint16", seed=3)
    continuous = median_efficiency_factor(n) * np.sqrt(sigma**2 + 1 / 12) / np.sqrt(n)
    assert continuous / measured < 0.95  # the plain estimate is measurably low
    assert reported == pytest.approx(measured, rel=0.03)
    assert c4(n) > 0.99  # (not a small-n effect)


@pytest.mark.parametrize("propagated", [False, True], ids=["scatter", "propagated"])
def test_rounding_term_in_every_median_path(propagated):
    # the same frames as whole numbers, and shifted by 1e-3 ADU (no longer on a
    # grid): the reported sigma of a median grows by the expected rounding term

    n, sigma = 31, 1.5
    rng = np.random.default_rng(5)
    frames = np.round(300.2 + sigma * rng.standard_normal((n, 48, 48)))
    results = []
    for shift in (0.0, 1e-3):
        items = [f + shift for f in frames]
        if propagated:
            items = [CCDData(f, unit="adu", uncertainty=StdDevUncertainty(np.full(f.shape, sigma)))
                     for f in items]
        out = combine(items, method="median", rejection=SigmaClip(low=4, high=4))
        assert out.rejected.sum() < 10
        results.append(np.median(out.uncertainty.array))
    f2 = median_efficiency_factor(n) ** 2
    var1 = sigma**2 if propagated else results[1] ** 2 * n / f2
    expected = np.sqrt((f2 * (var1 - 1 / 12) / n + 1 / 12) / (f2 * var1 / n))  # odd n: w = 1
    assert results[0] / results[1] == pytest.approx(expected, rel=0.01)
    assert expected > 1.25


def test_rounding_weight_table_matches_the_closed_form():
    # the kernel interpolates w = (1 + rho)/2 from a table; rho's closed form is
    # checked against extended precision, where that precision is enough

    a = np.concatenate([[0.0, 0.3, 1.0, 2.6, 1e3, np.inf], np.geomspace(1e-8, 1e8, 4001)])
    exact = 0.5 * (1.0 + _kernels._rounding_correlation(a))
    table = np.array([_kernels._rounding_weight(x) for x in a])
    assert np.max(np.abs(table - exact)) < 1e-7
    assert exact[0] == 1.0 and table[5] == 0.5

    moderate = a[(a > 0) & (a < 100)]  # beyond, the closed form cancels even in long double
    x = np.longdouble(np.pi) / moderate.astype(np.longdouble)
    ref = 1 - 3 / (x * np.tanh(x)) + 3 / x**2
    assert np.max(np.abs(ref - _kernels._rounding_correlation(moderate))) < 1e-12
    # large a: rho -> pi^2 / (15 a^2)
    big = np.array([1e4, 1e6])
    assert _kernels._rounding_correlation(big) == pytest.approx(np.pi**2 / (15 * big**2),
                                                                 rel=1e-6)


@pytest.mark.parametrize("method", ["median", "mean", "sum"])
def test_one_surviving_value_has_no_scatter_uncertainty(method):
    # whole-ADU frames (so the median's rounding term is on): where only one
    # value survives there is no scatter to estimate sigma from, and where none
    # survives there is no value
    frames = np.full((4, 3, 3), 7.0, np.float32)
    frames[:, 0, 0] = [np.nan, np.nan, np.nan, 9.0]
    frames[:, 1, 1] = np.nan
    frames[:, 2, 2] = [5.0, 6.0, np.nan, np.nan]
    out = combine(list(frames), method=method)
    unc = out.uncertainty.array
    assert np.isnan(unc[0, 0]) and np.isnan(unc[1, 1])
    assert out.data[0, 0] == (9.0 if method != "sum" else 36.0) and np.isnan(out.data[1, 1])
    assert out.mask[1, 1] and not out.mask[0, 0]
    assert np.isfinite(unc[2, 2]) and unc[2, 2] > 0
