"""read_frame / iter_frames on synthetic files written here with a known content."""

import dataclasses
import inspect
import json
import warnings

import fabio.edfimage
import numpy as np
import pytest
import rawpy
import tifffile
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

import calframe._detector as detector
from calframe import get_provenance, iter_frames, read_frame
from calframe._detector import detector_sigma
from calframe.errors import (
    FrameReadError,
    MissingMetadataError,
    UncertaintyUnknownWarning,
    UnsupportedFormatError,
)
from calframe.io import detect_format, frame_count, write_frame
from calframe.io._kernels import mask_levels, scaled_to_float
from calframe.io._read import ReadOptions

NOISE = {"gain": 2.0, "read_noise": 4.0}


@pytest.fixture(autouse=True)
def _no_once_state():
    """Each test starts as if no 'uncertainty unknown' warning had been given."""
    detector._reset_warning()
    yield
    detector._reset_warning()


def _values(shape=(20, 30), seed=1, low=0, high=60000):
    return np.random.default_rng(seed).integers(low, high, size=shape)


# ---------------------------------------------------------------- FITS round trips

def test_uint16_bzero_round_trip(tmp_path):
    truth = _values().astype(np.uint16)
    path = tmp_path / "light.fits"
    fits.PrimaryHDU(truth).writeto(path)
    assert fits.getheader(path)["BZERO"] == 32768
    ccd = read_frame(path, **NOISE)
    assert ccd.data.dtype == np.float32
    assert_array_equal(ccd.data, truth.astype(np.float32))
    assert ccd.unit == u.adu
    assert "BZERO" not in ccd.meta and "BSCALE" not in ccd.meta
    assert ccd.meta["FRAMETYP"] == "light" and ccd.meta["FTSOURCE"] == "filename"


def test_float64_on_request(tmp_path):
    truth = np.random.default_rng(2).normal(100, 5, (8, 9))
    path = tmp_path / "f.fits"
    fits.PrimaryHDU(truth).writeto(path)
    ccd = read_frame(path, dtype=np.float64, **NOISE)
    assert ccd.data.dtype == np.float64
    assert_array_equal(ccd.data, truth)


def test_float32_and_non_finite_masked(tmp_path):
    truth = np.random.default_rng(3).normal(1000, 10, (10, 12)).astype(np.float32)
    truth[2, 3] = np.nan
    truth[5, 5] = np.inf
    path = tmp_path / "f32.fits"
    fits.PrimaryHDU(truth).writeto(path)
    ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, truth)
    assert ccd.mask[2, 3] and ccd.mask[5, 5] and ccd.mask.sum() == 2
    assert ccd.meta["NNONFIN"] == 2


def test_tile_compressed_is_lossless_for_integers(tmp_path):
    truth = _values(seed=4).astype(np.uint16)
    path = tmp_path / "c.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(truth, compression_type="RICE_1")]
                 ).writeto(path)
    ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, truth.astype(np.float32))
    assert get_provenance(ccd).steps[-1].parameters["hdu"] == 1


def test_big_endian_int16_with_negative_values(tmp_path):
    truth = _values(seed=5, low=-30000, high=30000).astype(">i2")
    path = tmp_path / "be.fits"
    fits.PrimaryHDU(truth).writeto(path)
    ccd = read_frame(path, **NOISE)
    assert ccd.data.dtype == np.dtype(np.float32)  # native order
    assert_array_equal(ccd.data, truth.astype(np.float32))


def test_bscale_bzero_and_blank(tmp_path):
    stored = _values(seed=6, low=-1000, high=1000).astype(np.int16)
    stored[1, 1] = -32768
    hdu = fits.PrimaryHDU(stored)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 100.0
    hdu.header["BLANK"] = -32768
    path = tmp_path / "scaled.fits"
    # Write the stored integers as they are (no rescaling by astropy).
    fits.HDUList([hdu]).writeto(path, output_verify="silentfix")
    with fits.open(path, do_not_scale_image_data=True) as check:
        assert_array_equal(check[0].data, stored)
    ccd = read_frame(path, **NOISE)
    good = np.ones(stored.shape, bool)
    good[1, 1] = False
    assert_allclose(ccd.data[good], stored[good] * 0.5 + 100.0, rtol=0, atol=0)
    assert ccd.mask[1, 1] and ccd.meta["NBLANK"] == 1


