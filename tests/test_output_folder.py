"""The output folder of ``calframe run`` is shared with its user: calframe removes
only the temporaries it made, holds a lock while it writes, and a rerun checks the
bytes of what it skips."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from calframe._atomic import (
    OutputLockedError,
    is_temporary,
    lock_output,
    temporary_path,
)
from calframe.cli import main
from calframe.datasets import SyntheticCamera, make_night
from calframe.io import read_provenance
from calframe.pipeline import (
    HASH_KEYWORD,
    PipelineConfig,
    StackSettings,
    run_pipeline,
)
from calframe.pipeline._resume import _check_output
from calframe.provenance import sha256_file

CAMERA = SyntheticCamera(shape=(32, 48), n_hot_pixels=4, n_dust=1)

#: Names a user may give their own files, some of which calframe used to delete.
USER_NAMES = (".x.tmp", ".a.tmp.png", "y.part", ".z.part.fits", ".light_0001.fits.0a1b2c.tmp",
              ".report.html.tmp", "notes.txt",
              # calframe's own naming, but listed in no journal: still the user's
              ".calframe-1-0123456789ab-x.fits.tmp")
USER_FOLDERS = ("", "lights", "masters", "figures", "sub", "sub/deeper")


def _night(path, **kw):
    options = dict(camera=CAMERA, n_bias=3, n_dark=3, n_flat=3, n_light=6,
                   dark_exptimes=(60.0,), light_exptime=60.0, seed=11)
    options.update(kw)
    return make_night(path, **options)


def _user_files(out: Path) -> dict[Path, bytes]:
    """Fill ``out`` with files of the user, every name calframe might mistake."""
    files = {}
    for folder in USER_FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in USER_NAMES:
            path = out / folder / name
            content = f"user's own {folder}/{name}".encode()
            path.write_bytes(content)
            files[path] = content
    return files


def _assert_untouched(files: dict[Path, bytes]) -> None:
    missing = [str(p) for p, content in files.items()
               if not p.exists() or p.read_bytes() != content]
    assert missing == []


def _temporaries(out: Path) -> list[str]:
    return [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs
            if is_temporary(f) and f not in USER_NAMES]


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.fits") if not p.name.startswith("."))


def _command(night_path, out, *extra):
    return [sys.executable, "-m", "calframe", "-q", "run", str(night_path), "-o", str(out),
            *extra]


def _dead_pid() -> int:
    """The id of a process that has ended (and been waited for)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _holder(out: Path) -> dict:
    try:
        text = (out / ".calframe" / "lock").read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text) if text.strip() else {}


