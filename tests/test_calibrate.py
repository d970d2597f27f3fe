"""Tests of calframe.calibrate: arithmetic, uncertainty propagation, dark scaling."""

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from calframe._calutil import cfa_groups
from calframe.calibration import calibrate, dark_includes_bias, fit_dark_scale
from calframe.datasets import StarField, SyntheticCamera, bias_frame, dark_frame, light_frame
from calframe.errors import (
    IncompatibleFramesError,
    MissingMetadataError,
    NegativePixelsWarning,
    TemperatureMismatchWarning,
)
from calframe.provenance import get_provenance

SHAPE = (32, 40)


def _frame(value, sigma=None, *, unit="adu", shape=SHAPE, mask=None, **meta):
    value = np.asarray(value, np.float32)
    shape = value.shape if value.ndim == 2 else shape
    data = np.broadcast_to(value, shape).copy()
    unc = None if sigma is None else StdDevUncertainty(
        np.broadcast_to(np.asarray(sigma, np.float32), shape).copy())
    return CCDData(data, unit=unit, uncertainty=unc, mask=mask, meta=meta)


def _random_set(seed=0):
    rng = np.random.default_rng(seed)
    light = _frame(rng.uniform(1000, 5000, SHAPE), rng.uniform(20, 60, SHAPE), EXPTIME=60.0)
    bias = _frame(rng.uniform(90, 110, SHAPE), rng.uniform(1, 2, SHAPE))
    dark = _frame(rng.uniform(10, 200, SHAPE), rng.uniform(1, 5, SHAPE), EXPTIME=300.0)
    flat = _frame(rng.uniform(0.5, 1.5, SHAPE), rng.uniform(0.001, 0.02, SHAPE), unit="")
    return light, bias, dark, flat


def test_values_and_uncertainty_follow_first_order_propagation():
    light, bias, dark, flat = _random_set()
    out = calibrate(light, bias=bias, dark=dark, flat=flat)
    k = 60.0 / 300.0
    num = light.data - bias.data - k * dark.data
    expected = num / flat.data
    var_num = (light.uncertainty.array**2 + bias.uncertainty.array**2
               + k**2 * dark.uncertainty.array**2)
    var = var_num / flat.data**2 + expected**2 * flat.uncertainty.array**2 / flat.data**2
    assert out.unit == u.adu
    assert_allclose(out.data, expected, rtol=1e-5)
    assert_allclose(out.uncertainty.array, np.sqrt(var), rtol=1e-5)
    assert not out.mask.any()
    assert out.meta["CALSTAT"] == "BDF"
    assert out.meta["DARKSCAL"] == pytest.approx(0.2)


def test_inputs_are_not_modified():
    light, bias, dark, flat = _random_set(1)
    before = [f.data.copy() for f in (light, bias, dark, flat)]
    calibrate(light, bias=bias, dark=dark, flat=flat)
    for f, b in zip((light, bias, dark, flat), before, strict=True):
        assert_allclose(f.data, b, rtol=0, atol=0)


@pytest.mark.parametrize("which", ["bias", "dark", "flat"])
def test_nan_or_masked_master_pixel_does_not_spread(which):
    light, bias, dark, flat = _random_set(2)
    clean = calibrate(light, bias=bias, dark=dark, flat=flat)
    masters = {"bias": bias, "dark": dark, "flat": flat}
    masters[which].data[5, 7] = np.nan
    masters[which].mask = np.zeros(SHAPE, bool)
    masters[which].mask[9, 9] = True
    out = calibrate(light, **masters)
    bad = np.zeros(SHAPE, bool)
    bad[5, 7] = bad[9, 9] = True
    assert_allclose(out.mask, bad)
    assert np.isfinite(out.data).all() and np.isfinite(out.uncertainty.array).all()
    assert_allclose(out.data[~bad], clean.data[~bad], rtol=1e-6)
    assert_allclose(out.uncertainty.array[~bad], clean.uncertainty.array[~bad], rtol=1e-6)


