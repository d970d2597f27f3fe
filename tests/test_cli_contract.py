"""What every ``calframe`` command promises: one-line errors and warnings, no
traceback, results apart from progress bars, option words in messages, and
options that mean the same thing everywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from calframe.cli import main
from calframe.datasets import SyntheticCamera, make_night

CAMERA = SyntheticCamera(shape=(24, 32), n_hot_pixels=3, n_dust=1)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("contract") / "night", camera=CAMERA, n_bias=3,
                      n_dark=3, n_flat=3, n_light=3, dark_exptimes=(60.0,),
                      light_exptime=60.0, seed=7)


def _files(night, kind):
    return sorted(str(p) for p in night.files_of(kind))


@pytest.fixture(scope="module")
def no_gain(night, tmp_path_factory):
    """The lights and biases without EGAIN and RDNOISE."""
    folder = tmp_path_factory.mktemp("nogain")
    out = {}
    for kind in ("light", "bias"):
        out[kind] = []
        for path in _files(night, kind):
            with fits.open(path) as hdul:
                for key in ("EGAIN", "RDNOISE"):
                    hdul[0].header.remove(key, ignore_missing=True)
                target = folder / os.path.basename(path)
                hdul.writeto(target)
            out[kind].append(str(target))
    return out


@pytest.fixture(scope="module")
def bias(night, tmp_path_factory):
    path = tmp_path_factory.mktemp("masters") / "bias.fits"
    assert main(["-q", "master", "bias", *_files(night, "bias"), "-o", str(path)]) == 0
    return str(path)


def _env():
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    return env


# --------------------------------------------------------------------------- errors

def _tiny_mosaic(folder):
    """A Bayer mosaic too small to demosaic: the library raises a plain ValueError."""
    path = folder / "tiny.fits"
    fits.PrimaryHDU(np.ones((1, 2), np.uint16), header=fits.Header(
        {"BAYERPAT": "RGGB", "EGAIN": 1.0, "RDNOISE": 1.0})).writeto(path)
    return str(path)


def test_a_frame_the_library_refuses_is_one_line_naming_it(tmp_path, capsys):
    tiny = _tiny_mosaic(tmp_path)
    args = ["demosaic", tiny, "-o", str(tmp_path / "rgb.fits")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "calframe bug" not in err
    assert err == (f"error: {tiny}: frame of shape (1, 2) is too small to demosaic; it needs "
                   "at least 5x5 pixels\n")
    with pytest.raises(ValueError, match="too small"):
        main(["--debug", *args])


def test_last_resort_flattens_the_message(night, tmp_path, capsys, monkeypatch):
    import calframe.masters

    def broken(*args, **kwargs):
        raise RuntimeError("first line\n  second line")

    monkeypatch.setattr(calframe.masters, "make_master_bias", broken)
    code = main(["-q", "master", "bias", *_files(night, "bias"), "-o", str(tmp_path / "b.fits")])
    err = capsys.readouterr().err
    assert code == 1
    assert err == ("error: calframe master: RuntimeError: first line second line (this is a "
                   "calframe bug; rerun with --debug for the traceback and report it)\n")


def test_interrupt_exits_130(night, tmp_path, capsys, monkeypatch):
    import calframe.masters

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(calframe.masters, "make_master_bias", interrupted)
    assert main(["master", "bias", *_files(night, "bias"), "-o", str(tmp_path / "b.fits")]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_an_exception_while_parsing_is_one_line(night, capsys, monkeypatch):
    from calframe.cli import _options

    def broken(self, value, param, ctx):
        raise RuntimeError("cannot convert")

    monkeypatch.setattr(_options.RejectionType, "convert", broken)
    assert main(["stack", _files(night, "light")[0], "-o", "x.fits", "--reject", "s"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: calframe stack: RuntimeError: cannot convert (this is a")


def test_a_closed_standard_output_is_no_traceback(night, capsys, monkeypatch):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["info", _files(night, "bias")[0]]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_a_bad_config_file_is_a_usage_error(tmp_path, capsys):
    cfg = tmp_path / "calframe.toml"
    cfg.write_text("inputs = [\n")
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "--config" in err and "not valid TOML" in err and "Traceback" not in err


def test_python_m_calframe_is_the_same(tmp_path):
    args = ["demosaic", _tiny_mosaic(tmp_path), "-o", str(tmp_path / "rgb.fits")]
    done = subprocess.run([sys.executable, "-m", "calframe", *args], capture_output=True,
                          text=True, env=_env(), timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {args[1]}: frame of shape (1, 2) is too small")
    assert done.stderr.count("\n") == 1


# --------------------------------------------------------------------------- info

def test_info_goes_on_past_bad_files(night, tmp_path, capsys):
    bad = tmp_path / "notes.fits"
    bad.write_text("not fits")
    good = _files(night, "bias")
    assert main(["info", good[0], str(bad), good[1]]) == 1
    captured = capsys.readouterr()
    assert f"{good[0]}: 24 x 32" in captured.out and f"{good[1]}: 24 x 32" in captured.out
    err = captured.err.splitlines()
    assert err[0].startswith("error: ") and "notes.fits" in err[0]
    assert err[-1] == "1 of 3 files could not be read"


def test_info_reports_a_bug_per_file_and_goes_on(night, capsys, monkeypatch):
    import calframe.io

    real = calframe.io.read_frame
    first = _files(night, "bias")[0]

    def flaky(path, **kwargs):
        if path == first:
            raise RuntimeError("boom")
        return real(path, **kwargs)

    monkeypatch.setattr(calframe.io, "read_frame", flaky)
    assert main(["info", *_files(night, "bias")]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0].startswith(f"error: {first}: RuntimeError: boom (")
    assert captured.out.count(": 24 x 32") == 2


# --------------------------------------------------------------------------- warnings

def test_each_warning_is_printed_once_as_one_line(no_gain, bias, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "calframe", "calibrate", *no_gain["light"], "--bias", bias,
         "-o", str(tmp_path / "cal")], capture_output=True, text=True, env=_env(),
        timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "gain and read noise" in line]
    assert len(lines) == 1
    assert lines[0].startswith("warning: ") and "UncertaintyUnknownWarning" not in lines[0]
    assert "give --gain and --read-noise" in lines[0] and "read_frame" not in lines[0]
    assert "WARNING" not in done.stderr and "warnings.warn" not in done.stderr


@pytest.mark.filterwarnings("default::calframe.errors.UncertaintyUnknownWarning")
def test_warning_words_depend_on_the_command(no_gain, tmp_path, capfd):
    from calframe._detector import _reset_warning

    _reset_warning()
    # stack has no --gain: the header advice alone
    assert main(["-q", "stack", *no_gain["light"], "--align", "none", "--reject", "none",
                 "-o", str(tmp_path / "s.fits")]) == 0
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert "or write EGAIN" not in lines[0] and "write EGAIN (e-/ADU) and RDNOISE" in lines[0]
    assert "--gain" not in lines[0] and "gain=" not in lines[0]


# --------------------------------------------------------------------------- progress

def _screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw`` (carriage returns overwrite)."""
    raw = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw)
    shown = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        col = 0
        for ch in line:
            if ch == "\r":
                col = 0
                continue
            if col < len(cells):
                cells[col] = ch
            else:
                cells.append(ch)
            col += 1
        shown.append("".join(cells).rstrip())
    return shown


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_results_never_share_a_line_with_a_progress_bar(night, bias, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    lights = _files(night, "light")
    out = tmp_path / "cal"
    proc = subprocess.Popen([sys.executable, "-m", "calframe", "calibrate", *lights, "--bias",
                             bias, "-o", str(out)], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, env=_env())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert "calibrating lights" in raw  # a bar was drawn
    screen = [line for line in _screen(raw) if line]
    for light in lights:
        name = os.path.basename(light)
        assert f"{light} -> {out / name} (steps: bias)" in screen
    assert screen[-1] == f"3 of 3 lights calibrated into {out}"


def test_results_go_to_stdout_and_nothing_else(night, bias, tmp_path, capfd):
    assert main(["calibrate", *_files(night, "light"), "--bias", bias, "-o",
                 str(tmp_path / "cal")]) == 0
    out = capfd.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 4 and all(" -> " in line for line in lines[:3])
    assert "\r" not in out and "%|" not in out


# --------------------------------------------------------------------------- messages

def test_messages_name_the_options(night, bias, capsys):
    assert main(["-q", "master", "bias", *_files(night, "bias"), "-o", bias]) == 1
    err = capsys.readouterr().err
    assert "give --overwrite" in err and "overwrite=True" not in err


def test_cfa_messages_and_pattern(tmp_path, capsys):
    from calframe import bayer

    data = np.empty((40, 60))
    for chan, sl in bayer.channel_slices("GRBG").items():
        data[sl] = {"R": 1000.0, "G1": 2000.0, "G2": 2000.0, "B": 1500.0}[chan]
    path = tmp_path / "mosaic.fits"
    fits.PrimaryHDU(data.astype(np.uint16), header=fits.Header(
        {"EXPTIME": 1.0, "EGAIN": 1.0, "RDNOISE": 3.0})).writeto(path)
    assert main(["cfa-stats", str(path)]) == 1
    err = capsys.readouterr().err
    assert "--pattern RGGB" in err and "pattern=" not in err
    assert main(["cfa-stats", str(path), "--pattern", "grbg"]) == 0
    out = capsys.readouterr().out
    assert "pattern GRBG" in out
    medians = {cols[1]: float(cols[8]) for cols in
               (line.split() for line in out.splitlines()) if cols[:1] == ["centre"]}
    assert medians["R"] == 1000 and medians["B"] == 1500
    rgb = tmp_path / "rgb.fits"
    assert main(["demosaic", str(path), "-o", str(rgb)]) == 1
    assert "--pattern RGGB" in capsys.readouterr().err
    assert main(["demosaic", str(path), "--pattern", "GRBG", "-o", str(rgb)]) == 0
    cube = fits.getdata(rgb)
    assert_allclose(np.median(cube[0]), 1000) and assert_allclose(np.median(cube[2]), 1500)


# --------------------------------------------------------------------------- options

def test_calibrate_takes_gain_and_read_noise(no_gain, bias, tmp_path, capfd):
    out = tmp_path / "cal"
    assert main(["-q", "calibrate", *no_gain["light"], "--bias", bias, "--gain", "1.5",
                 "--read-noise", "5", "-o", str(out)]) == 0
    assert capfd.readouterr().err == ""  # no unknown-uncertainty warning
    name = os.path.basename(no_gain["light"][0])
    with fits.open(out / name) as hdul:
        assert "UNCERT" in hdul
        assert hdul[0].header["BUNIT"].lower().startswith("electron")


def test_master_takes_gain_and_read_noise(no_gain, tmp_path, capfd):
    from calframe.combining import SigmaClip
    from calframe.io import read_frame
    from calframe.masters import make_master_bias

    out = tmp_path / "bias.fits"
    assert main(["-q", "master", "bias", *no_gain["bias"], "--gain", "1.5", "--read-noise", "5",
                 "-o", str(out)]) == 0
    assert capfd.readouterr().err == ""
    frames = [read_frame(p, gain=1.5, read_noise=5) for p in no_gain["bias"]]
    expected = make_master_bias(frames, rejection=SigmaClip())
    with fits.open(out) as hdul:
        assert_allclose(hdul["UNCERT"].data, expected.uncertainty.array, rtol=1e-6)


@pytest.mark.parametrize(("name", "expected"), [
    ("sigma", "SigmaClip(low=3.0, high=3.0)"),
    ("s", "SigmaClip(low=3.0, high=3.0)"),
    ("mad", "SigmaClip(low=3.0, high=3.0, scale='mad')"),
    ("winsorized", "WinsorizedSigmaClip()"),
    ("linear", "LinearFitClip()"),
    ("percentile", "PercentileClip()"),
    ("minmax", "MinMaxClip()"),
    ("generalized", "GESD()"),
    ("none", "None"),
])
def test_every_rejection_under_siril_names(night, tmp_path, capsys, name, expected):
    from calframe.combining import (
        GESD,
        LinearFitClip,
        MinMaxClip,
        PercentileClip,
        SigmaClip,
        WinsorizedSigmaClip,
    )
    from calframe.masters import make_master_bias

    out = tmp_path / "bias.fits"
    assert main(["-q", "master", "bias", *_files(night, "bias"), "--reject", name,
                 "-o", str(out)]) == 0
    classes = {c.__name__: c for c in (GESD, LinearFitClip, MinMaxClip, PercentileClip,
                                       SigmaClip, WinsorizedSigmaClip)}
    reference = make_master_bias(_files(night, "bias"), rejection=eval(expected, classes))
    assert_allclose(fits.getdata(out), reference.data, rtol=1e-6)


def test_stack_limits_default_per_algorithm(night, tmp_path, capsys):
    from calframe.combining import MinMaxClip
    from calframe.register import stack

    lights = _files(night, "light")
    out = tmp_path / "stack.fits"
    assert main(["-q", "stack", *lights, "--align", "none", "--reject", "minmax",
                 "-o", str(out)]) == 0
    expected = stack(lights, align=None, rejection=MinMaxClip(nlow=1, nhigh=1))
    assert_allclose(fits.getdata(out), expected.data, rtol=1e-6)
    # a number of frames must be whole; generalized takes fractions
    assert main(["stack", *lights, "--reject", "minmax", "--low", "1.5", "-o",
                 str(tmp_path / "x.fits")]) == 2
    assert main(["stack", *lights, "--reject", "generalized", "--high", "2", "-o",
                 str(tmp_path / "x.fits")]) == 2


def test_one_default_alignment_for_stack_and_run(capsys):
    assert main(["stack", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--align [stars|translation|none]" in text and "[default: stars]" in text
    assert main(["run", "--help"]) == 0
    assert "before stacking [default: stars]" in " ".join(capsys.readouterr().out.split())


def test_output_rule(night, bias, tmp_path, capsys):
    # a folder of outputs: -o/--output-dir (the old --output still works)
    lights = [*_files(night, "light")[:1], "--bias", bias]
    assert main(["-q", "calibrate", *lights, "--output-dir", str(tmp_path / "a")]) == 0
    assert main(["-q", "calibrate", *lights, "--output", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "light_0001.fits").exists()
    assert (tmp_path / "b" / "light_0001.fits").exists()
    assert main(["calibrate", *lights]) == 2
    assert "-o/--output-dir" in capsys.readouterr().err
    # one file: -o/--output
    for command in ("master", "stack", "demosaic"):
        assert main([command, "--help"]) == 0
        assert "-o, --output FILE" in capsys.readouterr().out
    for command in ("calibrate", "run", "demo"):
        assert main([command, "--help"]) == 0
        assert "-o, --output-dir FOLDER" in capsys.readouterr().out