def test_multi_hdu_default_and_hdu_choice(tmp_path):
    a = np.full((4, 5), 1.0, np.float32)
    b = np.full((6, 7), 2.0, np.float32)
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=[1.0])])
    path = tmp_path / "multi.fits"
    fits.HDUList([fits.PrimaryHDU(), table, fits.ImageHDU(a, name="SCI"),
                  fits.ImageHDU(b, name="OTHER")]).writeto(path)
    assert read_frame(path, **NOISE).shape == (4, 5)          # first image HDU
    assert read_frame(path, hdu=3, **NOISE).shape == (6, 7)
    assert read_frame(path, hdu="OTHER", **NOISE).shape == (6, 7)
    assert frame_count(path) == 2
    assert [f.shape for f in iter_frames(path, **NOISE)] == [(4, 5), (6, 7)]
    with pytest.raises(FrameReadError, match=r"multi\.fits: hdu='NOPE' not found"):
        read_frame(path, hdu="NOPE")
    with pytest.raises(UnsupportedFormatError, match=r"hdu=1 is not an image"):
        read_frame(path, hdu=1)
    with pytest.raises(ValueError, match=r"frame=2: FITS frames are chosen with hdu="):
        read_frame(path, frame=2)
    with pytest.raises(ValueError, match=r"dtype=int16: frames are read as float32 or float64"):
        read_frame(path, dtype=np.int16)
    with pytest.raises(TypeError, match=r"iter_frames\(\) got hdu="):
        next(iter_frames(path, hdu=1))


