"""Distortion calibration: real dot grids, fit time, correction time vs pyFAI.

Run from the project root::

    .venv/bin/python scripts/bench_distortion.py [--real-only | --speed-only]

Prints, for the real dot-grid images of ../shared/data/real/dot-grids, the
spots found, indexing completeness and residual rms, and for dot_pattern_05
the difference between the fitted field and discorpy's reference radial
model (coef_dot_05.txt); then the fit time on a synthetic 2560x2160 grid and
the correction time on 12 MP with calframe and with pyFAI's Distortion.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "dot-grids"


def discorpy_ideal(x, y, coef):
    """Ideal positions of distorted points under discorpy's backward model.

    discorpy: distorted = c + F(ru) (undistorted - c), F(r) = sum_i k_i r**i
    (pixel centres at integers); so rd = ru F(ru), solved here for ru.
    """
    xc, yc = coef["xcenter"], coef["ycenter"]
    k = [coef[f"factor{i}"] for i in range(5) if f"factor{i}" in coef]
    dx, dy = x - xc, y - yc
    rd = np.hypot(dx, dy)
    ru = rd.copy()
    for _ in range(50):
        F = sum(ki * ru ** i for i, ki in enumerate(k))
        ru = rd / F
    s = np.where(rd > 0, ru / np.where(rd > 0, rd, 1), 1.0)
    return xc + s * dx, yc + s * dy


def real():
    from calframe.distortion import DistortionModel, detect_grid_spots
    from calframe.io import read_frame

    for name in ("dot_pattern_05.jpg", "dot_pattern_01.jpg"):
        path = DATA / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ccd = read_frame(path)
        t0 = time.perf_counter()
        spots = detect_grid_spots(ccd)
        t1 = time.perf_counter()
        model = DistortionModel.fit(spots, shape=ccd.shape)
        t2 = time.perf_counter()
        m = model.meta
        print(f"{name}: {ccd.shape[1]}x{ccd.shape[0]}, {m['nspots']} spots found "
              f"({spots.meta['nseeds']} peaks, {spots.meta['nrejected']} rejected by the "
              f"profile fit), {m['nindexed']} indexed ({100 * m['nindexed'] / m['nspots']:.1f}%), "
              f"{m['nclipped']} clipped, residual rms {model.rms:.4f} px, pitch "
              f"{m['pitch_px']:.3f} px; detect {t1 - t0:.2f} s, fit {t2 - t1:.2f} s", flush=True)
        if name == "dot_pattern_05.jpg":
            coef = {}
            for line in (DATA / "coef_dot_05.txt").read_text().splitlines():
                key, _, value = line.partition(":")
                coef[key.strip()] = float(value)
            valid = model.valid_mask
            yy, xx = np.nonzero(valid[::4, ::4])
            x, y = xx * 4.0, yy * 4.0
            dx, dy = model(x, y)
            ux, uy = discorpy_ideal(x, y, coef)
            A = np.column_stack([np.ones(x.size), x + dx, y + dy])
            target = np.column_stack([ux, uy])
            sol = np.linalg.lstsq(A, target, rcond=None)[0]
            e = np.hypot(*(A @ sol - target).T)
            # size of discorpy's field itself, affine part removed
            A0 = np.column_stack([np.ones(x.size), x, y])
            f0 = np.hypot(*(A0 @ np.linalg.lstsq(A0, target, rcond=None)[0] - target).T)
            print(f"  vs discorpy backward model (inside the hull, affine gauge removed): "
                  f"difference rms {np.sqrt(np.mean(e ** 2)):.3f} px, "
                  f"95% {np.percentile(e, 95):.3f}"
                  f" px, max {e.max():.3f} px; discorpy's non-affine field: rms "
                  f"{np.sqrt(np.mean(f0 ** 2)):.3f} px, max {f0.max():.3f} px", flush=True)


def speed():
    from calframe.datasets._grid import GridDistortion, make_grid_image
    from calframe.distortion import DistortionModel, correct_distortion

    shape = (2160, 2560)
    field = GridDistortion(shape, radial=4.0, smooth=2.0, seed=1)
    img, _ = make_grid_image(shape, pitch=40, spot_radius=7, distortion=field, seed=1)
    t0 = time.perf_counter()
    model = DistortionModel.fit(img)
    print(f"fit 2560x2160 synthetic grid ({len(model.spots)} spots): "
          f"{time.perf_counter() - t0:.2f} s, rms {model.rms:.4f} px", flush=True)
    # 12 MP: a model fitted on a 4256x2848 grid
    shape = (2848, 4256)
    field = GridDistortion(shape, radial=4.0, smooth=2.0, seed=2)
    img, _ = make_grid_image(shape, pitch=64, spot_radius=8, distortion=field, seed=2)
    model = DistortionModel.fit(img)
    frame = np.random.default_rng(0).normal(1000, 10, shape).astype(np.float32)
    t0 = time.perf_counter()
    model.inverse_maps()
    model.valid_mask_cached()
    t1 = time.perf_counter()
    correct_distortion(frame, model)  # numba compile + Jacobian
    t2 = time.perf_counter()
    times = []
    for _ in range(3):
        ta = time.perf_counter()
        correct_distortion(frame, model)
        times.append(time.perf_counter() - ta)
    print(f"calframe correct_distortion 12 MP: maps {t1 - t0:.2f} s once, first call "
          f"{t2 - t1:.2f} s, then best {min(times):.3f} s", flush=True)
    try:
        import tempfile

        from pyFAI.detectors import NexusDetector
        from pyFAI.distortion import Distortion
    except ImportError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "det.h5"
        model.to_pyfai(path)
        det = NexusDetector(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dist = Distortion(det)
            t0 = time.perf_counter()
            dist.correct(frame)
            t1 = time.perf_counter()
            times = []
            for _ in range(3):
                ta = time.perf_counter()
                dist.correct(frame)
                times.append(time.perf_counter() - ta)
    print(f"pyFAI Distortion.correct 12 MP: first call (LUT) {t1 - t0:.2f} s, then best "
          f"{min(times):.3f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    if not args.speed_only:
        real()
    if not args.real_only:
        speed()
