"""Wall time and peak memory of ``calframe run`` on a synthetic night of many small frames.

Writes a night with ``--frames`` frames (40% biases, 30% darks, 25% flats, 5% lights)
of ``--shape`` pixels into a temporary folder, then runs, each in a fresh process:

1. the imports alone (the memory floor of any run);
2. ``calframe -q run NIGHT -o OUT --no-report --memory-limit LIMIT`` (a clean run);
3. the same again (every output up to date: inventory, checks and hashes only).

and prints wall time and peak resident memory (RSS) of each.

    .venv/bin/python scripts/bench_pipeline.py --frames 1000 --shape 128 128
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(args: list[str]) -> tuple[float, float]:
    """Run a child Python; return (wall seconds, peak RSS MiB of that child)."""
    # VmHWM: the child's own peak (ru_maxrss would include the parent it was forked from)
    script = ("import sys\n"
              "from calframe.cli import main\n"
              "code = main(sys.argv[1:]) if len(sys.argv) > 1 else 0\n"
              "status = open('/proc/self/status').read().splitlines()\n"
              "print('RSS', next(l.split()[1] for l in status if l.startswith('VmHWM:')))\n"
              "sys.exit(code)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"calframe {' '.join(args)} failed:\n{done.stderr}")
    rss = next(int(line.split()[1]) for line in done.stdout.splitlines()
               if line.startswith("RSS "))
    return wall, rss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--shape", type=int, nargs=2, default=(128, 128))
    parser.add_argument("--memory-limit", default="64MiB")
    args = parser.parse_args()

    from calframe.datasets import SyntheticCamera, make_night

    n = args.frames
    counts = {"n_bias": int(0.4 * n), "n_dark": int(0.3 * n), "n_flat": int(0.25 * n)}
    counts["n_light"] = n - sum(counts.values())
    with tempfile.TemporaryDirectory() as tmp:
        night = Path(tmp) / "night"
        camera = SyntheticCamera(shape=tuple(args.shape), n_hot_pixels=4, n_dust=0)
        make_night(night, camera=camera, dark_exptimes=(30.0,), light_exptime=30.0,
                   seed=1, cosmic_rate=0.0, **counts)
        out = Path(tmp) / "out"
        run = ["-q", "run", str(night), "-o", str(out), "--no-report", "--memory-limit",
               args.memory_limit]
        size_mib = n * args.shape[0] * args.shape[1] * 4 / 2**20
        print(f"{n} frames of {args.shape[0]}x{args.shape[1]} ({counts}), "
              f"{size_mib:.0f} MiB of float32 pixels in all; memory limit "
              f"{args.memory_limit}")
        for label, argv in (("imports only", []), ("clean run", run),
                            ("rerun, all up to date", run)):
            wall, rss = _child(argv)
            print(f"{label:<24} wall {wall:7.1f} s   peak RSS {rss:7.0f} MiB")


if __name__ == "__main__":
    main()