def test_reads_back_a_ccddata_mef_with_uncertainty_and_mask(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    sigma = np.full((3, 4), 0.25, np.float32)
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = True
    ccd = CCDData(data, unit="electron", uncertainty=StdDevUncertainty(sigma), mask=mask,
                  meta={"IMAGETYP": "flat", "EXPTIME": 2.0})
    path = tmp_path / "master.fits"
    ccd.write(path, hdu_mask="MASK", hdu_uncertainty="UNCERT")
    back = read_frame(path)
    assert back.unit == u.electron
    assert_array_equal(back.data, data)
    assert_array_equal(back.uncertainty.array, sigma)
    assert isinstance(back.uncertainty, StdDevUncertainty)
    assert_array_equal(back.mask, mask)
    assert back.meta["UNCSRC"] == "file" and back.meta["FRAMETYP"] == "flat"


# ---------------------------------------------------------------- masks

def test_saturation_full_scale_header_and_argument(tmp_path):
    truth = np.full((5, 5), 1000, np.uint16)
    truth[0, 0] = 65535
    truth[1, 1] = 50000
    path = tmp_path / "s.fits"
    fits.PrimaryHDU(truth).writeto(path)
    ccd = read_frame(path, **NOISE)
    assert ccd.mask.sum() == 1 and ccd.mask[0, 0] and ccd.meta["NSATUR"] == 1
    ccd = read_frame(path, saturation=40000, **NOISE)
    assert ccd.mask.sum() == 2 and ccd.mask[1, 1]
    header = fits.Header({"SATURATE": 45000})
    path2 = tmp_path / "s2.fits"
    fits.PrimaryHDU(truth, header=header).writeto(path2)
    ccd = read_frame(path2, **NOISE)
    assert ccd.mask.sum() == 2 and ccd.meta["SATURATE"] == 45000


def test_bad_pixel_mask_array_and_path(tmp_path):
    path = tmp_path / "x.fits"
    fits.PrimaryHDU(np.full((4, 6), 10, np.float32)).writeto(path)
    bpm = np.zeros((4, 6), np.uint8)
    bpm[2, 3] = 1
    ccd = read_frame(path, bad_pixel_mask=bpm, **NOISE)
    assert_array_equal(ccd.mask, bpm.astype(bool))
    assert ccd.meta["NBADPIX"] == 1
    bpm_path = tmp_path / "bpm.fits"
    fits.PrimaryHDU(bpm).writeto(bpm_path)
    ccd = read_frame(path, bad_pixel_mask=bpm_path, **NOISE)
    assert_array_equal(ccd.mask, bpm.astype(bool))
    assert get_provenance(ccd).steps[-1].parameters["bad_pixel_mask"] == str(bpm_path)
    with pytest.raises(ValueError, match=r"bad_pixel_mask has shape \(3, 3\) but .*x\.fits"):
        read_frame(path, bad_pixel_mask=np.zeros((3, 3), bool), **NOISE)


# ---------------------------------------------------------------- noise model

def test_uncertainty_formula_and_sources(tmp_path):
    data = np.array([[100.0, 1100.0], [5100.0, 50.0]], np.float32)
    path = tmp_path / "n.fits"
    fits.PrimaryHDU(data, header=fits.Header([("GAIN", 2.0, "e-/ADU"),
                                               ("RDNOISE", 6.0, "e-")])).writeto(path)
    ccd = read_frame(path)
    expected = np.sqrt(np.maximum(data, 0) / 2.0 + (6.0 / 2.0) ** 2)
    assert_allclose(ccd.uncertainty.array, expected, rtol=1e-6)
    assert ccd.meta["EGAIN"] == 2.0 and ccd.meta["UNCSRC"] == "detector model"
    # Arguments override the header, and a pedestal carries no photon noise.
    ccd = read_frame(path, gain=4.0, read_noise=2.0, pedestal=100.0)
    expected = np.sqrt(np.maximum(data - 100.0, 0) / 4.0 + (2.0 / 4.0) ** 2)
    assert_allclose(ccd.uncertainty.array, expected, rtol=1e-6)
    assert ccd.meta["EGAIN"] == 4.0 and ccd.meta["RDNOISE"] == 2.0


@pytest.mark.slow
def test_detector_model_uncertainty_matches_the_scatter(tmp_path):
    """Pulls of simulated frames about the truth have unit standard deviation."""
    gain, read_noise, pedestal = 1.7, 5.0, 500.0
    truth_e = np.linspace(0, 20000, 64 * 64).reshape(64, 64)
    pulls = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        electrons = rng.poisson(truth_e) + rng.normal(0, read_noise, truth_e.shape)
        adu = electrons / gain + pedestal
        path = tmp_path / f"sim{seed}.fits"
        fits.PrimaryHDU(adu.astype(np.float32)).writeto(path)
        ccd = read_frame(path, gain=gain, read_noise=read_noise, pedestal=pedestal)
        pulls.append((ccd.data - (truth_e / gain + pedestal)) / ccd.uncertainty.array)
    pulls = np.concatenate([p.ravel() for p in pulls])
    # 81920 pulls: the standard error of their std is about 0.0025.
    assert_allclose(np.std(pulls), 1.0, atol=0.01)
    assert_allclose(np.mean(pulls), 0.0, atol=0.01)


def test_unknown_uncertainty_warns_once(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((3, 3), np.float32)).writeto(path)
    with pytest.warns(UncertaintyUnknownWarning, match=r"plain\.fits: gain and read noise "
                      r"unknown.*pass gain= and read_noise="):
        ccd = read_frame(path)
    assert ccd.uncertainty is None and ccd.meta["UNCSRC"] == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_frame(path).uncertainty is None   # no second warning


# ---------------------------------------------------------------- provenance and metadata

def test_provenance_input_row_and_read_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Darks").mkdir()
    header = fits.Header({"EXPTIME": 30.0, "DATE-OBS": "2024-01-02T03:04:05"})
    fits.PrimaryHDU(np.zeros((4, 5), np.uint16), header=header).writeto("Darks/a.fits")
    ccd = read_frame("Darks/a.fits", saturation=60000, **NOISE)
    prov = get_provenance(ccd)
    assert len(prov.inputs) == 1
    record = prov.inputs[0]
    assert record.path == "Darks/a.fits"     # as given, not made absolute
    assert (record.role, record.frametype, record.exptime) == ("dark", "dark", 30.0)
    assert record.date_obs == "2024-01-02T03:04:05" and record.shape == (4, 5)
    assert len(record.sha256) == 64
    step = prov.steps[-1]
    assert step.step == "read"
    params = json.loads(step.parameters_json())
    assert params == {"file": record.sha256[:16],   # which file: its digest, as the table
                      "format": "fits", "hdu": 0, "unit": "adu", "dtype": "float32",
                      "uncertainty": "detector model", "subtract_black": False,
                      "gain": 2.0, "read_noise": 4.0, "saturation": 60000}
    assert ccd.meta["FTSOURCE"] == "folder"


def test_user_frametype_and_require_exposure(tmp_path):
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(path)
    ccd = read_frame(path, frametype="flat", **NOISE)
    assert (ccd.meta["FRAMETYP"], ccd.meta["FTSOURCE"]) == ("flat", "user")
    with pytest.raises(MissingMetadataError, match=r"img\.fits: no exposure time found"):
        read_frame(path, require_exposure=True, **NOISE)


def test_unit_from_bunit_argument_and_bad_bunit(tmp_path):
    path = tmp_path / "b.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32), header=fits.Header({"BUNIT": "ADU"})
                    ).writeto(path)
    assert read_frame(path, **NOISE).unit == u.adu
    assert read_frame(path, unit="electron", read_noise=3.0).unit == u.electron
    bad = tmp_path / "bad.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32), header=fits.Header({"BUNIT": "furlongs"})
                    ).writeto(bad)
    with pytest.raises(FrameReadError, match=r"unit 'furlongs' \(BUNIT\) is not understood"):
        read_frame(bad, **NOISE)


def test_subtract_black_without_black_level_raises(tmp_path):
    path = tmp_path / "k.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(path)
    with pytest.raises(MissingMetadataError, match=r"subtract_black=True but no black level"):
        read_frame(path, subtract_black=True, **NOISE)
    ccd = read_frame(path, subtract_black=True, pedestal=10.0, **NOISE)
    assert_array_equal(ccd.data, -10.0)
    assert ccd.meta["BLKSUB"] is True


