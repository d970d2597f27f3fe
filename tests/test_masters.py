"""Tests of calframe.masters on synthetic cameras with a known truth."""

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe._calutil import cfa_groups
from calframe.bayer import standard_regions
from calframe.calibration import calibrate, dark_includes_bias
from calframe.combining import SigmaClip
from calframe.datasets import SyntheticCamera, bias_frame, dark_frame, flat_frame
from calframe.errors import MissingMetadataError, MixedFramesError, NonLinearDataError
from calframe.masters import make_master_bias, make_master_dark, make_master_flat
from calframe.provenance import get_provenance


def _camera(cfa=None, **kw):
    opts = dict(shape=(128, 128), cfa=cfa, n_hot_pixels=40, pattern_seed=11)
    opts.update(kw)
    return SyntheticCamera(**opts)


def _ccds(frames):
    return [f.to_ccddata() for f in frames]


def _masters(cam, *, nbias=12, ndark=8, texp=300.0, method="median", rejection=None):
    bias = make_master_bias(_ccds(bias_frame(cam, seed=1000 + i) for i in range(nbias)),
                            method=method, rejection=rejection)
    dark = make_master_dark(_ccds(dark_frame(cam, texp, seed=2000 + i) for i in range(ndark)),
                            bias=bias, method=method, rejection=rejection)
    return bias, dark


def _pull(value, truth, sigma, mask=None):
    pull = (value - truth) / sigma
    return pull[~mask] if mask is not None else pull.ravel()


@pytest.mark.parametrize("method", ["median", "mean"])
def test_master_bias_matches_truth_within_its_uncertainty(method):
    cam = _camera()
    frames = _ccds(bias_frame(cam, seed=i) for i in range(15))
    master = make_master_bias(frames, method=method)
    pull = _pull(master.data, cam.bias_map(), master.uncertainty.array, master.mask)
    assert abs(pull.mean()) < 0.05
    assert abs(pull.std() - 1) < 0.05
    assert master.meta["FRAMETYP"] == "bias" and master.meta["NCOMBINE"] == 15
    assert master.ncombine.max() == 15
    assert get_provenance(master).steps[-1].step == "make_master_bias"


def test_master_dark_is_dark_current_with_keywords():
    cam = _camera()
    _, dark = _masters(cam)
    truth = cam.dark_current_map() * 300.0 / cam.gain
    pull = _pull(dark.data, truth, dark.uncertainty.array, dark.mask)
    assert abs(pull.mean()) < 0.05
    assert abs(pull.std() - 1) < 0.05
    assert dark.meta["EXPTIME"] == 300.0
    assert dark.meta["CCD-TEMP"] == pytest.approx(cam.temperature)
    assert dark.meta["BIASSUB"] is True and not dark_includes_bias(dark)
    step = get_provenance(dark).steps[-1]
    assert step.step == "make_master_dark" and step.parameters["bias_subtracted"] is True


def test_master_dark_rate_and_dark_with_bias():
    cam = _camera()
    bias, dark = _masters(cam)
    darks = _ccds(dark_frame(cam, 300.0, seed=2000 + i) for i in range(8))
    rate = make_master_dark(darks, bias=bias, per_second=True)
    assert rate.unit == u.adu / u.s
    assert_allclose(rate.data, dark.data / 300.0, rtol=1e-5, atol=1e-6)
    assert_allclose(rate.uncertainty.array, dark.uncertainty.array / 300.0, rtol=1e-5)
    raw = make_master_dark(darks)
    assert raw.meta["BIASSUB"] is False and dark_includes_bias(raw)
    assert_allclose(raw.data - bias.data, dark.data, atol=1e-3)
    with pytest.raises(ValueError, match="per_second=True needs bias"):
        make_master_dark(darks, per_second=True)
    mixed = darks[:3] + _ccds([dark_frame(cam, 120.0, seed=5)])
    with pytest.raises(MixedFramesError, match="2 different exposures"):
        make_master_dark(mixed, bias=bias)
    noexp = [CCDData(d.data, unit="adu") for d in darks[:3]]
    with pytest.raises(MissingMetadataError, match="no positive EXPTIME"):
        make_master_dark(noexp, bias=bias, per_second=True)


