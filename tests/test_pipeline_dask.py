"""Tests of calframe run on Dask: the scheduler setting, and the same outputs on a
cluster of real worker processes as in one process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from calframe.cli import main
from calframe.datasets import SyntheticCamera, make_night
from calframe.errors import InvalidSettingsError
from calframe.pipeline import PipelineConfig, _cluster, load_config, run_pipeline
from calframe.pipeline._cluster import parse_scheduler

CAMERA = SyntheticCamera(shape=(24, 32), n_hot_pixels=3, n_dust=1)
EPOCH = "1700000000"


# ------------------------------------------------------------ the setting


@pytest.mark.parametrize(("value", "kind", "workers", "address"), [
    ("threads", "threads", 0, ""),
    ("processes:1", "processes", 1, ""),
    ("processes:16", "processes", 16, ""),
    ("tcp://10.1.2.3:8786", "address", 0, "tcp://10.1.2.3:8786"),
    ("scheduler.example.org:8786", "address", 0, "tcp://scheduler.example.org:8786"),
    ("tls://head:8786", "address", 0, "tls://head:8786"),
])
def test_scheduler_forms(value, kind, workers, address):
    s = parse_scheduler(value)
    assert (s.kind, s.workers, s.address) == (kind, workers, address)


@pytest.mark.parametrize("value", ["thread", "processes", "processes:0", "processes:-1",
                                   "processes:two", "ftp://host:21", "host", "host:99999",
                                   "", 3])
def test_bad_scheduler_names_the_value_and_the_forms(value):
    with pytest.raises(InvalidSettingsError) as info:
        PipelineConfig(scheduler=value)
    message = str(info.value)
    assert repr(value) in message
    assert "'threads'" in message and "processes:N" in message
    assert "dask scheduler" in message


def test_scheduler_in_toml(tmp_path):
    path = tmp_path / "calframe.toml"
    path.write_text('inputs = ["night"]\noutput = "out"\nscheduler = "processes:3"\n')
    assert load_config(path).scheduler == "processes:3"
    path.write_text('inputs = ["night"]\noutput = "out"\nscheduler = "processes:x"\n')
    with pytest.raises(InvalidSettingsError, match="processes:x"):
        load_config(path)
    assert PipelineConfig().scheduler == "threads"
    assert PipelineConfig.from_dict(PipelineConfig(scheduler="h:1").to_dict()).scheduler \
        == "h:1"


def test_cli_bad_scheduler_is_one_line(tmp_path, capsys):
    night = tmp_path / "night"
    night.mkdir()
    code = main(["run", str(night), "-o", str(tmp_path / "out"), "--scheduler", "procs=2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "procs=2" in err and "processes:N" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_unreachable_scheduler_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cluster, "CONNECT_TIMEOUT", 1.0)
    night = _night(tmp_path / "night", n_light=1)
    start = time.perf_counter()
    # port 9 (discard) on this host: nothing listens there
    code = main(["-q", "run", str(night.path), "-o", str(tmp_path / "out"),
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in lines[0]
    assert not list((tmp_path / "out").glob("masters/*.fits"))


# ------------------------------------------------------------ real processes


def _night(path, **kw):
    options = dict(camera=CAMERA, n_bias=3, n_dark=3, n_flat=3, n_light=3,
                   dark_exptimes=(60.0,), light_exptime=60.0, seed=5)
    options.update(kw)
    return make_night(path, **options)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*.fits"))}


@pytest.fixture(scope="module")
def cluster():
    """A cluster of two worker processes of one thread each (its address is used)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local:
        yield local


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A night, and its run in this process with SOURCE_DATE_EPOCH set."""
    base = tmp_path_factory.mktemp("dask")
    night = _night(base / "night")
    config = PipelineConfig(inputs=[str(night.path)], output=str(base / "local"),
                            report=False).replace(stack__enabled=True, stack__align="none")
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        result = run_pipeline(config)
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    assert result.ok and len(result.made) == 1 + 1 + 1 + 3 + 1  # bias dark flat lights stack
    return base, config, result


# outputs beside the local run's: the same relative paths to the inputs


def test_cluster_run_is_byte_identical(local_run, cluster, monkeypatch):
    base, config, local = local_run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    remote = run_pipeline(config.replace(output=str(base / "remote"),
                                         scheduler=cluster.scheduler_address))
    assert remote.ok
    assert [Path(p).relative_to(base / "remote") for p in remote.made] \
        == [Path(p).relative_to(base / "local") for p in local.made]
    mine, theirs = _outputs(base / "local"), _outputs(base / "remote")
    assert sorted(mine) == sorted(theirs) and len(mine) == 7
    for name in mine:
        assert mine[name] == theirs[name], name
    # the workers wrote them: no temporary left, and the coordinator's lock given back
    assert not [p for p in (base / "remote").rglob("*") if p.name.endswith(".tmp")]


def test_local_cluster_started_by_the_run(local_run, monkeypatch):
    base, config, _local = local_run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    said = []
    result = run_pipeline(config.replace(output=str(base / "processes"),
                                         scheduler="processes:2"),
                          on_problem=said.append)
    assert result.ok and not said
    assert _outputs(base / "processes") == _outputs(base / "local")


def test_resume_across_schedulers(local_run, cluster):
    """A run on the cluster cut short (outputs missing), finished in this process;
    then nothing to do on the cluster either."""
    base, config, _ = local_run
    out = base / "resumed"
    first = run_pipeline(config.replace(output=str(out), scheduler=cluster.scheduler_address))
    assert first.ok and len(first.made) == 7
    before = _outputs(out)
    lost = sorted(out.glob("lights/*.fits"))[1:]
    for path in lost:
        path.unlink()
    (out / "stacks").joinpath(next(iter(os.listdir(out / "stacks")))).unlink()
    again = run_pipeline(config.replace(output=str(out)))
    assert again.ok
    assert sorted(again.made) == sorted([str(p) for p in lost]
                                        + [str(p) for p in out.glob("stacks/*.fits")])
    assert len(again.skipped) == 7 - len(again.made)
    third = run_pipeline(config.replace(output=str(out), scheduler=cluster.scheduler_address))
    assert third.ok and not third.made and len(third.skipped) == 7
    # what was skipped is what the cluster made at first (the bytes of the masters)
    after = _outputs(out)
    assert {k: v for k, v in after.items() if k.startswith("masters")} \
        == {k: v for k, v in before.items() if k.startswith("masters")}


def test_cluster_run_reports_the_same_problems(cluster, tmp_path):
    night = _night(tmp_path / "night", n_light=2)
    bad = night.path / "lights" / "light_0002.fits"
    bad.write_bytes(bad.read_bytes()[:5000])  # cut short: left out with a problem
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "a"),
                            report=False)
    here = run_pipeline(config)
    there = run_pipeline(config.replace(output=str(tmp_path / "b"),
                                        scheduler=cluster.scheduler_address))
    assert here.ok and there.ok
    assert any("light_0002" in p.path for p in here.problems)
    assert [(p.path, p.what, p.fix) for p in here.problems] \
        == [(p.path, p.what, p.fix) for p in there.problems]
    assert [Path(p).name for p in here.made] == [Path(p).name for p in there.made]


@pytest.mark.slow
def _wait_gone(pids, timeout: float = 30.0) -> None:
    """Wait until none of the processes ``pids`` is running any more."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def test_worker_killed_mid_run(tmp_path, monkeypatch):
    """kill -9 of a worker process while it runs a task: Dask runs the task again on
    a worker, the outputs are those of a run in this process, and no partial file is
    left once the folder is used again."""
    import signal
    import threading

    from distributed import Client, LocalCluster

    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    night = _night(tmp_path / "night", n_light=12,
                   camera=SyntheticCamera(shape=(256, 256), n_hot_pixels=3, n_dust=1))
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "local"),
                            report=False)
    assert run_pipeline(config).ok
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local, Client(local) as client:
        pids = client.run(os.getpid)  # worker address -> process id
        outcome = {}

        def run():
            outcome["result"] = run_pipeline(config.replace(
                output=str(tmp_path / "remote"), scheduler=local.scheduler_address))

        thread = threading.Thread(target=run)
        thread.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and thread.is_alive() and time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if any(str(k).startswith("calframe-light_") for k in keys):
                    os.kill(pids[address], signal.SIGKILL)
                    killed = address
                    break
            time.sleep(0.01)
        thread.join(300)
        assert killed is not None, "no light task was seen running"
        assert killed not in client.scheduler_info()["workers"] or \
            client.run(os.getpid).get(killed) != pids[killed]
        workers = set(pids.values()) | set(client.run(os.getpid).values())
    _wait_gone(workers)  # the cluster is closed: its worker processes have ended
    result = outcome["result"]
    # a light the killed worker had written whole before it died is found up to date
    # when Dask runs its task again
    assert result.ok and len(result.made) + len(result.skipped) == 3 + 12
    assert not result.failed and not result.problems
    remote, mine = _outputs(tmp_path / "remote"), _outputs(tmp_path / "local")
    assert remote == mine
    # the folder used again (in this process): whatever the killed worker was writing
    # is removed, and everything is up to date
    again = run_pipeline(config.replace(output=str(tmp_path / "remote")))
    assert again.ok and not again.made
    left = [p for p in (tmp_path / "remote").rglob("*") if ".calframe-" in p.name]
    assert not left
    journals = list((tmp_path / "remote" / ".calframe").glob("journal-*"))
    assert not journals, [(j.name, j.read_text()) for j in journals]