# ---------------------------------------------------------------- errors

def test_empty_file(tmp_path):
    path = tmp_path / "empty.fits"
    path.write_bytes(b"")
    with pytest.raises(FrameReadError, match=r"empty\.fits: the file is empty \(0 bytes\); "
                       r"copy or download it again"):
        read_frame(path)


def test_text_file_named_fits(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("observing log\n")
    with pytest.raises(FrameReadError, match=r"notes\.fits: named as FITS but does not start "
                       r"with 'SIMPLE  ='.*it is not a FITS file"):
        read_frame(path)


@pytest.mark.parametrize("keep", [2880 + 5000, 1000])
def test_truncated_fits(tmp_path, keep):
    full = tmp_path / "full.fits"
    fits.PrimaryHDU(np.zeros((100, 100), np.uint16)).writeto(full)
    path = tmp_path / "cut.fits"
    path.write_bytes(full.read_bytes()[:keep])
    with pytest.raises(FrameReadError, match=r"cut\.fits: .*(truncated|not a readable FITS)"):
        read_frame(path)


def test_fits_without_image(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0])])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(UnsupportedFormatError, match=r"table\.fits: no image HDU.*"
                       r"BinTableHDU"):
        read_frame(path)


def test_unsupported_file_kind(tmp_path):
    path = tmp_path / "photo.xyz"
    path.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(UnsupportedFormatError, match=r"photo\.xyz: not a format calframe "
                       r"reads.*calframe reads FITS, camera RAW"):
        read_frame(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.fits: no such file"):
        read_frame(tmp_path / "missing.fits")
    with pytest.raises(IsADirectoryError, match=r"is a folder"):
        read_frame(tmp_path)


def test_detect_format_by_content(tmp_path):
    fits_path = tmp_path / "no_suffix"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(fits_path, output_verify="ignore")
    assert detect_format(fits_path) == "fits"
    mef = tmp_path / "master.mef"          # also a RAW ending (Mamiya)
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(mef, output_verify="ignore")
    assert detect_format(mef) == "fits"


# ---------------------------------------------------------------- EDF

def _write_edf(path, frames, headers):
    image = fabio.edfimage.EdfImage(data=frames[0], header=headers[0])
    for data, header in zip(frames[1:], headers[1:], strict=True):
        image.append_frame(data=data, header=header)
    image.write(str(path))


def test_edf_single_frame_gaps_and_count_time(tmp_path):
    data = _values((12, 10), seed=7, low=0, high=5000).astype(np.int32)
    data[:, 4] = -1        # a detector gap column
    data[3, 7] = -2        # a bad pixel
    path = tmp_path / "pilatus_like.edf"
    _write_edf(path, [data], [{"count_time": "20", "title": "CCD Image"}])
    ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, data.astype(np.float32))
    assert ccd.mask.sum() == 13 and ccd.meta["NGAPPIX"] == 13
    assert ccd.meta["EXPTIME"] == 20.0 and ccd.meta["EXPSRC"] == "count_time"
    assert ccd.meta["ROWORDER"] == "TOP-DOWN"


def test_edf_multi_frame(tmp_path):
    frames = [np.full((6, 8), 100 * (i + 1), np.uint16) for i in range(3)]
    headers = [{"count_time": str(0.5 * (i + 1))} for i in range(3)]
    path = tmp_path / "scan.edf"
    _write_edf(path, frames, headers)
    assert frame_count(path) == 3
    read = list(iter_frames(path, **NOISE))
    assert [float(f.data[0, 0]) for f in read] == [100.0, 200.0, 300.0]
    assert [f.meta["EXPTIME"] for f in read] == [0.5, 1.0, 1.5]
    assert read_frame(path, frame=2, **NOISE).meta["EDFFRAME"] == 2
    with pytest.raises(ValueError, match=r"frame=3: .*scan\.edf has 3 frame"):
        read_frame(path, frame=3, **NOISE)
    with pytest.raises(ValueError, match=r"hdu=1 applies to FITS only"):
        read_frame(path, hdu=1, **NOISE)


