"""Benchmark align + stack: calframe against astroalign + ccdproc and Siril, one run.

Generates N float32 FITS star fields (default 30 of 4256x2848, 12.1 MP) that are
shifted (up to +-20 px) and rotated (up to +-0.5 degree) copies of one field of
pixel-integrated Gaussian stars with Poisson-like noise, then times, each in its
own process:

* calframe ``stack(paths, align="stars", method="mean", rejection=SigmaClip(3, 3))``;
* the hand-written notebook way: ``astroalign.register`` of every frame onto the
  first, then ``ccdproc.combine(method="average", sigma_clip=True)``;
* ``siril-cli`` (when installed): ``convert``, ``register``, then
  ``stack r_... rej 3 3 -nonorm``.

It prints wall time, peak RSS of each process (from ``wait4``), ratios, and the
error of calframe's recovered transforms against the known truth.

Usage::

    python scripts/bench_register.py            # 30 frames, full size
    python scripts/bench_register.py --quick    # 8 frames of 1024x1536
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

TOOLS = ("calframe", "astroalign+ccdproc", "siril")


def _matrix(dx, dy, angle_deg, center):
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    cx, cy = center
    return np.array([[c, -s, cx + dx - c * cx + s * cy],
                     [s, c, cy + dy - s * cx - c * cy],
                     [0.0, 0.0, 1.0]])


def _render(shape, xy, flux, sigma, rng, sky=200.0):
    from scipy.special import erf

    image = np.full(shape, sky, dtype=np.float32)
    ny, nx = shape
    half = int(np.ceil(5 * sigma))
    offsets = np.arange(-half, half + 2) - 0.5
    for (x0, y0), f in zip(xy, flux, strict=True):
        ix, iy = int(np.floor(x0)), int(np.floor(y0))
        if ix < half or iy < half or ix >= nx - half - 1 or iy >= ny - half - 1:
            continue
        ex = 0.5 * erf((ix + offsets - x0) / (np.sqrt(2) * sigma))
        ey = 0.5 * erf((iy + offsets - y0) / (np.sqrt(2) * sigma))
        image[iy - half:iy + half + 1, ix - half:ix + half + 1] += \
            (f * np.outer(np.diff(ey), np.diff(ex))).astype(np.float32)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.sqrt(image + 25.0)
    return image + noise


def generate(folder: Path, n: int, shape: tuple[int, int], seed: int = 0):
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "params.json"
    params = {"n": n, "shape": list(shape), "seed": seed}
    paths = [folder / f"light_{i:04d}.fits" for i in range(n)]
    truth_file = folder / "truth.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params \
            and all(p.exists() for p in paths):
        return paths, [np.array(m) for m in json.loads(truth_file.read_text())]
    rng = np.random.default_rng(seed)
    ny, nx = shape
    nstars = max(200, int(400 * ny * nx / 12.1e6))
    ref_xy = np.column_stack([rng.uniform(0, nx, nstars), rng.uniform(0, ny, nstars)])
    flux = 10 ** rng.uniform(3.3, 5.0, nstars)
    truth = []
    for i, path in enumerate(paths):
        m = np.eye(3) if i == 0 else _matrix(rng.uniform(-20, 20), rng.uniform(-20, 20),
                                             rng.uniform(-0.5, 0.5), (nx / 2, ny / 2))
        x, y, _ = m @ np.vstack([ref_xy.T, np.ones(nstars)])
        data = _render(shape, np.column_stack([x, y]), flux, 1.5, rng)
        header = fits.Header({"IMAGETYP": "Light Frame", "EXPTIME": 60.0, "BUNIT": "adu",
                              "EGAIN": 1.0, "RDNOISE": 5.0})
        fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)
        truth.append(m)
    truth_file.write_text(json.dumps([m.tolist() for m in truth]))
    stamp.write_text(json.dumps(params))
    return paths, truth


def run_child(tool: str, folder: Path, memory_limit: str, out: Path) -> dict:
    import warnings

    paths = sorted(str(p) for p in folder.glob("light_*.fits"))
    t0 = time.perf_counter()
    info: dict = {}
    if tool == "calframe":
        from calframe import SigmaClip
        from calframe.register import align, stack

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transforms = align(paths, method="stars", fwhm=3.5)
            t_align = time.perf_counter() - t0
            res = stack(paths, transforms=transforms, method="mean",
                        rejection=SigmaClip(low=3, high=3), memory_limit=memory_limit)
        info["align_s"] = t_align
        info["matrices"] = [t.matrix.tolist() for t in transforms]
    else:
        import astroalign
        import ccdproc
        from astropy import units as u
        from astropy.io import fits
        from astropy.nddata import CCDData

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = fits.getdata(paths[0]).astype(np.float32)
            registered = []
            for p in paths:
                data = fits.getdata(p).astype(np.float32)
                warped, footprint = astroalign.register(data, ref)
                registered.append(CCDData(warped.astype(np.float32), unit=u.adu,
                                          mask=footprint))
            t_align = time.perf_counter() - t0
            res = ccdproc.combine(registered, method="average", sigma_clip=True,
                                  sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
                                  sigma_clip_func=np.ma.median,
                                  sigma_clip_dev_func=np.ma.std, dtype=np.float32)
        info["align_s"] = t_align
    info["total_s"] = time.perf_counter() - t0
    np.save(out, np.asarray(res.data[::64, ::64], dtype=np.float32))
    return info


def _siril_script(folder: Path, work: Path) -> str:
    return "\n".join(["requires 1.0.0", f"cd {folder}", f"convert light_ -out={work}",
                      f"cd {work}", "register light_",
                      "stack r_light_ rej 3 3 -nonorm -out=result", "close", ""])


def _measure(cmd: list[str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    output = proc.stdout.read().decode(errors="replace")
    proc.stdout.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(output[-3000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--shape", type=int, nargs=2, default=(2848, 4256),
                        metavar=("NY", "NX"))
    parser.add_argument("--quick", action="store_true", help="8 frames of 1024x1536")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--only", nargs="*", choices=TOOLS, default=None)
    parser.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        out = Path(args.result)
        info = run_child(args.child, Path(args.dir), args.memory_limit,
                         out.with_suffix(".npy"))
        out.write_text(json.dumps(info))
        return 0
    n, shape = args.n, tuple(args.shape)
    if args.quick:
        n, shape = 8, (1024, 1536)
    folder = Path(args.dir or Path(tempfile.gettempdir())
                  / f"calframe-bench-register-{n}x{shape[0]}x{shape[1]}")
    t0 = time.perf_counter()
    paths, truth = generate(folder, n, shape)
    print(f"{n} float32 star fields of {shape[1]}x{shape[0]} in {folder} "
          f"({time.perf_counter() - t0:.1f} s to prepare)")
    for p in paths:
        with open(p, "rb") as handle:
            while handle.read(1 << 24):
                pass
    tools = args.only or [t for t in TOOLS if t != "siril" or shutil.which("siril-cli")]
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, dict] = {}
    scratch = Path(tempfile.mkdtemp(prefix="calframe-bench-register-run-"))
    try:
        for tool in tools:
            result = scratch / f"{tool}.json"
            if tool == "siril":
                work = scratch / "siril"
                work.mkdir()
                script = scratch / "siril.ssf"
                script.write_text(_siril_script(folder, work))
                wall, rss, code = _measure(["siril-cli", "-s", str(script)])
                info = {}
            else:
                wall, rss, code = _measure([sys.executable, __file__, "--child", tool,
                                            "--dir", str(folder), "--memory-limit",
                                            args.memory_limit, "--result", str(result)])
                info = json.loads(result.read_text()) if code == 0 else {}
            results[tool] = {"wall_s": wall, "rss_mb": rss, "code": code, **info}
            extra = f", align {info['align_s']:.1f} s" if "align_s" in info else ""
            print(f"{tool:20s} wall {wall:7.2f} s{extra}, peak RSS {rss:7.0f} MB"
                  + ("" if code == 0 else "  FAILED"), flush=True)
        if "matrices" in results.get("calframe", {}):
            ny, nx = shape
            corners = np.array([[0, 0, 1], [nx, 0, 1], [0, ny, 1], [nx, ny, 1]], float).T
            worst = 0.0
            for got, want in zip(results["calframe"]["matrices"], truth, strict=True):
                g = np.array(got) @ corners
                w = want @ corners
                worst = max(worst, float(np.max(np.hypot(*(g[:2] - w[:2])))))
            print(f"calframe transforms vs truth: worst corner error {worst:.4f} px")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    print()
    print("| work | calframe | astroalign + ccdproc | Siril | other / calframe | "
          "calframe / Siril |")
    print("|---|---|---|---|---|---|")
    c, p, s = (results.get(k) for k in TOOLS)

    def cell(r):
        return "-" if not r or r["code"] else f"{r['wall_s']:.1f} s, {r['rss_mb']:.0f} MB"

    r1 = f"{p['wall_s'] / c['wall_s']:.1f}x" if c and p else "-"
    r2 = f"{c['wall_s'] / s['wall_s']:.2f}x" if c and s else "-"
    print(f"| align + sigma-clipped mean of {n} | {cell(c)} | {cell(p)} | {cell(s)} "
          f"| {r1} | {r2} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