def _flat_truth(cam, shape_meta):
    """The camera's flat normalised to a median of 1 per colour (as the master)."""
    flat = cam.flat_map()
    out = np.empty_like(flat)
    for group in cfa_groups(shape_meta, flat.shape, by_colour=True):
        level = np.median(np.concatenate([flat[sl].ravel() for sl in group]))
        for sl in group:
            out[sl] = flat[sl] / level
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_master_flat_equals_injected_vignetting_and_dust(cfa):
    cam = _camera(cfa, n_dust=3, vignetting=0.3)
    bias, dark = _masters(cam)
    flats = _ccds(flat_frame(cam, level=20000.0, exptime=2.0, seed=3000 + i)
                  for i in range(30))
    master = make_master_flat(flats, bias=bias, dark=dark)
    meta = {"BAYERPAT": cfa} if cfa else {}
    truth = _flat_truth(cam, meta)
    good = ~master.mask
    # the master is normalised by the median of its noisy values, the truth by
    # that of the true ones: compare shapes (the level is checked below)
    for group in cfa_groups(meta, cam.shape, by_colour=True):
        ratio = np.mean([np.mean(master.data[sl][good[sl]]) / np.mean(truth[sl][good[sl]])
                         for sl in group])
        assert ratio == pytest.approx(1.0, abs=5e-4)
        for sl in group:
            truth[sl] *= ratio
    rel = (master.data - truth)[good] / truth[good]
    assert np.sqrt(np.mean(rel**2)) < 0.002
    pull = _pull(master.data, truth, master.uncertainty.array, master.mask)
    assert abs(pull.std() - 1) < 0.05 and abs(pull.mean()) < 0.05
    assert master.unit == u.dimensionless_unscaled
    assert master.meta["FLATCHAN"] is bool(cfa)
    for group in cfa_groups(meta, cam.shape, by_colour=True):
        values = np.concatenate([master.data[sl][good[sl]] for sl in group])
        assert np.median(values) == pytest.approx(1.0, abs=1e-6)

    # a flat-lit scene calibrated with it is flat in every colour
    scene = flat_frame(cam, level=10000.0, exptime=2.0, seed=77).to_ccddata()
    out = calibrate(scene, bias=bias, dark=dark, flat=master)
    ny, nx = cam.shape
    b = 16
    boxes = {"centre": (slice(ny // 2 - b, ny // 2 + b), slice(nx // 2 - b, nx // 2 + b)),
             "top-left": (slice(0, b), slice(0, b)),
             "top-right": (slice(0, b), slice(nx - b, nx)),
             "bottom-left": (slice(ny - b, ny), slice(0, b)),
             "bottom-right": (slice(ny - b, ny), slice(nx - b, nx))}
    for group in cfa_groups(meta, cam.shape, by_colour=False):  # each CFA site
        site = np.zeros(cam.shape, bool)
        site[group[0]] = True
        levels = {name: np.mean(out.data[box][(site & ~out.mask)[box]])
                  for name, box in boxes.items()}
        for name in ("top-left", "top-right", "bottom-left", "bottom-right"):
            assert levels[name] / levels["centre"] == pytest.approx(1.0, abs=0.005), name


def test_flat_per_channel_keeps_colour_balance():
    cam = _camera("RGGB", n_dust=0)
    flats = _ccds(flat_frame(cam, level=20000.0, seed=i) for i in range(5))
    bias = make_master_bias(_ccds(bias_frame(cam, seed=50 + i) for i in range(5)))
    master = make_master_flat(flats, bias=bias)
    for key in ("NORM_R", "NORM_G", "NORM_B"):
        assert key in master.meta
    # the colour levels of the flats (R and B respond 0.6 and 0.5 of green,
    # with a stronger vignetting in red) are divided out, colour by colour
    flat = cam.flat_map()
    red, green, blue = (np.concatenate([flat[sl].ravel() for sl in g])
                        for g in cfa_groups(master.meta, cam.shape))
    g_level = np.median(green)
    assert master.meta["NORM_R"] / master.meta["NORM_G"] == pytest.approx(
        np.median(red) / g_level, rel=0.005)
    assert master.meta["NORM_B"] / master.meta["NORM_G"] == pytest.approx(
        np.median(blue) / g_level, rel=0.005)
    for group in cfa_groups(master.meta, cam.shape):
        assert np.median(np.concatenate([master.data[sl].ravel() for sl in group])) == \
            pytest.approx(1.0, abs=1e-6)
    # one level for the whole mosaic keeps the colour of the flat instead
    single = make_master_flat(flats, bias=bias, per_channel=False)
    assert single.meta["FLATCHAN"] is False
    red_sl = cfa_groups(master.meta, cam.shape)[0][0]
    assert np.median(single.data[red_sl]) == pytest.approx(
        np.median(flat[red_sl]) / np.median(flat), rel=0.01)


def test_flat_levels_differ_and_are_scaled_before_combining():
    rng = np.random.default_rng(2)
    response = rng.uniform(0.7, 1.1, (32, 32)).astype(np.float32)
    flats = [CCDData((lvl * response + rng.normal(0, 1, response.shape)).astype(np.float32),
                     unit="adu", meta={"EXPTIME": lvl / 1000}) for lvl in (5000, 10000, 20000)]
    master = make_master_flat(flats, method="mean")
    assert_allclose(master.data, response / np.median(response), rtol=2e-3)
    mean_norm = make_master_flat(flats, normalize="mean")
    assert np.mean(mean_norm.data[~mean_norm.mask]) == pytest.approx(1.0, abs=1e-5)
    counts = make_master_flat(flats[:1], normalize=None)
    assert counts.unit == u.adu
    assert_allclose(counts.data, flats[0].data)
    rate = make_master_flat(flats, normalize="exposure", method="mean")
    assert rate.unit == u.adu / u.s
    assert_allclose(rate.data, 1000 * response, rtol=2e-3)


def test_low_flat_pixels_are_masked_and_never_divided_by():
    rng = np.random.default_rng(3)
    response = np.ones((32, 32), np.float32)
    response[4, 5] = 0.02  # a dead pixel
    response[10, :] = 0.0  # a dead row
    flats = [CCDData((1e4 * response + rng.normal(0, 5, response.shape)).astype(np.float32),
                     unit="adu") for _ in range(4)]
    flats[2].data[20, 20] = np.nan  # a NaN in one flat does not spread either
    master = make_master_flat(flats, min_value=0.1)
    assert master.mask[4, 5] and master.mask[10].all()
    assert not master.mask[20, 20] and np.isfinite(master.data[20, 20])
    assert master.mask.sum() == 1 + 32
    light = CCDData(np.full((32, 32), 500.0, np.float32), unit="adu")
    out = calibrate(light, flat=master)
    assert np.isfinite(out.data).all()
    assert_allclose(out.data[master.mask], 500.0)
    assert_allclose(out.data[~master.mask], 500.0 / master.data[~master.mask], rtol=1e-6)


def test_bad_settings_raise():
    flats = [CCDData(np.ones((8, 8), np.float32), unit="adu")]
    with pytest.raises(ValueError, match="normalize='max'"):
        make_master_flat(flats, normalize="max")
    with pytest.raises(ValueError, match="must not be negative"):
        make_master_flat(flats, min_value=-1)
    with pytest.raises(ValueError, match="no BAYERPAT"):
        make_master_flat(flats, per_channel=True)
    with pytest.raises(ValueError, match="non-positive level"):
        make_master_flat([CCDData(-np.ones((8, 8), np.float32), unit="adu")])
    with pytest.raises(ValueError, match="no frames given"):
        make_master_bias([])
    with pytest.raises(TypeError, match="expected a list of frames"):
        make_master_bias(3)


def test_masters_from_paths_record_inputs(tmp_path):
    cam = _camera(shape=(32, 32))
    paths = {}
    for kind, make in (("bias", lambda i: bias_frame(cam, seed=i)),
                       ("dark", lambda i: dark_frame(cam, 60.0, seed=10 + i)),
                       ("flat", lambda i: flat_frame(cam, seed=20 + i))):
        paths[kind] = []
        for i in range(3):
            path = tmp_path / f"{kind}_{i}.fits"
            make(i).to_hdu().writeto(path)
            paths[kind].append(str(path))
    bias = make_master_bias(paths["bias"])
    dark = make_master_dark(paths["dark"], bias=bias)
    flat = make_master_flat(paths["flat"], bias=bias, dark=dark)
    for master, kind in ((bias, "bias"), (dark, "dark"), (flat, "flat")):
        recorded = {rec.path for rec in get_provenance(master).inputs}
        assert set(paths[kind]) <= recorded
    assert dark.meta["EXPTIME"] == 60.0


def test_rejection_passes_through():
    cam = _camera(shape=(32, 32))
    frames = _ccds(bias_frame(cam, seed=i) for i in range(10))
    frames[3].data[5, 5] = 60000.0
    master = make_master_bias(frames, method="mean", rejection=SigmaClip(low=3, high=3))
    assert master.rejected[5, 5] >= 1
    assert abs(master.data[5, 5] - cam.bias_map()[5, 5]) < 5


def test_flat_with_a_dark_flat_that_includes_the_bias():
    cam = _camera(n_dust=2)
    flats = _ccds(flat_frame(cam, level=20000.0, exptime=5.0, seed=40 + i) for i in range(6))
    darkflat = make_master_dark(_ccds(dark_frame(cam, 5.0, seed=60 + i, frametype="darkflat")
                                      for i in range(6)))
    assert darkflat.meta["BIASSUB"] is False
    master = make_master_flat(flats, dark=darkflat)
    bias, dark = _masters(cam)
    reference = make_master_flat(flats, bias=bias, dark=dark)
    good = ~master.mask & ~reference.mask
    # both remove bias and dark: they agree within the noise of the dark-flat
    assert np.sqrt(np.mean((master.data - reference.data)[good] ** 2)) < 0.002
    truth = _flat_truth(cam, {})
    assert np.sqrt(np.mean(((master.data - truth) / truth)[good] ** 2)) < 0.003


@pytest.mark.parametrize("region", ["[1:8,1:8]", (0, 8, 0, 8), "centre"])
def test_normalisation_region(region):
    rng = np.random.default_rng(9)
    response = np.linspace(0.5, 1.5, 32 * 32).reshape(32, 32)
    flats = [CCDData((1e4 * response + rng.normal(0, 1, response.shape)).astype(np.float32),
                     unit="adu") for _ in range(3)]
    # noise of 1 ADU at any level is no photon noise: the data guard would refuse these
    master = make_master_flat(flats, region=region, assume_linear=True)
    box = (slice(0, 8), slice(0, 8))
    if region == "centre":
        box = standard_regions((32, 32))["centre"]
    assert np.median(master.data[box]) == pytest.approx(1.0, abs=1e-6)
    assert_allclose(master.data, response / np.median(response[box]), rtol=1e-3)
    with pytest.raises(ValueError, match="is not None, 'centre'"):
        make_master_flat(flats, region=(1, 2), assume_linear=True)
    with pytest.raises(NonLinearDataError, match="noise does not grow with their level"):
        make_master_flat(flats, region=region)


def test_flat_with_an_unlit_part_is_normalised_on_its_lit_pixels():
    """A spectrograph-like flat: 55% of the sensor unlit, the rest with structure."""
    rng = np.random.default_rng(7)
    shape = (80, 100)
    lit = np.zeros(shape, bool)
    lit[:, 30:75] = True                                  # 45% lit, in one band
    response = np.where(lit, np.linspace(0.7, 1.3, shape[1])[None, :], 0.0)
    flats = [CCDData(rng.normal(5000 * k * response + 3, 3).astype("f4"), unit="adu")
             for k in (1.0, 1.5, 2.0)]
    master = make_master_flat(flats)
    assert np.median(master.data[lit]) == pytest.approx(1.0, abs=0.01)
    assert master.meta["FLATREG"] == "the illuminated pixels (45.0%)"
    assert master.mask[~lit].all() and not master.mask[lit].any()   # never divided by
    step = get_provenance(master).steps[-1]
    assert step.parameters["level_from"] == "the illuminated pixels (45.0%)"
    # the whole frame on request: the median then falls among the dark pixels
    full = make_master_flat(flats, region="full", min_value=0)
    assert full.meta["FLATREG"] == "the whole frame"
    assert np.median(full.data[lit]) > 100
    # a flat lit everywhere (vignetted corners included) uses all pixels
    vignetted = [CCDData(rng.normal(4000 * k * (0.4 + 0.6 * np.ones(shape)), 3).astype("f4"),
                         unit="adu") for k in (1.0, 2.0)]
    assert make_master_flat(vignetted).meta["FLATREG"] == "all pixels (all illuminated)"