def test_flat_pixels_at_or_below_zero_are_masked_not_divided():
    light = _frame(100.0, 10.0)
    flat = _frame(1.0, unit="")
    flat.data[0, 0] = 0.0
    flat.data[1, 1] = -0.5
    out = calibrate(light, flat=flat)
    assert out.mask[0, 0] and out.mask[1, 1] and out.mask.sum() == 2
    assert np.isfinite(out.data).all()


def test_light_mask_is_kept_and_masks_are_ored():
    light, bias, dark, flat = _random_set(3)
    light.mask = np.zeros(SHAPE, bool)
    light.mask[1, 2] = True
    bias.mask = np.zeros(SHAPE, bool)
    bias.mask[3, 4] = True
    out = calibrate(light, bias=bias, dark=dark, flat=flat)
    assert out.mask[1, 2] and out.mask[3, 4] and out.mask.sum() == 2


def test_dark_with_bias_of_same_exposure_is_not_double_subtracted():
    light = _frame(1500.0, 10.0, EXPTIME=300.0)
    dark = _frame(1100.0, 2.0, EXPTIME=300.0, BIASSUB=False)
    bias = _frame(1000.0, 1.0)
    assert dark_includes_bias(dark)
    alone = calibrate(light, dark=dark)
    assert_allclose(alone.data, 400.0)
    with_bias = calibrate(light, bias=bias, dark=dark)
    assert_allclose(with_bias.data, 400.0)
    # the bias is inside the dark: its noise is not counted a second time
    assert_allclose(with_bias.uncertainty.array, np.sqrt(100 + 4), rtol=1e-6)


def test_dark_with_bias_is_separated_when_scaled():
    light = _frame(1500.0, 10.0, EXPTIME=100.0)
    dark = _frame(1300.0, 2.0, EXPTIME=300.0, BIASSUB=False)  # 300 adu of dark current
    bias = _frame(1000.0, 1.0)
    out = calibrate(light, bias=bias, dark=dark)
    assert_allclose(out.data, 1500 - 1000 - 100, rtol=1e-6)
    k = 1 / 3
    assert_allclose(out.uncertainty.array, np.sqrt(100 + k**2 * 4 + (1 - k) ** 2 * 1),
                    rtol=1e-5)
    with pytest.raises(IncompatibleFramesError, match="includes the bias"):
        calibrate(light, dark=dark)


def test_dark_provenance_marks_bias_inclusion():
    dark = _frame(1300.0, EXPTIME=300.0)
    get_provenance(dark).add_step("make_master_dark", bias_subtracted=False)
    assert dark_includes_bias(dark)
    assert not dark_includes_bias(_frame(1.0, EXPTIME=3.0))


def test_dark_rate_is_scaled_by_the_frame_exposure():
    light = _frame(1000.0, 10.0, EXPTIME=50.0)
    rate = _frame(2.0, 0.1, unit="adu/s", EXPTIME=300.0)
    out = calibrate(light, dark=rate)
    assert_allclose(out.data, 900.0)
    assert_allclose(out.uncertainty.array, np.sqrt(100 + 25), rtol=1e-6)
    with pytest.raises(ValueError, match="rate must be scaled"):
        calibrate(light, dark=rate, dark_scale=None)


def test_dark_scale_none_and_number():
    light = _frame(1000.0, EXPTIME=50.0)
    dark = _frame(100.0, EXPTIME=300.0)
    assert_allclose(calibrate(light, dark=dark, dark_scale=None).data, 900.0)
    assert_allclose(calibrate(light, dark=dark, dark_scale=0.5).data, 950.0)
    with pytest.raises(ValueError, match="dark_scale: 'exposures' is not one of"):
        calibrate(light, dark=dark, dark_scale="exposures")


def test_missing_exposure_raises():
    with pytest.raises(MissingMetadataError, match="no exposure time"):
        calibrate(_frame(10.0), dark=_frame(1.0, EXPTIME=3.0))


