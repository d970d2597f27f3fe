"""Tests of calibrate(dark_scale='optimize-per-channel'): one dark factor per CFA channel."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose

from calframe._calutil import data_id
from calframe.bayer import CHANNELS, channel_views
from calframe.calibration import (
    DARK_SCALE_KEYWORDS,
    calibrate,
    fit_dark_scale,
    fit_dark_scale_per_channel,
)
from calframe.errors import MissingMetadataError
from calframe.provenance import get_provenance

SCALES = {"R": 1.30, "G1": 1.10, "G2": 1.10, "B": 0.90}
GAIN, RDNOISE = 1.5, 5.0  # e-/adu, adu
SIGMA_DARK, SIGMA_BIAS = 1.0, 0.5  # adu, errors of the masters


def _ccd(data, sigma, **meta):
    data = np.asarray(data, np.float32)
    unc = None if sigma is None else StdDevUncertainty(
        np.broadcast_to(np.asarray(sigma, np.float32), data.shape).copy())
    return CCDData(data, unit="adu", uncertainty=unc, meta=fits.Header(meta))


def _kmap(shape, pattern, scales):
    k = np.empty(shape)
    if pattern is None:
        k[...] = scales
        return k
    for name, view in channel_views(k, pattern).items():
        view[...] = scales[name]
    return k


def _scene(seed=0, *, pattern="RGGB", scales=SCALES, shape=(256, 256)):
    """Master bias, master dark current and a light with a per-channel dark scale.

    Returns the three frames, the calibrated truth (the sky, in adu), the
    true dark current and the per-pixel scale map.
    """
    rng = np.random.default_rng(seed)
    dark_true = rng.gamma(0.5, 80.0, shape)  # dark current of the master, adu
    bias_true = 500.0 + rng.normal(0.0, 3.0, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    sky = 300.0 + 50.0 * xx / shape[1] + 30.0 * yy / shape[0]
    k = _kmap(shape, pattern, scales)
    signal = sky + k * dark_true
    sigma_light = np.sqrt(RDNOISE**2 + signal / GAIN)
    light = bias_true + signal + rng.normal(0.0, 1.0, shape) * sigma_light
    meta = {"EXPTIME": 120.0} if pattern is None else {"EXPTIME": 120.0, "BAYERPAT": pattern}
    light = _ccd(light, sigma_light, **meta)
    dark = _ccd(dark_true + rng.normal(0.0, SIGMA_DARK, shape), SIGMA_DARK, EXPTIME=100.0,
                **({} if pattern is None else {"BAYERPAT": pattern}))
    bias = _ccd(bias_true + rng.normal(0.0, SIGMA_BIAS, shape), SIGMA_BIAS)
    return light, bias, dark, sky, dark_true, k


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_injected_channel_scales_are_recovered_within_one_percent(pattern):
    for seed in range(3):
        light, bias, dark, *_ = _scene(seed, pattern=pattern)
        out = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
        params = get_provenance(out).steps[-1].parameters
        for name in CHANNELS:
            key, err_key = DARK_SCALE_KEYWORDS[name]
            assert out.meta[key] == pytest.approx(SCALES[name], rel=0.01)
            # the quoted error is the size of the actual deviation, not 10x off
            assert 0 < out.meta[err_key] < 0.005
            assert abs(out.meta[key] - SCALES[name]) < 5 * out.meta[err_key]
            assert params["dark_scale"][name] == pytest.approx(out.meta[key])
            assert params["dark_scale_error"][name] == pytest.approx(out.meta[err_key])
        assert params["dark_scale_mode"] == "optimize-per-channel"
        assert params["dark_scale_pattern"] == pattern
        assert "DARKSCAL" not in out.meta  # one number would misdescribe four
        assert all(len(key) <= 8 for pair in DARK_SCALE_KEYWORDS.values() for key in pair)


@pytest.mark.slow
def test_recovery_and_quoted_errors_over_many_realisations():
    """20 lights: every factor within 1%, and the quoted errors are realistic."""
    dev = {name: [] for name in CHANNELS}
    err = {name: [] for name in CHANNELS}
    single = []
    for seed in range(20):
        light, bias, dark, *_ = _scene(100 + seed)
        out = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
        for name in CHANNELS:
            key, err_key = DARK_SCALE_KEYWORDS[name]
            dev[name].append(out.meta[key] - SCALES[name])
            err[name].append(out.meta[err_key])
        target = light.data - bias.data
        single.append(fit_dark_scale(target, dark.data).scale)
    for name in CHANNELS:
        d, e = np.array(dev[name]), np.array(err[name])
        assert np.all(np.abs(d) < 0.01 * SCALES[name])
        assert abs(np.mean(d)) < 3 * np.mean(e) / np.sqrt(len(d))  # unbiased
        # the quoted error matches the scatter of the fits (20 samples: +-16%;
        # neighbouring high-pass residuals correlate a little, hence 0.7-1.6)
        assert 0.7 < np.std(d) / np.mean(e) < 1.6
    # the single factor is the compromise, stable to a few 0.1%
    assert np.mean(single) == pytest.approx(1.10, abs=0.01)


def test_fit_dark_scale_per_channel_matches_single_fit_of_each_channel():
    light, bias, dark, *_ = _scene(3)
    target = light.data - bias.data
    fits_ = fit_dark_scale_per_channel(target, dark.data, pattern="RGGB")
    lv, dv = channel_views(target, "RGGB"), channel_views(dark.data, "RGGB")
    for name in CHANNELS:
        alone = fit_dark_scale(lv[name], dv[name])
        assert fits_[name].scale == pytest.approx(alone.scale, rel=1e-12)
        assert fits_[name].npix == alone.npix


def test_single_factor_is_a_compromise_and_leaves_a_dark_pattern():
    light, bias, dark, sky, dark_true, k = _scene(4)
    per = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
    one = calibrate(light, bias=bias, dark=dark, dark_scale="optimize")
    k1 = one.meta["DARKSCAL"]
    assert SCALES["B"] + 0.1 < k1 < SCALES["R"] - 0.1  # between the channels' factors
    # slope of the residual against the true dark current, per channel:
    # what is left of the dark pattern after calibration
    for name in CHANNELS:
        d = channel_views(dark_true, "RGGB")[name].ravel()
        slopes = {}
        for label, out in (("per", per), ("one", one)):
            resid = channel_views(out.data - sky, "RGGB")[name].ravel()
            slopes[label] = np.polyfit(d, resid, 1)[0]
        assert abs(slopes["per"]) < 0.005
        assert slopes["one"] == pytest.approx(SCALES[name] - k1, abs=0.01)
        if name in ("R", "B"):
            assert abs(slopes["one"]) > 0.1
    # the single factor adds the variance of the pattern (k - k1) * dark it
    # leaves (about 16% more rms here), and its pulls come out too wide
    rms_per = np.std(per.data - sky)
    rms_one = np.std(one.data - sky)
    excess = rms_one**2 - rms_per**2
    assert excess == pytest.approx(np.var((k - k1) * dark_true), rel=0.1)
    assert rms_one > 1.1 * rms_per
    assert np.std((one.data - sky) / one.uncertainty.array) > 1.08
    assert abs(np.std((per.data - sky) / per.uncertainty.array) - 1.0) < 0.03


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_pull_against_truth(pattern):
    pulls = []
    for seed in range(4):
        light, bias, dark, sky, *_ = _scene(10 + seed, pattern=pattern)
        out = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
        pulls.append(((out.data - sky) / out.uncertainty.array).ravel())
    pull = np.concatenate(pulls)
    assert abs(np.std(pull) - 1.0) < 0.05
    assert abs(np.mean(pull)) < 0.05


def test_trim_with_odd_offset_keeps_the_channels_right():
    light, bias, dark, sky, *_ = _scene(5)
    # drop the first column: pixel [0, 0] of the trimmed frame is a green site
    out = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel",
                    trim="[2:256,1:256]")
    assert get_provenance(out).steps[-1].parameters["dark_scale_pattern"] == "GRBG"
    for name in CHANNELS:
        assert out.meta[DARK_SCALE_KEYWORDS[name][0]] == pytest.approx(SCALES[name], rel=0.01)
    pull = (out.data - sky[:, 1:]) / out.uncertainty.array
    assert abs(np.std(pull) - 1.0) < 0.05


def test_mono_frame_is_exactly_the_single_factor_fit():
    light, bias, dark, *_ = _scene(6, pattern=None, scales=1.2)
    per = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
    one = calibrate(light, bias=bias, dark=dark, dark_scale="optimize")
    assert_allclose(per.data, one.data, rtol=0, atol=0)
    assert_allclose(per.uncertainty.array, one.uncertainty.array, rtol=0, atol=0)
    assert per.meta["DARKSCAL"] == one.meta["DARKSCAL"] == pytest.approx(1.2, rel=0.01)
    assert "DKSCALR" not in per.meta
    params = get_provenance(per).steps[-1].parameters
    assert params["dark_scale"] == pytest.approx(one.meta["DARKSCAL"])
    assert params["dark_scale_pattern"] is None


def test_per_channel_scale_propagates_the_dark_uncertainty_per_channel():
    light, bias, dark, *_ = _scene(7)
    out = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
    k = _kmap(light.shape, "RGGB", {n: out.meta[DARK_SCALE_KEYWORDS[n][0]] for n in CHANNELS})
    expected = light.data - bias.data - k * dark.data
    var = light.uncertainty.array**2 + SIGMA_BIAS**2 + k**2 * SIGMA_DARK**2
    assert_allclose(out.data, expected, rtol=1e-5, atol=1e-3)
    assert_allclose(out.uncertainty.array, np.sqrt(var), rtol=1e-5)


def test_dark_with_bias_gets_a_bias_coefficient_per_channel():
    light, bias, dark, *_ = _scene(8)
    ref = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
    with_bias = _ccd(dark.data + bias.data, SIGMA_DARK, EXPTIME=100.0, BIASSUB=False,
                     BAYERPAT="RGGB")
    out = calibrate(light, bias=bias, dark=with_bias, dark_scale="optimize-per-channel")
    scales = {n: out.meta[DARK_SCALE_KEYWORDS[n][0]] for n in CHANNELS}
    for name in CHANNELS:  # the same dark current is fitted
        assert scales[name] == pytest.approx(ref.meta[DARK_SCALE_KEYWORDS[name][0]], rel=1e-4)
    k = _kmap(light.shape, "RGGB", scales)
    # frame - k * dark_with_bias - (1 - k) * bias
    assert_allclose(out.data, ref.data, rtol=1e-5, atol=2e-3)
    var = light.uncertainty.array**2 + k**2 * SIGMA_DARK**2 + (1 - k) ** 2 * SIGMA_BIAS**2
    assert_allclose(out.uncertainty.array, np.sqrt(var), rtol=1e-5)
    coef = get_provenance(out).steps[-1].parameters["bias_coefficient"]
    assert coef == pytest.approx({n: 1 - scales[n] for n in CHANNELS}, rel=1e-6)


def test_dark_made_with_this_bias_uses_each_channels_factor_in_the_covariance():
    light, bias, dark, *_ = _scene(9)
    dark.meta["BIASID"] = data_id(bias)
    out = calibrate(light, bias=bias, dark=dark, dark_scale="optimize-per-channel")
    k = _kmap(light.shape, "RGGB", {n: out.meta[DARK_SCALE_KEYWORDS[n][0]] for n in CHANNELS})
    # the bias's error is in the dark too: (1 - k)**2 var_b + k**2 (var_D - var_b)
    var = light.uncertainty.array**2 + k**2 * SIGMA_DARK**2 + (1 - 2 * k) * SIGMA_BIAS**2
    assert_allclose(out.uncertainty.array, np.sqrt(var), rtol=1e-5)
    assert get_provenance(out).steps[-1].parameters["dark_bias_correlated"] is True


def test_flat_made_with_this_dark_uses_each_channels_factor_in_the_covariance():
    light, bias, dark, *_ = _scene(11)
    rng = np.random.default_rng(11)
    bias_free = _ccd(light.data - bias.data, light.uncertainty.array, **dict(light.meta))
    fdata = rng.uniform(0.9, 1.1, light.shape)
    flat = CCDData(fdata.astype(np.float32), unit="",
                   uncertainty=StdDevUncertainty(np.full(light.shape, 0.005, np.float32)),
                   meta=fits.Header({"DARKID": data_id(dark), "DKCOEF": 0.02}))
    out = calibrate(bias_free, dark=dark, flat=flat, dark_scale="optimize-per-channel")
    assert get_provenance(out).steps[-1].parameters["dark_flat_correlated"] is True
    k = _kmap(light.shape, "RGGB", {n: out.meta[DARK_SCALE_KEYWORDS[n][0]] for n in CHANNELS})
    num = bias_free.data - k * dark.data
    t = num / fdata
    var = ((bias_free.uncertainty.array**2 + k**2 * SIGMA_DARK**2) / fdata**2
           + t**2 * 0.005**2 / fdata**2 - 2 * k * t * 0.02 * SIGMA_DARK**2 / fdata**2)
    assert_allclose(out.data, t, rtol=1e-5, atol=1e-3)
    assert_allclose(out.uncertainty.array, np.sqrt(var), rtol=1e-4)


def test_errors_name_the_problem():
    light, bias, dark, *_ = _scene(12, shape=(32, 32))
    with pytest.raises(MissingMetadataError, match="no Bayer pattern"):
        fit_dark_scale_per_channel(light.data, dark.data)
    flat_b = dark.data.copy()
    channel_views(flat_b, "RGGB")["B"][...] = 5.0
    with pytest.raises(ValueError, match="CFA channel B"):
        fit_dark_scale_per_channel(light.data - bias.data, flat_b, pattern="RGGB")
    with pytest.raises(ValueError, match="'optimize-per-channel'"):
        calibrate(light, bias=bias, dark=dark, dark_scale="per-channel")
