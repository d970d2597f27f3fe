"""Time calframe.calibrate against ccdproc.ccd_process on one 12.1 MP light.

Both get the same in-memory float32 light (with uncertainty), master bias,
master dark (scaled by exposure) and master flat, and produce data,
uncertainty and mask.  Prints wall time per call (best of ``--repeat``) and
the largest relative difference of the results; then calframe's
``calibrate`` followed by ``write_frame`` of the result (the calibrated light
as a run writes it: data, uncertainty, mask, provenance, checksums, digest,
fsync and rename), best of ``--repeat``.

Usage: python scripts/bench_calibrate.py [--shape 2848 4256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty


def _frames(shape, seed=0):
    rng = np.random.default_rng(seed)

    def ccd(lo, hi, slo, shi, unit="adu", **meta):
        return CCDData(rng.uniform(lo, hi, shape).astype(np.float32), unit=unit, meta=meta,
                       uncertainty=StdDevUncertainty(
                           rng.uniform(slo, shi, shape).astype(np.float32)))

    light = ccd(2000, 9000, 30, 90, EXPTIME=90.0)
    bias = ccd(950, 1050, 1, 3)
    dark = ccd(5, 400, 1, 6, EXPTIME=300.0)
    flat = ccd(0.6, 1.3, 0.001, 0.01, unit="")
    flat.data /= flat.data.mean(dtype=np.float64)
    return light, bias, dark, flat


def _best(func, repeat):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    import ccdproc

    from calframe import calibrate, write_frame

    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=2, default=(2848, 4256))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    light, bias, dark, flat = _frames(tuple(args.shape))
    t_cf, ours = _best(lambda: calibrate(light, bias=bias, dark=dark, flat=flat),
                       args.repeat)
    t_cp, theirs = _best(lambda: ccdproc.ccd_process(
        light, master_bias=bias, dark_frame=dark, master_flat=flat, exposure_key="EXPTIME",
        exposure_unit=u.s, dark_scale=True), args.repeat)
    rel = np.max(np.abs(ours.data - theirs.data) / np.abs(theirs.data))
    rel_u = np.max(np.abs(ours.uncertainty.array - theirs.uncertainty.array)
                   / theirs.uncertainty.array)
    npix = light.data.size / 1e6
    print(f"frame {args.shape[0]}x{args.shape[1]} ({npix:.1f} MP), best of {args.repeat}")
    print(f"calframe.calibrate   {t_cf:6.3f} s")
    print(f"ccdproc.ccd_process  {t_cp:6.3f} s   ratio {t_cp / t_cf:.2f}")
    print(f"max relative difference: data {rel:.2e}, uncertainty {rel_u:.2e}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "light.fits"

        def both():
            write_frame(calibrate(light, bias=bias, dark=dark, flat=flat), out,
                        overwrite=True)

        t_both, _ = _best(both, args.repeat)
        t_write, _ = _best(lambda: write_frame(ours, out, overwrite=True), args.repeat)
        size = out.stat().st_size / 1e6
    print(f"calframe.write_frame {t_write:6.3f} s   ({size:.0f} MB)")
    print(f"calibrate + write_frame {t_both:6.3f} s")


if __name__ == "__main__":
    main()
