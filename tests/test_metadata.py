"""Keyword normalisation: frame types, exposure, temperature, gain, CFA keywords."""

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from calframe import metadata
from calframe.errors import MissingMetadataError


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("IMAGETYP", "Bias Frame", "bias"),      # MaxIm
    ("IMAGETYP", "Dark Frame", "dark"),
    ("IMAGETYP", "Flat Field", "flat"),
    ("IMAGETYP", "Light Frame", "light"),
    ("IMAGETYP", "zero", "bias"),            # IRAF
    ("IMAGETYP", "object", "light"),
    ("IMAGETYP", "DARKFLAT", "darkflat"),    # NINA
    ("IMAGETYP", "LIGHT", "light"),
    ("IMAGETYP", "BIAS", "bias"),
    ("FRAMETYP", "flat", "flat"),
    ("OBSTYPE", "ZERO", "bias"),
    ("IMAGETYP", "Flat_Dark", "darkflat"),
    ("IMAGETYP", "offset", "bias"),
])
def test_frame_type_from_header(key, value, expected):
    assert metadata.frame_type(fits.Header({key: value})) == (expected, "header")


def test_frame_type_header_wins_over_names_and_unknown_values_fall_through():
    header = fits.Header({"IMAGETYP": "Dark Frame"})
    assert metadata.frame_type(header, path="flats/flat_001.fits") == ("dark", "header")
    # An unrecognised IMAGETYP ('focus') does not stop the search.
    header = fits.Header({"IMAGETYP": "focus"})
    assert metadata.frame_type(header, path="Flats/img.fits") == ("flat", "folder")


@pytest.mark.parametrize(("path", "expected"), [
    ("night/Darks/IMG_0001.CR2", ("dark", "folder")),
    ("night/bias/IMG_0001.CR2", ("bias", "folder")),
    ("night/offset/IMG_0001.CR2", ("bias", "folder")),
    ("night/flats/IMG_0001.CR2", ("flat", "folder")),
    ("night/lights/IMG_0001.CR2", ("light", "folder")),
    ("night/DarkFlats/IMG_0001.CR2", ("darkflat", "folder")),
    ("night/Darks/120s/IMG_0001.CR2", ("dark", "folder")),
    ("flat_001.fits", ("flat", "filename")),
    ("bias-0003.fits", ("bias", "filename")),
    ("offset_12.fit", ("bias", "filename")),
    ("M31_dark_300s_001.fits", ("dark", "filename")),
    ("IMG_0001.CR2", ("unknown", "none")),
    ("night/Flat_Darks/IMG_0001.CR2", ("darkflat", "folder")),
    ("Lightroom/exports/IMG_0001.CR2", ("unknown", "none")),
    ("flatiron/img.fits", ("unknown", "none")),
    ("dark_flat_003.fits", ("darkflat", "filename")),
    ("DarkBefore-001D120s.fit", ("dark", "filename")),
])
def test_frame_type_from_folder_and_file_names(path, expected):
    assert metadata.frame_type(fits.Header(), path=path) == expected


def test_frame_type_from_exif_description():
    assert metadata.frame_type({"EXIF ImageDescription": "dark"}) == ("dark", "exif")


@pytest.mark.parametrize(("cards", "expected"), [
    ({"EXPTIME": 120.0}, (120.0, "EXPTIME")),
    ({"EXPOSURE": 30}, (30.0, "EXPOSURE")),
    ({"EXPOINUS": 1500}, (0.0015, "EXPOINUS")),
    ({"count_time": "0.5"}, (0.5, "count_time")),
    ({"exposure_time": "2"}, (2.0, "exposure_time")),
    ({"EXIF ExposureTime": "1/250"}, (0.004, "EXIF ExposureTime")),
    ({"EXIF ExposureTime": "30"}, (30.0, "EXIF ExposureTime")),
    ({}, (None, "none")),
])
def test_exposure_time_aliases(cards, expected):
    value, source = metadata.exposure_time(cards)
    assert source == expected[1]
    if expected[0] is None:
        assert value is None
    else:
        assert_allclose(value, expected[0], rtol=1e-12)


