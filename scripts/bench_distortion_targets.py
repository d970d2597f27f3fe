"""Distortion on hard targets, against a known field: polarity, CFA, strong lenses.

Run from the project root::

    .venv/bin/python scripts/bench_distortion_targets.py [--real]

Prints, for synthetic grids with a known field, the field error (rms and
worst, px, inside the hull minus one pitch, affine gauge removed) and fit
time of: a dark-dot grid behind a lens image circle (the histogram says
"bright"), line grids, a CFA (RGGB) mosaic with colour gains fitted on its green, red
and blue sites, a 30 px barrel and a barrel plus a fine ripple with the
default and the automatic stiffness.  With ``--real``, the automatic
stiffness on the real dot grids of ../shared/data/real/dot-grids (held-out
residual of each candidate).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "dot-grids"


class Ripple:
    """A 30 px barrel plus a 0.4 px ripple of 90 px wavelength (5 pitches of 18 px)."""

    def __init__(self, shape):
        from calframe.datasets import GridDistortion

        self.base = GridDistortion(shape, radial=30.0, smooth=1.0, seed=4)
        self.k = 2 * np.pi / 90.0

    def __call__(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        dx, dy = self.base(x, y)
        return dx + 0.4 * np.sin(self.k * y), dy + 0.4 * np.sin(self.k * x + 1.0)

    def observed(self, xi, yi, iterations=30):
        x, y = np.array(xi, float), np.array(yi, float)
        for _ in range(iterations):
            dx, dy = self(x, y)
            x, y = xi - dx, yi - dy
        return x, y


def show(label, image, field, **kw):
    from calframe.distortion import DistortionModel, field_error

    t0 = time.perf_counter()
    model = DistortionModel.fit(image, **kw)
    dt = time.perf_counter() - t0
    if not model:
        print(f"{label}: no fit ({model.reason}) {dt:.1f} s")
        return
    rms, worst = field_error(model, field)
    extra = ""
    if "stiffness" in model.meta:
        extra = f", chose {model.meta['stiffness']['chosen']}"
    print(f"{label}: {len(model.spots)} spots, field error {rms:.4f} px rms, {worst:.4f} px "
          f"worst, {dt:.1f} s{extra}")


def synthetic():
    from astropy.nddata import CCDData

    from calframe.datasets import GridDistortion, make_grid_image
    from calframe.distortion import FitSettings

    shape = (600, 800)
    field = GridDistortion(shape, radial=30.0, smooth=1.0, seed=4)
    img, _ = make_grid_image(shape, pitch=30, spot_radius=5, polarity="dark", distortion=field,
                             vignetting=0.3, amplitude=800, background=50, field_stop=0.5,
                             seed=1)
    show("dark dots, 30 px barrel, image circle (auto polarity)", img, field)

    shape = (400, 600)
    field = GridDistortion(shape, radial=6.0, smooth=1.0, seed=2)
    img, _ = make_grid_image(shape, pitch=26, spot_radius=6, polarity="dark", distortion=field,
                             amplitude=3000, background=200, seed=3)
    gain = np.empty(shape)
    for k, g in enumerate((0.45, 1.0, 1.0, 0.3)):
        gain[k // 2::2, k % 2::2] = g
    mosaic = CCDData(img * gain, unit="adu", meta={"BAYERPAT": "RGGB"})
    show("grey image of the CFA grid", img, field)
    for ch in ("g", "r", "b"):
        show(f"RGGB mosaic, channel {ch}", mosaic, field, channel=ch)

    shape = (480, 640)
    field = GridDistortion(shape, radial=30.0, smooth=1.0, seed=4)
    img, _ = make_grid_image(shape, pitch=24, spot_radius=5, distortion=field, seed=1)
    show("30 px barrel, default stiffness", img, field)
    show("30 px barrel, --flexibility auto", img, field,
         settings=FitSettings.flexibility("auto"))

    shape = (480, 480)
    field = Ripple(shape)
    img, _ = make_grid_image(shape, pitch=18, spot_radius=4, distortion=field, seed=1)
    show("barrel + 0.4 px ripple of 5 pitches, default stiffness", img, field)
    show("barrel + 0.4 px ripple of 5 pitches, --flexibility auto", img, field,
         settings=FitSettings.flexibility("auto"))

    from calframe.datasets._linegrid import make_line_grid

    shape = (480, 640)
    field = GridDistortion(shape, radial=8.0, smooth=1.0, seed=3)
    for label, kw in (("line grid, blur 0.8, noise 3", {"blur": 0.8, "read_noise": 3.0}),
                      ("line grid, blur 1.2, 60 % gradient, noise 8, 6 broken lines",
                       {"blur": 1.2, "gradient": 0.6, "read_noise": 8.0, "broken": 6}),
                      ("bright line grid, blur 1.0, noise 5",
                       {"polarity": "bright", "blur": 1.0, "read_noise": 5.0})):
        img = make_line_grid(shape, pitch=30, width=2.0, distortion=field, seed=1, **kw)
        show(label, img, field)


def real():
    from calframe.distortion import DistortionModel, FitSettings, detect_grid_spots
    from calframe.io import read_frame

    for name in ("dot_pattern_05.jpg", "dot_pattern_01.jpg"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ccd = read_frame(DATA / name)
        spots = detect_grid_spots(ccd)
        t0 = time.perf_counter()
        model = DistortionModel.fit(spots, shape=ccd.shape,
                                    settings=FitSettings.flexibility("auto", time_budget=60))
        info = model.meta["stiffness"]
        scores = ", ".join(f"({c['radial_order']}, {c['knot_spacing']:g}): "
                           f"{c['holdout_rms']:.4f} px" for c in info["candidates"])
        print(f"{name}: held-out rms {scores}; skipped {info['skipped']}; chose "
              f"{info['chosen']}; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="also the real dot grids")
    args = ap.parse_args()
    synthetic()
    if args.real:
        real()
