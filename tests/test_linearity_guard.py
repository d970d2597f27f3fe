"""The data guard: gamma-encoded lights and flats refused from their pixels alone."""

import warnings

import numpy as np
import pytest
from astropy.nddata import CCDData
from numpy.testing import assert_allclose
from scipy.ndimage import gaussian_filter

from calframe import bayer, read_frame
from calframe.datasets import StarField, SyntheticCamera, flat_frame, light_frame
from calframe.errors import NonLinearDataError, UncertaintyUnknownWarning
from calframe.linearity import (
    LinearityCheck,
    check_flat_linearity,
    check_light_linearity,
    encode_gamma,
    linearity,
)
from calframe.provenance import get_provenance, set_provenance

SHAPE = (400, 600)
MESSAGE = (r"light: the light looks gamma-encoded \(response exponent 0\.\d\d \+- 0\.\d\d "
           r"against the flat's vignetting, linear is 1\): a gamma-encoded light divided by "
           r"a linear flat over-corrects the corners; calibrate the camera's RAW files, .*"
           r"or pass assume_linear=True if the data are linear")


def _read(path, **kwargs):
    """read_frame, quiet about the uncertainty these files cannot have."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        return read_frame(path, **kwargs)


def _night(seed=0, *, shape=SHAPE, vig=0.3, sky=20.0, exptime=120.0, nebula=0.0,
           cfa="RGGB", n_stars=150):
    """A bias- and dark-subtracted light and flat of a synthetic camera (known truth)."""
    cam = SyntheticCamera(shape=shape, cfa=cfa, vignetting=vig, pattern_seed=seed)
    field = StarField(n_stars=n_stars, sky=sky, flux=(200.0, 2e5))
    light = light_frame(cam, exptime, field=field, seed=seed, cosmic_rays=10).data
    light = light - cam.bias_map() - cam.dark_current_map() * exptime
    if nebula:
        rng = np.random.default_rng(seed + 100)
        cloud = gaussian_filter(rng.standard_normal(shape), min(shape) / 8)
        light = light + cam.flat_map() * sky * nebula * np.exp(cloud / cloud.std()) * (
            exptime / cam.gain)
    flat = flat_frame(cam, level=20000.0, seed=seed + 1).data - cam.bias_map()
    meta = {"BAYERPAT": cfa} if cfa else {}
    white = cam.saturation_adu - min(cam.bias_levels)
    return (CCDData(light.astype(np.float32), unit="adu", meta=dict(meta)),
            CCDData(flat.astype(np.float32), unit="adu", meta=dict(meta)), white)


def _developed(light, gamma, white):
    """``light`` through a tone curve, written back with no keyword that says so."""
    out = encode_gamma(light, gamma=gamma, white=white)
    out.data[...] = np.rint(out.data)
    out.meta = dict(light.meta)
    return out


@pytest.mark.parametrize("gamma", [1.8, 2.2])
def test_gamma_encoded_mosaic_without_keyword_is_refused(gamma):
    light, flat, white = _night()
    developed = _developed(light, gamma, white)
    assert linearity(developed) == (True, "a 2-D Bayer mosaic (BAYERPAT = RGGB)")  # fooled
    with pytest.raises(NonLinearDataError, match=MESSAGE):
        check_light_linearity(developed, flat)
    check = check_light_linearity(developed, flat, assume_linear=True)
    assert check.verdict is False and check.assumed_linear
    assert check.method == "vignetting-exponent"
    assert check.channels == bayer.CHANNELS
    assert_allclose(check.exponents, 1 / gamma, atol=0.04)
    assert all(0 < s < 0.05 for s in check.uncertainties)
    assert_allclose(check.exponent, 1 / gamma, atol=0.03)


def test_linear_light_passes_and_reports():
    light, flat, _ = _night()
    check = check_light_linearity(light, flat)
    assert check.verdict is True
    assert_allclose(check.exponents, 1.0, atol=0.05)
    record = check.to_dict()
    assert record["method"] == "vignetting-exponent" and record["verdict"] is True
    assert set(record["exponents"]) == set(bayer.CHANNELS)
    assert record["assumed_linear"] is False
    assert isinstance(check, LinearityCheck)
    with pytest.raises(AttributeError):
        check.verdict = False  # frozen


def test_name_comes_from_the_file(tmp_path):
    light, flat, white = _night()
    developed = _developed(light, 2.2, white)
    path = tmp_path / "m42_001.fits"
    developed.write(path)
    read = _read(path)
    prov = get_provenance(read).copy()
    set_provenance(developed, prov)
    with pytest.raises(NonLinearDataError, match=r"^m42_001\.fits: the light looks"):
        check_light_linearity(developed, flat)


@pytest.mark.parametrize("case, why", [
    ({"sky": 0.05, "exptime": 30.0}, "sky is too faint"),
    ({"nebula": 3.0}, "structure"),
    ({"vig": 0.02}, "too little vignetting"),
])
@pytest.mark.parametrize("gamma", [None, 2.2])
def test_cannot_tell_rather_than_false_alarm(case, why, gamma):
    light, flat, white = _night(**case)
    if gamma:
        light = _developed(light, gamma, white)
    check = check_light_linearity(light, flat)  # never raises here
    assert check.verdict is None
    assert check.reason.startswith("cannot tell")
    assert why in check.reason


def test_masked_and_saturated_pixels_are_ignored():
    light, flat, white = _night()
    data = light.data.copy()
    mask = np.zeros(SHAPE, bool)
    mask[:, :200] = True
    data[mask] = 0.1 * data[mask]  # garbage where masked (a dead column block)
    data[150:250, 300:450] = white  # a saturated blob, clipped at the white level
    check = check_light_linearity(CCDData(data, unit="adu", mask=mask, meta=light.meta), flat)
    assert check.verdict is True
    # all masked: nothing to measure
    everything = CCDData(light.data, unit="adu", mask=np.ones(SHAPE, bool), meta=light.meta)
    assert check_light_linearity(everything, flat).verdict is None
    other = CCDData(np.ones((10, 10)), unit="adu")
    assert "do not have one 2-D shape" in check_light_linearity(other, flat).reason


def test_flats_photon_transfer():
    cam = SyntheticCamera(shape=(512, 768), cfa="GRBG", vignetting=0.3)
    raw = [flat_frame(cam, level=20000.0 * (1 + 0.1 * k), seed=k).data for k in range(2)]
    flats = [CCDData(d.astype(np.float32), unit="adu", meta={"BAYERPAT": "GRBG"})
             for d in raw]
    check = check_flat_linearity(flats)
    assert check.method == "photon-transfer" and check.verdict is True
    assert_allclose(check.exponent, 1.0, atol=0.12)
    white = cam.saturation_adu - min(cam.bias_levels)
    developed = [_developed(CCDData(d - cam.bias_map(), unit="adu", meta=f.meta), 2.2, white)
                 for d, f in zip(raw, flats, strict=True)]
    with pytest.raises(NonLinearDataError, match=r"flat: the flats look gamma-encoded "
                       r"\(response exponent 0\.\d\d \+- 0\.\d\d from the photon noise.*"
                       r"pass assume_linear=True"):
        check_flat_linearity(developed)
    check = check_flat_linearity(developed, assume_linear=True)
    assert check.verdict is False and check.assumed_linear
    assert_allclose(check.exponent, 1 / 2.2, atol=0.06)
    one = check_flat_linearity(flats[:1])
    assert one.verdict is None and "at least two flats" in one.reason
    flat_cam = SyntheticCamera(shape=(512, 768), vignetting=0.0, n_dust=0)
    even = [CCDData(flat_frame(flat_cam, seed=k).data, unit="adu") for k in range(2)]
    assert "varies too little" in check_flat_linearity(even).reason


def _dng_flat_lit(real_data):
    """The DNG's real pixels, flattened (real noise and texture) and vignetted."""
    raw = _read(real_data / "camera-raw" / "Blackmagic.dng", subtract_black=True)
    data = np.asarray(raw.data, np.float64)[8 + 540:8 + 1620, 16 + 1024:16 + 3072]
    yy, xx = np.mgrid[0:data.shape[0], 0:data.shape[1]]
    r2 = ((yy - data.shape[0] / 2) ** 2 + (xx - data.shape[1] / 2) ** 2) / (
        (data.shape[0] / 2) ** 2 + (data.shape[1] / 2) ** 2)
    vig = 1 / (1 + 0.2 * r2) ** 2
    lit = np.empty_like(data)
    for plane, out in zip(bayer.channel_views(data, "RGGB").values(),
                          bayer.channel_views(lit, "RGGB").values(), strict=True):
        smooth = gaussian_filter(plane, 20)
        out[...] = np.where(smooth > 50, plane / np.maximum(smooth, 1), np.nan)
    lit *= 3000 * vig
    meta = {"BAYERPAT": "RGGB"}
    flat = np.random.default_rng(0).poisson(20000 * vig).astype(np.float32)
    light = CCDData(np.nan_to_num(lit).astype(np.float32), unit="adu", meta=meta,
                    mask=~np.isfinite(lit))
    return light, CCDData(flat, unit="adu", meta=meta)