def test_exposure_from_fits_hierarch_edf_key():
    header = fits.Header()
    header["HIERARCH count_time"] = 0.5
    assert metadata.exposure_time(header) == (0.5, "count_time")


def test_require_exposure_raises_with_file_and_fix():
    with pytest.raises(MissingMetadataError, match=r"frame\.fits: no exposure time found.*"
                       r"write EXPTIME"):
        metadata.require_exposure(fits.Header(), path="frame.fits")
    assert metadata.require_exposure(fits.Header({"EXPTIME": 2.5})) == 2.5


def test_temperature_aliases_and_kelvin():
    assert metadata.temperature(fits.Header({"CCD-TEMP": -10.5})) == (-10.5, "CCD-TEMP")
    assert metadata.temperature(fits.Header({"CCD_TEMP": -5.0})) == (-5.0, "CCD_TEMP")
    assert metadata.temperature(fits.Header({"DET-TEMP": 3.0})) == (3.0, "DET-TEMP")
    value, source = metadata.temperature(fits.Header({"CCD-TEMP": 173.15}))
    assert_allclose(value, -100.0, atol=1e-9)
    assert source == "CCD-TEMP (K)"
    assert metadata.temperature(fits.Header()) == (None, "none")


def test_gain_rule():
    assert metadata.gain(fits.Header({"EGAIN": 2.55, "GAIN": 139})) == (2.55, "EGAIN")
    assert metadata.gain(fits.Header([("GAIN", 1.9, "e-/ADU")])) == (1.9, "GAIN")
    assert metadata.gain(fits.Header([("GAIN", 4, "electrons/ADU")])) == (4.0, "GAIN")
    value, source = metadata.gain(fits.Header([("GAIN", 0.25, "ADU/e-")]))
    assert_allclose(value, 4.0, rtol=1e-12)
    assert source == "GAIN (inverted)"
    assert metadata.gain(fits.Header({"GAIN": 1.45})) == (1.45, "GAIN")
    # An integer without a unit is a camera setting (ZWO/QHY style), not e-/ADU.
    assert metadata.gain(fits.Header({"GAIN": 120})) == (None, "none")
    assert metadata.gain(fits.Header({"GAIN": 0})) == (None, "none")


def test_read_noise_units():
    assert metadata.read_noise(fits.Header({"RDNOISE": 5.0})) == (5.0, "RDNOISE")
    assert metadata.read_noise(fits.Header({"READNOIS": 7.5})) == (7.5, "READNOIS")
    header = fits.Header([("RDNOISE", 3.0, "read noise [ADU]")])
    assert metadata.read_noise(header) == (None, "none")
    value, source = metadata.read_noise(header, gain_e_per_adu=2.0)
    assert (value, source) == (6.0, "RDNOISE (ADU)")


def test_bayer_iso_roworder_date():
    header = fits.Header({"COLORTYP": "GRBG", "BAYOFFX": 1, "BAYOFFY": 1,
                          "ROWORDER": "BOTTOM-UP", "ISO": 800})
    assert metadata.bayer_pattern(header) == ("GRBG", 1, 1)
    assert metadata.row_order(header) == "BOTTOM-UP"
    assert metadata.iso_speed(header) == 800.0
    assert metadata.bayer_pattern(fits.Header({"BAYERPAT": "XYZ"})) == (None, 0, 0)
    assert metadata.date_obs({"EXIF DateTimeOriginal": "2024:01:31 22:10:05"}) == \
        "2024-01-31T22:10:05"


