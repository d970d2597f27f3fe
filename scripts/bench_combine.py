"""Benchmark calframe.combine against ccdproc.combine and Siril on the same files.

Generates N uint16 FITS frames with BZERO = 32768 (default 30 of 4256x2848,
12.1 MP, as in docs/benchmarks.md), then times, each in its own process:

* calframe ``combine(paths, method="median")`` and the sigma-clipped mean
  ``combine(paths, method="mean", rejection=SigmaClip(3, 3))``;
* ``ccdproc.combine`` with the same methods (``mem_limit`` = the same limit);
* ``siril-cli`` (when installed): ``convert`` the files to a sequence, then
  ``stack ... med -nonorm`` and ``stack ... rej 3 3 -nonorm``;
* with ``--rejections``, also the mean with the other rejection algorithms
  that Siril has, in calframe and in Siril: sigma clipping with the MAD
  (Siril ``rej a 3 3``), winsorized (``rej w 3 3``), linear fit (``rej l 3
  3``) and GESD (``rej g 0.3 0.05``).

It prints wall time (the whole process, imports included, and the combine
call alone for the Python tools), peak RSS of each process (from ``wait4``),
ratios, and checks calframe's median against numpy's on a band of rows.

Usage::

    python scripts/bench_combine.py                 # 30 frames, full size
    python scripts/bench_combine.py --n 120 --only calframe-median   # memory at N=120
    python scripts/bench_combine.py --quick         # 10 small frames, seconds
    python scripts/bench_combine.py --rejections --only calframe-mad siril-mad
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = ("calframe-median", "calframe-sigclip", "ccdproc-median", "ccdproc-sigclip",
         "siril-median", "siril-sigclip")
#: the other rejection algorithms (--rejections), as Siril's ``stack ... rej`` names them
REJECTIONS = {"mad": "a 3 3", "winsorized": "w 3 3", "linearfit": "l 3 3",
              "gesd": "g 0.3 0.05"}
REJECTION_TOOLS = tuple(f"{tool}-{kind}" for kind in REJECTIONS
                        for tool in ("calframe", "siril"))


def _calframe_rejection(kind: str):
    from calframe import GESD, LinearFitClip, SigmaClip, WinsorizedSigmaClip

    return {"sigclip": SigmaClip(low=3, high=3),
            "mad": SigmaClip(low=3, high=3, scale="mad"),
            "winsorized": WinsorizedSigmaClip(low=3, high=3),
            "linearfit": LinearFitClip(low=3, high=3),
            "gesd": GESD(outliers_fraction=0.3, significance=0.05)}[kind]


def generate(folder: Path, n: int, shape: tuple[int, int], seed: int = 0) -> list[Path]:
    """Bias-like uint16 frames: level 1000 + 10 ADU noise + a few hot pixels and cosmics."""
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "params.json"
    params = {"n": n, "shape": list(shape), "seed": seed}
    paths = [folder / f"frame_{i:04d}.fits" for i in range(n)]
    if stamp.exists() and json.loads(stamp.read_text()) == params \
            and all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    hot = rng.integers(0, shape[0] * shape[1], size=shape[0] * shape[1] // 10000)
    for _i, path in enumerate(paths):
        frame = rng.normal(1000.0, 10.0, size=shape).astype(np.float32)
        frame.flat[hot] += 3000.0
        cosmics = rng.integers(0, frame.size, size=frame.size // 20000)
        frame.flat[cosmics] += rng.uniform(500, 20000, size=cosmics.size)
        data = np.clip(np.rint(frame), 0, 60000).astype(np.uint16)
        hdu = fits.PrimaryHDU(data)
        hdu.header["IMAGETYP"] = "Bias Frame"
        hdu.header["EXPTIME"] = 0.0
        hdu.writeto(path, overwrite=True)
    stamp.write_text(json.dumps(params))
    return paths


def run_child(tool: str, folder: Path, memory_limit: str, out: Path, warm: bool = False) -> dict:
    """Run one tool in this process; return the time of its combine call(s)."""
    paths = sorted(str(p) for p in folder.glob("frame_*.fits"))
    if tool.startswith("calframe"):
        from calframe import combine

        def run():
            if tool == "calframe-median":
                return combine(paths, method="median", memory_limit=memory_limit)
            return combine(paths, method="mean", memory_limit=memory_limit,
                           rejection=_calframe_rejection(tool.split("-", 1)[1]))

        t0 = time.perf_counter()
        res = run()
        elapsed = time.perf_counter() - t0
        if warm:
            del res
            t0 = time.perf_counter()
            res = run()
            return_warm = time.perf_counter() - t0
            np.save(out, np.asarray(res.data[:64], dtype=np.float32))
            return {"combine_s": elapsed, "warm_s": return_warm}
    else:
        import warnings

        import ccdproc
        from astropy import units as u

        nbytes = int(float(memory_limit.rstrip("GiB")) * 1024**3) \
            if memory_limit.endswith("GiB") else int(float(memory_limit))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if tool == "ccdproc-median":
                res = ccdproc.combine(paths, method="median", unit=u.adu, mem_limit=nbytes,
                                      dtype=np.float32)
            else:
                res = ccdproc.combine(paths, method="average", sigma_clip=True,
                                      sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
                                      sigma_clip_func=np.ma.median,
                                      sigma_clip_dev_func=np.ma.std, unit=u.adu,
                                      mem_limit=nbytes, dtype=np.float32)
        elapsed = time.perf_counter() - t0
    np.save(out, np.asarray(res.data[:64], dtype=np.float32))
    return {"combine_s": elapsed}


def _child_main(args) -> int:
    out = Path(args.result)
    info = run_child(args.child, Path(args.dir), args.memory_limit, out.with_suffix(".npy"),
                     warm=args.warm)
    out.write_text(json.dumps(info))
    return 0


def _siril_script(folder: Path, work: Path, kind: str) -> str:
    rej = "3 3" if kind == "sigclip" else REJECTIONS.get(kind)
    stack = ("stack frame_ med -nonorm -out=result" if kind == "median"
             else f"stack frame_ rej {rej} -nonorm -out=result")
    return "\n".join([
        "requires 1.0.0",
        f"cd {folder}",
        f"convert frame_ -out={work}",
        f"cd {work}",
        stack,
        "close",
        "",
    ])


def _measure(cmd: list[str], env=None) -> tuple[float, float, int, float]:
    """Wall time, peak RSS (MB), exit code and CPU time (user + system) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    output = proc.stdout.read().decode(errors="replace")
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(output[-3000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, proc.returncode, usage.ru_utime + usage.ru_stime


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30, help="number of frames (default 30)")
    parser.add_argument("--shape", type=int, nargs=2, default=(2848, 4256),
                        metavar=("NY", "NX"), help="frame shape (default 2848 4256)")
    parser.add_argument("--quick", action="store_true", help="10 frames of 512x768")
    parser.add_argument("--dir", default=None, help="where to keep the generated frames")
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--only", nargs="*", choices=TOOLS + REJECTION_TOOLS, default=None)
    parser.add_argument("--rejections", action="store_true",
                        help="also time the other rejection algorithms (calframe and Siril)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per tool (the fastest is reported)")
    parser.add_argument("--warm", action="store_true",
                        help="calframe: also time a second (warm) call in the same process")
    parser.add_argument("--cold-cache", action="store_true",
                        help="calframe: compile the kernels afresh (empty NUMBA_CACHE_DIR)")
    parser.add_argument("--child", choices=TOOLS + REJECTION_TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _prepare(args) -> tuple[int, list[Path], list[str]]:
    """The frames (generated once, then read into the page cache) and the tools to run."""
    n, shape = args.n, tuple(args.shape)
    if args.quick:
        n, shape = 10, (512, 768)
    name = f"calframe-bench-{n}x{shape[0]}x{shape[1]}"
    folder = Path(args.dir or Path(tempfile.gettempdir()) / name)
    t0 = time.perf_counter()
    paths = generate(folder, n, shape)
    print(f"{n} frames of {shape[1]}x{shape[0]} uint16 (BZERO 32768) in {folder} "
          f"({time.perf_counter() - t0:.1f} s to prepare)")
    for p in paths:  # bring the files into the page cache, as for every tool
        with open(p, "rb") as handle:
            while handle.read(1 << 24):
                pass
    tools = args.only or [t for t in TOOLS + (REJECTION_TOOLS if args.rejections else ())
                          if not t.startswith("siril") or shutil.which("siril-cli")]
    return n, paths, tools


def _run_one(tool: str, args, folder: Path, scratch: Path) -> dict:
    """One process of one tool: wall, peak RSS, exit code, CPU and what it reported."""
    result = scratch / f"{tool}.json"
    if tool.startswith("siril"):
        work = scratch / f"siril-{tool}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        script = scratch / f"{tool}.ssf"
        script.write_text(_siril_script(folder, work, tool.split("-", 1)[1]))
        wall, rss, code, cpu = _measure(["siril-cli", "-s", str(script)])
        info = {}
        shutil.rmtree(work, ignore_errors=True)
    else:
        cmd = [sys.executable, __file__, "--child", tool, "--dir", str(folder),
               "--memory-limit", args.memory_limit, "--result", str(result)]
        env = None
        if tool.startswith("calframe"):
            cmd += ["--warm"] if args.warm else []
            if args.cold_cache:
                env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(dir=scratch)}
        wall, rss, code, cpu = _measure(cmd, env=env)
        info = json.loads(result.read_text()) if code == 0 else {}
    return {"wall_s": wall, "rss_mb": rss, "code": code, "cpu_s": cpu, **info}


def _run_tools(tools, args, folder: Path, scratch: Path) -> dict[str, dict]:
    """The fastest of ``args.repeat`` runs of each tool, taken round robin.

    Round robin: every tool's runs sample the same stretches of time, so that a
    machine whose speed drifts favours no tool.
    """
    results: dict[str, dict] = {}
    for rep in range(args.repeat):
        for tool in tools:
            run = _run_one(tool, args, folder, scratch)
            print(f"  run {rep + 1}: {tool:18s} wall {run['wall_s']:7.2f} s", flush=True)
            best = results.get(tool)
            if best is None or run["wall_s"] < best["wall_s"]:
                results[tool] = run
    for tool in tools:
        best = results[tool]
        extra = f", combine call {best['combine_s']:.2f} s" if "combine_s" in best else ""
        if "warm_s" in best:
            extra += f" (second call in the process {best['warm_s']:.2f} s)"
        print(f"{tool:18s} wall {best['wall_s']:7.2f} s{extra}, CPU {best['cpu_s']:6.2f} s, "
              f"peak RSS "
              f"{best['rss_mb']:7.0f} MB" + ("" if best["code"] == 0 else "  FAILED"),
              flush=True)
    return results


def _check_median(paths, scratch: Path) -> None:
    """calframe's median against numpy (and ccdproc's) on the first 64 rows."""
    med = scratch / "calframe-median.npy"
    if not med.exists():
        return
    from astropy.io import fits

    rows = np.stack([fits.getdata(p)[:64].astype(np.float64) for p in paths])
    ref = np.median(rows, axis=0)
    ours = np.load(med)
    print(f"calframe median vs numpy (64 rows): max |diff| = "
          f"{np.nanmax(np.abs(ours - ref)):.3g}")
    ccd = scratch / "ccdproc-median.npy"
    if ccd.exists():
        print(f"calframe median vs ccdproc (64 rows): max |diff| = "
              f"{np.nanmax(np.abs(ours - np.load(ccd))):.3g}")


def _wall(r) -> float:
    """A process's wall time, less its second (warm) call when there was one."""
    return r["wall_s"] - r.get("warm_s", 0.0)


def _process_cell(r) -> str:
    return "-" if not r else (f"{_wall(r):.2f} s ({r['cpu_s']:.1f} s CPU), "
                              f"{r['rss_mb']:.0f} MB")


def _print_table(results: dict[str, dict], n: int) -> None:
    print()
    print("Process wall time (imports and start-up included; with --warm, the second call is")
    print("subtracted; CPU = user + system time of the process, all threads, both calls with")
    print("--warm) and, for the Python tools, the combine call alone; peak RSS.")
    print()
    print("| work | calframe process | calframe call (warm) | ccdproc process | ccdproc call "
          "| Siril process | ccdproc / calframe (process, call) | calframe / Siril |")
    print("|---|---|---|---|---|---|---|---|")
    labels = {"median": "median", "sigclip": "sigma-clipped mean (3, 3)",
              "mad": "mean, sigma clipping with the MAD (3, 3)",
              "winsorized": "mean, winsorized sigma clipping (3, 3)",
              "linearfit": "mean, linear fit clipping (3, 3)",
              "gesd": "mean, GESD (0.3, 0.05)"}
    for kind, label in labels.items():
        if not any(tool.endswith(f"-{kind}") for tool in results):
            continue
        c = results.get(f"calframe-{kind}")
        p = results.get(f"ccdproc-{kind}")
        s = results.get(f"siril-{kind}")
        call = "-" if not c else f"{c['combine_s']:.2f} s" + (
            f" ({c['warm_s']:.2f} s)" if "warm_s" in c else "")
        pcall = "-" if not p else f"{p['combine_s']:.2f} s"
        r1 = (f"{_wall(p) / _wall(c):.1f}x, {p['combine_s'] / c['combine_s']:.1f}x"
              if c and p else "-")
        r2 = f"{_wall(c) / _wall(s):.2f}x" if c and s else "-"
        print(f"| {label} of {n} | {_process_cell(c)} | {call} | {_process_cell(p)} "
              f"| {pcall} | {_process_cell(s)} | {r1} | {r2} |")


def main(argv=None) -> int:
    args = _parse(argv)
    if args.child:
        return _child_main(args)
    n, paths, tools = _prepare(args)
    folder = paths[0].parent
    print(f"load average before: {os.getloadavg()}")
    scratch = Path(tempfile.mkdtemp(prefix="calframe-bench-run-"))
    try:
        results = _run_tools(tools, args, folder, scratch)
        _check_median(paths, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    _print_table(results, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
