"""A whole night, raw folder to calibrated lights: ``calframe run`` against Siril.

Writes a synthetic RGGB night with :func:`calframe.datasets.make_night` (uint16
FITS with BZERO = 32768 and MaxIm headers; by default 12.1 MP frames: 20 biases,
20 darks of 120 s, 20 flats, 20 lights of 120 s), then runs on the SAME files, each
in its own process, one after the other:

* ``calframe -q run NIGHT -o OUT`` (report included), on an empty output folder;
* the same again, every output up to date (the rerun);
* ``calframe -q run NIGHT -o OUT --no-report`` on an empty output folder;
* ``calframe -q run NIGHT -o OUT --gain G --read-noise R`` on an empty folder;
* Siril's OSC preprocessing script (``siril-cli -s``, when installed): ``convert``
  each folder to a sequence; stack the biases and the darks with ``rej 3 3
  -nonorm``; ``preprocess`` the flats with the master bias and stack them with
  ``rej 3 3 -norm=mul``; ``preprocess`` the lights with the master dark and the
  master flat, ``-cfa -equalize_cfa``.

It prints the wall time, the CPU time and the peak resident memory (the child's
``ru_maxrss`` from ``wait4``) of each, and calframe's wall time as a fraction of
Siril's measured in the same run.  The night is kept in ``--folder`` and made again
only when its files are missing.

    .venv/bin/python scripts/bench_night.py
    .venv/bin/python scripts/bench_night.py --size 712 1064 --only calframe siril
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_FRAMES = 20
EXPTIME = 120.0
GAIN = 1.5          # the synthetic camera's, e-/ADU
READ_NOISE = 5.0    # e-
CASES = ("calframe", "calframe-rerun", "calframe-no-report", "calframe-gain", "siril")


def make(folder: Path, shape: tuple[int, int], n: int, seed: int) -> Path:
    """The night in ``folder/night`` (made unless all its files are there)."""
    from calframe.datasets import SyntheticCamera, make_night

    night = folder / "night"
    stamp = folder / f"night-{shape[0]}x{shape[1]}-{n}-{seed}.done"
    if stamp.exists() and night.is_dir():
        return night
    shutil.rmtree(night, ignore_errors=True)
    for old in folder.glob("night-*.done"):
        old.unlink()
    t0 = time.perf_counter()
    make_night(night, seed=seed, camera=SyntheticCamera(shape=shape, cfa="RGGB"),
               n_bias=n, n_dark=n, dark_exptimes=(EXPTIME,), n_flat=n,
               n_light=n, light_exptime=EXPTIME)
    stamp.write_text("")
    print(f"night written in {time.perf_counter() - t0:.0f} s", flush=True)
    return night


def siril_script(night: Path, work: Path) -> str:
    """Siril 1.0's OSC preprocessing, without the registration and the stack."""
    return "\n".join([
        "requires 1.0.0",
        f"cd {night / 'bias'}", f"convert bias -out={work}", f"cd {work}",
        "stack bias rej 3 3 -nonorm",
        f"cd {night / 'flats'}", f"convert flat -out={work}", f"cd {work}",
        "preprocess flat -bias=bias_stacked",
        "stack pp_flat rej 3 3 -norm=mul",
        f"cd {night / 'darks'}", f"convert dark -out={work}", f"cd {work}",
        "stack dark rej 3 3 -nonorm",
        f"cd {night / 'lights'}", f"convert light -out={work}", f"cd {work}",
        "preprocess light -dark=dark_stacked -flat=pp_flat_stacked -cfa -equalize_cfa",
        "close", "",
    ])


def measure(cmd: list[str]) -> dict:
    """Wall time, CPU time and peak RSS of one process (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.stdout.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{output[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss / 1024.0 / 1024.0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(2848, 4256),
                        metavar=("NY", "NX"), help="frame shape (default 2848 4256, 12.1 MP)")
    parser.add_argument("--frames", type=int, default=N_FRAMES,
                        help="frames of each type (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=None,
                        help="where the night and the outputs go (kept; default: a "
                             "temporary folder, removed)")
    parser.add_argument("--only", nargs="+", choices=CASES, default=None)
    args = parser.parse_args(argv)

    cases = [c for c in CASES if args.only is None or c in args.only]
    if "siril" in cases and not shutil.which("siril-cli"):
        print("siril-cli not found: Siril is left out")
        cases.remove("siril")
    calframe = [sys.executable, "-m", "calframe"]
    tmp = None
    if args.folder is None:
        tmp = tempfile.TemporaryDirectory()
        folder = Path(tmp.name)
    else:
        folder = args.folder
        folder.mkdir(parents=True, exist_ok=True)
    try:
        # made in a process of its own: Linux counts the memory a child had when it
        # was forked (a copy of this process) in its peak RSS, so this process stays small
        subprocess.run([sys.executable, "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import bench_night; "
                        "bench_night.make(bench_night.Path(sys.argv[2]), "
                        "(int(sys.argv[3]), int(sys.argv[4])), int(sys.argv[5]), "
                        "int(sys.argv[6]))",
                        str(Path(__file__).parent), str(folder), *map(str, args.size),
                        str(args.frames), str(args.seed)], check=True)
        night = folder / "night"
        mp = args.size[0] * args.size[1] / 1e6
        print(f"night: {args.frames} biases, {args.frames} darks of {EXPTIME:g} s, "
              f"{args.frames} flats, {args.frames} lights of {EXPTIME:g} s; "
              f"{args.size[0]}x{args.size[1]} ({mp:.1f} MP) RGGB uint16 FITS")
        print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
        out = folder / "out"
        runs = {
            "calframe": ([], "calframe -q run NIGHT -o OUT"),
            "calframe-rerun": ([], "the same again, all up to date"),
            "calframe-no-report": (["--no-report"], "calframe -q run ... --no-report"),
            "calframe-gain": (["--gain", str(GAIN), "--read-noise", str(READ_NOISE)],
                              f"calframe -q run ... --gain {GAIN:g} "
                              f"--read-noise {READ_NOISE:g}"),
        }
        results = {}
        labels = {}
        for case in cases:
            if case == "siril":
                work = folder / "siril"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                script = folder / "night.ssf"
                script.write_text(siril_script(night, work))
                results[case] = measure(["siril-cli", "-s", str(script)])
                labels[case] = "Siril 1.0 OSC preprocessing (siril-cli -s)"
                shutil.rmtree(work, ignore_errors=True)
            else:
                extra, labels[case] = runs[case]
                if case != "calframe-rerun":
                    shutil.rmtree(out, ignore_errors=True)
                elif not out.is_dir():
                    raise SystemExit("--only calframe-rerun needs calframe before it")
                results[case] = measure([*calframe, "-q", "run", str(night), "-o", str(out),
                                         *extra])
            r = results[case]
            print(f"{labels[case]:<48} wall {r['wall']:6.2f} s  CPU {r['cpu']:6.1f} s  "
                  f"peak RSS {r['rss']:5.2f} GB", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        siril = results.get("siril")
        if siril:
            for case in cases:
                if case.startswith("calframe") and case != "calframe-rerun":
                    ratio = results[case]["wall"] / siril["wall"]
                    print(f"{case:<20} / Siril: wall {ratio:.2f}x, peak RSS "
                          f"{results[case]['rss']:.2f} GB against {siril['rss']:.2f} GB")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
