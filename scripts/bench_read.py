"""Time calframe.read_frame against astropy/ccdproc on the same files.

Writes a 12.1 MP uint16 FITS (BZERO = 32768, EGAIN/RDNOISE in the header) to a
temporary folder and reads it back:

- ``astropy``: ``CCDData.read`` then ``ccdproc.create_deviation`` (data, unit
  and a detector-model uncertainty: the same product as ``read_frame``), with a
  ``np.isfinite`` mask and a saturation mask added;
- ``calframe``: ``read_frame`` (data, uncertainty, masks, normalised keywords,
  provenance with the file's SHA-256).

Also times ``read_frame`` on the real files in ../shared/data/real when present.
Prints the best of ``--repeat`` runs.

    .venv/bin/python scripts/bench_read.py --repeat 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData

import calframe
from calframe.errors import UncertaintyUnknownWarning
from calframe.provenance import _DIGESTS

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def best(func, repeat: int) -> float:
    func()
    times = []
    for _ in range(repeat):
        _DIGESTS.clear()  # every read hashes the file, as the first in a process does
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def _readers(path):
    import ccdproc

    def with_astropy():
        ccd = CCDData.read(path, unit="adu")
        ccd = ccdproc.create_deviation(ccd, gain=1.5 * u.electron / u.adu,
                                       readnoise=3.0 * u.electron)
        ccd.mask = ~np.isfinite(ccd.data) | (ccd.data >= 65535)
        return ccd

    def with_calframe():
        return calframe.read_frame(path)

    return {"astropy+ccdproc": with_astropy, "calframe": with_calframe}


def _peak_rss_increase(path, name) -> float:
    """MB of peak RSS added by one read, measured in a fresh process (VmHWM)."""
    code = ("import sys, warnings; warnings.simplefilter('ignore'); "
            "sys.path.insert(0, sys.argv[1]); import bench_read as b; "
            "f = b._readers(sys.argv[2])[sys.argv[3]]; r0 = b._hwm(); f(); "
            "print((b._hwm() - r0) / 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(path),
                          name], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _hwm() -> int:
    """Peak resident memory of this process in kB (Linux /proc, reset by exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    data = rng.integers(800, 60000, size=(2848, 4256)).astype(np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "light_001.fits"
        header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 60.0, "EGAIN": 1.5,
                              "RDNOISE": 3.0})
        fits.PrimaryHDU(data, header=header).writeto(path)
        readers = _readers(path)
        a, c = readers["astropy+ccdproc"](), readers["calframe"]()
        assert np.array_equal(a.data.astype(np.float32), c.data)
        assert np.allclose(a.uncertainty.array, c.uncertainty.array, rtol=1e-5)
        print("12.1 MP uint16 FITS (BZERO 32768), data + uncertainty + mask:")
        for name, func in readers.items():
            seconds = best(func, args.repeat)
            rss = _peak_rss_increase(path, name)
            print(f"  {name:16s} {seconds:.3f} s, peak RSS +{rss:.0f} MB")

    if REAL.is_dir():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncertaintyUnknownWarning)
            for rel in ("ast325-st7/DarkBefore-001D120s.fit", "saao-ste3/a8280271.fits",
                        "camera-raw/Blackmagic.dng", "esrf-misc/Pilatus1M.edf",
                        "esrf-id16b/ID16B_diatomee.edf"):
                file = REAL / rel
                seconds = best(lambda file=file: list(calframe.iter_frames(file)), args.repeat)
                print(f"{rel}: {seconds:.3f} s (all frames)")


if __name__ == "__main__":
    main()
