"""Time ``calframe run`` on Dask against a run in one process.

1. Overhead: a night of 100 small frames (20 bias, 20 darks, 20 flats, 40
   lights) run with ``scheduler='threads'`` and with ``'processes:1'``
   (a LocalCluster started and stopped by the run: its start-up included),
   and on an already running LocalCluster of one worker (task overhead only).
2. Scaling: a set of nights run on a running LocalCluster of 1 worker, then
   of 2 workers (one thread each).
3. A projection for many nights on many workers from the per-task costs
   measured here and the scheduler's per-task overhead as Dask documents it
   (up to about 1 ms per task, in Dask's best-practice pages).

Every run writes into a fresh folder, without the report.  Times are wall
times, best of ``--repeat``.

Usage: python scripts/bench_cluster.py [--size 64] [--nights 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _night(path: Path, size: int, seed: int, n_light: int = 40):
    from calframe.datasets import SyntheticCamera, make_night

    return make_night(path, camera=SyntheticCamera(shape=(size, size)), n_bias=20,
                      n_dark=20, dark_exptimes=(60.0,), n_flat=20, n_light=n_light,
                      light_exptime=60.0, seed=seed)


def _run(inputs, out: Path, scheduler: str):
    from calframe.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(inputs=[str(p) for p in inputs], output=str(out),
                            report=False, scheduler=scheduler)
    start = time.perf_counter()
    result = run_pipeline(config)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"run failed:\n{result.summary()}")
    return elapsed, len(result.made)


def _best(inputs, base: Path, scheduler: str, repeat: int, tag: str):
    times = []
    for i in range(repeat):
        elapsed, made = _run(inputs, base / f"{tag}-{i}", scheduler)
        times.append(elapsed)
    return min(times), made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="frame side (pixels)")
    parser.add_argument("--nights", type=int, default=4, help="nights of the scaling test")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        night = _night(base / "night", args.size, seed=1)
        threads, made = _best([night.path], base, "threads", args.repeat, "threads")
        started, _ = _best([night.path], base, "processes:1", args.repeat, "proc1")
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as one:
            running, _ = _best([night.path], base, one.scheduler_address, args.repeat,
                               "running1")
        print(f"night of 100 frames of {args.size}x{args.size}: {made} outputs")
        print(f"  threads (one process)            {threads:7.2f} s")
        print(f"  processes:1 (cluster started)    {started:7.2f} s  "
              f"({100 * (started / threads - 1):+.0f} %)")
        print(f"  running cluster of 1 worker      {running:7.2f} s  "
              f"({100 * (running / threads - 1):+.0f} %)")

        nights = [_night(base / f"set/night{i}", args.size, seed=10 + i, n_light=40).path
                  for i in range(args.nights)]
        timings = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=":0") as cluster:
                timings[workers], made_set = _best(nights, base, cluster.scheduler_address,
                                                   args.repeat, f"set{workers}")
        print(f"{args.nights} nights ({made_set} outputs), running clusters:")
        print(f"  1 worker   {timings[1]:7.2f} s")
        print(f"  2 workers  {timings[2]:7.2f} s  (x{timings[1] / timings[2]:.2f})")

        # the projection: every task costs what it cost here on one worker, plus the
        # scheduler's overhead; the coordinator's own work (inventory, one read of
        # every input) does not spread over the workers
        coordinator, _ = _coordinator_time(nights, base)
        per_task = (timings[1] - coordinator) / made_set
        per_frame = coordinator / (100 * args.nights)
        frames, tasks_per_night, workers = 1000 * 80, 80 // 2 + 3, 100
        tasks = 1000 * tasks_per_night
        dask_overhead = 0.001
        cluster_time = tasks * (per_task + dask_overhead) / workers
        print("projection, 1000 nights of 80 frames (40 lights, 40 calibration frames, "
              f"3 masters a night: {tasks} tasks) on {workers} workers:")
        print(f"  per task here {per_task * 1000:.1f} ms, coordinator per frame "
              f"{per_frame * 1000:.1f} ms, Dask ~1 ms per task")
        print(f"  tasks: {tasks} x ({per_task * 1000:.1f} + 1) ms / {workers} = "
              f"{cluster_time:.0f} s; coordinator: {frames} x {per_frame * 1000:.1f} ms = "
              f"{frames * per_frame:.0f} s; total ~ {cluster_time + frames * per_frame:.0f} s")


def _coordinator_time(nights, base: Path):
    """The coordinator's own work: plan, and read every input once for the checks."""
    from calframe.pipeline import PipelineConfig, make_plan
    from calframe.pipeline._checks import check_frames
    from calframe.provenance import sha256_file

    config = PipelineConfig(inputs=[str(p) for p in nights], output=str(base / "plan"),
                            report=False)
    start = time.perf_counter()
    plan = make_plan(config)
    rows = check_frames(plan, digest=sha256_file, exclude=lambda *a: None,
                        progress=lambda it, **kw: it)
    return time.perf_counter() - start, len(rows)


if __name__ == "__main__":
    main()
