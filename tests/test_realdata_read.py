"""Every real instrument file in ../shared/data/real reads correctly.

The expected values come from ../shared/data/README.md (what each file is)
and from reading the files independently with astropy / fabio.
"""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose, assert_array_equal

import calframe._detector as detector
from calframe import get_provenance, iter_frames, read_frame
from calframe.errors import UncertaintyUnknownWarning

pytestmark = pytest.mark.realdata


@pytest.fixture(autouse=True)
def _quiet_unknown_uncertainty():
    """Most real files carry no read noise; that warning is tested elsewhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        yield
    detector._reset_warning()


ST7_DARKS = [f"DarkBefore-00{i}D{t}s{'_' if t == 300 else ''}.fit"
             for i in (1, 2, 3) for t in (120, 300, 900)]


@pytest.mark.parametrize("name", [*ST7_DARKS, "Vega.fit"])
def test_st7_frames(real_data, name):
    path = real_data / "ast325-st7" / name
    ccd = read_frame(path)
    assert ccd.shape == (510, 765) and ccd.data.dtype == np.float32
    # BZERO = 32768 applied: the same physical ADU as astropy's own scaling.
    assert_array_equal(ccd.data, fits.getdata(path).astype(np.float64).astype(np.float32))
    assert 800 < np.median(ccd.data) < 1000          # bias level ~886 ADU
    assert_allclose(ccd.meta["EGAIN"], 2.55, rtol=1e-6)
    assert ccd.meta["CCD-TEMP"] == fits.getheader(path)["CCD-TEMP"]
    assert_allclose(ccd.meta["CCD-TEMP"], -17.0, atol=1.0)   # set point -17 C
    if name == "Vega.fit":
        assert ccd.meta["FRAMETYP"] == "light" and ccd.meta["EXPTIME"] == 120.0
    else:
        exptime = float(name.split("D")[-1].split("s")[0])
        assert ccd.meta["FRAMETYP"] == "dark" and ccd.meta["EXPTIME"] == exptime
    assert ccd.meta["FTSOURCE"] == "header" and ccd.meta["EXPSRC"] == "EXPTIME"
    assert ccd.uncertainty is None                   # no read noise in the header


def test_st7_with_read_noise_gets_an_uncertainty(real_data):
    path = real_data / "ast325-st7" / "DarkBefore-001D120s.fit"
    ccd = read_frame(path, read_noise=15.0, pedestal=886.0)
    data = ccd.data.astype(np.float64)
    expected = np.sqrt(np.maximum(data - 886.0, 0) / 2.55 + (15.0 / 2.55) ** 2)
    assert_allclose(ccd.uncertainty.array, expected, rtol=1e-5)


def test_saao_ste3(real_data):
    path = real_data / "saao-ste3" / "a8280271.fits"
    ccd = read_frame(path)
    assert ccd.shape == (520, 536) and ccd.data.dtype == np.float32
    assert_array_equal(ccd.data, fits.getdata(path).astype(np.float64).astype(np.float32))
    assert (ccd.meta["FRAMETYP"], ccd.meta["FTSOURCE"]) == ("light", "header")  # 'object'
    assert ccd.meta["EXPTIME"] == 150.04
    assert ccd.meta["EGAIN"] == 1.9 and ccd.meta["RDNOISE"] == 5.0
    assert_allclose(ccd.meta["CCD-TEMP"], 180.2 - 273.15, atol=1e-6)   # written in kelvin
    assert ccd.meta["UNCSRC"] == "detector model"
    assert ccd.meta["DATE-OBS"] == "2013-07-13T00:57:33"   # DATE-OBS + UT
    record = get_provenance(ccd).inputs[0]
    assert record.path == str(path) and record.exptime == 150.04 and record.role == "light"


def test_blackmagic_dng(real_data):
    import rawpy

    path = real_data / "camera-raw" / "Blackmagic.dng"
    ccd = read_frame(path)
    assert ccd.shape == (2176, 4128) and ccd.data.dtype == np.float32
    with rawpy.imread(str(path)) as raw:
        visible = raw.raw_image_visible.copy()
    assert_array_equal(ccd.data, visible.astype(np.float32))
    meta = ccd.meta
    assert (meta["BAYERPAT"], meta["XBAYROFF"], meta["YBAYROFF"]) == ("RGGB", 0, 0)
    assert [meta[f"BLKLEV{i}"] for i in range(4)] == [512.0] * 4
    assert meta["BLKLEVEL"] == 512.0 and meta["WHITELEV"] == 65535.0
    assert meta["DATASEC"] == "[17:4112,9:2168]"   # 4096x2160 crop at (16, 8)
    assert meta["INSTRUME"] == "Blackmagic Pocket Cinema Camera 4K"
    assert meta["ROWORDER"] == "TOP-DOWN"
    assert meta["NSATUR"] == int((visible >= 65535).sum())
    # Black level recorded, not subtracted; subtract_black removes it per position.
    black = read_frame(path, subtract_black=True, gain=1.0, read_noise=3.0)
    assert_array_equal(black.data, visible.astype(np.float32) - 512.0)
    assert black.meta["BLKSUB"] is True
    # The pedestal carries no photon noise.
    expected = np.sqrt(np.maximum(visible[:4, :4] - 512.0, 0) + 9.0)
    assert_allclose(black.uncertainty.array[:4, :4], expected, rtol=1e-6)


def test_esrf_id16b_single_frames(real_data):
    import fabio

    expected_type = {"dark.edf": "dark", "flat.edf": "flat", "data.edf": "unknown"}
    for name, ftype in expected_type.items():
        path = real_data / "esrf-id16b" / name
        ccd = read_frame(path)
        assert ccd.shape == (540, 640) and ccd.data.dtype == np.float32
        assert_array_equal(ccd.data, fabio.open(str(path)).data.astype(np.float32))
        assert ccd.meta["FRAMETYP"] == ftype
        assert ccd.meta["FTSOURCE"] == ("none" if ftype == "unknown" else "filename")


def test_esrf_id16b_six_frames(real_data):
    import fabio

    path = real_data / "esrf-id16b" / "ID16B_diatomee.edf"
    frames = list(iter_frames(path))
    assert len(frames) == 6
    with fabio.open(str(path)) as edf:
        for i, ccd in enumerate(frames):
            assert ccd.shape == (540, 640) and ccd.data.dtype == np.float32
            assert ccd.meta["EXPTIME"] == 0.5 and ccd.meta["EXPSRC"] == "count_time"
            assert ccd.meta["EDFFRAME"] == i
            assert_array_equal(ccd.data, edf.getframe(i).data.astype(np.float32))
    # The frames differ (a scan), and frame= picks one.
    assert len({float(f.data.mean()) for f in frames}) == 6
    assert_array_equal(read_frame(path, frame=4).data, frames[4].data)


def test_medipix(real_data):
    ccd = read_frame(real_data / "esrf-misc" / "medipix.edf")
    assert ccd.shape == (256, 256) and ccd.data.dtype == np.float32
    assert ccd.meta["EXPTIME"] == 1.0 and ccd.meta["EXPSRC"] == "count_time"
    assert "NGAPPIX" not in ccd.meta                 # unsigned data: no markers


def test_pilatus_gaps_are_masked(real_data):
    import fabio

    path = real_data / "esrf-misc" / "Pilatus1M.edf"
    ccd = read_frame(path)
    raw = fabio.open(str(path)).data
    assert ccd.shape == (1043, 981) and ccd.data.dtype == np.float32
    assert ccd.meta["EXPTIME"] == 20.0
    # -1 marks the module gaps, -2 bad pixels: counted independently here.
    assert int((raw == -1).sum()) == 73533 and int((raw == -2).sum()) == 45
    assert ccd.meta["NGAPPIX"] == 73578
    assert_array_equal(ccd.mask, raw < 0)
    # Whole rows of the horizontal module gaps are masked.
    assert ccd.mask[195:212].all(axis=1).sum() >= 17


@pytest.mark.parametrize(("name", "shape"), [("dot_pattern_01.jpg", (2160, 2560)),
                                             ("dot_pattern_05.jpg", (800, 1280))])
def test_dot_grid_jpegs(real_data, name, shape):
    ccd = read_frame(real_data / "dot-grids" / name)
    assert ccd.shape == shape and ccd.data.dtype == np.float32
    assert 0 <= ccd.data.min() and ccd.data.max() <= 255


def test_raw_exif_becomes_normalised_keywords(real_data, monkeypatch):
    """The DNG has no EXIF exposure; the EXIF a camera writes is mapped as documented."""
    from calframe.io import _raw

    exif = {"Image Make": "Canon", "Image Model": "Canon EOS 6D",
            "EXIF ExposureTime": "1/250", "EXIF ISOSpeedRatings": "1600",
            "EXIF DateTimeOriginal": "2023:08:12 23:01:02",
            "MakerNote CameraTemperature": "31 C"}
    monkeypatch.setattr(_raw, "_exif", lambda _path: exif)
    ccd = read_frame(real_data / "camera-raw" / "Blackmagic.dng")
    meta = ccd.meta
    assert meta["INSTRUME"] == "Canon EOS 6D"
    assert_allclose(meta["EXPTIME"], 0.004, rtol=1e-12)
    assert meta["EXPSRC"] == "EXIF ExposureTime"
    assert meta["ISOSPEED"] == 1600
    assert meta["DATE-OBS"] == "2023-08-12T23:01:02"
    assert meta.comments["DATE-OBS"] == "camera clock, time zone unknown"
    assert meta["CCD-TEMP"] == 31.0 and meta["TEMPSRC"] == "MakerNote CameraTemperature"
    assert get_provenance(ccd).inputs[0].exptime == 0.004