def test_normalize_header_records_sources_and_keeps_original_cards():
    header = fits.Header([("IMAGETYP", "Flat Field"), ("EXPOINUS", 250000),
                          ("CCD_TEMP", -15.0), ("GAIN", 0.5, "ADU/e-"), ("RDNOISE", 3.0),
                          ("COLORTYP", "RGGB"), ("ISO", 400), ("OBJECT", "M42")])
    out = metadata.normalize_header(header, path="anything/dark_01.fits")
    assert out["FRAMETYP"] == "flat" and out["FTSOURCE"] == "header"
    assert_allclose(out["EXPTIME"], 0.25, rtol=1e-12)
    assert out["EXPSRC"] == "EXPOINUS"
    assert out["CCD-TEMP"] == -15.0 and out["TEMPSRC"] == "CCD_TEMP"
    assert_allclose(out["EGAIN"], 2.0, rtol=1e-12)
    assert out["RDNOISE"] == 3.0
    assert out["BAYERPAT"] == "RGGB" and out["XBAYROFF"] == 0 and out["YBAYROFF"] == 0
    assert out["ISOSPEED"] == 400
    assert out["OBJECT"] == "M42" and out["GAIN"] == 0.5
    assert "FRAMETYP" not in header  # the input is not modified


def test_normalize_header_leaves_unknowns_out_and_user_type():
    out = metadata.normalize_header(fits.Header(), path="x.fits")
    assert out["FRAMETYP"] == "unknown" and out["FTSOURCE"] == "none"
    assert "EXPTIME" not in out and out["EXPSRC"] == "none"
    assert "CCD-TEMP" not in out and "EGAIN" not in out
    out = metadata.normalize_header(fits.Header({"IMAGETYP": "LIGHT"}), frametype="Bias")
    assert (out["FRAMETYP"], out["FTSOURCE"]) == ("bias", "user")
    with pytest.raises(ValueError, match=r"frametype='science frame' is not a frame type"):
        metadata.normalize_header(fits.Header(), frametype="science frame")


def test_mapping_to_header_keeps_what_fits_and_drops_the_rest():
    mapping = {"Dim_1": "640", "count_time": "0.5", "EXIF ExposureTime": "1/8",
               "motor_pos": "1 2 3 " * 30, "huge": "x" * 5000, "": "empty key",
               "bad\x00char": "v\x01"}
    header = metadata.mapping_to_header(mapping)
    assert header["DIM_1"] == "640"
    assert header["count_time"] == "0.5"
    assert header["EXIF ExposureTime"] == "1/8"
    assert header["motor_pos"].startswith("1 2 3")
    assert "huge" not in header
    assert header["bad_char"] == "v?"


def test_frame_type_spelling_is_case_and_separator_insensitive():
    rng = np.random.default_rng(15)
    words = sorted({w for ws in metadata._TYPE_WORDS.values() for w in ws})
    for word in words:
        expected = metadata.parse_frame_type(word)
        assert expected in metadata.FRAME_TYPES
        for _ in range(5):
            upper = rng.random(len(word)) < 0.5
            spelled = "".join(c.upper() if u else c for c, u in zip(word, upper, strict=True))
            spelled = spelled.replace(" ", str(rng.choice([" ", "_", "-", "  "])))
            assert metadata.parse_frame_type(f" {spelled} ") == expected, spelled


def test_user_frame_type_survives_a_write_and_read():
    first = metadata.normalize_header(fits.Header({"IMAGETYP": "LIGHT"}), frametype="flat")
    again = metadata.normalize_header(first)       # e.g. read back from an output file
    assert (again["FRAMETYP"], again["FTSOURCE"]) == ("flat", "user")
    assert again["IMAGETYP"] == "LIGHT"            # the original card is kept


def test_exif_capture_time_to_utc_when_the_zone_is_known():
    tags = {"EXIF DateTimeOriginal": "2024:03:10 22:15:00", "EXIF OffsetTimeOriginal": "-05:00"}
    out = metadata.normalize_header(tags)
    assert out["DATE-OBS"] == "2024-03-11T03:15:00"
    assert out.comments["DATE-OBS"] == "start of the exposure"
