"""Tests of the calframe command: inventory, master, calibrate, run."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from calframe.cli import main
from calframe.datasets import SyntheticCamera, make_night

CAMERA = SyntheticCamera(shape=(24, 32), n_hot_pixels=3, n_dust=1)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("cli") / "night", camera=CAMERA, n_bias=3,
                      n_dark=3, n_flat=3, n_light=2, dark_exptimes=(60.0,),
                      light_exptime=60.0, seed=5)


def _files(night, kind):
    return sorted(str(p) for p in night.files_of(kind))


def test_inventory(night, capsys):
    assert main(["-q", "inventory", str(night.path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("11 files, 4 groups, 0 problems")
    assert "light_0001.fits" in out and "dark_60s" in out
    assert "calibration of each light and flat group" in out


def test_inventory_frame_types(night, tmp_path, capsys):
    import shutil

    folder = tmp_path / "night"
    shutil.copytree(night.path, folder)
    with fits.open(folder / "lights" / "light_0001.fits", mode="update") as hdul:
        hdul[0].header["IMAGETYP"] = "?"
    shutil.move(folder / "lights" / "light_0001.fits", folder / "frame.fits")
    assert main(["-q", "inventory", str(folder)]) == 0
    assert "frame.fits: frame type unknown" in capsys.readouterr().out
    assert main(["-q", "inventory", str(folder), "--type", "*/frame.fits=light"]) == 0
    out = capsys.readouterr().out
    assert "0 problems" in out.splitlines()[0]
    assert main(["-q", "inventory", str(folder), "--type", "frame.fits"]) == 2


def test_inventory_table(night, tmp_path, capsys):
    table = tmp_path / "frames.csv"
    assert main(["-q", "inventory", str(night.path), "--table", str(table)]) == 0
    from astropy.table import Table

    t = Table.read(table, format="ascii.csv")
    assert len(t) == 11 and set(t["frametype"]) == {"bias", "dark", "flat", "light"}


def test_master_and_calibrate(night, tmp_path, capsys):
    from calframe.calibration import calibrate
    from calframe.combining import SigmaClip
    from calframe.masters import make_master_bias

    bias = tmp_path / "bias.fits"
    dark = tmp_path / "dark.fits"
    flat = tmp_path / "flat.fits"
    assert main(["-q", "master", "bias", *_files(night, "bias"), "-o", str(bias)]) == 0
    assert "master bias from 3 frames" in capsys.readouterr().out
    expected = make_master_bias(_files(night, "bias"), rejection=SigmaClip(low=3, high=3))
    assert_allclose(fits.getdata(bias), expected.data, rtol=1e-6)
    assert main(["-q", "master", "dark", *_files(night, "dark"), "-o", str(dark),
                 "--bias", str(bias)]) == 0
    assert main(["-q", "master", "flat", *_files(night, "flat"), "-o", str(flat),
                 "--bias", str(bias), "--dark", str(dark), "--method", "mean"]) == 0
    assert abs(np.median(fits.getdata(flat)) - 1.0) < 0.05
    # existing output: refused without --overwrite, exit 1, no traceback
    assert main(["-q", "master", "bias", *_files(night, "bias"), "-o", str(bias)]) == 1
    assert "error:" in capsys.readouterr().err

    out = tmp_path / "cal"
    code = main(["-q", "calibrate", *_files(night, "light"), "--bias", str(bias),
                 "--dark", str(dark), "--flat", str(flat), "-o", str(out)])
    assert code == 0
    assert "2 of 2 lights calibrated" in capsys.readouterr().out
    light = _files(night, "light")[0]
    by_hand = calibrate(light, bias=str(bias), dark=str(dark), flat=str(flat))
    assert_allclose(fits.getdata(out / "light_0001.fits"), by_hand.data, rtol=1e-6,
                    atol=1e-6)
    # a light divided by a normalised flat stays in adu
    assert fits.getheader(out / "light_0001.fits")["BUNIT"] == "adu"


def test_calibrate_reports_a_bad_light(night, tmp_path, capsys):
    bad = tmp_path / "broken.fits"
    bad.write_text("not a FITS file")
    out = tmp_path / "cal"
    code = main(["-q", "calibrate", _files(night, "light")[0], str(bad), "-o", str(out),
                 "--bias", _files(night, "bias")[0]])
    assert code == 1
    captured = capsys.readouterr()
    assert "problem: " in captured.err and "broken.fits" in captured.err
    assert "1 of 2 lights calibrated" in captured.out
    assert (out / "light_0001.fits").exists() and not (out / "broken.fits").exists()


def test_usage_errors(night, tmp_path, capsys):
    assert main(["master", "sky", "a.fits", "-o", "x.fits"]) == 2
    assert main(["master", "bias", *_files(night, "bias"), "-o", str(tmp_path / "b.fits"),
                 "--dark", _files(night, "dark")[0]]) == 2
    assert main(["run", str(night.path)]) == 2  # no output folder
    assert main(["run", "-o", str(tmp_path / "o")]) == 2  # no inputs
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "give the output folder" in err


def test_run_dry_run_writes_nothing(night, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(night.path), "-o", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "plan: 3 masters, 2 calibrated lights" in text
    assert not out.exists()


def test_run_with_config(night, tmp_path, capsys):
    cfg = tmp_path / "calframe.toml"
    cfg.write_text(f'inputs = ["{night.path}"]\noutput = "out"\nreport = false\n'
                   '[master]\nmethod = "mean"\n[calibrate]\ngain = 1.5\n')
    assert main(["-q", "run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "5 outputs made, 0 up to date, 0 failed" in out
    light = tmp_path / "out" / "lights" / "light_0001.fits"
    assert fits.getheader(light)["BUNIT"].lower().startswith("electron")
    # the command line overrides the file; a rerun with the same settings skips all
    assert main(["-q", "run", "--config", str(cfg), "--method", "mean"]) == 0
    assert "0 outputs made, 5 up to date" in capsys.readouterr().out
    assert main(["-q", "run", "--config", str(cfg), "--method", "median"]) == 0
    assert "5 outputs made" in capsys.readouterr().out


def test_run_strict_stops_without_traceback(night, tmp_path, capsys):
    import shutil

    folder = tmp_path / "night"
    shutil.copytree(night.path, folder)
    (folder / "lights" / "zero.fits").write_bytes(b"")
    code = main(["run", str(folder), "-o", str(tmp_path / "out"), "--strict"])
    err = capsys.readouterr().err
    assert code == 1
    assert "zero.fits: the file is empty" in err and "strict" in err
    assert "Traceback" not in err
    assert not os.path.exists(tmp_path / "out" / "masters")


def test_run_with_an_unusable_distortion_model(night, tmp_path, capsys):
    model = tmp_path / "model.fits"
    model.write_text("not a distortion model")
    code = main(["-q", "run", str(night.path), "-o", str(tmp_path / "out"), "--no-report",
                 "--distortion", str(model)])
    captured = capsys.readouterr()
    assert code == 1
    assert "model.fits: distortion model cannot be used" in captured.err
    assert "3 outputs made, 0 up to date, 2 failed" in captured.out
    assert not (tmp_path / "out" / "lights").exists()