def test_iter_frames_reads_each_edf_frame_as_read_frame_does(tmp_path):
    # iter_frames decodes an EDF once and finishes each frame with the same
    # settings as read_frame: the frames must be identical, warnings included
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 4000, (6, 8)).astype(np.uint16) for _ in range(3)]
    frames[1][2, 3] = 65535
    path = tmp_path / "scan.edf"
    _write_edf(path, frames, [{"count_time": "1"}] * 3)
    bpm = np.zeros((6, 8), bool)
    bpm[0, :2] = True
    options = {"gain": 1.5, "read_noise": 3.0, "saturation": 60000.0, "pedestal": 7.0,
               "subtract_black": True, "bad_pixel_mask": bpm, "frametype": "flat",
               "dtype": np.float64}
    for index, ccd in enumerate(iter_frames(path, **options)):
        one = read_frame(path, frame=index, **options)
        assert_array_equal(ccd.data, one.data)
        assert ccd.data.dtype == np.float64
        assert_array_equal(ccd.uncertainty.array, one.uncertainty.array)
        assert_array_equal(ccd.mask, one.mask)
        assert ccd.meta.tostring() == one.meta.tostring()
        assert_allclose(ccd.data, frames[index] - 7.0)
    with pytest.raises(ValueError, match="dtype=int16: frames are read as float32 or float64"):
        next(iter_frames(path, dtype=np.int16))
    with pytest.raises(TypeError, match="bogus"):
        next(iter_frames(path, bogus=1))


def test_read_options_are_read_frame_keywords():
    # one description of the read settings: ReadOptions has read_frame's
    # keywords (other than which frame) with the same defaults, and is frozen
    params = inspect.signature(read_frame).parameters
    fields = {f.name: f.default for f in dataclasses.fields(ReadOptions)}
    assert set(fields) == set(params) - {"path", "hdu", "frame", "dataset"}  # which frame
    for name, default in fields.items():
        assert default is params[name].default, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        ReadOptions().gain = 2.0


def test_unknown_uncertainty_warning_names_the_caller(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((3, 3), np.float32)).writeto(path)
    edf = tmp_path / "two.edf"
    _write_edf(edf, [np.ones((3, 3), np.uint16)] * 2, [{}] * 2)
    for read in (lambda: read_frame(path), lambda: list(iter_frames(edf))):
        detector._reset_warning()
        with pytest.warns(UncertaintyUnknownWarning) as record:
            read()
        assert [w.filename for w in record] == [__file__]


# ---------------------------------------------------------------- TIFF

def test_tiff_mono_stack_and_rgb(tmp_path):
    mono = _values((9, 11), seed=8).astype(np.uint16)
    path = tmp_path / "mono.tif"
    tifffile.imwrite(path, mono)
    ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, mono.astype(np.float32))
    assert ccd.meta["ROWORDER"] == "TOP-DOWN"

    stack = np.stack([mono, mono + 1, mono + 2])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    assert frame_count(path) == 3
    assert_array_equal(read_frame(path, frame=2, **NOISE).data, (mono + 2).astype(np.float32))
    frames = list(iter_frames(path, **NOISE))
    assert [f.meta["TIFFPAGE"] for f in frames] == [0, 1, 2]
    assert_array_equal(frames[1].data, (mono + 1).astype(np.float32))

    rgb = np.random.default_rng(9).integers(0, 255, (7, 5, 3)).astype(np.uint8)
    path = tmp_path / "rgb.tiff"
    tifffile.imwrite(path, rgb, photometric="rgb")
    ccd = read_frame(path, **NOISE)
    assert ccd.shape == (3, 7, 5)
    assert_array_equal(ccd.data[1], rgb[..., 1].astype(np.float32))
    assert ccd.meta["COLORSP"] == "RGB"
    assert ccd.mask.sum() == (rgb == 255).sum()   # 8-bit full scale is saturated


# ---------------------------------------------------------------- camera RAW refusals

def test_raw_garbage_is_refused(tmp_path):
    path = tmp_path / "IMG_0001.CR2"
    path.write_bytes(b"not a raw file at all" * 10)
    with pytest.raises((UnsupportedFormatError, FrameReadError), match=r"IMG_0001\.CR2: "):
        read_frame(path)


class _FakeRaw:
    """Stands in for rawpy.RawPy to exercise the refusal rules."""

    def __init__(self, pattern, desc=b"RGBG", raw_type="Flat"):
        self.raw_pattern = pattern
        self.color_desc = desc
        self.raw_type = getattr(rawpy.RawType, raw_type)
        self.raw_colors_visible = np.tile(pattern, (3, 3)) if pattern is not None else None

    def close(self):
        pass


@pytest.mark.parametrize(("fake", "message"), [
    (_FakeRaw(np.arange(36, dtype=np.uint8).reshape(6, 6) % 3),
     r"not a 2x2 Bayer pattern \(LibRaw pattern \(6, 6\), e\.g\. Fuji X-Trans"),
    (_FakeRaw(None, raw_type="Stack"), r"already demosaiced or linear"),
    (_FakeRaw(np.array([[0, 1], [2, 3]], np.uint8), desc=b"CMYG"),
     r"CFA colours are 'CMYG', not a red/green/blue Bayer pattern"),
])
def test_non_bayer_raw_is_refused(tmp_path, monkeypatch, fake, message):
    monkeypatch.setattr(rawpy, "imread", lambda _path: fake)
    path = tmp_path / "DSCF0001.RAF"
    path.write_bytes(b"x")
    with pytest.raises(UnsupportedFormatError, match=r"DSCF0001\.RAF: .*" + message):
        read_frame(path)