def test_temperature_mismatch_warns():
    light = _frame(1000.0, EXPTIME=10.0, **{"CCD-TEMP": -10.0})
    dark = _frame(10.0, EXPTIME=10.0, **{"CCD-TEMP": -5.0})
    with pytest.warns(TemperatureMismatchWarning, match="differs from the frame's"):
        calibrate(light, dark=dark)
    calibrate(light, dark=dark, temperature_tolerance=6.0)  # no warning (errors otherwise)


def test_many_negative_pixels_warn():
    rng = np.random.default_rng(4)
    light = _frame(rng.normal(100, 5, SHAPE))
    bias = _frame(110.0)
    with pytest.warns(NegativePixelsWarning, match="negative"):
        calibrate(light, bias=bias)


def test_unit_and_shape_mismatch_raise():
    light = _frame(100.0)
    with pytest.raises(u.UnitsError, match="does not match the frame's"):
        calibrate(light, bias=_frame(1.0, unit="electron"))
    with pytest.raises(IncompatibleFramesError, match="does not match the frame"):
        calibrate(light, bias=_frame(1.0, shape=(8, 8)))
    with pytest.raises(TypeError, match="expected a CCDData or a path"):
        calibrate(light, bias=np.zeros(SHAPE))


def test_gain_converts_to_electrons():
    light = _frame(1100.0, 10.0, EGAIN=2.5)
    bias = _frame(100.0)
    out = calibrate(light, bias=bias, gain=2.5)
    assert out.unit == u.electron
    assert_allclose(out.data, 2500.0)
    assert_allclose(out.uncertainty.array, 25.0, rtol=1e-6)
    assert_allclose(calibrate(light, bias=bias, gain="EGAIN").data, 2500.0)
    q = calibrate(light, bias=bias, gain=2.5 * u.electron / u.adu)
    assert q.unit == u.electron
    with pytest.raises(MissingMetadataError, match="no EGAIN"):
        calibrate(_frame(1.0), gain="EGAIN", allow_no_masters=True)
    with pytest.raises(ValueError, match="must be positive"):
        calibrate(light, gain=-1.0, allow_no_masters=True)


def test_uncertainty_is_estimated_from_detector_model():
    light = _frame(1100.0, EGAIN=2.0, RDNOISE=10.0)
    bias = _frame(100.0, 0.0)
    out = calibrate(light, bias=bias)
    # (1100 - 100) / 2 + (10 / 2)**2
    assert_allclose(out.uncertainty.array, np.sqrt(500 + 25), rtol=1e-6)
    assert get_provenance(out).steps[-1].parameters["uncertainty"].startswith("detector")
    unknown = calibrate(_frame(1100.0), bias=bias)
    assert unknown.uncertainty is None


def test_overscan_and_trim():
    rng = np.random.default_rng(5)
    ny, nx = 20, 30
    offsets = rng.uniform(500, 520, ny)[:, None]
    science = rng.uniform(100, 200, (ny, 24))
    raw = np.hstack([science + offsets, offsets + rng.normal(0, 1e-3, (ny, 6))])
    light = CCDData(raw.astype(np.float32), unit="adu")
    out = calibrate(light, overscan="[25:30,1:20]", trim="[1:24,1:20]")
    assert out.shape == (ny, 24)
    assert_allclose(out.data, science, atol=0.01)
    assert out.meta["CALSTAT"] == "OT"
    # a master bias of the untrimmed shape is trimmed alike
    bias = CCDData(np.full((ny, nx), 5.0, np.float32), unit="adu")
    out2 = calibrate(light, bias=bias, overscan="[25:30,1:20]", trim=(slice(0, 20),
                                                                         slice(0, 24)))
    assert_allclose(out2.data, science - 5.0, atol=0.01)


@pytest.mark.parametrize(("section", "message"), [
    ("1:10,1:20", "is not a FITS section"),
    ("[10:1,1:20]", "reversed range"),
    ("[1:99,1:20]", "outside the frame"),
    ("[a:b,1:20]", "cannot read"),
])
def test_bad_sections_raise(section, message):
    with pytest.raises(ValueError, match=message):
        calibrate(_frame(1.0, shape=(20, 30)), trim=section)


