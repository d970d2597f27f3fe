"""The beamline path: raw darks that hold the offset, pulls with no bias, the
exposure-normalised transmission, select_dark, and the metadata fixes."""

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe import (
    IncompatibleFramesError,
    MissingMetadataError,
    calibrate,
    get_provenance,
    make_master_flat,
    read_frame,
    select_dark,
    transmission,
)
from calframe.calibration import dark_holds_offset

GAIN, RDNOISE, OFFSET = 2.0, 4.0, 100.0   # e-/adu, e-, adu


def _write(path, data, exptime, **cards):
    kind = next((k for k in ("dark", "flat") if k in path.stem), "light")
    header = fits.Header({"EXPTIME": exptime, "EGAIN": GAIN, "RDNOISE": RDNOISE,
                          "IMAGETYP": kind, **cards})
    fits.PrimaryHDU(np.asarray(data, np.float32), header=header).writeto(path)
    return path


def _exposure(rng, electrons, offset_map):
    """Detector values in adu: offset + Poisson(electrons) / gain + read noise."""
    shape = offset_map.shape
    photons = rng.poisson(np.broadcast_to(electrons, shape)) / GAIN
    return offset_map + photons + rng.normal(0, RDNOISE / GAIN, shape)


def test_raw_dark_with_offset_is_not_scaled(tmp_path):
    rng = np.random.default_rng(0)
    offset = np.full((16, 16), OFFSET)
    light = _write(tmp_path / "raw_6s.fits", _exposure(rng, 400.0, offset), 6.0)
    dark = _write(tmp_path / "dark_3s.fits", _exposure(rng, 0.0, offset), 3.0)
    assert dark_holds_offset(read_frame(dark))
    with pytest.raises(IncompatibleFramesError, match=r"raw_6s.fits: .*dark_3s.fits is a raw "
                       r"dark \(no BIASSUB, no bias given\), so it holds the detector's offset, "
                       r"and dark_scale='exposure' would multiply the offset too by 2 "
                       r"\(6.0 s / 3.0 s\); use a dark of the frame's exposure"):
        calibrate(light, dark=dark)
    with pytest.raises(IncompatibleFramesError, match="dark_scale='optimize'"):
        calibrate(light, dark=dark, dark_scale="optimize")
    out = calibrate(light, dark=dark, dark_scale=None)      # subtracted as it is
    assert_allclose(np.median(out.data), 200.0, atol=2.0)
    assert out.meta["DARKSCAL"] == 1.0
    # a dark made in memory that says nothing stays dark current only (scaled)
    current = CCDData(np.full((16, 16), 1.0, np.float32), unit="adu", meta={"EXPTIME": 3.0})
    assert not dark_holds_offset(current)
    assert calibrate(read_frame(light), dark=current).meta["DARKSCAL"] == 2.0


def test_pedestal_from_the_dark_is_recorded(tmp_path):
    rng = np.random.default_rng(1)
    offset = OFFSET + rng.normal(0, 5, (32, 32))
    light = _write(tmp_path / "light.fits", _exposure(rng, 100.0, offset), 1.0)
    dark = _write(tmp_path / "dark.fits", _exposure(rng, 0.0, offset), 1.0)
    out = calibrate(light, dark=dark)
    assert out.meta["PEDSRC"] == "dark"
    assert out.meta["PEDESTAL"] == pytest.approx(np.median(read_frame(dark).data), abs=1e-3)
    step = get_provenance(out).steps[-1]
    assert step.parameters["pedestal"]["source"] == "dark"
    # a frame read with pedestal= keeps its own photon term
    given = read_frame(light, pedestal=OFFSET)
    kept = calibrate(given, dark=dark)
    assert "PEDSRC" not in kept.meta


def _pulls(out, truth):
    good = ~out.mask
    return ((out.data - truth) / out.uncertainty.array)[good]


@pytest.mark.slow
def test_beamline_path_pulls_are_unit(tmp_path):
    """Weak beam, raw darks, no bias: the photon term is counted above the dark."""
    rng = np.random.default_rng(2026)
    shape = (48, 48)
    signal_e = 40.0                                   # weak beam: 20 adu over 100 adu offset
    pulls, pulls_t = [], []
    for r in range(30):
        offset = OFFSET + rng.normal(0, 3, shape)
        light = _write(tmp_path / f"light_{r}.fits", _exposure(rng, signal_e, offset), 2.0)
        dark = _write(tmp_path / f"dark_{r}.fits", _exposure(rng, 0.0, offset), 2.0)
        flat = _write(tmp_path / f"flat_{r}.fits", _exposure(rng, 4000.0, offset), 0.5)
        fdark = _write(tmp_path / f"fdark_{r}.fits", _exposure(rng, 0.0, offset), 0.5)
        out = calibrate(light, dark=dark)
        pulls.append(_pulls(out, signal_e / GAIN))
        t = transmission(light, flat, dark=[dark, fdark])
        truth_t = (signal_e / 2.0) / (4000.0 / 0.5)
        pulls_t.append(_pulls(t, truth_t))
    pulls, pulls_t = np.concatenate(pulls), np.concatenate(pulls_t)
    assert abs(np.std(pulls) - 1.0) < 0.03, np.std(pulls)
    assert abs(np.mean(pulls)) < 0.03, np.mean(pulls)
    assert abs(np.std(pulls_t) - 1.0) < 0.03, np.std(pulls_t)
    assert abs(np.mean(pulls_t)) < 0.05, np.mean(pulls_t)


