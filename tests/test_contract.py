"""The input contract: masters and calibration refuse what they cannot do right."""

import os
import stat
import threading

import numpy as np
import pytest
import tifffile
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose
from PIL import Image

from calframe.calibration import calibrate
from calframe.cli import main
from calframe.contract import calframe_output, check_master_frames, check_role
from calframe.errors import (
    CalframeError,
    FrameReadError,
    IncompatibleFramesError,
    InvalidSettingsError,
    MixedFramesError,
    TemperatureMismatchWarning,
    UncertaintyUnknownWarning,
    UnitMismatchError,
    WrongFrameTypeError,
)
from calframe.inventory import scan_paths, take_inventory
from calframe.io import FORMATS, FRAME_SUFFIXES, iter_frames, read_frame, read_header, write_frame
from calframe.masters import make_master_bias, make_master_dark, make_master_flat
from calframe.provenance import get_provenance


def _fits(path, value=1000, *, shape=(12, 16), **cards):
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    data = (value + rng.normal(0, 5, shape)).astype(np.uint16)
    header = fits.Header({"EGAIN": 1.5, "RDNOISE": 5.0, **cards})
    fits.PrimaryHDU(data, header=header).writeto(path)
    return str(path)


def _darks(folder, exposures, **cards):
    os.makedirs(folder, exist_ok=True)
    return [_fits(os.path.join(folder, f"dark_{t:g}s_{i}.fits"), 1000 + t,
                  IMAGETYP="Dark Frame", EXPTIME=float(t), **cards)
            for t in exposures for i in range(3)]


# --- masters from mixed inputs ------------------------------------------------------


def test_master_dark_refuses_mixed_exposures_and_lists_the_groups(tmp_path):
    darks = _darks(tmp_path / "darks", (60, 300))
    with pytest.raises(MixedFramesError, match=r"2 different exposures \(60 s: dark_60s_0"
                       r".*300 s: dark_300s_0.*\); make one master dark per exposure"):
        make_master_dark(darks)
    # with the override, the master says what it combined
    master = make_master_dark(darks, allow_mixed=True)
    step = get_provenance(master).steps[-1]
    assert step.step == "make_master_dark"
    assert "2 different exposures" in step.parameters["allow_mixed"][0]
    assert master.meta["EXPTIME"] == pytest.approx(180.0)  # the median, not the last


def test_master_dark_of_one_exposure_passes_and_takes_its_exposure(tmp_path):
    darks = _darks(tmp_path / "darks", (300,), **{"CCD-TEMP": -10.0})
    master = make_master_dark(darks)
    assert master.meta["EXPTIME"] == 300.0 and master.meta["CCD-TEMP"] == -10.0
    assert "allow_mixed" not in get_provenance(master).steps[-1].parameters