def test_overscan_band_must_span_the_frame():
    with pytest.raises(ValueError, match="must span all"):
        calibrate(_frame(1.0, shape=(20, 30)), overscan="[25:30,1:10]")


def test_paths_and_provenance(tmp_path):
    from calframe import read_frame, write_frame

    light, bias, dark, flat = _random_set(6)
    paths = {}
    for name, ccd in (("bias", bias), ("dark", dark), ("flat", flat)):
        paths[name] = tmp_path / f"master_{name}.fits"
        write_frame(ccd, paths[name])
    out = calibrate(light, bias=paths["bias"], dark=paths["dark"], flat=paths["flat"])
    ref = calibrate(light, bias=bias, dark=dark, flat=flat)
    assert_allclose(out.data, ref.data, rtol=1e-6)
    assert_allclose(out.uncertainty.array, ref.uncertainty.array, rtol=1e-6)
    prov = get_provenance(out)
    roles = {rec.role: rec.path for rec in prov.inputs}
    assert roles["bias"] == str(paths["bias"]) and roles["dark"] == str(paths["dark"])
    assert prov.steps[-1].step == "calibrate"
    assert prov.steps[-1].parameters["dark_scale"] == pytest.approx(0.2)
    written = write_frame(out, tmp_path / "light_cal.fits")
    back = read_frame(written)
    assert_allclose(back.data, out.data)


def _hot_camera(**kw):
    opts = dict(shape=(96, 96), n_hot_pixels=300, hot_pixel_current=(1.0, 50.0),
                dark_current=0.5, dark_current_sigma=0.5, n_dust=0, vignetting=0.0,
                bias_column_sigma=0.0, bias_row_sigma=0.0, pattern_seed=3)
    opts.update(kw)
    return SyntheticCamera(**opts)


def _mean_master(frames):
    data = np.mean([f.data for f in frames], axis=0)
    sigma = np.sqrt(np.sum([f.truth.sigma**2 for f in frames], axis=0)) / len(frames)
    return data, sigma


def test_dark_scaling_removes_dark_signal_within_noise():
    cam = _hot_camera()
    biases = [bias_frame(cam, seed=100 + i) for i in range(16)]
    darks = [dark_frame(cam, 600.0, seed=200 + i) for i in range(16)]
    b, sb = _mean_master(biases)
    d, sd = _mean_master(darks)
    bias = _frame(b, sb)
    current = _frame(d - b, np.sqrt(sd**2 + sb**2), EXPTIME=600.0)  # t1 = 600 s
    pulls = []
    for seed in range(4):
        frame = dark_frame(cam, 150.0, seed=300 + seed)  # t2 = 150 s
        light = frame.to_ccddata()
        out = calibrate(light, bias=bias, dark=current)
        pulls.append((out.data / out.uncertainty.array)[~out.mask])
    pulls = np.concatenate(pulls)
    # what is left is noise: zero mean, unit scatter (the hot pixels included)
    assert abs(pulls.mean()) < 0.05
    assert abs(pulls.std() - 1) < 0.05
    hot = cam.hot_pixels
    frame = dark_frame(cam, 150.0, seed=999)
    out = calibrate(frame.to_ccddata(), bias=bias, dark=current)
    hot_pull = out.data[hot["y"], hot["x"]] / out.uncertainty.array[hot["y"], hot["x"]]
    assert np.abs(hot_pull).max() < 5
    assert abs(np.std(hot_pull) - 1) < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_optimize_recovers_injected_dark_scale(cfa):
    cam = _hot_camera(cfa=cfa, shape=(128, 128), n_hot_pixels=600)
    biases = [bias_frame(cam, seed=10 + i) for i in range(16)]
    darks = [dark_frame(cam, 300.0, seed=40 + i) for i in range(16)]
    b, sb = _mean_master(biases)
    d, sd = _mean_master(darks)
    bias = _frame(b, sb)
    current = _frame(d - b, np.sqrt(sd**2 + sb**2), EXPTIME=300.0, **{"CCD-TEMP": -10.0})
    if cfa:
        bias.meta["BAYERPAT"] = current.meta["BAYERPAT"] = cfa
    # the light is warmer: its dark current is 2**(3/6) = 1.414 times the dark's
    truth = 300.0 / 300.0 * 2 ** (3.0 / cam.dark_doubling)
    found = []
    for seed in range(3):
        frame = light_frame(cam, 300.0, field=StarField(n_stars=30), seed=seed,
                            temperature=-7.0, cosmic_rays=5)
        with pytest.warns(TemperatureMismatchWarning):
            out = calibrate(frame.to_ccddata(), bias=bias, dark=current,
                            dark_scale="optimize")
        found.append(out.meta["DARKSCAL"])
    assert_allclose(found, truth, rtol=0.01)