def test_transmission_matches_numpy_with_different_exposures(tmp_path):
    rng = np.random.default_rng(5)
    offset = OFFSET + rng.normal(0, 3, (20, 24))
    data = _exposure(rng, 500.0, offset)
    flat = _exposure(rng, 3000.0, offset)
    dark_d, dark_f = _exposure(rng, 0.0, offset), _exposure(rng, 0.0, offset)
    paths = [_write(tmp_path / f"{n}.fits", v, t) for n, v, t in
             (("data", data, 4.0), ("flat", flat, 0.25), ("dark_4s", dark_d, 4.0),
              ("dark_025s", dark_f, 0.25), ("dark_1s", dark_f, 1.0))]
    out = transmission(paths[0], paths[1], dark=paths[2:])
    f32 = [np.float32(v) for v in (data, flat, dark_d, dark_f)]
    expected = ((f32[0] - f32[2]) / 4.0) / ((f32[1] - f32[3]) / 0.25)
    assert_allclose(out.data, expected, rtol=2e-6)
    assert out.unit.is_equivalent("") and out.meta["FLATEXP"] == 0.25
    step = get_provenance(out).steps[-1]
    assert step.step == "transmission" and step.parameters["flat_dark_exptime"] == 0.25
    with pytest.raises(IncompatibleFramesError, match=r"data.fits: no dark of 4 s and shape "
                       r"\(20, 24\) among the darks given \(exposures: 0.25 s, 1 s\)"):
        transmission(paths[0], paths[1], dark=paths[3:])


def test_select_dark_prefers_exposure_then_temperature(tmp_path):
    frame = CCDData(np.zeros((4, 4)), unit="adu", meta={"EXPTIME": 10.0, "CCD-TEMP": -20.0})
    darks = [CCDData(np.zeros((4, 4)), unit="adu", meta={"EXPTIME": t, "CCD-TEMP": c})
             for t, c in ((10.0, -10.0), (10.05, -20.0), (10.0, -19.0), (5.0, -20.0))]
    assert select_dark(frame, darks) is darks[2]
    with pytest.raises(MissingMetadataError, match="no exposure time"):
        select_dark(CCDData(np.zeros((4, 4)), unit="adu"), darks)
    with pytest.raises(IncompatibleFramesError, match=r"exposures: 10 s, 10.05 s, 5 s"):
        select_dark(CCDData(np.zeros((4, 4)), unit="adu", meta={"EXPTIME": 20.0}), darks)


def test_real_esrf_normalisation(real_data):
    folder = real_data / "esrf-id16b"
    frames = {name: read_frame(folder / f"{name}.edf", gain=1.0, read_noise=1.0)
              for name in ("data", "dark", "flat")}
    for ccd in frames.values():
        ccd.meta["EXPTIME"] = 1.0                  # the files give none: equal exposures
    out = transmission(frames["data"], frames["flat"], dark=frames["dark"])
    d, k, f = (np.asarray(frames[n].data, np.float64) for n in ("data", "dark", "flat"))
    good = ~out.mask
    assert good.mean() > 0.99
    assert_allclose(out.data[good], ((d - k) / (f - k))[good], rtol=2e-6)


def test_edf_date_into_date_obs(real_data):
    ccd = read_frame(real_data / "esrf-id16b" / "ID16B_diatomee.edf", frame=3,
                     gain=1.0, read_noise=1.0)
    assert ccd.meta["DATE-OBS"] == "2016-06-13T09:29:46"


def test_int32_above_2_24_read_exactly(tmp_path):
    values = np.array([[16777217, 3], [2**31 - 2, 16777216]], np.int32)
    tifffile.imwrite(tmp_path / "sum.tif", values)
    ccd = read_frame(tmp_path / "sum.tif", gain=1.0, read_noise=0.0)
    assert ccd.data.dtype == np.float64 and int(ccd.data[0, 0]) == 16777217
    fits.PrimaryHDU(values).writeto(tmp_path / "sum.fits")
    ccd = read_frame(tmp_path / "sum.fits", gain=1.0, read_noise=0.0)
    assert int(ccd.data[0, 0]) == 16777217 and ccd.meta["RDDTYPE"] == "float64"
    assert read_frame(tmp_path / "sum.fits", gain=1.0, read_noise=0.0,
                      dtype=np.float32).data.dtype == np.float64
    small = np.array([[16777216, 3]], np.int32)
    tifffile.imwrite(tmp_path / "small.tif", small)
    assert read_frame(tmp_path / "small.tif", gain=1.0, read_noise=0.0).data.dtype == np.float32


def test_flat_without_exptime_names_normalize_none():
    flats = [CCDData(np.full((8, 8), 1000.0 + i, np.float32), unit="adu",
                     meta={"IMAGETYP": "flat"}) for i in range(3)]
    with pytest.raises(MissingMetadataError, match=r"flat 0: no exposure time .* or use "
                       r"normalize=None$"):
        make_master_flat(flats, normalize="exposure")
