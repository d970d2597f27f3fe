"""Time calframe.write_frame / read_frame against astropy's CCDData.write / read.

One frame of 4256x2848 (12.1 MP) float32 with a StdDevUncertainty and a mask,
optionally with the int16 NCOMBINE/REJECTED counts of a master.  Each case runs
in its own process (peak RSS per case), ``--repeat`` times; the table gives the
best and median wall time.  ccdproc writes through ``CCDData.write``, so the
astropy rows are also ccdproc's cost.

    .venv/bin/python scripts/bench_write.py --folder /tmp/bench-write --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

SHAPE = (2848, 4256)


def _frame(counts: bool):
    import numpy as np
    from astropy.nddata import CCDData, StdDevUncertainty

    rng = np.random.default_rng(0)
    ccd = CCDData(rng.normal(1000, 10, SHAPE).astype(np.float32), unit="adu",
                  uncertainty=StdDevUncertainty(np.full(SHAPE, 3, np.float32)),
                  mask=rng.random(SHAPE) < 0.01)
    if counts:
        ccd.ncombine = np.full(SHAPE, 30, np.int16)
        ccd.rejected = rng.integers(0, 3, SHAPE).astype(np.int16)
    return ccd


def _case(name: str, folder: str, repeat: int) -> dict:
    from astropy.nddata import CCDData

    from calframe import read_frame, write_frame
    from calframe.provenance import _DIGESTS

    path = os.path.join(folder, f"{name}.fits")
    times = []
    if name.startswith("write"):
        ccd = _frame(counts=name.endswith("counts"))
        for _ in range(repeat):
            t0 = time.perf_counter()
            if name == "write-astropy":
                ccd.write(path, overwrite=True, checksum=True)
            else:
                write_frame(ccd, path, overwrite=True)
            times.append(time.perf_counter() - t0)
    else:
        source = os.path.join(folder, "write-calframe-counts.fits")
        for _ in range(repeat):
            _DIGESTS.clear()  # every read hashes the file, as the first in a process does
            t0 = time.perf_counter()
            if name == "read-astropy":
                CCDData.read(source)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    read_frame(source)
            times.append(time.perf_counter() - t0)
        path = source
    times.sort()
    return {"case": name, "best": times[0], "median": times[len(times) // 2],
            "size_mb": os.path.getsize(path) / 1e6,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


CASES = {
    "write-astropy": "CCDData.write(checksum=True): data, uncertainty, mask",
    "write-calframe": "write_frame: same + PROVENANCE, checksums, fsync, rename",
    "write-calframe-counts": "write_frame with NCOMBINE and REJECTED",
    "read-astropy": "CCDData.read of the file with counts",
    "read-calframe": "read_frame: + checksums verified, counts, provenance, SHA-256",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="bench-write")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    if args.case:
        print(json.dumps(_case(args.case, args.folder, args.repeat)))
        return 0
    print("| case | best (s) | median (s) | file (MB) | peak RSS (GB) |\n|---|---|---|---|---|")
    for name, label in CASES.items():
        out = subprocess.run([sys.executable, __file__, "--folder", args.folder,
                              "--repeat", str(args.repeat), "--case", name],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {label} | {r['best']:.2f} | {r['median']:.2f} | {r['size_mb']:.0f} "
              f"| {r['peak_rss_gb']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
