"""Tests of calframe.cosmetic: bad-pixel detection, CFA-aware correction, cosmic rays."""

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose

from calframe.calibration import calibrate
from calframe.cosmetic import (
    Cosmetic,
    CosmicRays,
    correct_bad_pixels,
    find_bad_pixels,
    remove_cosmic_rays,
)
from calframe.datasets import StarField, SyntheticCamera, bias_frame, dark_frame, light_frame
from calframe.provenance import get_provenance


def _camera(**kw):
    opts = dict(shape=(128, 128), n_hot_pixels=160, hot_pixel_current=(0.5, 50.0),
                dark_current=0.05, n_dust=0, pattern_seed=7)
    opts.update(kw)
    return SyntheticCamera(**opts)


def _master_dark(cam, exptime=300.0, n=8, seed=0):
    """Mean of n darks minus the mean of n biases, as CCDData (a master dark)."""
    darks = np.mean([dark_frame(cam, exptime, seed=seed + i).data for i in range(n)], axis=0)
    biases = np.mean([bias_frame(cam, seed=seed + 100 + i).data for i in range(n)], axis=0)
    meta = {"EXPTIME": exptime}
    if cam.cfa:
        meta["BAYERPAT"] = cam.cfa
    return CCDData((darks - biases).astype(np.float32), unit="adu", meta=meta)


@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_injected_hot_pixels_are_found(cfa):
    cam = _camera(cfa=cfa)
    master = _master_dark(cam)
    hot = cam.hot_pixels
    # a hot pixel is what stands out of the dark by more than 5 sigma of its noise
    noise = np.sqrt(2 * cam.read_noise_adu**2 / 8)
    signal = hot["current"] * 300.0 / cam.gain
    detectable = signal > 8 * noise
    assert detectable.sum() > 150
    bad = find_bad_pixels(master, hot_sigma=5.0)
    found = bad[hot["y"], hot["x"]]
    assert found[detectable].mean() >= 0.99
    injected = np.zeros(cam.shape, bool)
    injected[hot["y"], hot["x"]] = True
    false_rate = (bad & ~injected).sum() / (~injected).sum()
    assert false_rate < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("cfa", [None, "GBRG"])
def test_false_positive_rate_on_clean_frames(cfa):
    total = flagged = 0
    for seed in range(20):
        cam = _camera(cfa=cfa, n_hot_pixels=0, vignetting=0.3, pattern_seed=seed)
        master = _master_dark(cam, n=4, seed=10 * seed)
        bad = find_bad_pixels(master, hot_sigma=5.0, cold_sigma=5.0)
        flagged += int(bad.sum())
        total += bad.size
    assert flagged / total < 1e-3


def test_cold_pixels_of_a_vignetted_flat():
    # the light loss of a real lens (30% in the corners of a 1000 px frame) over
    # a 128 px cut-out of that frame's corner, where it is steepest
    rng = np.random.default_rng(3)
    y, x = np.mgrid[372:500, 372:500]
    vignette = 1 - 0.3 * (y**2 + x**2) / (2 * 500**2)
    flat = vignette * rng.normal(1, 0.005, vignette.shape)
    dead = rng.choice(128 * 128, 40, replace=False)
    flat.ravel()[dead] *= 0.5
    ccd = CCDData(flat.astype(np.float32), unit="")
    bad = find_bad_pixels(ccd, hot_sigma=None, cold_sigma=6.0)
    expected = np.zeros(flat.shape, bool)
    expected.ravel()[dead] = True
    assert_allclose(bad, expected)


def test_masked_and_nonfinite_pixels_are_bad():
    data = np.random.default_rng(0).normal(0, 1, (32, 32)).astype(np.float32)
    data[3, 3] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[4, 4] = True
    bad = find_bad_pixels(CCDData(data, unit="adu", mask=mask), hot_sigma=8)
    assert bad[3, 3] and bad[4, 4] and bad.sum() == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hot_sigma": None, "cold_sigma": None}, "both None"),
    ({"hot_sigma": -1}, "must be positive"),
    ({"box": 4}, "odd integer"),
])
def test_find_bad_pixels_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_bad_pixels(CCDData(np.zeros((8, 8)), unit="adu"), **kwargs)