def _wait_for(condition, proc, timeout=120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


# ------------------------------------------------------------- temporaries


def test_temporary_names_are_calframe_s_and_journaled(tmp_path):
    out = tmp_path / "out"
    outside = temporary_path(tmp_path / "elsewhere" / "a.fits")
    assert is_temporary(outside.name, os.getpid())
    assert outside.name.startswith(f".calframe-{os.getpid()}-")
    assert outside.name.endswith("-a.fits.tmp")
    for name in USER_NAMES[:-1]:
        assert not is_temporary(name), name
    assert not is_temporary(".calframe-1-0123456789ab-x.fits.tmp", pid=2)
    with lock_output(out) as lock:
        inside = temporary_path(out / "lights" / "light_0001.fits")
        temporary_path(tmp_path / "elsewhere" / "b.fits")
        lines = lock.journal_path.read_text().splitlines()
        assert json.loads(lines[0])["pid"] == os.getpid()
        assert [json.loads(x) for x in lines[1:]] == [f"lights/{inside.name}"]
    # the run ended: its journal is gone, the lock says nobody holds it
    assert sorted(os.listdir(out / ".calframe")) == ["lock"]
    assert _holder(out) == {}


def test_only_journaled_temporaries_of_a_dead_run_are_removed(tmp_path, caplog):
    night = _night(tmp_path / "night", n_light=2)
    out = tmp_path / "out"
    users = _user_files(out)
    dead = _dead_pid()
    listed = out / "lights" / f".calframe-{dead}-00112233aabb-light_0001.fits.tmp"
    other_pid = out / "lights" / f".calframe-{dead + 1}-00112233aabb-light_0002.fits.tmp"
    unlisted = out / f".calframe-{dead}-445566778899-report.html.tmp"
    outside = tmp_path / "elsewhere" / f".calframe-{dead}-00112233aabb-x.fits.tmp"
    outside.parent.mkdir()
    for path in (listed, other_pid, unlisted, outside):
        path.write_bytes(b"SIMPLE  = half a file")
    (out / ".calframe").mkdir()
    journal = out / ".calframe" / f"journal-{dead}"
    entries = [os.path.relpath(p, out) for p in (listed, other_pid, outside)]
    entries += ["lights/.x.tmp", ".x.tmp", str(out / ".a.tmp.png")]  # the user's files
    journal.write_text("\n".join(json.dumps(e) for e in [
        {"pid": dead, "host": socket.gethostname(), "started": "2026-03-14T19:00:00Z"},
        *entries]) + '\n"lights/.calframe-' + str(dead))   # the last line cut by the kill
    (out / ".calframe" / "lock").write_text(json.dumps(
        {"pid": dead, "host": socket.gethostname(), "started": "2026-03-14T19:00:00Z"}))

    with caplog.at_level(logging.WARNING, logger="calframe"):
        code = main(["-q", "run", str(night.path), "-o", str(out)])
    assert code == 0
    assert not listed.exists()
    assert other_pid.exists() and unlisted.exists() and outside.exists()
    _assert_untouched(users)
    assert f"took over the lock of calframe run pid {dead}" in caplog.text
    assert "removed 1 temporary file it left" in caplog.text
    assert sorted(os.listdir(out / ".calframe")) == ["lock"]
    assert sorted(_temporaries(out)) == sorted(str(p) for p in (other_pid, unlisted))


@pytest.mark.slow
def test_user_files_survive_a_run_a_kill_and_the_resume(tmp_path):
    night = _night(tmp_path / "night", n_light=12)
    out = tmp_path / "out"
    users = _user_files(out)
    proc = subprocess.Popen(_command(night.path, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    lights = out / "lights"
    killed = _wait_for(lambda: len([p for p in lights.glob("light_*.fits")]) >= 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert killed and proc.returncode == -signal.SIGKILL, "the run ended before the kill"
    _assert_untouched(users)
    assert _holder(out)["pid"] == proc.pid  # the lock it left says who left it

    assert main(["-q", "run", str(night.path), "-o", str(out)]) == 0  # the resume
    _assert_untouched(users)
    assert _temporaries(out) == []
    assert sorted(os.listdir(out / ".calframe")) == ["lock"]
    assert len(list(lights.glob("light_*.fits"))) == 12
    assert main(["-q", "run", str(night.path), "-o", str(out)]) == 0  # and once more
    _assert_untouched(users)


# -------------------------------------------------------------------- lock


@pytest.mark.slow
def test_second_run_refused_while_the_first_holds_the_lock(tmp_path, capsys):
    camera = SyntheticCamera(shape=(64, 64), n_hot_pixels=4, n_dust=1)
    night = _night(tmp_path / "night", camera=camera, n_light=150)
    out = tmp_path / "out"
    first = subprocess.Popen(_command(night.path, out, "--no-report"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _holder(out).get("pid") == first.pid, first)
        second = subprocess.run(_command(night.path, out), capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused"
        assert second.returncode == 1
        assert second.stdout == ""
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert lines[0].startswith(f"error: {out}: in use by calframe run pid {first.pid} "
                                   f"on host {socket.gethostname()}, started 20")
        assert "wait for that run to end" in lines[0]
        assert not (out / "report.html").exists()  # the second wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert _holder(out)["pid"] == first.pid  # left behind by the kill
    # the next run sees that the holder is gone and takes over
    capsys.readouterr()
    assert main(["run", str(night.path), "-o", str(out), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of calframe run pid {first.pid}" in err
    assert len(list((out / "lights").glob("light_*.fits"))) == 150
    assert _holder(out) == {}


def test_lock_of_another_host_needs_break_lock(tmp_path, capsys):
    night = _night(tmp_path / "night", n_light=2)
    out = tmp_path / "out"
    (out / ".calframe").mkdir(parents=True)
    holder = {"pid": 4242, "host": "observatory-pc", "started": "2026-03-14T19:00:00Z"}
    (out / ".calframe" / "lock").write_text(json.dumps(holder))
    with pytest.raises(OutputLockedError, match=r"pid 4242 on host observatory-pc.*"
                       r"--break-lock") as info:
        run_pipeline(PipelineConfig(inputs=[str(night.path)], output=str(out),
                                    report=False))
    assert info.value.holder == holder
    assert isinstance(info.value, BlockingIOError)
    assert main(["-q", "run", str(night.path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: locked by calframe run pid 4242 on host "
                          "observatory-pc, started 2026-03-14T19:00:00Z; calframe cannot "
                          "tell from this host whether it still runs")
    assert "Traceback" not in err and not (out / "lights").exists()
    assert main(["-q", "run", str(night.path), "-o", str(out), "--break-lock"]) == 0
    assert len(list((out / "lights").glob("*.fits"))) == 2


def test_lock_is_reentrant_in_one_process_and_refused_to_another(tmp_path):
    out = tmp_path / "out"
    with lock_output(out) as outer:
        with lock_output(out) as inner:
            assert inner is outer and outer.depth == 2
        assert _holder(out)["pid"] == os.getpid()
        # another process cannot take it
        code = ("import sys\nfrom calframe._atomic import lock_output, OutputLockedError\n"
                "try:\n    lock_output(sys.argv[1]).__enter__()\n"
                "except OutputLockedError as err:\n    print(err)\n    sys.exit(3)\n")
        other = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                               text=True, timeout=60)
        assert other.returncode == 3, other.stderr
        assert f"in use by calframe run pid {os.getpid()}" in other.stdout
    assert _holder(out) == {}


def test_without_os_locks_the_process_id_tells(tmp_path, monkeypatch):
    """On a file system without flock, a lock naming a live process refuses."""
    import calframe._atomic as atomic

    monkeypatch.setattr(atomic, "fcntl", None)
    out = tmp_path / "out"
    (out / ".calframe").mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "t"}
        (out / ".calframe" / "lock").write_text(json.dumps(holder))
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid} .*wait for that run"):
            with lock_output(out):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with lock_output(out):  # its process is gone: taken over
        assert _holder(out)["pid"] == os.getpid()
    assert _holder(out) == {}


# ------------------------------------------------------------------ resume


def _stack_config(night, out) -> PipelineConfig:
    return PipelineConfig(inputs=[str(night.path)], output=str(out), report=False,
                          stack=StackSettings(enabled=True, align="none"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _names(paths) -> set[str]:
    return {Path(p.split(" (")[0]).name for p in paths}


def test_check_output_finds_every_damage(tmp_path):
    night = _night(tmp_path / "night", n_light=2)
    out = tmp_path / "out"
    run_pipeline(PipelineConfig(inputs=[str(night.path)], output=str(out), report=False))
    good = out / "lights" / "light_0001.fits"
    problem, key = _check_output(good, HASH_KEYWORD)
    assert problem is None and key == fits.getheader(good)[HASH_KEYWORD]
    whole = good.read_bytes()
    with fits.open(good) as hdul:
        ends = np.cumsum([h.filebytes() for h in hdul])
        data_start = hdul.fileinfo(0)["datLoc"]
    bad = tmp_path / "bad.fits"
    cases = {
        "a byte of the pixels": (whole[:data_start + 100] + bytes([whole[data_start + 100] ^ 1])
                                 + whole[data_start + 101:], "do not match their DATASUM"),
        "a byte of the header": (whole[:1000] + bytes([whole[1000] ^ 4]) + whole[1001:],
                                 "does not match its CHECKSUM"),
        "cut in the data": (whole[:-5000], "cut short"),
        "cut at an HDU boundary": (whole[:int(ends[-2])], "ends before its PROVENANCE"),
        "bytes appended": (whole + b"\0" * 2880, "no FITS header where one should start"),
        "empty": (b"", "ends before its PROVENANCE"),
    }
    for what, (content, expected) in cases.items():
        bad.write_bytes(content)
        problem, _ = _check_output(bad, HASH_KEYWORD)
        assert problem is not None and expected in problem, what
    # a file written without checksums is not taken as whole
    with fits.open(good) as hdul:
        for hdu in hdul:
            del hdu.header["CHECKSUM"], hdu.header["DATASUM"]
        hdul.writeto(bad, overwrite=True, checksum=False)
    assert "no valid data size, CHECKSUM or DATASUM" in _check_output(bad, HASH_KEYWORD)[0]


def test_damaged_outputs_are_made_again_with_what_was_made_from_them(tmp_path):
    night = _night(tmp_path / "night", n_light=4)
    out = tmp_path / "out"
    config = _stack_config(night, out)
    first = run_pipeline(config)
    assert first.ok and len(first.made) == 3 + 4 + 1
    stack = next((out / "stacks").glob("*.fits")).name
    lights = out / "lights"
    _flip(lights / "light_0002.fits", 6000)                  # a byte of the pixels
    whole = (lights / "light_0003.fits").read_bytes()
    (lights / "light_0003.fits").write_bytes(whole[: len(whole) // 2])  # truncated

    second = run_pipeline(config)
    assert second.ok
    assert _names(second.remade) == {"light_0002.fits", "light_0003.fits"}
    assert _names(second.made) == {"light_0002.fits", "light_0003.fits", stack}
    for light in ("light_0002.fits", "light_0003.fits"):
        assert _check_output(lights / light, HASH_KEYWORD)[0] is None
    assert "damaged, made again: " in second.summary()

    third = run_pipeline(config)
    assert third.made == [] and third.remade == []


def test_lights_made_from_a_master_made_again_are_made_again(tmp_path):
    """The race of two runs: one made the flat again after the other used it."""
    night = _night(tmp_path / "night", n_light=4)
    out = tmp_path / "out"
    config = _stack_config(night, out)
    run_pipeline(config)
    stack = next((out / "stacks").glob("*.fits")).name
    flat = next((out / "masters").glob("flat*.fits"))
    # the flat replaced by a whole file of the same task (same PIPEHASH), other bytes
    with fits.open(flat, mode="update", checksum=True) as hdul:
        hdul[0].header["DATE"] = "2026-03-15T01:02:03"
    assert _check_output(flat, HASH_KEYWORD)[0] is None
    digest = sha256_file(flat)

    result = run_pipeline(config)
    assert result.ok
    assert _names(result.made) == {f"light_000{i}.fits" for i in range(1, 5)} | {stack}
    assert result.remade == []  # not damaged: made again because the flat is another
    for light in sorted((out / "lights").glob("*.fits")):
        flats = [r for r in read_provenance(light).inputs
                 if Path(r.path).name == flat.name]  # the master, not its frames
        assert [r.sha256 for r in flats] == [digest], light.name
    assert run_pipeline(config).made == []


def test_damaged_master_makes_its_lights_and_stack_again(tmp_path):
    night = _night(tmp_path / "night", n_light=3)
    out = tmp_path / "out"
    config = _stack_config(night, out)
    run_pipeline(config)
    flat = next((out / "masters").glob("flat*.fits"))
    _flip(flat, 4000)
    result = run_pipeline(config)
    assert result.ok
    assert len(result.made) == 1 + 3 + 1 and len(result.skipped) == 2  # bias and dark kept
    assert _names(result.remade) == {flat.name}
    assert run_pipeline(config).made == []
