"""Reproducible outputs, and no machine paths in them."""

import os

import numpy as np
import pytest
from astropy.io import fits

from calframe.cli import main
from calframe.datasets import SyntheticCamera, make_night
from calframe.errors import InvalidSettingsError
from calframe.provenance import Provenance, source_date

CAMERA = SyntheticCamera(shape=(24, 32), cfa="RGGB")


@pytest.fixture()
def night(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_night("night", camera=CAMERA, n_bias=3, n_dark=3, n_flat=3, n_light=2,
               dark_exptimes=(60.0,), light_exptime=60.0, seed=5)
    return tmp_path


def _fits_files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*.fits"))


def _run(*args):
    assert main(["-q", "run", *args, "--no-report"]) == 0


def test_source_date_epoch_gives_byte_identical_outputs(night, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    _run("night", "-o", "a")
    _run("night", "-o", "b")
    files = _fits_files(night / "a")
    assert len(files) == 5 and files == _fits_files(night / "b")
    for name in files:
        assert (night / "a" / name).read_bytes() == (night / "b" / name).read_bytes(), name
    header = fits.getheader(night / "a" / files[0])
    assert header["DATE"] == "2023-11-14T22:13:20"
    assert header.comments["CHECKSUM"] == "HDU checksum updated 2023-11-14T22:13:20"


def test_without_it_runs_differ_only_in_recorded_times(night, monkeypatch):
    """Equal but for times, and for the digests of calframe's own outputs (which hold
    their times): a master's SHA-256 in a light's table differs between runs."""
    import hashlib
    import re

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    _run("night", "-o", "a")
    _run("night", "-o", "b")
    raw = set()
    for path in (night / "night").rglob("*.fits"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        raw |= {digest, digest[:16]}

    def same(text):
        if isinstance(text, np.ndarray):   # a variable-length text cell
            text = "".join(str(c) for c in text.tolist())
        text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+", "<time>", str(text))
        return re.sub(r"[0-9a-f]{16,64}",
                      lambda m: m[0] if m[0] in raw else "<digest of an output>", text)

    stamps = ("DATE", "CHECKSUM", "DATASUM")
    for name in _fits_files(night / "a"):
        with fits.open(night / "a" / name) as one, fits.open(night / "b" / name) as two:
            assert len(one) == len(two)
            for h1, h2 in zip(one, two, strict=True):
                c1 = [(k, same(v)) for k, v in h1.header.items() if k not in stamps]
                c2 = [(k, same(v)) for k, v in h2.header.items() if k not in stamps]
                assert c1 == c2, (name, h1.name)
                if h1.name == "PROVENANCE":
                    assert len(h1.data) == len(h2.data)
                    for column in h1.columns.names:
                        assert [same(v) for v in h1.data[column]] == \
                            [same(v) for v in h2.data[column]], (name, column)
                elif h1.data is not None:
                    np.testing.assert_array_equal(h1.data, h2.data)


def test_no_machine_path_in_any_card_or_table(night):
    """Absolute input paths are written relative to each output, as the input table is."""
    absolute = str(night / "night")
    _run(absolute, "-o", str(night / "out"))
    for name in _fits_files(night / "out"):
        raw = (night / "out" / name).read_bytes()
        assert str(night).encode() not in raw, name       # nor percent-encoded:
        assert str(night).replace("/", "%2F").encode() not in raw, name
    # the combine step names its frames like the table: relative to the master
    from calframe.io import read_provenance

    master = sorted((night / "out" / "masters").glob("bias*.fits"))[0]
    combine = next(s for s in read_provenance(master).steps if s.step == "combine")
    assert all(not os.path.isabs(f) for f in combine.parameters["frames"])
    # --absolute-paths on request
    _run(absolute, "-o", str(night / "abs"), "--absolute-paths")
    master = sorted((night / "abs" / "masters").glob("bias*.fits"))[0]
    assert absolute.encode() in master.read_bytes()


def test_step_parameters_read_back_as_the_inputs_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prov = Provenance()
    prov.add_step("combine", frames=[str(tmp_path / "night" / "b1.fits")], method="median")
    portable = prov.for_output(tmp_path / "night" / "masters")
    assert portable.steps[0].parameters == {"frames": ["../b1.fits"], "method": "median"}


def test_source_date_epoch_must_be_seconds(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InvalidSettingsError, match="SOURCE_DATE_EPOCH='yesterday'"):
        source_date()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert source_date().year == 1970


@pytest.mark.slow
def test_killed_and_resumed_runs_equal_a_clean_run_byte_for_byte(tmp_path, monkeypatch):
    """kill -9 at three points, then resume: every output, stack and provenance
    included, is byte-identical to a clean run's (SOURCE_DATE_EPOCH fixes the times)."""
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    make_night("night", camera=SyntheticCamera(shape=(64, 96)), n_bias=3, n_dark=3,
               n_flat=3, n_light=6, dark_exptimes=(60.0,), light_exptime=60.0, seed=2)

    def command(out):
        return [sys.executable, "-m", "calframe", "-q", "run", "night", "-o", out,
                "--no-report", "--stack", "--stack-align", "translation"]

    subprocess.run(command("clean"), check=True, stdout=subprocess.DEVNULL)
    clean = {p.relative_to(tmp_path / "clean"): p.read_bytes()
             for p in (tmp_path / "clean").rglob("*.fits")}
    assert len(clean) == 3 + 6 + 1
    killed = 0
    for point in (1, 4, 8):
        out = tmp_path / f"killed{point}"
        proc = subprocess.Popen(command(str(out)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and len(list(out.rglob("*.fits"))) >= point:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.wait(timeout=60)
        killed += proc.returncode == -signal.SIGKILL
        subprocess.run(command(str(out)), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        resumed = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.fits")}
        assert sorted(resumed) == sorted(clean)
        for name, content in clean.items():
            assert resumed[name] == content, (point, name)
    assert killed >= 2, "the runs finished before they could be killed"