def test_temporaries_of_a_killed_worker_are_removed(tmp_path):
    """A worker process killed while it writes leaves its temporary, listed in its own
    journal; the run that next takes the lock removes it, and nothing else."""
    import subprocess
    import sys

    from calframe._atomic import lock_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.fits.tmp").write_text("the user's")
    code = (
        "import os, sys\n"
        "from calframe._atomic import journal_temporaries, temporary_path\n"
        "with journal_temporaries(sys.argv[1]):\n"
        "    tmp = temporary_path(os.path.join(sys.argv[1], 'light.fits'))\n"
        "    tmp.write_bytes(b'half a file')\n"
        "    print(tmp.name, flush=True)\n"
        "    os._exit(9)\n")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 9, done.stderr
    name = done.stdout.strip()
    assert (out / name).exists()
    with lock_output(out):
        pass
    assert not (out / name).exists()
    assert (out / "mine.fits.tmp").read_text() == "the user's"
    assert not list((out / ".calframe").glob("journal-*"))


def test_worker_journal_is_gone_when_the_task_ends(tmp_path):
    from calframe._atomic import journal_temporaries, lock_output, temporary_path

    out = tmp_path / "out"
    out.mkdir()
    with journal_temporaries(out), journal_temporaries(out):
        temporary_path(out / "a.fits")
        assert (out / ".calframe" / f"journal-{os.getpid()}").is_file()
    assert not (out / ".calframe" / f"journal-{os.getpid()}").exists()
    with lock_output(out), journal_temporaries(out):  # the lock's own journal lists it
        tmp = temporary_path(out / "b.fits")
        text = (out / ".calframe" / f"journal-{os.getpid()}").read_text()
        assert tmp.name in text and text.count(tmp.name) == 1


