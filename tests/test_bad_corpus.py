"""Every sub-command on a corpus of bad files: a clear one-line error, never a traceback.

The corpus (:mod:`badfiles`) holds empty, random, truncated and malformed
files of every format, files of another kind named as frames, links that lead
nowhere, a folder named as a frame, a FIFO and a name that is not UTF-8.  Each
(file, command) pair is one test: :func:`calframe.cli.main` is called in this
process (it returns the exit code and must never raise), with standard output
encoded strictly as on a UTF-8 terminal.  The few cases that could block (the
FIFO) or need a real process run ``python -m calframe`` with a timeout.

Then a whole night with bad files dropped into each of its folders goes
through ``calframe run``: every good light is calibrated, every bad file is
reported on one line, the report is written and the exit code says that some
outputs failed.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from badfiles import (
    KINDS,
    BadFile,
    build_corpus,
    corrupt_gzip_of,
    names_in,
    small_night,
    write_good_frame,
)
from calframe.cli import main

#: Sub-commands that take frame files, and how each is called on ``f``.
COMMANDS = {
    "info": lambda f, out, ctx: ["info", f],
    "inventory": lambda f, out, ctx: ["inventory", f],
    "master-bias": lambda f, out, ctx: ["master", "bias", f, "-o", f"{out}/bias.fits"],
    "master-dark": lambda f, out, ctx: ["master", "dark", f, "-o", f"{out}/dark.fits"],
    "master-flat": lambda f, out, ctx: ["master", "flat", f, "-o", f"{out}/flat.fits"],
    "calibrate": lambda f, out, ctx: ["calibrate", f, "--allow-no-masters", "-o",
                                      f"{out}/calibrated"],
    "stack": lambda f, out, ctx: ["stack", f, ctx["good"], "-o", f"{out}/stack.fits",
                                  "--align", "none"],
    "cfa-stats": lambda f, out, ctx: ["cfa-stats", f],
    "demosaic": lambda f, out, ctx: ["demosaic", f, "-o", f"{out}/rgb.fits"],
    "provenance": lambda f, out, ctx: ["provenance", f],
    "provenance-verify": lambda f, out, ctx: ["provenance", "--verify", f],
    "distortion-fit": lambda f, out, ctx: ["distortion", "fit", f, "-o", f"{out}/model.fits"],
    "distortion-apply": lambda f, out, ctx: ["distortion", "apply", "--model", ctx["model"], f,
                                             "-d", f"{out}/undistorted"],
    "run": lambda f, out, ctx: ["run", f, "-o", f"{out}/run"],
}

#: Commands that report a bad input as a ``problem:`` line and go on with the rest.
REPORTING = {"inventory", "calibrate", "run"}

#: Kinds that are valid FITS files, so that ``provenance`` may list them (no record).
VALID_FITS = {"fits-exptime-text", "fits-bzero-text", "fits-naxis0", "fits-bintable-only",
              "fits-1d", "fits-3d-cube", "fits-absurd-card", "master-as-raw",
              "light-in-darks", "name-not-utf8"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus, a good light frame and a distortion model (built once)."""
    from calframe.datasets import make_grid_image

    base = tmp_path_factory.mktemp("corpus")
    files = build_corpus(base / "bad")
    good = write_good_frame(base / "good_light.fits", imagetyp="Light Frame", exptime=60.0)
    image, _ = make_grid_image((256, 256), pitch=24, seed=5)
    fits.writeto(base / "grid.fits", np.asarray(image, dtype=np.float32))
    model = str(base / "model.fits")
    code, out, err, raised = call(["distortion", "fit", str(base / "grid.fits"), "-o", model])
    assert code == 0 and raised is None, (out, err, raised)
    return {"files": files, "good": good, "model": model}