def test_fit_dark_scale_rejects_flat_dark():
    with pytest.raises(ValueError, match="no usable structure"):
        fit_dark_scale(np.ones((16, 16)), np.zeros((16, 16)))
    with pytest.raises(IncompatibleFramesError, match="differs from dark shape"):
        fit_dark_scale(np.ones((16, 16)), np.zeros((8, 16)))


def test_optimize_needs_bias_for_a_dark_with_bias():
    light = _frame(1000.0, EXPTIME=10.0)
    dark = _frame(1000.0, EXPTIME=10.0, BIASSUB=False)
    with pytest.raises(IncompatibleFramesError, match="pass bias="):
        calibrate(light, dark=dark, dark_scale="optimize")


def _chain(cam, *, method, rejection, seed=0, texp=60.0, tdark=300.0):
    """Masters from synthetic frames, then one light calibrated with them.

    Few bias and dark frames and a faint sky, so that the masters' own errors
    are a large part of the calibrated light's (ignoring them would make the
    pulls 10-20% too wide).
    """
    from calframe.datasets import flat_frame
    from calframe.masters import make_master_bias, make_master_dark, make_master_flat

    def ccds(frames):
        return [f.to_ccddata() for f in frames]

    bias = make_master_bias(ccds(bias_frame(cam, seed=seed + i) for i in range(5)),
                            method=method, rejection=rejection)
    dark = make_master_dark(ccds(dark_frame(cam, tdark, seed=seed + 100 + i) for i in range(5)),
                            bias=bias, method=method, rejection=rejection)
    flat = make_master_flat(ccds(flat_frame(cam, level=20000.0, seed=seed + 200 + i)
                                 for i in range(15)), bias=bias, dark=dark,
                            method=method, rejection=rejection)
    frame = light_frame(cam, texp, field=StarField(n_stars=20, sky=0.3), seed=seed + 300)
    out = calibrate(frame.to_ccddata(), bias=bias, dark=dark, flat=flat)
    # truth: the light's electrons above bias and dark, divided by the
    # normalised response that the master flat stands for
    light_adu = (frame.truth.signal - frame.truth.dark_current * texp) / cam.gain
    response = cam.flat_map() / cam.flat_map()  # ones, same shape
    for group in cfa_groups(flat.meta if cam.cfa else {}, cam.shape):
        level = np.median(np.concatenate([cam.flat_map()[sl].ravel() for sl in group]))
        for sl in group:
            response[sl] = cam.flat_map()[sl] / level
    truth = light_adu / response
    return out, truth


@pytest.mark.slow
@pytest.mark.parametrize("cfa", [None, "RGGB"])
@pytest.mark.parametrize("method", ["median", "mean"])
def test_pull_of_calibrated_light_against_truth(cfa, method):
    from calframe.combining import SigmaClip

    rejection = SigmaClip(low=4, high=4) if method == "mean" else None
    cam = SyntheticCamera(shape=(96, 96), cfa=cfa, n_hot_pixels=30, pattern_seed=21)
    pulls = []
    for seed in (0, 1000):
        out, truth = _chain(cam, method=method, rejection=rejection, seed=seed)
        good = ~out.mask
        pulls.append(((out.data - truth) / out.uncertainty.array)[good])
    pulls = np.concatenate(pulls)
    assert abs(pulls.mean()) < 0.05
    assert abs(pulls.std() - 1) < 0.05


