"""Beamline figures: per-frame read cost, memory over a long stream, pulls with no bias.

1. Per-frame read cost of a 200-frame 1024x1024 uint16 stack, reading frames
   2, 12, ... 192 one by one:
   - multi-page TIFF: ``tifffile.imread(path, key=k)`` against
     ``calframe.read_frame(path, frame=k)`` (a whole frame: mask, noise model,
     keywords, provenance with the file's SHA-256) and ``open_series(path).frame(k)``
     (the file opened once);
   - HDF5 (uncompressed and bitshuffle-LZ4): ``h5py`` ``ds[k]`` against the same two.
2. Memory over a long stream: ``running_mean(open_series(h5))`` over 33,000 frames of
   64x64, peak RSS after 1,000 frames and at the end.
3. Pulls on the no-bias beamline path (weak beam: 20 adu of signal over a 100 adu
   offset, raw dark of the same exposure, gain 2 e-/adu, read noise 4 e-): the pull
   std of ``calibrate(light, dark=dark)`` now, of the reader's uncertainty as
   propagated before (the offset counted as photon signal, in the light and in the
   dark), and of the frame read with ``pedestal=`` given by hand.

    .venv/bin/python scripts/bench_beamline.py
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import tifffile
from astropy.io import fits

from calframe import calibrate, open_series, read_frame, running_mean
from calframe.errors import UncertaintyUnknownWarning

FRAMES = range(2, 200, 10)


def per_frame(func) -> float:
    func(FRAMES[0])     # warm the page cache and imports
    start = time.perf_counter()
    for k in FRAMES:
        func(k)
    return (time.perf_counter() - start) / len(FRAMES)


def read_costs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4000, (1024, 1024)).astype(np.uint16)
    tif = folder / "stack.tif"
    with tifffile.TiffWriter(tif) as writer:
        for k in range(200):
            writer.write(base + k, contiguous=True)
    rows = [("multi-page TIFF", tif, lambda k: tifffile.imread(tif, key=k), "tifffile")]
    for name, compression in (("HDF5", {}), ("HDF5 bitshuffle-LZ4",
                                             dict(hdf5plugin.Bitshuffle(cname="lz4")))):
        path = folder / f"stack_{len(compression)}.h5"
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("entry/data/data", (200, 1024, 1024), np.uint16,
                                  chunks=(1, 1024, 1024), **compression)
            for k in range(200):
                ds[k] = base + k
        handle = h5py.File(path, "r")
        rows.append((name, path, lambda k, d=handle["entry/data/data"]: d[k], "h5py ds[k]"))
    print("| file | reference | reference per frame (ms) | read_frame(frame=k) (ms) "
          "| open_series(...).frame(k) (ms) |")
    print("|---|---|---|---|---|")
    for name, path, reference, label in rows:
        series = open_series(path)
        t_ref = per_frame(reference)
        t_read = per_frame(lambda k, p=path: read_frame(p, frame=k, gain=1.0, read_noise=1.0))
        t_series = per_frame(series.frame)
        print(f"| {name} | {label} | {1e3 * t_ref:.2f} | {1e3 * t_read:.1f} | "
              f"{1e3 * t_series:.2f} |")
        series.close()


def long_stream(folder: Path, n: int) -> None:
    path = folder / "long.h5"
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", (n, 64, 64), np.uint16, chunks=(100, 64, 64))
        for start in range(0, n, 1000):
            stop = min(start + 1000, n)
            ds[start:stop] = rng.integers(0, 1000, (stop - start, 64, 64))
    start = time.perf_counter()
    rss_1000 = None
    step = None
    for i, last in enumerate(running_mean(open_series(path))):
        step = last
        if i == 999:
            rss_1000 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elapsed = time.perf_counter() - start
    print(f"running_mean over {n} frames of 64x64: {elapsed:.1f} s "
          f"({1e3 * elapsed / n:.2f} ms a frame), NCOMBINE {step.meta['NCOMBINE']}, "
          f"per-pixel count min {int(step.ncombine.min())} ({step.ncombine.dtype}), "
          f"peak RSS {rss_1000:.0f} MB after 1000 frames, {rss_end:.0f} MB at the end")


def pulls(folder: Path, realisations: int) -> None:
    gain, rn, offset, signal_e = 2.0, 4.0, 100.0, 40.0
    rng = np.random.default_rng(2026)
    shape = (64, 64)
    now, before, by_hand = [], [], []

    def exposure(electrons, offsets):
        return offsets + rng.poisson(electrons, shape) / gain + rng.normal(0, rn / gain, shape)

    for r in range(realisations):
        offsets = offset + rng.normal(0, 3, shape)
        paths = []
        for name, electrons in (("light", signal_e), ("dark", 0.0)):
            header = fits.Header({"EXPTIME": 1.0, "EGAIN": gain, "RDNOISE": rn,
                                  "IMAGETYP": name})
            path = folder / f"{name}_{r}.fits"
            fits.PrimaryHDU(exposure(electrons, offsets).astype(np.float32),
                            header=header).writeto(path, overwrite=True)
            paths.append(path)
        truth = signal_e / gain
        out = calibrate(paths[0], dark=paths[1])
        now.append((out.data - truth) / out.uncertainty.array)
        light, dark = read_frame(paths[0]), read_frame(paths[1])
        sigma = np.hypot(light.uncertainty.array, dark.uncertainty.array)
        before.append((light.data - dark.data - truth) / sigma)
        hand = calibrate(read_frame(paths[0], pedestal=offset), dark=paths[1])
        by_hand.append((hand.data - truth) / hand.uncertainty.array)
    for label, values in (("calibrate(light, dark=dark), pedestal from the dark", now),
                          ("offset counted as signal (the reader's model, as before)", before),
                          ("light read with pedestal=100 by hand", by_hand)):
        values = np.concatenate([v.ravel() for v in values])
        print(f"| {label} | {np.std(values):.3f} | {np.mean(values):+.3f} | {values.size} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=33_000)
    parser.add_argument("--realisations", type=int, default=40)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UncertaintyUnknownWarning)
    with tempfile.TemporaryDirectory(prefix="calframe-bench-") as tmp:
        folder = Path(tmp)
        read_costs(folder)
        long_stream(folder, args.frames)
        print("| path | pull std | pull mean | pulls |")
        print("|---|---|---|---|")
        pulls(folder, args.realisations)


if __name__ == "__main__":
    main()