def _mosaic(shape=(16, 16)):
    """An RGGB mosaic with R=4000, G=2000, B=1000 and an uncertainty."""
    cell = np.array([[4000.0, 2000.0], [2000.0, 1000.0]], np.float32)
    data = np.tile(cell, (shape[0] // 2, shape[1] // 2))
    unc = StdDevUncertainty(np.sqrt(data))
    return CCDData(data, unit="adu", uncertainty=unc, meta={"BAYERPAT": "RGGB"})


def test_correction_uses_same_colour_neighbours_only():
    ccd = _mosaic()
    bad = np.zeros(ccd.shape, bool)
    for y, x in [(4, 4), (4, 5), (5, 4), (5, 5)]:  # one pixel of every colour
        ccd.data[y, x] = 60000.0
        bad[y, x] = True
    out = correct_bad_pixels(ccd, bad)
    assert_allclose(out.data, _mosaic().data)
    assert_allclose(out.uncertainty.array, _mosaic().uncertainty.array)
    assert out.meta["COSMCORR"] == 4 and out.meta["COSMFAIL"] == 0
    assert_allclose(out.mask, bad)  # interpolated values stay masked by default
    assert not correct_bad_pixels(ccd, bad, unmask=True).mask.any()
    assert ccd.data[4, 4] == 60000.0  # the input is not modified
    step = get_provenance(out).steps[-1]
    assert step.step == "correct_bad_pixels" and step.parameters["corrected"] == 4


def test_cluster_needs_a_larger_neighbourhood_and_hopeless_pixels_stay_masked():
    ccd = CCDData(np.full((20, 20), 7.0, np.float32), unit="adu")
    bad = np.zeros(ccd.shape, bool)
    bad[5:10, 5:10] = True
    ccd.data[bad] = 1e4
    out = correct_bad_pixels(ccd, bad)
    assert_allclose(out.data, 7.0)
    everything = np.ones(ccd.shape, bool)
    out = correct_bad_pixels(ccd, everything)
    assert out.meta["COSMFAIL"] == ccd.size and out.mask.all()
    with pytest.raises(ValueError, match="bad-pixel map has shape"):
        correct_bad_pixels(ccd, np.zeros((3, 3), bool))


@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_calibrate_corrects_hot_pixels_found_in_the_dark(cfa):
    cam = _camera(cfa=cfa)
    master = _master_dark(cam)
    biases = np.mean([bias_frame(cam, seed=500 + i).data for i in range(8)], axis=0)
    bias = CCDData(biases.astype(np.float32), unit="adu", meta=dict(master.meta))
    frame = light_frame(cam, 300.0, field=StarField(n_stars=0, sky=2.0), seed=1)
    light = frame.to_ccddata()
    out = calibrate(light, bias=bias, dark=master, cosmetic=Cosmetic(hot_sigma=5.0))
    hot = cam.hot_pixels
    assert out.mask[hot["y"], hot["x"]].mean() > 0.9
    assert out.meta["COSMCORR"] >= 0.9 * len(hot)
    assert "C" in out.meta["CALSTAT"]
    # the replaced values are sky, not hot pixels
    sky = (frame.truth.signal - frame.truth.dark_current * 300.0) / cam.gain
    resid = (out.data - sky)[hot["y"], hot["x"]] / out.uncertainty.array[hot["y"], hot["x"]]
    assert np.all(np.abs(resid) < 6)
    # a bad-pixel map alone works too, and True means Cosmetic()
    bpm = np.zeros(cam.shape, bool)
    bpm[10, 10] = True
    assert calibrate(light, bias=bias, cosmetic=bpm).meta["COSMCORR"] == 1
    assert calibrate(light, bias=bias, dark=master, cosmetic=True).meta["COSMCORR"] > 0
    with pytest.raises(TypeError, match="expected a Cosmetic"):
        calibrate(light, bias=bias, cosmetic="yes")


@pytest.mark.slow
@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_cosmic_rays_are_found_and_masked(cfa):
    cam = _camera(n_hot_pixels=0, cfa=cfa)
    # stars up to ~100k e- (L.A.Cosmic takes the cores of much brighter,
    # saturating stars for cosmic rays)
    field = StarField(n_stars=15, fwhm=4.0, flux=(50.0, 2000.0))
    found = flagged = total = 0
    for seed in range(2):
        frame = light_frame(cam, 60.0, field=field, seed=seed, cosmic_rays=30)
        bias = CCDData(cam.bias_map().astype(np.float32), unit="adu",
                       meta={"BAYERPAT": cam.cfa} if cam.cfa else {})
        light = frame.to_ccddata()
        light.mask = np.zeros(cam.shape, bool)
        light.mask[0, 0] = True
        cal = calibrate(light, bias=bias)
        out = remove_cosmic_rays(cal, CosmicRays())
        truth = frame.truth.cosmic_mask
        inner = np.zeros(cam.shape, bool)
        inner[3:-3, 3:-3] = True  # L.A.Cosmic's Laplacian is blind on the border
        found += int((out.mask & truth & inner).sum())
        total += int((truth & inner).sum())
        flagged += int((out.mask & ~truth & ~cal.mask).sum())
        assert out.mask[0, 0]
        assert out.meta["NCOSMIC"] == int((out.mask & ~cal.mask).sum())
        # cleaned values are back near the sky: no pixel keeps a cosmic ray's charge
        expected = frame.truth.signal / cam.gain
        hit = out.mask & truth & inner
        resid = (out.data - expected)[hit] / np.sqrt(expected[hit] / cam.gain + 12)
        assert np.all(np.abs(resid) < 10)
    assert found / total >= 0.97
    assert flagged / (2 * cam.shape[0] * cam.shape[1]) < 2e-3


@pytest.mark.parametrize("box", [3, 5, 7])
def test_compiled_median_filter_equals_scipy(box):
    """find_bad_pixels' median filter gives scipy's values exactly, edges included."""
    from scipy import ndimage

    from calframe._medfilt import median_filter

    rng = np.random.default_rng(box)
    for shape in [(1, 1), (1, 7), (2, 3), (4, 4), (9, 13), (40, 57)]:
        for values in (rng.normal(0, 1, shape), rng.integers(0, 4, shape)):  # ties too
            plane = values.astype(np.float32)
            expected = ndimage.median_filter(plane, size=box, mode="reflect")
            np.testing.assert_array_equal(median_filter(plane, box), expected)