def test_round_trip_through_write_frame_keeps_counts_and_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(10)
    data = rng.normal(500, 5, (6, 7)).astype(np.float32)
    fits.PrimaryHDU(data, header=fits.Header({"IMAGETYP": "Bias Frame"})).writeto("b1.fits")
    first = read_frame("b1.fits", **NOISE)
    first.ncombine = np.full((6, 7), 3, np.int16)
    first.rejected = np.zeros((6, 7), np.int16)
    first.mask[1, 2] = True
    write_frame(first, "out/master.fits")
    back = read_frame("out/master.fits")
    assert_array_equal(back.data, data)
    assert_array_equal(back.mask, first.mask)
    assert_allclose(back.uncertainty.array, first.uncertainty.array, rtol=1e-7)
    assert back.meta["UNCSRC"] == "file" and back.meta["FRAMETYP"] == "bias"
    with fits.open("out/master.fits") as hdul:
        assert "CHECKSUM" in hdul[0].header
    assert "CHECKSUM" not in back.meta and "DATASUM" not in back.meta   # describe bytes
    assert_array_equal(back.ncombine, 3)
    prov = get_provenance(back)
    assert [r.path for r in prov.inputs] == ["b1.fits", "out/master.fits"]
    assert [s.step for s in prov.steps][-1] == "read"
    assert sum(s.step == "read" for s in prov.steps) == 2