def test_cli_master_dark_mixed_is_one_line_naming_the_files(tmp_path, capsys):
    darks = _darks(tmp_path / "darks", (60, 300))
    code = main(["master", "dark", *darks, "-o", str(tmp_path / "dark.fits")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "dark_60s_0.fits" in err and "--allow-mixed" in err
    assert not (tmp_path / "dark.fits").exists()
    assert main(["-q", "master", "dark", *darks, "-o", str(tmp_path / "dark.fits"),
                 "--allow-mixed"]) == 0


@pytest.mark.realdata
def test_real_st7_darks_of_three_exposures_are_refused(real_data, tmp_path, capsys):
    darks = sorted(str(p) for p in (real_data / "ast325-st7").glob("DarkBefore-*.fit"))
    code = main(["master", "dark", *darks, "-o", str(tmp_path / "d.fits")])
    err = capsys.readouterr().err
    assert code == 1
    assert "3 different exposures (120 s: DarkBefore-001D120s.fit" in err
    assert "300 s: DarkBefore-001D300s_.fit" in err and "900 s:" in err
    one = [d for d in darks if "120s" in d]
    assert main(["-q", "master", "dark", *one, "-o", str(tmp_path / "d.fits")]) == 0
    assert fits.getheader(tmp_path / "d.fits")["EXPTIME"] == 120.0


@pytest.mark.parametrize("imagetyp, kind", [("Light Frame", "bias"), ("Light Frame", "dark"),
                                            ("Flat Field", "bias"), ("Bias Frame", "flat")])
def test_frames_of_another_type_are_refused(tmp_path, imagetyp, kind):
    good = {"bias": "Bias Frame", "dark": "Dark Frame", "flat": "Flat Field"}[kind]
    frames = [_fits(tmp_path / f"f{i}.fits", IMAGETYP=good, EXPTIME=1.0) for i in range(3)]
    frames.append(_fits(tmp_path / "odd.fits", IMAGETYP=imagetyp, EXPTIME=1.0))
    with pytest.raises(WrongFrameTypeError, match=r"1 of the frames is not a "
                       rf"{kind}: \w+ \(from the header\): odd.fits"):
        check_master_frames(frames, kind)


def test_darks_and_dark_flats_are_not_mixed(tmp_path):
    frames = _darks(tmp_path, (5,))
    frames.append(_fits(tmp_path / "df.fits", IMAGETYP="DARKFLAT", EXPTIME=5.0))
    with pytest.raises(MixedFramesError, match="frame types are mixed"):
        check_master_frames(frames, "dark")


def test_an_8bit_jpeg_is_not_a_bias(tmp_path, capsys):
    path = tmp_path / "bias_0001.jpg"
    Image.fromarray(np.full((8, 8), 20, np.uint8)).save(path)
    with pytest.raises(WrongFrameTypeError, match=r"display-encoded.*8-bit samples"):
        make_master_bias([str(path)])
    assert main(["master", "bias", str(path), "-o", str(tmp_path / "b.fits")]) == 1
    assert "bias_0001.jpg" in capsys.readouterr().err


def test_an_rgb_tiff_and_an_8bit_fits_are_not_flats(tmp_path):
    rgb = tmp_path / "flat.tif"
    tifffile.imwrite(rgb, np.full((8, 8, 3), 3000, np.uint16), photometric="rgb")
    with pytest.raises(WrongFrameTypeError, match="display-encoded"):
        check_master_frames([str(rgb)], "flat")
    eight = tmp_path / "flat8.fits"
    fits.PrimaryHDU(np.full((8, 8), 200, np.uint8)).writeto(eight)
    with pytest.raises(WrongFrameTypeError, match="8-bit samples"):
        check_master_frames([str(eight)], "flat")


@pytest.mark.parametrize("card, values", [("XBINNING", (1, 2)), ("BAYERPAT", ("RGGB", "BGGR")),
                                          ("GAIN", (100, 200)), ("OFFSET", (10, 30)),
                                          ("ISOSPEED", (400, 800))])
def test_different_camera_settings_are_refused(tmp_path, card, values):
    frames = [_fits(tmp_path / f"b{v}_{i}.fits", IMAGETYP="Bias Frame", **{card: v})
              for v in values for i in range(2)]
    with pytest.raises(MixedFramesError, match="differs between frames"):
        check_master_frames(frames, "bias")
    assert len(check_master_frames(frames, "bias", allow_mixed=True).overridden) == 1


def test_shapes_that_differ_cannot_be_overridden(tmp_path):
    frames = [_fits(tmp_path / "a.fits"), _fits(tmp_path / "b.fits", shape=(10, 16))]
    with pytest.raises(IncompatibleFramesError, match="2 different shapes"):
        check_master_frames(frames, "bias", allow_mixed=True)


def test_temperature_spread_warns(tmp_path):
    frames = [_fits(tmp_path / f"d{t}.fits", IMAGETYP="Dark Frame", EXPTIME=60.0,
                    **{"CCD-TEMP": float(t)}) for t in (-10, -4)]
    with pytest.warns(TemperatureMismatchWarning, match="from -10 to -4 C"):
        check_master_frames(frames, "dark")
    # the warning names the line that asked for the master
    with pytest.warns(TemperatureMismatchWarning) as record:
        make_master_dark(frames)
    assert [w.filename for w in record] == [__file__]


def test_calframe_outputs_are_not_raw_frames(tmp_path):
    biases = [_fits(tmp_path / f"bias_{i}.fits", IMAGETYP="Bias Frame") for i in range(3)]
    master = tmp_path / "master_bias.fits"
    write_frame(make_master_bias(biases), master)
    assert calframe_output(read_header(master).header) == "master bias"
    with pytest.raises(WrongFrameTypeError, match=r"1 of the frames is a calframe output, "
                       r"not raw biases \(master bias: master_bias.fits\)"):
        make_master_bias([*biases, str(master)])


# --- masters in the wrong role ------------------------------------------------------


@pytest.fixture()
def masters(tmp_path):
    biases = [_fits(tmp_path / f"bias_{i}.fits", IMAGETYP="Bias Frame") for i in range(3)]
    flats = [_fits(tmp_path / f"flat_{i}.fits", 20000, IMAGETYP="Flat Field", EXPTIME=1.0)
             for i in range(3)]
    bias, flat = tmp_path / "bias.fits", tmp_path / "flat.fits"
    write_frame(make_master_bias(biases), bias)
    write_frame(make_master_flat(flats, bias=str(bias)), flat)
    light = _fits(tmp_path / "light.fits", 5000, IMAGETYP="Light Frame", EXPTIME=60.0)
    return {"bias": str(bias), "flat": str(flat), "light": light, "biases": biases}


def test_swapped_masters_are_refused_naming_the_file(masters, tmp_path, capsys):
    with pytest.raises(WrongFrameTypeError, match=r"flat.fits: given as the bias, but it "
                       r"is a flat \(FRAMETYP = 'flat', normalised by its median\)"):
        calibrate(masters["light"], bias=masters["flat"], flat=masters["bias"])
    code = main(["calibrate", masters["light"], "--bias", masters["flat"], "--flat",
                 masters["bias"], "-o", str(tmp_path / "cal")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "UnitsError" not in err
    assert f"{masters['flat']}: given as the bias" in err and "--flat" in err


def test_a_light_is_not_a_master(masters):
    with pytest.raises(WrongFrameTypeError, match="given as the dark, but it is a light"):
        calibrate(masters["light"], bias=masters["bias"], dark=masters["light"])
    # a frame whose header says nothing, or the right thing, passes
    check_role(CCDData(np.zeros((2, 2)), unit="adu"), "flat", label="x")
    check_role(read_frame(masters["bias"]), "bias", label="bias.fits")
    check_role(CCDData(np.zeros((2, 2)), unit="adu", meta={"IMAGETYP": "DARKFLAT"}), "dark",
               label="df.fits")


def test_a_unit_mismatch_is_a_calframe_error_and_a_units_error(masters):
    bias = read_frame(masters["bias"])
    electrons = CCDData(bias.data, unit="electron", meta={"FRAMETYP": "bias"})
    with pytest.raises(UnitMismatchError, match="unit 'electron' does not match") as info:
        calibrate(masters["light"], bias=electrons)
    assert isinstance(info.value, u.UnitsError) and isinstance(info.value, CalframeError)


def test_no_masters_is_refused_unless_asked(masters, tmp_path, capsys):
    with pytest.raises(InvalidSettingsError, match="nothing would be calibrated"):
        calibrate(masters["light"])
    out = calibrate(masters["light"], allow_no_masters=True, gain=1.5)
    assert out.meta["CALSTAT"] == "G"
    assert main(["calibrate", masters["light"], "-o", str(tmp_path / "c")]) == 2
    assert "--allow-no-masters" in capsys.readouterr().err
    assert main(["calibrate", masters["light"], "-o", str(tmp_path / "c"),
                 "--allow-no-masters", "--gain", "1.5"]) == 0
    assert "(steps: gain)" in capsys.readouterr().out


def test_cli_says_which_steps_were_applied(masters, tmp_path, capsys):
    assert main(["calibrate", masters["light"], "--bias", masters["bias"], "--flat",
                 masters["flat"], "-o", str(tmp_path / "c")]) == 0
    assert "(steps: bias, flat)" in capsys.readouterr().out


def test_a_dark_current_only_dark_without_a_bias_is_refused(masters, tmp_path):
    darks = _darks(tmp_path / "darks", (60,))
    dark = make_master_dark(darks, bias=masters["bias"])
    assert dark.meta["BIASSUB"] is True
    with pytest.raises(IncompatibleFramesError, match=r"dark current only.*bias level "
                       r"would stay in; pass the master bias too"):
        calibrate(masters["light"], dark=dark)
    # with the bias it is right, and a dark that includes the bias needs none
    assert calibrate(masters["light"], bias=masters["bias"], dark=dark).meta["CALSTAT"] \
        == "BD"
    raw_dark = make_master_dark(darks)
    assert calibrate(masters["light"], dark=raw_dark).meta["CALSTAT"] == "D"


def test_per_second_without_a_bias_is_a_calframe_error(tmp_path, capsys):
    darks = _darks(tmp_path / "darks", (60,))
    with pytest.raises(InvalidSettingsError, match="per_second=True needs bias="):
        make_master_dark(darks, per_second=True)
    assert main(["master", "dark", *darks, "--per-second", "-o",
                 str(tmp_path / "d.fits")]) == 2
    err = capsys.readouterr().err
    assert "--per-second needs --bias" in err and "Traceback" not in err


# --- one reader: info, inventory, read_frame and masters agree ---------------------


def test_every_raw_suffix_read_frame_takes_is_scanned_by_the_inventory():
    for fmt in FORMATS.values():
        for suffix in fmt.suffixes:
            assert (suffix in FRAME_SUFFIXES) == fmt.calibration, suffix
    assert {".mef", ".raw", ".bay", ".ari", ".fff", ".k25", ".cr3"} <= FRAME_SUFFIXES
    assert callable(scan_paths)


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::calframe.errors.UncertaintyUnknownWarning")
def test_real_files_agree_everywhere(real_data, capsys):
    files = sorted(p for p in real_data.glob("*/*") if p.suffix.lower() not in (".txt",))
    inventory = take_inventory([str(p) for p in files])
    rows = {os.path.basename(r["path"]): r for r in inventory.frames}
    for path in files:
        info = read_header(path)
        frame = read_frame(path)
        assert info.shape == frame.shape, path
        for key in ("FRAMETYP", "EXPTIME", "BAYERPAT", "XBINNING", "CCD-TEMP"):
            assert info.header.get(key) == frame.meta.get(key), (path, key)
        row = rows.get(path.name)
        if info.format == "image":
            assert row is None  # display images are never calibration frames
            continue
        shape = info.shape if info.nframes == 1 else (info.nframes, *info.shape)
        assert row["shape"] == "x".join(map(str, shape)), path
        assert row["frametype"] == info.frametype and row["bayerpat"] == \
            (info.header.get("BAYERPAT") or ""), path
        assert main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        assert f"{path}: {' x '.join(map(str, info.shape))} " in out
    dng = read_header(real_data / "camera-raw" / "Blackmagic.dng")
    assert dng.shape == (2176, 4128) and rows["Blackmagic.dng"]["shape"] == "2176x4128"
    # and a master made of it sees the same shape and pattern
    master = make_master_flat([str(real_data / "camera-raw" / "Blackmagic.dng")])
    assert master.shape == dng.shape and master.meta["BAYERPAT"] == "RGGB"
    assert master.meta["FLATCHAN"] is True


@pytest.mark.realdata
def test_run_matches_fits_biases_to_the_real_dng(real_data, tmp_path):
    """2176x4128 FITS biases calibrate the DNG: inventory and masters see one shape."""
    night = tmp_path / "night"
    (night / "lights").mkdir(parents=True)
    os.symlink(real_data / "camera-raw" / "Blackmagic.dng", night / "lights" / "light.dng")
    (night / "biases").mkdir()
    for i in range(3):
        fits.PrimaryHDU(np.full((2176, 4128), 512 + i, np.uint16),
                        header=fits.Header({"IMAGETYP": "Bias Frame", "BAYERPAT": "RGGB",
                                            "XBAYROFF": 0, "YBAYROFF": 0})
                        ).writeto(night / "biases" / f"bias_{i}.fits")
    inventory = take_inventory(str(night), frame_types={"*.dng": "light"})
    light = next(m for m in inventory.matches if m["frametype"] == "light")
    assert light["bias"] >= 0


def test_inventory_skips_outputs_under_the_inputs_and_says_so(tmp_path, capsys):
    night = tmp_path / "night"
    (night / "biases").mkdir(parents=True)
    biases = [_fits(night / "biases" / f"bias_{i}.fits", IMAGETYP="Bias Frame")
              for i in range(3)]
    (night / "out").mkdir()
    write_frame(make_master_bias(biases), night / "out" / "master_bias.fits")
    (night / "notes.txt").write_text("seeing 2 arcsec")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(night / "preview.png")
    inventory = take_inventory(str(night))
    assert len(inventory.frames) == 3 and inventory.outputs_skipped == 1
    assert inventory.skipped_line() == "skipped 1 calframe output and 2 files of other formats"
    reasons = {os.path.basename(p.path): p.what for p in inventory.skipped}
    assert reasons["master_bias.fits"].startswith("a calframe output (master bias)")
    assert "display image" in reasons["preview.png"]
    assert "not a frame format" in reasons["notes.txt"]
    assert "-v lists them" in inventory.summary()
    assert "preview.png" in inventory.summary(verbose=True)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "bias.fits"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    result = {}

    def attempt():
        for name, call in (("read_frame", read_frame), ("read_header", read_header),
                           ("master", lambda p: make_master_bias([p]))):
            try:
                call(str(fifo))
            except FrameReadError as err:
                result[name] = str(err)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "a FIFO blocked the reader"
    assert all("named pipe (FIFO), not a regular file" in m for m in result.values())
    assert len(result) == 3


def test_a_file_of_several_frames_is_not_taken_for_one(tmp_path):
    """A master reads one frame per file: a series in one file is refused with
    the fix, not silently reduced to its first frame."""
    rng = np.random.default_rng(5)
    stack = rng.normal(100, 5, (3, 8, 10)).astype(np.float32)
    series = tmp_path / "biases.tif"
    tifffile.imwrite(series, stack, photometric="minisblack")
    with pytest.raises(MixedFramesError, match=r"several frames \(3 frames: .*biases.tif\).*"
                                               r"iter_frames"):
        make_master_bias([str(series)])
    frames = list(iter_frames(series, gain=1.0, read_noise=5.0))
    assert len(frames) == 3
    master = make_master_bias(frames, method="mean", rejection=None)
    assert_allclose(master.data, stack.mean(axis=0), rtol=1e-6)
    with pytest.warns(UncertaintyUnknownWarning):
        first = make_master_bias([str(series)], allow_mixed=True, rejection=None)
    assert_allclose(first.data, stack[0], rtol=1e-6)
