"""The astrophotographer's night, end to end: RAW flats and lights, no bias, no dark.

A night of DNG files rebuilt from the real Blackmagic DNG (its tags, so LibRaw
reads the real layout: black level 512, default crop, RGGB) with new mosaics of
known vignetting and colour response (:func:`calframe.datasets.make_dng_night`).
Without biases or darks the camera's black level must be subtracted per CFA
position, or the 512 ADU pedestal flattens the flat's vignetting and
over-corrects the lights.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe.bayer import channel_slices, standard_regions
from calframe.cli import main
from calframe.datasets import DngNight, make_dng_night
from calframe.errors import OutputExistsError

CHANNELS = ("R", "G1", "G2", "B")
SEED = 20240309


def _template(real_data):
    path = real_data / "camera-raw" / "Blackmagic.dng"
    if not path.is_file():
        pytest.skip(f"the real DNG is not in the shared data ({path})")
    return path


@pytest.fixture(scope="module")
def night(real_data, tmp_path_factory) -> DngNight:
    return make_dng_night(tmp_path_factory.mktemp("camera") / "night", _template(real_data),
                          n_flat=5, n_light=3, seed=SEED)


def _run(night, folder, *options) -> CCDData:
    out = folder / "out"
    assert main(["-q", "run", str(night.path), "-o", str(out), *options]) == 0
    return out


@pytest.fixture(scope="module")
def default_run(night, tmp_path_factory):
    return _run(night, tmp_path_factory.mktemp("run"))


def _read(path) -> CCDData:
    with fits.open(path) as hdul:
        unit = hdul[0].header.get("BUNIT") or "adu"
    return CCDData.read(path, unit=unit)


def _box_medians(data: np.ndarray) -> dict[str, dict[str, float]]:
    """Median of each CFA channel (RGGB at [0, 0]) in the centre and corner boxes."""
    regions = standard_regions(data.shape)
    return {name: {region: float(np.median(data[box][sl])) for region, box in regions.items()}
            for name, sl in channel_slices("RGGB").items()}


def _corner_centre(medians: dict[str, dict[str, float]]) -> dict[str, float]:
    return {name: np.mean([v for r, v in m.items() if r != "centre"]) / m["centre"]
            for name, m in medians.items()}


def _cfa_stats(path, capsys, *options) -> dict[str, dict[str, float]]:
    """The medians ``calframe cfa-stats`` prints, per channel and region."""
    assert main(["-q", "cfa-stats", *options, str(path)]) == 0
    out: dict[str, dict[str, float]] = {name: {} for name in CHANNELS}
    for line in capsys.readouterr().out.splitlines():
        words = line.split()
        if len(words) == 11 and words[1] in CHANNELS:
            out[words[1]][words[0]] = float(words[8])          # the median column
    return out


def _read_raw(path, night=None):
    """read_frame with a noise model (the DNG carries no gain: it would warn)."""
    from calframe import read_frame

    truth = night.truth if night is not None else None
    return read_frame(path, gain=truth.gain if truth else 1.0,
                      read_noise=truth.read_noise if truth else 3.0)


def _master_flat(out):
    (path,) = sorted((out / "masters").glob("flat_*.fits"))
    return _read(path)


def _lights(out):
    paths = sorted(p for p in (out / "lights").glob("light_*.fits")
                   if not p.stem.endswith(("_R", "_G", "_B")))
    assert len(paths) == 3
    return paths


# --------------------------------------------------------------------------- the night


def test_make_dng_night_checks_its_settings(tmp_path):
    with pytest.raises(ValueError, match="n_flat=-1"):
        make_dng_night(tmp_path, "template.dng", n_flat=-1)
    with pytest.raises(ValueError, match="flat_exptimes is empty"):
        make_dng_night(tmp_path, "template.dng", flat_exptimes=())
    with pytest.raises(ValueError, match="gain=0"):
        make_dng_night(tmp_path, "template.dng", gain=0)
    with pytest.raises(ValueError, match=r"response=.*'R', 'G' and 'B'"):
        make_dng_night(tmp_path, "template.dng", response={"R": 1.0, "G": 1.0})
    with pytest.raises(ValueError, match=r"corner=.*\(0, 1\]"):
        make_dng_night(tmp_path, "template.dng", corner={"R": 1.2, "G": 1.0, "B": 1.0})
    fake = tmp_path / "fake.dng"
    fake.write_bytes(b"MM\x00*" + bytes(64))
    with pytest.raises(ValueError, match="not a little-endian classic TIFF"):
        make_dng_night(tmp_path, fake)


@pytest.mark.realdata
def test_make_dng_night_refuses_to_overwrite(night):
    with pytest.raises(OutputExistsError, match=r"flat_0001\.dng exists"):
        make_dng_night(night.path, night.path / "flats" / "flat_0001.dng", n_flat=1,
                       n_light=0)


@pytest.mark.realdata
def test_dng_night_has_the_real_layout(night, real_data):
    import tifffile

    template = _read_raw(_template(real_data))
    assert [p.name for p in night.flats] == [f"flat_{i:04d}.dng" for i in range(1, 6)]
    assert [p.name for p in night.lights] == [f"light_{i:04d}.dng" for i in range(1, 4)]
    for path, exptime in [*zip(night.flats, night.truth.flat_exptimes, strict=True),
                          *((p, 60.0) for p in night.lights)]:
        ccd = _read_raw(path, night)
        assert ccd.shape == template.shape == (2176, 4128)
        for key in ("BAYERPAT", "DATASEC", "INSTRUME", "WHITELEV", "BLKLEVEL",
                    *(f"BLKLEV{i}" for i in range(4))):
            assert ccd.meta[key] == template.meta[key], key
        assert ccd.meta["BAYERPAT"] == "RGGB" and ccd.meta["BLKLEVEL"] == 512.0
        assert ccd.meta["EXPTIME"] == exptime and ccd.meta["FRAMETYP"] in ("flat", "light")
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            assert (page.compression, page.bitspersample) == (1, 16)
            assert page.tags["DefaultCropOrigin"].value == (16, 8)
            assert "LinearizationTable" not in page.tags
            # LibRaw's mosaic is the uint16 written, value for value
            assert np.array_equal(page.asarray(), ccd.data.astype(np.uint16))


@pytest.mark.realdata
def test_dng_night_pixels_follow_the_truth(night):
    """Mean and variance of every flat, per channel, are the model's: Poisson / gain + read noise.

    The template's own pixels are not in the files: each flat is a new draw.
    """
    truth = night.truth
    ch = channel_slices("RGGB")
    previous = None
    for path, exptime in zip(night.flats, truth.flat_exptimes, strict=True):
        data = _read_raw(path, night).data.astype(np.float64) - truth.black_level
        signal = truth.flat_signal(exptime)
        variance = signal / truth.gain + (truth.read_noise / truth.gain) ** 2 + 1 / 12
        for name, sl in ch.items():
            assert_allclose(data[sl].mean() / signal[sl].mean(), 1.0, atol=2e-4)
            pull = (data[sl] - signal[sl]) / np.sqrt(variance[sl])
            assert abs(pull.mean()) < 0.01, name
            assert_allclose(pull.std(), 1.0, atol=0.01)
        residual = data - signal
        if previous is not None:   # independent draws
            assert abs(np.corrcoef(residual[::7, ::7].ravel(),
                                   previous[::7, ::7].ravel())[0, 1]) < 0.01
        previous = residual


@pytest.mark.realdata
def test_cfa_stats_subtract_black_gives_the_vignetting(night, capsys):
    truth = night.truth.corner_centre()
    flat = _cfa_stats(night.flats[0], capsys, "--subtract-black")
    for name, ratio in _corner_centre(flat).items():
        assert_allclose(ratio, truth[name], rtol=0.005, err_msg=name)
    # the colours of the flat: the response of each channel
    resp = night.truth.response
    g = flat["G1"]["centre"]
    assert_allclose(flat["R"]["centre"] / g, resp["R"] / resp["G"], rtol=0.01)
    assert_allclose(flat["B"]["centre"] / g, resp["B"] / resp["G"], rtol=0.01)
    # with the black level kept the corners look 0.02-0.05 brighter than they are
    kept = _corner_centre(_cfa_stats(night.flats[0], capsys))
    assert all(kept[name] - truth[name] > 0.02 for name in CHANNELS)


# --------------------------------------------------------------------------- calframe run


@pytest.mark.realdata
def test_run_master_flat_per_channel_matches_cfa_stats(night, default_run, capsys):
    flat = _master_flat(default_run)
    assert flat.shape == (2176, 4128)
    assert flat.meta["FLATCHAN"] is True and flat.meta["NCOMBINE"] == 5
    medians = _box_medians(flat.data)
    for name in ("R", "G1", "B"):          # normalised per colour: the centre is about 1
        assert 1.0 < medians[name]["centre"] < 1.3
    master = _corner_centre(medians)
    raw = _corner_centre(_cfa_stats(night.flats[2], capsys, "--subtract-black"))
    truth = night.truth.corner_centre()
    for name in CHANNELS:
        assert_allclose(master[name], raw[name], rtol=0.005, err_msg=name)
        assert_allclose(master[name], truth[name], rtol=0.005, err_msg=name)


@pytest.mark.realdata
def test_run_flattens_the_lights(default_run):
    for path in _lights(default_run):
        light = _read(path)
        assert light.shape == (2176, 4128)
        for name, ratio in _corner_centre(_box_medians(light.data)).items():
            assert_allclose(1 / ratio, 1.0, atol=0.005, err_msg=f"{path.name} {name}")


@pytest.mark.realdata
@pytest.mark.slow
def test_keep_black_leaves_the_pedestal(night, tmp_path):
    """With the 512 ADU pedestal kept, the master flat and the lights come out wrong."""
    out = _run(night, tmp_path, "--keep-black")
    truth = night.truth.corner_centre()
    master = _corner_centre(_box_medians(_master_flat(out).data))
    for name in CHANNELS:
        assert master[name] - truth[name] > 0.01, name
    for path in _lights(out):
        ratios = _corner_centre(_box_medians(_read(path).data))
        assert all(abs(1 / ratios[name] - 1) > 0.02 for name in CHANNELS), path.name


@pytest.mark.realdata
@pytest.mark.slow
def test_split_rgb_planes_read_back(night, tmp_path):
    out = _run(night, tmp_path, "--split-rgb")
    for path in _lights(out):
        mosaic = _box_medians(_read(path).data)
        for colour, channels in (("R", ("R",)), ("G", ("G1", "G2")), ("B", ("B",))):
            plane_path = path.with_name(f"{path.stem}_{colour}.fits")
            with fits.open(plane_path) as hdul:
                assert hdul[0].data.shape == (2176, 4128)
                assert hdul[0].header["PLANE"] == colour
            plane = _read(plane_path)
            assert plane.shape == (2176, 4128)
            regions = standard_regions(plane.shape)
            medians = {r: float(np.median(plane.data[box])) for r, box in regions.items()}
            expected = np.mean([mosaic[c]["centre"] for c in channels])
            assert_allclose(medians["centre"], expected, rtol=0.005)
            corners = np.mean([v for r, v in medians.items() if r != "centre"])
            assert_allclose(medians["centre"] / corners, 1.0, atol=0.005)


def test_rational_of_the_exposure():
    from calframe.datasets._dng import _rational

    assert struct.unpack("<II", _rational(1 / 125)) == (1, 125)
    assert struct.unpack("<II", _rational(60.0)) == (60, 1)


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::calframe.errors.UncertaintyUnknownWarning")
def test_plan_report_and_provenance_say_the_black_level_was_subtracted(night, default_run,
                                                                      capsys):
    from calframe.io import read_frame
    from calframe.provenance import get_provenance

    report = (default_run / "report.html").read_text(encoding="utf-8")
    assert "The camera black level was subtracted (no bias or dark removed it)" in report
    assert main(["run", str(night.path), "-o", str(default_run), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "(the camera black level subtracted: no bias or dark removes it)" in plan
    (flat_path,) = sorted((default_run / "masters").glob("flat_*.fits"))
    flat = read_frame(flat_path)
    step = next(s for s in get_provenance(flat).steps if s.step == "make_master_flat")
    assert step.parameters["black_level"] == [512.0] * 4
    light = read_frame(_lights(default_run)[0])
    calibrated = next(s for s in get_provenance(light).steps if s.step == "calibrate")
    assert calibrated.parameters["black_level"] == [512.0] * 4
    assert calibrated.parameters["linearity"]["verdict"] is not False