def test_bias_error_shared_with_the_dark_is_counted_once():
    from calframe.masters import make_master_dark

    bias = _frame(100.0, 2.0)
    darks = [_frame(400.0, 6.0, EXPTIME=300.0) for _ in range(4)]
    dark = make_master_dark(darks, bias=bias, method="mean")
    # the master dark carries the bias's error: sqrt(6**2 / 4 + 2**2)
    assert_allclose(dark.uncertainty.array, np.sqrt(9 + 4), rtol=1e-5)
    light = _frame(500.0, 10.0, EXPTIME=60.0)
    out = calibrate(light, bias=bias, dark=dark)
    k = 0.2
    assert_allclose(out.data, 500 - 100 - k * 300, rtol=1e-6)
    # frame - bias - k (darks - bias): (1 - k)**2 var_bias, not (1 + k**2) var_bias
    assert_allclose(out.uncertainty.array, np.sqrt(100 + (1 - k) ** 2 * 4 + k**2 * 9),
                    rtol=1e-5)
    # another bias of the same level is an independent error
    other = _frame(100.0, 2.0)
    other.data[0, 0] = 100.5
    out2 = calibrate(light, bias=other, dark=dark)
    assert_allclose(out2.uncertainty.array[1, 1], np.sqrt(100 + 4 + k**2 * 13), rtol=1e-5)


@pytest.mark.slow
def test_pull_of_a_night_calibrated_from_files(tmp_path):
    """The whole path from FITS files: read_frame's noise model, masters, calibrate.

    A faint sky (~30 e-), where a Poisson term taken from each pixel's own
    value would bias the mean pull to about -0.06; calibrate takes it from
    the pixel's neighbourhood (see ``_estimate_variance``).
    """
    from calframe.datasets import make_night
    from calframe.masters import make_master_bias, make_master_dark, make_master_flat

    cam = SyntheticCamera(shape=(96, 96), n_hot_pixels=30, pattern_seed=5)
    night = make_night(tmp_path / "night", camera=cam, n_bias=8, n_dark=6,
                       dark_exptimes=(300.0,), n_flat=10, n_light=3, light_exptime=60.0,
                       field=StarField(n_stars=20, sky=0.5), cosmic_rate=0.0, seed=3)
    bias = make_master_bias(night.files_of("bias"))
    dark = make_master_dark(night.files_of("dark", 300.0), bias=bias)
    flat = make_master_flat(night.files_of("flat"), bias=bias, dark=dark)
    pulls = []
    for path in night.files_of("light"):
        frame = night.frame(path)
        out = calibrate(path, bias=bias, dark=dark, flat=flat)
        light_adu = (frame.truth.signal - frame.truth.dark_current * 60.0) / cam.gain
        response = cam.flat_map() / np.median(cam.flat_map())
        # pixels clipped at the full well (41000 adu, below the 65535 that
        # read_frame knows of) are not what the truth says
        good = ~out.mask & ~frame.truth.saturated
        pulls.append(((out.data - light_adu / response) / out.uncertainty.array)[good])
    pulls = np.concatenate(pulls)
    assert abs(pulls.mean()) < 0.05
    assert abs(pulls.std() - 1) < 0.05


