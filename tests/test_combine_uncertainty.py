"""Monte Carlo: the uncertainty combine reports is the scatter the combined value really has.

Every pixel of a frame is an independent realisation (the frames are pure
Gaussian noise about a constant level), so a 64x64 frame repeated four times
gives 16,384 realisations: the measured standard deviation of the combined
values is then known to 0.6%, well inside the 3% that is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

from calframe import SigmaClip, combine

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
    from calframe.combine import c4, median_efficiency_factor
    assert 1 - c4(n) > 0.05
    assert np.sqrt(np.pi / 2) / median_efficiency_factor(n) - 1 > 0.04
    measured, reported = _run(n, {"method": "mean"}, np.full(n, 7.0), with_unc=False, seed=9)
    naive = reported * c4(n)
    assert abs(naive / measured - 1) > 0.03


def test_median_factor_table_is_the_integral():
    from calframe.combine import _efficiency

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
    from calframe.combine import median_efficiency_factor

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 400_000))
    measured = n * np.var(np.median(x, axis=0))
    # sampling error of a variance from 4e5 draws: 0.3%
    assert median_efficiency_factor(n) ** 2 == pytest.approx(measured, rel=0.012)