def call(argv: list[str]) -> tuple[object, str, str, BaseException | None]:
    """``main(argv)`` with its output captured as a UTF-8 terminal would encode it.

    Standard output is strict UTF-8 (a name that is not UTF-8 must be escaped
    before it is printed), standard error escapes with backslashes, as Python
    sets them up under a UTF-8 locale.
    """
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace",
                           write_through=True)
    raised = None
    code: object = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        # a user sees warnings printed, not raised: only errors matter here
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except BaseException as exc:  # main must never raise anything
            raised = exc
    return (code, out_bytes.getvalue().decode("utf-8", "replace"),
            err_bytes.getvalue().decode("utf-8", "replace"), raised)


def _names(text: str, bad: BadFile) -> bool:
    return any(name in text for name in names_in(bad))


def check(command: str, bad: BadFile, code, out: str, err: str,
          raised: BaseException | None) -> None:
    """The contract of every command on a bad file (see the module docstring)."""
    assert raised is None, f"main raised {type(raised).__name__}: {raised}"
    assert "Traceback" not in out + err
    assert code in (0, 1, 2), f"exit code {code!r}"
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    usage = [line for line in lines if line.startswith("Error:")]  # click: exit code 2
    problems = [line for line in (out + "\n" + err).splitlines()
                if line.lstrip().startswith("problem") or "problems (" in line
                or _names(line, bad)]
    if code == 1:
        assert len(errors) <= 1, f"several error lines: {errors}"
        said = errors or ([p for p in problems if p.lstrip().startswith("problem")]
                          if command in REPORTING else [])
        assert said, f"exit code 1 without an 'error:' line naming the file; stderr: {err!r}"
        assert any(_names(line, bad) for line in said), \
            f"the error does not name {names_in(bad)[0]!r}: {said}"
    elif code == 2:
        assert usage or errors, f"exit code 2 without an error line; stderr: {err!r}"
        assert any(_names(line, bad) for line in usage + errors), \
            f"the usage error does not name {names_in(bad)[0]!r}: {usage + errors}"
    elif not bad.readable and not (command.startswith("provenance")
                                   and bad.kind in VALID_FITS):
        # a bad file accepted: only fine when a warning says what is wrong with it
        # (the part that was read is complete), or when it is reported as a problem
        if any(line.startswith("warning:") and _names(line, bad) for line in lines):
            return
        assert command in REPORTING, f"exit code 0 on a bad file; stdout: {out[-300:]!r}"
        assert any(_names(line, bad) for line in problems) or \
            bad.kind == "directory-named-fits", \
            f"exit code 0 and the file is not reported; stdout: {out[-300:]!r}"


def _arg(bad: BadFile) -> str:
    return bad.path if isinstance(bad.path, str) else os.fsdecode(bad.path)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", KINDS)
def test_command_on_bad_file(corpus, kind, command, tmp_path):
    bad = corpus["files"][kind]
    argv = COMMANDS[command](_arg(bad), str(tmp_path), corpus)
    check(command, bad, *call(argv))


def test_corpus_is_large():
    assert len(KINDS) >= 45
    assert len(set(KINDS)) == len(KINDS)


# ------------------------------------------------------------------ real processes


def _process(args: list, *, timeout: float = 60.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "calframe", *args],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"calframe {' '.join(map(os.fsdecode, args))} did not finish in "
                    f"{timeout:.0f} s: {err}")


def _check_process(command: str, bad: BadFile, proc: subprocess.CompletedProcess) -> None:
    out = proc.stdout.decode("utf-8", "backslashreplace")
    err = proc.stderr.decode("utf-8", "backslashreplace")
    check(command, bad, proc.returncode, out, err, None)


@pytest.fixture
def fifo(tmp_path):
    return build_corpus(tmp_path / "bad", fifo=True)["fifo"]