@given(scale=st.floats(min_value=1e-3, max_value=1e3), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_scaling_the_inputs_scales_the_result(scale, seed):
    light, bias, dark, flat = _random_set(seed)
    ref = calibrate(light, bias=bias, dark=dark, flat=flat)

    def scaled(ccd):
        return CCDData(ccd.data * np.float32(scale), unit=ccd.unit, meta=ccd.meta,
                       uncertainty=StdDevUncertainty(ccd.uncertainty.array * np.float32(scale)))

    out = calibrate(scaled(light), bias=scaled(bias), dark=scaled(dark), flat=flat)
    assert_allclose(out.data, ref.data * scale, rtol=1e-5)
    assert_allclose(out.uncertainty.array, ref.uncertainty.array * scale, rtol=1e-5)


def test_detector_model_after_overscan():
    rng = np.random.default_rng(8)
    ny = 20
    over = 300.0 + rng.normal(0, 2.0, (ny, 10))
    raw = np.hstack([np.full((ny, 30), 1300.0), over]).astype(np.float32)
    light = CCDData(raw, unit="adu", meta={"EGAIN": 2.0, "RDNOISE": 4.0,
                                           "UNCSRC": "detector model"},
                    uncertainty=StdDevUncertainty(np.sqrt(raw / 2.0 + 4.0)))
    out = calibrate(light, overscan="[31:40,1:20]", trim="[1:30,1:20]")
    level = np.median(over, axis=1)[:, None]
    expected_var = (1300.0 - level) / 2.0 + 4.0 + np.pi / 2 * over.std(axis=1)[:, None] ** 2 / 10
    # the read-time model counted the 300 adu offset as photons (+150 adu**2);
    # calibrate does not (the Poisson term is a 3x3 mean: rows differ by < 1 adu)
    assert_allclose(out.uncertainty.array, np.sqrt(np.broadcast_to(expected_var, (ny, 30))),
                    rtol=2e-3)


def test_normalised_flat_read_back_from_a_file_keeps_the_light_in_adu(tmp_path):
    from calframe import write_frame
    from calframe.masters import make_master_flat

    rng = np.random.default_rng(11)
    flats = [_frame(rng.normal(1e4, 50, SHAPE)) for _ in range(3)]
    master = make_master_flat(flats)
    path = write_frame(master, tmp_path / "master_flat.fits")
    out = calibrate(_frame(500.0, 5.0), flat=path)
    assert out.unit == u.adu
    assert_allclose(out.data, 500.0 / master.data, rtol=1e-6)


def test_variance_uncertainty_is_understood():
    from astropy.nddata import VarianceUncertainty

    light = CCDData(np.full(SHAPE, 100.0, np.float32), unit="adu",
                    uncertainty=VarianceUncertainty(np.full(SHAPE, 16.0, np.float32)))
    out = calibrate(light, bias=_frame(10.0, 3.0))
    assert_allclose(out.uncertainty.array, 5.0, rtol=1e-6)


@pytest.mark.parametrize("normalize", [None, "exposure"])
def test_beamline_pull_with_the_same_dark_in_flat_and_projection(normalize):
    """Weak beam, read noise dominant: the dark's error is in both terms.

    Counted as independent, the pulls would be about 15% too narrow.
    """
    from calframe.masters import make_master_flat

    rng = np.random.default_rng(12)
    shape, offset, rn, t = (128, 128), 100.0, 8.0, 0.2
    beam = np.full(shape, 150.0)  # counts in t
    transmission = rng.uniform(0.5, 1.0, shape)

    def frame(counts):
        data = rng.poisson(counts) + rng.normal(offset, rn, shape)
        sigma = np.sqrt(np.maximum(counts, 0) + rn**2)
        return _frame(data, sigma, shape=shape, EXPTIME=t)

    pulls = []
    for _ in range(3):
        dark = frame(np.zeros(shape))
        flats = [frame(beam), frame(beam)]
        proj = frame(beam * transmission)
        flat = make_master_flat(flats, dark=dark, dark_scale=None, normalize=normalize,
                                method="mean")
        out = calibrate(proj, dark=dark, dark_scale=None, flat=flat)
        assert get_provenance(out).steps[-1].parameters.get("dark_flat_correlated")
        good = ~out.mask
        pulls.append(((out.data - transmission) / out.uncertainty.array)[good])
    pulls = np.concatenate(pulls)
    assert abs(pulls.mean()) < 0.05
    assert abs(pulls.std() - 1) < 0.05