@pytest.mark.realdata
def test_real_dng_passes_and_its_gamma_version_is_refused(real_data):
    light, flat = _dng_flat_lit(real_data)
    check = check_light_linearity(light, flat)
    assert check.verdict is True
    assert_allclose(check.exponent, 1.0, atol=0.1)
    for gamma in (1.8, 2.2):
        with pytest.raises(NonLinearDataError, match=MESSAGE):
            check_light_linearity(_developed(light, gamma, 65535.0 - 512.0), flat)


@pytest.mark.realdata
def test_real_esrf_frames_pass(real_data):
    folder = real_data / "esrf-id16b"
    dark = _read(folder / "dark.edf").data.astype(np.float64)
    flat = CCDData((_read(folder / "flat.edf").data - dark).astype(np.float32), unit="adu")
    frames = [_read(folder / "data.edf")]
    frames += [_read(folder / "ID16B_diatomee.edf", frame=i) for i in range(6)]
    for frame in frames:
        light = CCDData((frame.data - dark).astype(np.float32), unit="adu")
        check = check_light_linearity(light, flat)
        assert check.verdict is not False
        assert check.exponent > 0.9
    light = CCDData((frames[0].data - dark).astype(np.float32), unit="adu")
    assert check_light_linearity(light, flat).verdict is True
    with pytest.raises(NonLinearDataError, match="looks gamma-encoded"):
        check_light_linearity(_developed(light, 2.2, 65535.0), flat)
    # the six projections as flats: their open-beam background gives the photon transfer
    assert check_flat_linearity(frames[1:]).verdict is True
    developed = [_developed(CCDData(f.data, unit="adu"), 1.8, 65535.0) for f in frames[1:]]
    with pytest.raises(NonLinearDataError, match="flats look gamma-encoded"):
        check_flat_linearity(developed)