def test_png_grey_and_rgb(tmp_path):
    grey = np.random.default_rng(11).integers(0, 256, (9, 13)).astype(np.uint8)
    path = tmp_path / "grid.png"
    Image.fromarray(grey).save(path)
    ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, grey.astype(np.float32))
    assert ccd.meta["IMGMODE"] == "L"
    rgb = np.random.default_rng(12).integers(0, 200, (5, 4, 3)).astype(np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    ccd = read_frame(path, **NOISE)
    assert ccd.shape == (3, 5, 4)
    assert_array_equal(ccd.data[2], rgb[..., 2].astype(np.float32))


# ---------------------------------------------------------------- kernels

@pytest.mark.parametrize("shape", [(7, 9), (8, 10), (3, 5, 6)])
def test_noise_model_and_mask_kernels_against_numpy(shape):
    rng = np.random.default_rng(13)
    data = rng.uniform(-50, 3000, shape).astype(np.float32)
    data.flat[5] = np.nan
    tile = np.array([[100.0, 110.0], [120.0, 130.0]])
    full = np.tile(tile, (-(-shape[-2] // 2), -(-shape[-1] // 2)))[:shape[-2], :shape[-1]]
    sigma = detector_sigma(data, gain=2.5, read_noise=7.0, pedestal=tile)
    expected = np.sqrt(np.maximum(data - full, 0) / 2.5 + (7.0 / 2.5) ** 2)
    finite = np.isfinite(data)
    assert_allclose(sigma[finite], expected[finite], rtol=1e-6)
    assert sigma.dtype == np.float32
    mask = np.zeros(shape, bool)
    levels = full + 2000.0
    nsat, nonfinite = mask_levels(data, levels if len(shape) == 2 else tile + 2000.0,
                                  check_finite=True, mask=mask)
    sat = finite & (data >= (levels if len(shape) == 2 else full + 2000.0))
    assert nonfinite == 1 and nsat == int(sat.sum())
    assert_array_equal(mask, sat | ~finite)
    with pytest.raises(ValueError, match=r"level of shape \(3, 3, 3\) does not fit"):
        detector_sigma(data, gain=1.0, read_noise=1.0, pedestal=np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match=r"gain=0\.0: must be a positive number"):
        detector_sigma(data, gain=0.0, read_noise=1.0)
    with pytest.raises(ValueError, match=r"read_noise=-1\.0: must be >= 0"):
        detector_sigma(data, gain=1.0, read_noise=-1.0)


def test_bias_uncertainty_is_the_read_noise(tmp_path):
    data = np.array([[1000.0, 1010.0], [990.0, 1005.0]], np.float32)
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(data, header=fits.Header({"IMAGETYP": "zero"})).writeto(path)
    ccd = read_frame(path, gain=2.0, read_noise=6.0)
    assert_allclose(ccd.uncertainty.array, 3.0, rtol=1e-7)
    # An explicit pedestal is used as given.
    ccd = read_frame(path, gain=2.0, read_noise=6.0, pedestal=990.0)
    assert_allclose(ccd.uncertainty.array, np.sqrt((data - 990.0) / 2.0 + 9.0), rtol=1e-6)


@pytest.mark.parametrize("stored", [">i2", ">i4", "<i2", ">u1", ">f4", ">f8"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_to_float_matches_numpy(stored, dtype):
    rng = np.random.default_rng(14)
    info = np.iinfo(stored) if np.dtype(stored).kind in "iu" else None
    low, high = (info.min, info.max) if info else (-1e6, 1e6)
    raw = rng.uniform(low, high, (5, 7)).astype(stored)
    raw.flat[0] = low
    raw.flat[1] = high
    for bscale, bzero in ((1.0, 0.0), (1.0, 32768.0), (0.25, -3.5)):
        expected = (raw.astype(np.float64) * bscale + bzero).astype(dtype)
        got = scaled_to_float(raw, bscale, bzero, dtype)
        assert got.dtype == dtype and got.dtype.isnative
        assert_allclose(got, expected, rtol=1e-7 if dtype == np.float32 else 1e-15)


def test_uint32_bzero_fits(tmp_path):
    truth = np.array([[0, 1, 2**31], [2**32 - 1, 12345, 7]], np.uint32)
    path = tmp_path / "u32.fits"
    fits.PrimaryHDU(truth).writeto(path)
    ccd = read_frame(path, dtype=np.float64, **NOISE)
    assert_array_equal(ccd.data, truth.astype(np.float64))
    assert ccd.mask[1, 0] and ccd.mask.sum() == 1      # full scale = saturated


def test_degenerate_cube_is_one_frame_and_colour_cube_stays(tmp_path):
    one = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    path = tmp_path / "one.fits"
    fits.PrimaryHDU(one).writeto(path)
    ccd = read_frame(path, **NOISE)
    assert ccd.shape == (3, 4)
    assert_array_equal(ccd.data, one[0])
    rgb = np.arange(36, dtype=np.int16).reshape(3, 3, 4)
    path = tmp_path / "rgb.fits"
    fits.PrimaryHDU(rgb).writeto(path)
    ccd = read_frame(path, **NOISE)
    assert ccd.shape == (3, 3, 4)
    assert_array_equal(ccd.data, rgb.astype(np.float32))
    assert ccd.uncertainty.array.shape == (3, 3, 4)


@pytest.mark.parametrize(("shape", "tile_shape"), [((150, 9), (70, 3)), ((130, 10), (2, 2)),
                                                   ((131, 11), (1, 1)), ((40, 6), (40, 6)),
                                                   ((2, 200, 7), (3, 2))])
def test_repeating_levels_over_row_blocks(shape, tile_shape):
    """Levels given as tiles repeat exactly, across the 64-row processing blocks."""
    rng = np.random.default_rng(16)
    data = rng.uniform(0, 1000, shape)
    tile = rng.uniform(0, 500, tile_shape)
    reps = (-(-shape[-2] // tile_shape[0]), -(-shape[-1] // tile_shape[1]))
    full = np.tile(tile, reps)[:shape[-2], :shape[-1]]
    sigma = detector_sigma(data, gain=1.0, read_noise=0.0, pedestal=tile)
    assert_allclose(sigma, np.sqrt(np.maximum(data - full, 0)), rtol=1e-12)
    mask = np.zeros(shape, bool)
    nsat, _ = mask_levels(data, tile + 500, check_finite=False, mask=mask)
    assert_array_equal(mask, data >= full + 500)
    assert nsat == int((data >= full + 500).sum())


class _FakeBayerRaw:
    """A GRBG sensor with per-colour black and white levels, as rawpy would report."""

    def __init__(self, visible):
        # colour indices: 0 R, 1 G, 2 B, 3 G2 (color_desc 'RGBG'); GRBG at (0, 0)
        self.raw_pattern = np.array([[1, 0], [2, 3]], np.uint8)
        self.color_desc = b"RGBG"
        self.raw_type = rawpy.RawType.Flat
        ny, nx = visible.shape
        self.raw_colors_visible = np.tile(self.raw_pattern, (ny // 2, nx // 2))
        self.raw_image_visible = visible
        self.black_level_per_channel = [100, 200, 300, 400]     # R, G, B, G2
        self.white_level = 4095
        self.camera_white_level_per_channel = [4000, 4095, 3900, 4095]
        self.sizes = type("Sizes", (), {"flip": 0, "crop_width": 0, "crop_height": 0,
                                        "crop_left_margin": 0, "crop_top_margin": 0})()

    def close(self):
        pass


def test_raw_levels_per_cfa_position(tmp_path, monkeypatch):
    visible = np.full((4, 6), 3950, np.uint16)
    fake = _FakeBayerRaw(visible)
    monkeypatch.setattr(rawpy, "imread", lambda _path: fake)
    path = tmp_path / "IMG_0001.NEF"
    path.write_bytes(b"fake")
    ccd = read_frame(path, gain=1.0, read_noise=0.0)
    meta = ccd.meta
    assert meta["BAYERPAT"] == "GRBG"
    # positions (0,0) G, (0,1) R, (1,0) B, (1,1) G2
    assert [meta[f"BLKLEV{i}"] for i in range(4)] == [200.0, 100.0, 300.0, 400.0]
    assert meta["BLKLEVEL"] == 250.0 and meta["WHITELEV"] == 3900.0
    # 3950 reaches the white level of B (3900) only; R (4000) and G (4095) stay.
    assert_array_equal(ccd.mask, np.tile([[False, False], [True, False]], (2, 3)))
    assert meta["NSATUR"] == 6
    expected_sigma = np.sqrt(3950.0 - np.tile([[200.0, 100.0], [300.0, 400.0]], (2, 3)))
    assert_allclose(ccd.uncertainty.array, expected_sigma, rtol=1e-6)
    black = read_frame(path, subtract_black=True, gain=1.0, read_noise=0.0)
    assert_array_equal(black.data, 3950.0 - np.tile([[200.0, 100.0], [300.0, 400.0]], (2, 3)))


def test_non_standard_cards_are_fixed_or_logged(tmp_path, caplog):
    path = tmp_path / "odd.fits"
    header = fits.Header({"EXPTIME": 1.0, "FOO": "bar"})
    fits.PrimaryHDU(np.zeros((4, 4), np.float32), header=header).writeto(path)
    raw = bytearray(path.read_bytes())
    for key, image in ((b"EXPTIME =", b"EXPTIME = 2.5E / written by an old program"),
                       (b"FOO     =", b"FOO     = 12.5.3")):
        at = raw.find(key)
        raw[at:at + 80] = image.ljust(80)
    path.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="calframe.io._fits"):
        ccd = read_frame(path, **NOISE)
    assert ccd.meta["EXPTIME"] == 2.5 and ccd.meta["EXPSRC"] == "EXPTIME"
    assert ccd.meta["FOO"] == "12.5.3"
    assert "odd.fits: card EXPTIME is not FITS standard" in caplog.text


def test_monochrome_raw_has_one_black_level_and_no_pattern(tmp_path, monkeypatch):
    fake = _FakeBayerRaw(np.full((4, 6), 1000, np.uint16))
    fake.num_colors = 1
    fake.raw_pattern = None
    fake.color_desc = b"R"
    fake.raw_colors_visible = np.zeros((4, 6), np.uint8)
    fake.black_level_per_channel = [64, 64, 64, 64]
    fake.camera_white_level_per_channel = None
    monkeypatch.setattr(rawpy, "imread", lambda _path: fake)
    path = tmp_path / "L1000001.DNG"
    path.write_bytes(b"fake")
    ccd = read_frame(path, gain=2.0, read_noise=4.0)
    assert "BAYERPAT" not in ccd.meta and "BLKLEV0" not in ccd.meta
    assert ccd.meta["BLKLEVEL"] == 64.0 and ccd.meta["WHITELEV"] == 4095.0
    assert_allclose(ccd.uncertainty.array, np.sqrt((1000 - 64) / 2.0 + 4.0), rtol=1e-6)


def test_dimensionless_master_flat_reads_back_dimensionless(tmp_path):
    flat = CCDData(np.full((3, 4), 1.0, np.float32), unit=u.dimensionless_unscaled,
                   uncertainty=StdDevUncertainty(np.full((3, 4), 0.01, np.float32)),
                   meta={"IMAGETYP": "FLAT"})
    path = write_frame(flat, tmp_path / "master_flat.fits")
    back = read_frame(path)
    assert back.unit == u.dimensionless_unscaled
    assert_allclose(back.uncertainty.array, 0.01, rtol=1e-7)
    # A file without BUNIT whose UNCERT extension says '' (astropy's layout).
    old = tmp_path / "old_flat.fits"
    uncert = fits.ImageHDU(np.full((3, 4), 0.01, np.float32), name="UNCERT")
    uncert.header["UTYPE"] = "StdDevUncertainty"
    uncert.header["BUNIT"] = ""
    fits.HDUList([fits.PrimaryHDU(np.ones((3, 4), np.float32)), uncert]).writeto(old)
    assert read_frame(old).unit == u.dimensionless_unscaled
    empty = tmp_path / "empty_bunit.fits"
    fits.PrimaryHDU(np.ones((2, 2), np.float32), header=fits.Header({"BUNIT": ""})
                    ).writeto(empty)
    with pytest.warns(UncertaintyUnknownWarning, match=r"a noise model for unit"):
        assert read_frame(empty).unit == u.dimensionless_unscaled
