"""Tile rejection (reject_tile): the kept ranges of the per-pixel rejection, pixel by pixel."""

from __future__ import annotations

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
from calframe.combining._kernels import REJECTION_CODES, _reject
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


@njit(cache=True)
def _per_pixel(t, tw, nvalid, rej, params, lam, lo, hi):  # pragma: no cover
    scratch = np.empty(t.shape[0] + 2)
    for p in range(tw):
        a, b = _reject(t, p, nvalid[p], rej, params, lam, scratch)
        lo[p] = a
        hi[p] = b


def _tile(rng, nf, kind):
    """A sorted (nf, 256) float32 tile and its valid counts; invalid values are +inf."""
    shape = (nf, 256)
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
    ninvalid = rng.integers(0, nf + 1, 256) * (rng.random(256) < 0.3)
    ninvalid[:4] = np.clip(nf - np.arange(4), 0, nf)
    x[np.arange(nf)[:, None] < ninvalid[None, :]] = np.inf
    x.sort(axis=0)
    return np.ascontiguousarray(x), np.isfinite(x).sum(axis=0).astype(np.int32)


def _compare(t, nvalid, rejection, tw=256):
    nf = t.shape[0]
    rej = REJECTION_CODES[rejection._code]
    params = rejection._params()
    lam = (gesd_critical_values(nf, rejection.significance) if rej == 6
           else np.zeros((1, 1)))
    want_lo = np.full(256, -1, np.int64)
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
    assert tp.shape == (12, 256) and tp.dtype == np.float32
    assert wt.shape == (12, 256) and wt.dtype == np.float64
    assert fs.dtype == np.float64 and ist.dtype == np.int32
    assert fs.shape[1] == ist.shape[1] == 256


_ALL = [r for rs in SETTINGS.values() for r in rs]


@settings(max_examples=150, deadline=None)
@given(nf=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       which=st.integers(0, len(_ALL) - 1), levels=st.integers(1, 6),
       scale=st.sampled_from([1.0, 0.1, 1e3, 1e-30]))
def test_reject_tile_equals_per_pixel_property(nf, seed, which, levels, scale):
    # few distinct levels, tiny or huge values: ties and exact cancellations
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, levels, (nf, 256)) * scale + rng.normal(0.0, 0.01 * scale, (nf, 256))
         * (rng.random((nf, 256)) < 0.5)).astype(np.float32)
    x[rng.random((nf, 256)) < 0.2] = np.inf
    x.sort(axis=0)
    _compare(np.ascontiguousarray(x), np.isfinite(x).sum(axis=0).astype(np.int32), _ALL[which])
