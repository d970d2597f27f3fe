"""The camera black level is subtracted exactly when nothing else removes it."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose

from calframe.bayer import channel_statistics, standard_regions
from calframe.blacklevel import black_level, decide_black_level, subtract_black_level
from calframe.calibration import calibrate
from calframe.cli import main
from calframe.errors import InvalidSettingsError, MissingMetadataError
from calframe.io import read_frame
from calframe.masters import make_master_flat
from calframe.provenance import get_provenance

BLACK = np.array([[512.0, 508.0], [510.0, 514.0]])   # per CFA position, RGGB
SHAPE = (128, 192)


def _vignetting(shape=SHAPE, corner=0.4):
    y, x = np.indices(shape, dtype=float)
    r2 = ((y - shape[0] / 2) / (shape[0] / 2)) ** 2 + ((x - shape[1] / 2) / (shape[1] / 2)) ** 2
    return 1.0 - (1.0 - corner) * r2 / 2.0       # 1 at the centre, `corner` at a corner


def _raw(signal, *, seed, kind="flat"):
    """A RAW-like mosaic: black level per CFA position + signal (+ noise), as read_frame gives."""
    rng = np.random.default_rng(seed)
    ny, nx = signal.shape
    black = np.tile(BLACK, (ny // 2, nx // 2))
    data = (black + rng.poisson(signal) + rng.normal(0, 2, signal.shape)).astype(np.float32)
    meta = {"FRAMETYP": kind, "BAYERPAT": "RGGB", "XBAYROFF": 0, "YBAYROFF": 0,
            "EXPTIME": 1.0, "BLKLEVEL": float(BLACK.mean()), "EGAIN": 1.0, "RDNOISE": 2.0}
    meta.update({f"BLKLEV{i}": float(v) for i, v in enumerate(BLACK.ravel())})
    sigma = np.sqrt(np.maximum(signal, 0) + 4.0).astype(np.float32)
    return CCDData(data, unit="adu", meta=meta, uncertainty=StdDevUncertainty(sigma))


def _flats(n=8, level=30000.0):
    vig = _vignetting()
    colour = np.tile([[0.6, 1.0], [1.0, 0.8]], (SHAPE[0] // 2, SHAPE[1] // 2))
    return [_raw(level * (1 + 0.2 * k) * vig * colour, seed=k) for k in range(n)], vig


def _corner_over_centre(ccd):
    table = channel_statistics(ccd, regions=standard_regions(ccd.shape, size=0.1))
    med = {(str(r["region"]), str(r["channel"])): float(r["median"]) for r in table}
    corners = [k for k in {r for r, _ in med} if k != "centre"]
    return {c: np.mean([med[(k, c)] for k in corners]) / med[("centre", c)]
            for c in ("R", "G1", "G2", "B")}


def test_the_decision():
    raw = {"BLKLEVEL": 512.0}
    assert decide_black_level(raw, None, removed_by=None)
    for removed_by in ("the bias", "the overscan", "the dark (it includes the bias)"):
        assert not decide_black_level(raw, None, removed_by=removed_by)
    assert not decide_black_level({}, None, removed_by=None)          # no black level
    assert not decide_black_level({**raw, "BLKSUB": True}, None, removed_by=None)
    assert not decide_black_level(raw, False, removed_by=None)
    with pytest.raises(InvalidSettingsError, match="subtracted twice"):
        decide_black_level(raw, True, removed_by="the bias")
    with pytest.raises(MissingMetadataError, match="records no black level"):
        decide_black_level({}, True, removed_by=None)


def test_master_flat_without_bias_has_the_true_vignetting():
    flats, vig = _flats()
    master = make_master_flat(flats)
    ratios = _corner_over_centre(master)
    truth = _corner_over_centre(CCDData(vig.astype(np.float32), unit="",
                                        meta={"BAYERPAT": "RGGB"}))
    for channel in ratios:
        assert ratios[channel] == pytest.approx(truth[channel], rel=0.005), channel
    assert master.meta["BLKSUB"] is True
    step = next(s for s in get_provenance(master).steps if s.step == "make_master_flat")
    assert step.parameters["black_level"] == BLACK.ravel().tolist()
    # kept on purpose, the black level makes the vignetting look shallower
    kept = _corner_over_centre(make_master_flat(flats, subtract_black=False))
    assert all(kept[c] > truth[c] + 0.005 for c in kept)   # beyond the tolerance above


def test_calibrated_light_is_flat_without_bias_or_dark():
    flats, vig = _flats()
    master = make_master_flat(flats)
    colour = np.tile([[0.6, 1.0], [1.0, 0.8]], (SHAPE[0] // 2, SHAPE[1] // 2))
    light = _raw(20000.0 * vig * colour, seed=99, kind="light")
    out = calibrate(light, flat=master)
    assert out.meta["CALSTAT"] == "BF" and out.meta["BLKSUB"] is True
    step = get_provenance(out).steps[-1]
    assert step.parameters["black_level"] == BLACK.ravel().tolist()
    for channel, ratio in _corner_over_centre(out).items():
        assert ratio == pytest.approx(1.0, abs=0.005), channel
    # the black level is a known constant: the light's and the flat's errors only
    signal = light.data - np.tile(BLACK, (SHAPE[0] // 2, SHAPE[1] // 2))
    expected = np.sqrt((light.uncertainty.array / master.data) ** 2
                       + (signal * master.uncertainty.array / master.data ** 2) ** 2)
    assert_allclose(out.uncertainty.array, expected, rtol=1e-3)
    kept = calibrate(light, flat=master, subtract_black=False)
    assert kept.meta["CALSTAT"] == "F"
    assert np.median(kept.data) > np.median(out.data) + 400
    assert any(abs(r - 1) > 0.01 for r in _corner_over_centre(kept).values())


def test_never_twice_with_a_bias_or_a_dark_that_includes_it():
    flats, _ = _flats(n=2)
    light = flats[0]
    bias = CCDData(np.tile(BLACK, (SHAPE[0] // 2, SHAPE[1] // 2)).astype(np.float32),
                   unit="adu", meta={"FRAMETYP": "bias"})
    out = calibrate(light, bias=bias)
    assert "black_level" not in get_provenance(out).steps[-1].parameters
    assert out.meta["CALSTAT"] == "B"
    with pytest.raises(InvalidSettingsError, match="subtracted twice"):
        calibrate(light, bias=bias, subtract_black=True)
    dark = CCDData(bias.data + 3, unit="adu", meta={"FRAMETYP": "dark", "EXPTIME": 1.0,
                                                    "BIASSUB": False})
    assert "black_level" not in get_provenance(calibrate(light, dark=dark)).steps[-1].parameters


def test_trim_at_an_odd_offset_keeps_each_level_on_its_colour():
    flat = _raw(np.full(SHAPE, 1000.0), seed=5)
    flat.data[:] = np.tile(BLACK, (SHAPE[0] // 2, SHAPE[1] // 2)) + 1000.0
    unit = CCDData(np.ones(SHAPE, np.float32), unit="", meta={"FRAMETYP": "flat",
                                                               "FLATNORM": "median"})
    out = calibrate(flat, flat=unit, trim="[2:95,2:63]")   # origin (1, 1)
    assert_allclose(out.data, 1000.0, atol=1e-3)


def test_subtract_black_level_and_black_level():
    frame = _raw(np.full((4, 4), 100.0), seed=1)
    assert_allclose(black_level(frame.meta), BLACK)
    done = subtract_black_level(frame)
    assert_allclose(done.data, frame.data - np.tile(BLACK, (2, 2)))
    assert done.meta["BLKSUB"] is True and "BLKSUB" not in frame.meta  # input untouched
    with pytest.raises(MissingMetadataError):
        subtract_black_level(CCDData(np.zeros((2, 2)), unit="adu"))


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::calframe.errors.UncertaintyUnknownWarning")
def test_real_dng_flat_matches_cfa_stats_subtract_black(real_data, tmp_path, capsys):
    dng = str(real_data / "camera-raw" / "Blackmagic.dng")
    master = make_master_flat([dng])
    assert master.meta["BLKSUB"] is True
    raw = read_frame(dng)
    reference = _corner_over_centre(subtract_black_level(raw))
    ours = _corner_over_centre(master)
    for channel in ours:
        assert ours[channel] == pytest.approx(reference[channel], rel=0.005), channel
    out = tmp_path / "flat.fits"
    assert main(["-q", "master", "flat", dng, "-o", str(out)]) == 0
    assert fits.getheader(out)["BLKSUB"] is True
    assert main(["-q", "master", "flat", dng, "-o", str(tmp_path / "k.fits"),
                 "--keep-black"]) == 0
    assert "BLKSUB" not in fits.getheader(tmp_path / "k.fits")
    assert main(["master", "bias", dng, "-o", str(tmp_path / "b.fits"),
                 "--subtract-black"]) == 2
    assert "--subtract-black/--keep-black are for flats" in capsys.readouterr().err