def test_two_nights_in_one_graph(cluster, tmp_path, monkeypatch):
    """Several nights given at once are one plan, so one set of tasks on the cluster
    (the second night's camera at another temperature: masters of its own)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    first = _night(tmp_path / "night1", n_light=2)
    second = _night(tmp_path / "night2", n_light=2, seed=6,
                    temperatures={"bias": 0.0, "dark": 0.0, "flat": 0.0, "light": 0.0})
    config = PipelineConfig(inputs=[str(first.path), str(second.path)],
                            output=str(tmp_path / "here"), report=False)
    here = run_pipeline(config)
    assert here.ok and sum("masters" in p for p in here.made) > 3
    there = run_pipeline(config.replace(output=str(tmp_path / "there"),
                                        scheduler=cluster.scheduler_address))
    assert there.ok
    assert _outputs(tmp_path / "here") == _outputs(tmp_path / "there")
    assert len(_outputs(tmp_path / "there")) == len(here.made) == len(there.made)


@pytest.mark.slow
def test_cli_processes_prints_the_dashboard(local_run, capsys, monkeypatch):
    from calframe import _progress

    base, config, _ = local_run
    monkeypatch.setattr(_progress, "_ENABLED", False)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    out = base / "cli"
    code = main(["run", config.inputs[0], "-o", str(out), "--scheduler", "processes:1",
                 "--no-report", "--stack", "--stack-align", "none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Dask dashboard: http://" in captured.err
    assert "7 outputs made" in captured.out
    assert _outputs(out) == _outputs(base / "local")


def test_a_worker_that_does_not_see_the_output_folder_refuses(tmp_path):
    import pickle

    from calframe.pipeline import OutputNotSharedError, make_plan
    from calframe.pipeline._graph import TaskSpec, run_task

    night = _night(tmp_path / "night", n_light=1)
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "elsewhere"),
                            report=False)
    task = next(t for t in make_plan(config).tasks if t.kind == "bias")
    spec = TaskSpec(config=config, task=task, used=[], excluded={}, hashes={},
                    source_date=None)
    spec = pickle.loads(pickle.dumps(spec))  # what Dask sends to a worker
    with pytest.raises(OutputNotSharedError, match="every worker shares"):
        run_task(spec)
    assert not (tmp_path / "elsewhere" / "masters").exists()


def test_cluster_run_writes_the_report(cluster, tmp_path):
    night = _night(tmp_path / "night", n_light=2)
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out"),
                            scheduler=cluster.scheduler_address)
    result = run_pipeline(config)
    assert result.ok and result.report == str(tmp_path / "out" / "report.html")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "5 outputs made" in html and "light_0002" in html
    assert len(result.quality) == 3 + 3 + 3 + 2