@pytest.mark.parametrize("command", ["info", "run"])
def test_fifo_never_blocks(fifo, tmp_path, command):
    argv = COMMANDS[command](fifo.path, str(tmp_path), {})
    _check_process(command, fifo, _process(argv))


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"info", "run"}))
def test_fifo_never_blocks_any_command(fifo, tmp_path, command):
    good = write_good_frame(tmp_path / "good.fits", imagetyp="Light Frame", exptime=60.0)
    model = tmp_path / "model.fits"
    if command == "distortion-apply":
        from calframe.datasets import make_grid_image

        image, _ = make_grid_image((256, 256), pitch=24, seed=5)
        fits.writeto(tmp_path / "grid.fits", np.asarray(image, dtype=np.float32))
        assert call(["distortion", "fit", str(tmp_path / "grid.fits"), "-o",
                     str(model)])[0] == 0
    argv = COMMANDS[command](fifo.path, str(tmp_path), {"good": good, "model": str(model)})
    _check_process(command, fifo, _process(argv))


@pytest.mark.parametrize("command", ["info", "run"])
def test_name_not_utf8_in_a_real_process(tmp_path, command):
    """The name is printed; a strict UTF-8 terminal must not break the command."""
    bad = build_corpus(tmp_path / "bad")["name-not-utf8"]
    env = dict(os.environ, LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8:strict")
    argv = COMMANDS[command](os.fsencode("x"), str(tmp_path), {})
    argv = [bad.path if a == b"x" else a for a in argv]
    proc = subprocess.run([sys.executable, "-m", "calframe", *argv],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          check=False, env=env)
    _check_process(command, bad, proc)
    assert proc.returncode == 0


@pytest.mark.parametrize("command", ["info", "inventory", "run"])
def test_truncated_dng_in_a_real_process(tmp_path, command):
    """LibRaw writes to the process's standard error itself: nothing may reach it
    that is not one of calframe's own one-line messages."""
    corpus = build_corpus(tmp_path / "bad")
    if "dng-truncated" not in corpus:
        pytest.skip("the real DNG file is not available")
    bad = corpus["dng-truncated"]
    proc = _process(COMMANDS[command](bad.path, str(tmp_path), {}))
    _check_process(command, bad, proc)
    err = proc.stderr.decode("utf-8", "backslashreplace")
    stray = [line for line in err.splitlines() if _names(line, bad)
             and not line.startswith(("error:", "warning:", "problem:"))]
    assert stray == [], f"library output on standard error: {stray}"


# ------------------------------------------------------------------ a mixed night


#: Bad files dropped into each folder of the mixed night, by kind.
MIXED = {
    "bias": ["empty-fits", "random-fits", "fits-half-data", "fitsgz-corrupt",
               "fits-bitpix17", "jpeg-as-bias"],
    "darks": ["light-in-darks", "text-as-fits", "fits-header-only", "edf-banana"],
    "flats": ["html-as-fits", "fits-bzero-text", "tiff-truncated", "fz-truncated"],
    "lights": ["random-cr2", "dng-truncated", "edf-short-data", "png-truncated",
               "fits-1d", "fits-naxis1-negative"],
}


def _mixed_night(tmp_path):
    night = small_night(tmp_path / "night", n_light=3)
    root = Path(night.path)
    corpus = build_corpus(tmp_path / "bad")
    dropped: dict[str, str] = {}  # kind -> path in the night
    for folder, kinds in MIXED.items():
        target = root / folder
        for kind in kinds:
            src = corpus[kind].path
            dest = target / f"bad_{os.path.basename(src)}"
            shutil.copyfile(src, dest)
            dropped[kind] = str(dest)
    # a corrupt gzip of a real bias of the night: the header reads, the pixels do not
    bias = sorted(str(p) for p in night.files_of("bias"))[0]
    dest = Path(bias).parent / "bad_corrupt_pixels.fits.gz"
    dest.write_bytes(corrupt_gzip_of(Path(bias).read_bytes()))
    dropped["fitsgz-corrupt-pixels"] = str(dest)
    # links that lead nowhere and a folder named as a frame
    os.symlink("no_such_bias.fits", root / "bias" / "bad_dangling.fits")
    dropped["symlink-dangling"] = str(root / "bias" / "bad_dangling.fits")
    os.symlink("bad_loop.fits", root / "darks" / "bad_loop.fits")
    dropped["symlink-loop"] = str(root / "darks" / "bad_loop.fits")
    (root / "flats" / "bad_folder.fits").mkdir()
    # a good light whose name is not UTF-8: calibrated like the others
    light = sorted(str(p) for p in night.files_of("light"))[0]
    odd = os.fsencode(str(Path(light).parent)) + b"/light_\xff\xfe.fits"
    with open(odd, "wb") as handle:
        handle.write(Path(light).read_bytes())
    return night, root, dropped, odd


def test_mixed_night_runs_good_frames_and_reports_bad_ones(tmp_path):
    night, root, dropped, odd = _mixed_night(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr, raised = call(["run", str(root), "-o", str(out)])
    assert raised is None, f"main raised {type(raised).__name__}: {raised}"
    assert "Traceback" not in stdout + stderr
    problems = [line for line in stderr.splitlines() if line.startswith("problem: ")]
    # each message on one line: nothing else on standard error
    assert [line for line in stderr.splitlines() if line.strip()
            and not line.startswith(("problem: ", "warning: "))] == []
    # every good light calibrated, the one with an odd name too
    made = sorted(os.listdir(out / "lights"))
    for light in night.files_of("light"):
        assert f"{Path(light).stem}.fits" in made, (made, problems)
    assert b"light_\xff\xfe.fits" in [os.fsencode(m) for m in made], made
    # its provenance gives the name back, byte for byte, and verifies
    from calframe.io import read_provenance

    odd_output = os.fsdecode(os.fsencode(str(out / "lights")) + b"/light_\xff\xfe.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recorded = [os.fsencode(r.path) for r in read_provenance(odd_output).inputs]
    assert odd in [os.path.abspath(p) for p in recorded], recorded
    code_v, out_v, err_v, raised_v = call(["provenance", "--verify", odd_output])
    assert (code_v, raised_v) == (0, None), err_v
    assert "light_\\xff\\xfe.fits" in out_v and "input files present and unchanged" in out_v
    # every bad file reported, each on one line with what and how to fix (files
    # of other kinds, as a JPEG, are listed as not taken with the plan)
    not_taken = stdout.split("not taken (", 1)[-1].splitlines()[1:]
    for kind, path in dropped.items():
        if kind == "light-in-darks":
            continue  # a valid light: it is used as a light, wherever it is
        name = os.path.basename(path)
        lines = [p for p in problems + not_taken if name in p]
        assert lines, f"{kind} ({name}) not reported: {problems}"
        assert all(";" in line for line in lines), lines
    # the report lists them
    report = (out / "report.html").read_text(encoding="utf-8")
    for kind, path in dropped.items():
        if kind != "light-in-darks":
            assert os.path.basename(path) in report, kind
    assert "light_\\xff\\xfe.fits" in report or "light_%FF%FE.fits" in report
    # every bad light is found when its header is read, so no requested output
    # fails: the problems are reported and the run exits 0
    failed = [line for line in stdout.splitlines() if line.strip().startswith("failed:")]
    assert (code, failed) == (0, [])


def test_mixed_night_with_a_fifo_in_a_real_process(tmp_path):
    night = small_night(tmp_path / "night", n_light=2)
    fifo = Path(night.path) / "bias" / "bias.fits"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = _process(["run", str(night.path), "-o", str(out)])
    err = proc.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in err
    assert proc.returncode in (0, 1)
    assert any("bias.fits" in line for line in err.splitlines()
               if line.startswith("problem: ")), err
    assert len(os.listdir(out / "lights")) == 2
    assert (out / "report.html").exists()


# ------------------------------------------------------------------ provenance --verify


def test_verify_of_a_truncated_output_is_a_read_error(tmp_path):
    """A calframe output cut short (copy interrupted): FrameReadError, one line."""
    from calframe.errors import FrameReadError
    from calframe.provenance import provenance_tree

    bad = build_corpus(tmp_path / "bad")["master-truncated"]
    with pytest.raises(FrameReadError, match="truncated"):
        provenance_tree(bad.path, verify=True)
    code, out, err, raised = call(["provenance", "--verify", bad.path])
    check("provenance-verify", bad, code, out, err, raised)
    assert code == 1


def test_verify_goes_on_past_a_truncated_master(tmp_path):
    """A light whose master was cut short: the light's tree, the master not followed."""
    from calframe import calibrate, make_master_bias, write_frame

    raws = [write_good_frame(tmp_path / f"b{i}.fits", seed=i) for i in range(3)]
    light = write_good_frame(tmp_path / "light.fits", imagetyp="Light Frame", exptime=60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        master = write_frame(make_master_bias(raws, rejection=None), tmp_path / "mbias.fits")
        out = write_frame(calibrate(light, bias=str(master)), tmp_path / "light_cal.fits")
    data = Path(master).read_bytes()
    Path(master).write_bytes(data[: len(data) // 2])
    code, stdout, stderr, raised = call(["provenance", "--verify", str(out)])
    assert raised is None and "Traceback" not in stdout + stderr
    assert code == 1  # the master changed
    assert "mbias.fits" in stdout
    assert any("mbias.fits" in line and "truncated or damaged" in line
               for line in stderr.splitlines()), stderr


# ------------------------------------------------------------------ readers that leak


def test_run_takes_a_leaked_read_error_as_a_problem_of_the_file(tmp_path, monkeypatch):
    """A reader that lets zlib.error out while reading pixels: that light fails alone."""
    import zlib

    from calframe.pipeline import PipelineConfig, _checks, run_pipeline

    night = small_night(tmp_path / "night", n_light=3)
    lights = sorted(str(p) for p in night.files_of("light"))
    real = _checks.read_frame

    def leaky(path, *args, **kwargs):
        if str(path) == lights[0]:
            raise zlib.error("Error -3 while decompressing data: invalid distance too far back")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_checks, "read_frame", leaky)  # the check of every frame reads it
    seen = []
    result = run_pipeline(PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out")),
                          on_problem=seen.append)
    assert [os.path.basename(f) for f in result.failed] == [os.path.basename(lights[0])]
    assert any(p.path == lights[0] and "zlib.error" in p.what for p in seen), seen
    assert len(os.listdir(tmp_path / "out" / "lights")) == 2
    assert "invalid distance too far back" in (tmp_path / "out" / "report.html").read_text()


def test_plan_isolates_a_file_the_inventory_cannot_take(tmp_path, monkeypatch):
    """An inventory that lets an error out on one file: the others are planned."""
    import struct

    import calframe.pipeline._plan as pipeline

    night = small_night(tmp_path / "night", n_light=2)
    poison = sorted(str(p) for p in night.files_of("flat"))[0]
    real = pipeline.take_inventory

    def leaky(paths, **kwargs):
        paths = [str(p) for p in paths]
        if any(poison == p or poison.startswith(p.rstrip("/") + "/") for p in paths):
            raise struct.error("unpack requires a buffer of 4 bytes")
        return real(paths, **kwargs)

    monkeypatch.setattr(pipeline, "take_inventory", leaky)
    plan = pipeline.make_plan(pipeline.PipelineConfig(inputs=[str(night.path)],
                                                      output=str(tmp_path / "out")))
    bad = [p for p in plan.problems if p.path == poison]
    assert len(bad) == 1 and "struct.error" in bad[0].what, plan.problems
    assert sum(t.kind == "light" for t in plan.tasks) == 2
    assert all(poison not in t.inputs for t in plan.tasks)
