"""Distortion model files and the pyFAI export at 12 MP: time and size.

Run from the project root::

    .venv/bin/python scripts/bench_distortion_export.py [--shape 2848 4256] [--pitch 26]

A model is fitted on a synthetic table of grid spots (a lattice through a
known field, no image rendering) of the given detector shape; then
``to_fits`` (compact, and with ``maps=True``), ``from_fits`` and
``to_pyfai`` are timed, the file sizes printed, and the pyFAI detector's
pixel corners compared with the model (largest difference in pixels).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def model_for(shape, pitch, seed=0):
    from astropy.table import Table

    from calframe.datasets import GridDistortion
    from calframe.distortion import DistortionModel

    ny, nx = shape
    field = GridDistortion(shape, radial=20.0, smooth=2.0, seed=seed)
    rng = np.random.default_rng(seed)
    jj, ii = np.mgrid[-1:int(ny / pitch) + 2, -1:int(nx / pitch) + 2]
    xi, yi = ii.ravel() * pitch + 3.0, jj.ravel() * pitch + 5.0
    xo, yo = field.observed(xi, yi)
    inside = (xo > 8) & (xo < nx - 9) & (yo > 8) & (yo < ny - 9)
    xo = xo[inside] + rng.normal(0, 0.01, inside.sum())
    yo = yo[inside] + rng.normal(0, 0.01, inside.sum())
    return DistortionModel.fit(Table({"x": xo, "y": yo}), shape=shape, pitch=pitch), field


def _fresh(model):
    """A copy of the model without its cached maps and masks."""
    import copy

    new = copy.copy(model)
    new.meta = dict(model.meta)
    for name in ("_maps", "_inverse_maps", "_valid", "_jac"):
        new.__dict__.pop(name, None)
    new._maps = new._inverse_maps = None
    return new


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=2, default=(2848, 4256))
    ap.add_argument("--pitch", type=float, default=26.0)
    args = ap.parse_args(argv)
    from calframe.distortion import DistortionModel

    t0 = time.perf_counter()
    model, _ = model_for(tuple(args.shape), args.pitch)
    print(f"model of {args.shape[1]}x{args.shape[0]}: {len(model.spots)} spots, "
          f"fit {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, kw in (("compact", {}), ("with maps", {"maps": True})):
            path = tmp / f"model-{label.replace(' ', '-')}.fits"
            fresh = _fresh(model)
            t0 = time.perf_counter()
            try:
                fresh.to_fits(path, **kw)
            except TypeError:  # a calframe without the maps option
                print(f"to_fits ({label}): not available")
                continue
            t1 = time.perf_counter()
            back = DistortionModel.from_fits(path)
            dx, _ = back.maps()
            t2 = time.perf_counter()
            print(f"to_fits ({label}): {t1 - t0:.2f} s, {os.path.getsize(path) / 1e6:.2f} MB; "
                  f"from_fits + maps {t2 - t1:.2f} s")
        fresh = _fresh(model)
        fresh.valid_mask_cached()
        path = tmp / "detector.h5"
        t0 = time.perf_counter()
        fresh.to_pyfai(path)
        t1 = time.perf_counter()
        print(f"to_pyfai: {t1 - t0:.2f} s, {os.path.getsize(path) / 1e6:.1f} MB")
        from pyFAI.detectors import NexusDetector

        det = NexusDetector(str(path))
        corners = det.get_pixel_corners()
        ny, nx = fresh.shape
        rows = np.r_[0, ny // 3, ny - 1]
        cols = np.r_[0, nx // 2, nx - 1]
        yy, xx = np.meshgrid(rows - 0.5, cols - 0.5, indexing="ij")
        dx, dy = fresh(xx, yy)
        got_x = corners[rows][:, cols][..., 0, 2] / 1e-4 - 0.5
        got_y = corners[rows][:, cols][..., 0, 1] / 1e-4 - 0.5
        err = np.hypot(got_x - (xx + dx), got_y - (yy + dy)).max()
        print(f"pyFAI corners vs model: largest difference {err:.2e} px")


if __name__ == "__main__":
    main()