@pytest.mark.slow
def test_no_false_alarm_and_full_detection_over_many_seeds():
    cases = [{}, {"sky": 0.5, "exptime": 60.0}, {"sky": 0.05, "exptime": 30.0},
             {"nebula": 3.0}, {"nebula": 0.3}, {"vig": 0.6}, {"vig": 0.02}, {"vig": 0.08},
             {"cfa": None}, {"n_stars": 2000}]
    detected = 0
    n_clean = 0
    for case in cases:
        for seed in range(12):
            light, flat, white = _night(seed, **case)
            assert check_light_linearity(light, flat).verdict is not False, (case, seed)
            if case in ({}, {"vig": 0.6}, {"cfa": None}):
                n_clean += 2
                for gamma in (1.8, 2.2):
                    check = check_light_linearity(_developed(light, gamma, white), flat,
                                                  assume_linear=True)
                    detected += check.verdict is False
    assert detected == n_clean
    for seed in range(12):
        for vig, level in ((0.3, 20000.0), (0.6, 5000.0), (0.02, 20000.0), (0.3, 1000.0)):
            cam = SyntheticCamera(shape=(400, 600), cfa="RGGB", vignetting=vig,
                                  pattern_seed=seed, read_noise=15.0)
            flats = [CCDData(flat_frame(cam, level=level, seed=10 * seed + k).data,
                             unit="adu", meta={"BAYERPAT": "RGGB"}) for k in range(3)]
            assert check_flat_linearity(flats).verdict is not False, (seed, vig, level)
