"""Measure the linearity guard: refusals of gamma-encoded data, false alarms, cost.

On the same data in one run:

- lights: gamma 1.8, gamma 2.2, sRGB and an asinh stretch of synthetic nights
  (calframe.datasets: a Bayer camera, stars, sky, vignetting) and of real
  pixels (the Blackmagic DNG flat-lit and as a landscape, the SAAO STE3 sky, the
  ST-7 Vega frame, each through a synthetic vignetting; the ESRF ID16B
  projections against their own open-beam flat), refused by
  :func:`calframe.linearity.check_light_linearity`; and the same data linear,
  plus faint skies, frame-filling nebulae, strong and almost no vignetting,
  over many seeds: the false alarms (must be 0);
- flats: pairs of synthetic raw flats (and the ESRF projections, whose
  background is the open beam) linear and encoded, through
  :func:`calframe.linearity.check_flat_linearity`;
- the time of each check on a 12 MP Bayer frame.

Usage: python scripts/bench_linearity.py [--data ../shared/data/real] [--seeds 20]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData
from scipy.ndimage import gaussian_filter

from calframe import bayer, read_frame
from calframe.datasets import StarField, SyntheticCamera, flat_frame, light_frame
from calframe.errors import NonLinearDataError
from calframe.linearity import check_flat_linearity, check_light_linearity

ENCODINGS = ("gamma 1.8", "gamma 2.2", "sRGB", "asinh")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


# --------------------------------------------------------------------------- encodings
def encode(data: np.ndarray, kind: str, white: float, *, meta=None) -> CCDData:
    """Tone-map linear ``data`` (0..white) to a 16-bit file, with no keyword saying so."""
    v = np.clip(np.asarray(data, np.float64) / white, 0, 1)
    if kind.startswith("gamma"):
        out = v ** (1 / float(kind.split()[1]))
    elif kind == "sRGB":
        out = np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)
    elif kind == "asinh":  # a stretch that lifts a faint sky (tone mapping)
        soft = 0.002
        out = np.arcsinh(v / soft) / np.arcsinh(1 / soft)
    else:
        raise ValueError(kind)
    out = np.rint(out * 65535).astype(np.float32)
    out[~np.isfinite(np.asarray(data, float))] = 0
    return CCDData(out, unit="adu", meta=dict(meta or {}))


def vignetting(shape, strength, *, centre=(0.5, 0.5), pattern=None):
    """cos^4-like vignetting, 1 at ``centre`` (fractions of the frame), colour-dependent."""
    ny, nx = shape
    cy, cx = centre[0] * (ny - 1), centre[1] * (nx - 1)
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / ((ny / 2) ** 2 + (nx / 2) ** 2)
    strength = np.full(shape, float(strength))
    if pattern:
        for chan, factor in zip(bayer.CHANNELS, (1.3, 1.0, 1.0, 0.7), strict=True):
            strength[bayer.channel_slices(pattern)[chan]] *= factor
    q = (1 - np.clip(strength, 0, 0.95)) ** -0.5 - 1
    return 1 / (1 + q * r2) ** 2


# --------------------------------------------------------------------------- synthetic
def synthetic_pair(seed, *, shape=(600, 900), vig=0.3, sky=20.0, exptime=120.0,
                   nebula=0.0, n_stars=300, cfa="RGGB"):
    """Bias- and dark-subtracted light and flat of a synthetic Bayer camera."""
    cam = SyntheticCamera(shape=shape, cfa=cfa, vignetting=vig, pattern_seed=seed,
                          n_hot_pixels=50)
    field = StarField(n_stars=n_stars, sky=sky, flux=(200.0, 2e5))
    lf = light_frame(cam, exptime, field=field, seed=seed, cosmic_rays=20)
    offset = cam.bias_map() + cam.dark_current_map() * exptime
    light = lf.data - offset
    if nebula:
        rng = np.random.default_rng(seed + 1000)
        cloud = gaussian_filter(rng.standard_normal(shape), min(shape) / 8)
        cloud /= cloud.std()
        rate = sky * nebula * np.exp(cloud)
        electrons = cam.flat_map() * rate * exptime
        light = light + (electrons + rng.standard_normal(shape) * np.sqrt(electrons)) / cam.gain
    ff = flat_frame(cam, level=20000.0, seed=seed + 1)
    flat = ff.data - cam.bias_map() - cam.dark_current_map()
    meta = {"BAYERPAT": cfa} if cfa else {}
    white = cam.saturation_adu - min(cam.bias_levels)
    return (CCDData(light.astype(np.float32), unit="adu", meta=dict(meta)),
            CCDData(flat.astype(np.float32), unit="adu", meta=dict(meta)), white)


def synthetic_flats(seed, *, shape=(600, 900), vig=0.3, level=20000.0, n=2, read_noise=5.0,
                    gain=1.5, cfa="RGGB", bias=True):
    """Raw flats (bias kept unless ``bias=False``) of a synthetic Bayer camera."""
    cam = SyntheticCamera(shape=shape, cfa=cfa, vignetting=vig, pattern_seed=seed,
                          read_noise=read_noise, gain=gain)
    meta = {"BAYERPAT": cfa} if cfa else {}
    out, encodable = [], []
    for k in range(n):
        data = flat_frame(cam, level=level * (1 + 0.05 * k), seed=seed * 10 + k).data
        encodable.append(data - cam.bias_map())  # a RAW converter removes the black level
        if not bias:
            data = data - cam.bias_map()
        out.append(CCDData(data.astype(np.float32), unit="adu", meta=dict(meta)))
    return out, encodable, cam.saturation_adu - min(cam.bias_levels)


# --------------------------------------------------------------------------- real data
def _quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_frame(path, **kw)


def real_pairs(root: Path):
    """(name, linear light, flat, white) built from the real files."""
    out = []
    dng = root / "camera-raw" / "Blackmagic.dng"
    if dng.exists():
        raw = _quiet_read(dng, subtract_black=True)
        data = np.asarray(raw.data, np.float64)[8:2168, 16:4112]  # active area, RGGB kept
        white = 65535.0 - 512.0
        smooth = np.empty_like(data)
        for view, out_view in zip(bayer.channel_views(data, "RGGB").values(),
                                  bayer.channel_views(smooth, "RGGB").values(), strict=True):
            out_view[...] = gaussian_filter(view, 20)
        texture = np.where(smooth > 50, data / np.maximum(smooth, 1), np.nan)
        levels = np.empty_like(data)
        for chan, level in zip(bayer.CHANNELS, (1800.0, 3000.0, 3000.0, 1200.0), strict=True):
            levels[bayer.channel_slices("RGGB")[chan]] = level
        for k, (strength, centre) in enumerate([(0.3, (0.5, 0.5)), (0.5, (0.45, 0.55)),
                                                (0.2, (0.55, 0.4))]):
            vig = vignetting(data.shape, strength, centre=centre, pattern="RGGB")
            rng = np.random.default_rng(k)
            flat = rng.poisson(20000 * vig).astype(np.float32)
            meta = {"BAYERPAT": "RGGB"}
            lit = levels * vig * texture
            light = CCDData(np.nan_to_num(lit).astype(np.float32), unit="adu", meta=meta,
                            mask=~np.isfinite(lit))
            out.append((f"DNG flat-lit, vignetting {strength:.0%}", light,
                        CCDData(flat, unit="adu", meta=meta), white))
            scene = CCDData((data * vig).astype(np.float32), unit="adu", meta=meta)
            out.append((f"DNG landscape, vignetting {strength:.0%}", scene,
                        CCDData(flat, unit="adu", meta=meta), white))
    esrf = root / "esrf-id16b"
    if (esrf / "flat.edf").exists():
        dark = np.asarray(_quiet_read(esrf / "dark.edf").data, np.float64)
        flat = CCDData((_quiet_read(esrf / "flat.edf").data - dark).astype(np.float32),
                       unit="adu")
        frames = [("ESRF data.edf", _quiet_read(esrf / "data.edf"))]
        frames += [(f"ESRF diatomee frame {i}", _quiet_read(esrf / "ID16B_diatomee.edf",
                                                             frame=i)) for i in range(6)]
        for name, frame in frames:
            light = CCDData((frame.data - dark).astype(np.float32), unit="adu")
            out.append((name, light, flat, 65535.0 - float(dark.mean())))
    saao = root / "saao-ste3" / "a8280271.fits"
    if saao.exists():
        raw = np.asarray(_quiet_read(saao).data, np.float64)
        bias = np.median(raw[:, 3:13], axis=1, keepdims=True)
        sky = (raw - bias)[2:510, 16:528]
        for strength in (0.3, 0.5):
            vig = vignetting(sky.shape, strength)
            flat = np.random.default_rng(7).poisson(20000 * vig).astype(np.float32)
            out.append((f"SAAO STE3 sky, vignetting {strength:.0%}",
                        CCDData((sky * vig).astype(np.float32), unit="adu"),
                        CCDData(flat, unit="adu"), 65535.0 - 214.0))
    st7 = root / "ast325-st7"
    if (st7 / "Vega.fit").exists():
        dark = np.mean([_quiet_read(p).data for p in sorted(st7.glob("DarkBefore-*D120s.fit"))],
                       axis=0)
        vega = np.asarray(_quiet_read(st7 / "Vega.fit").data, np.float64) - dark
        vig = vignetting(vega.shape, 0.3)
        flat = np.random.default_rng(8).poisson(20000 * vig).astype(np.float32)
        out.append(("ST-7 Vega (a spectrum), vignetting 30%",
                    CCDData((vega * vig).astype(np.float32), unit="adu"),
                    CCDData(flat, unit="adu"), 65535.0 - 886.0))
    return out


# --------------------------------------------------------------------------- running
def run_light(light, flat):
    """'refused' / 'linear' / 'cannot tell', and the check."""
    try:
        check = check_light_linearity(light, flat)
    except NonLinearDataError:
        return "refused", check_light_linearity(light, flat, assume_linear=True)
    return ("linear" if check.verdict else "cannot tell"), check


def run_flats(flats):
    try:
        check = check_flat_linearity(flats)
    except NonLinearDataError:
        return "refused", check_flat_linearity(flats, assume_linear=True)
    return ("linear" if check.verdict else "cannot tell"), check


def synthetic_light_cases(seeds):
    cases = {
        "night, sky 20 e-/s, vignetting 30%": {},
        "faint sky (0.5 e-/s x 60 s)": {"sky": 0.5, "exptime": 60.0},
        "very faint sky (0.05 e-/s x 30 s)": {"sky": 0.05, "exptime": 30.0},
        "nebula filling the frame (3x sky)": {"nebula": 3.0},
        "nebula filling the frame (0.3x sky)": {"nebula": 0.3},
        "strong vignetting (60%)": {"vig": 0.6},
        "almost no vignetting (2%)": {"vig": 0.02},
        "weak vignetting (8%)": {"vig": 0.08},
        "dense star field (3000 stars)": {"n_stars": 3000},
        "monochrome camera": {"cfa": None},
    }
    for label, kw in cases.items():
        for seed in seeds:
            yield label, seed, synthetic_pair(seed, **kw)


def _row(label, counts, exps):
    n = sum(counts.values())
    exp = f"{np.nanmedian(exps):.3f}" if np.isfinite(exps).any() else "-"
    return (f"| {label} | {n} | {counts['refused']} | {counts['linear']} "
            f"| {counts['cannot tell']} | {exp} |")


HEADER = ("| data | n | refused | linear | cannot tell | median exponent |\n"
          "|---|---|---|---|---|---|")


def _tally(label, light, flat, white, encoded, reasons):
    """Check one linear light and its encoded versions: its outcome and check."""
    outcome, check = run_light(light, flat)
    if outcome == "cannot tell":
        reasons[check.reason.split(":")[1].split("(")[0].strip()] += 1
    for kind in ENCODINGS:
        counts, exps = encoded.setdefault(f"{label}, {kind}", (Counter(), []))
        enc_outcome, enc_check = run_light(encode(light.data, kind, white, meta=light.meta),
                                           flat)
        counts[enc_outcome] += 1
        exps.append(enc_check.exponent)
    return outcome, check


def lights_section(data: Path, seeds) -> tuple[int, dict]:
    """Linear lights (real and synthetic): the table, and the encoded outcomes."""
    print("## Lights: linear (a refusal is a false alarm)\n")
    print(HEADER)
    false_alarms = 0
    reasons = Counter()
    by_label: dict[str, tuple[Counter, list]] = {}
    encoded: dict[str, tuple[Counter, list]] = {}
    for name, light, flat, white in real_pairs(data):
        outcome, check = _tally(f"real: {name}", light, flat, white, encoded, reasons)
        print(_row(f"real: {name}", Counter([outcome]), [check.exponent]))
        false_alarms += outcome == "refused"
    for label, _seed, (light, flat, white) in synthetic_light_cases(seeds):
        counts, exps = by_label.setdefault(label, (Counter(), []))
        outcome, check = _tally(f"synthetic: {label}", light, flat, white, encoded, reasons)
        counts[outcome] += 1
        exps.append(check.exponent)
        false_alarms += outcome == "refused"
    for label, (counts, exps) in by_label.items():
        print(_row(f"synthetic: {label}", counts, exps))
    print(f"\nfalse alarms on linear lights: {false_alarms}")
    print("reasons for 'cannot tell': " + ", ".join(f"{k} ({v})" for k, v in reasons.items()))
    return false_alarms, encoded


def encoded_section(encoded: dict) -> None:
    """Encoded lights with no keyword: how many are refused."""
    print("\n## Lights: encoded, no keyword (a refusal is a detection)\n")
    print(HEADER)
    totals = Counter()
    for label, (counts, exps) in encoded.items():
        print(_row(label, counts, exps))
        kind = label.rsplit(", ", 1)[1]
        totals[kind, "n"] += sum(counts.values())
        totals[kind, "refused"] += counts["refused"]
    for kind in ENCODINGS:
        print(f"refused {kind}: {totals[kind, 'refused']} of {totals[kind, 'n']}")


FLAT_CASES = {
    "2 raw flats, 20000 ADU, vignetting 30%": {},
    "5 raw flats, 20000 ADU, vignetting 30%": {"n": 5},
    "2 flats, bias removed": {"bias": False},
    "2 flats, strong vignetting (60%)": {"vig": 0.6},
    "2 flats, almost no vignetting (2%)": {"vig": 0.02},
    "2 flats, 1000 ADU, read noise 15 e-": {"level": 1000.0, "read_noise": 15.0},
    "2 flats, 150 ADU, read noise 15 e-": {"level": 150.0, "read_noise": 15.0},
    "2 flats, monochrome": {"cfa": None},
}


def flats_section(data: Path, seeds) -> int:
    """Photon-transfer checks of flats; the number of false alarms."""
    print("\n## Flats (photon transfer)\n")
    print(HEADER)
    flat_false = 0
    for label, kw in FLAT_CASES.items():
        lin, enc = (Counter(), []), {k: (Counter(), []) for k in ENCODINGS}
        for seed in seeds:
            flats, encodable, sat = synthetic_flats(seed, **kw)
            outcome, check = run_flats(flats)
            lin[0][outcome] += 1
            lin[1].append(check.exponent)
            flat_false += outcome == "refused"
            for kind in ENCODINGS:
                outcome, check = run_flats([encode(d, kind, sat, meta=flats[0].meta)
                                            for d in encodable])
                enc[kind][0][outcome] += 1
                enc[kind][1].append(check.exponent)
        print(_row(f"synthetic: {label}, linear", *lin))
        for kind in ENCODINGS:
            print(_row(f"synthetic: {label}, {kind}", *enc[kind]))
    flat_false += real_flats_rows(data)
    print(f"\nfalse alarms on linear flats: {flat_false}")
    return flat_false


def real_flats_rows(data: Path) -> int:
    """The ESRF projections as flats (when the real files are there); false alarms."""
    esrf = data / "esrf-id16b" / "ID16B_diatomee.edf"
    if not esrf.exists():
        return 0
    frames = [_quiet_read(esrf, frame=i) for i in range(6)]
    outcome, check = run_flats(frames)
    print(_row("real: ESRF ID16B 6 projections (open-beam background), linear",
               Counter([outcome]), [check.exponent]))
    for kind in ENCODINGS:
        enc_outcome, enc_check = run_flats([encode(f.data, kind, 65535.0) for f in frames])
        print(_row(f"real: ESRF ID16B 6 projections, {kind}", Counter([enc_outcome]),
                   [enc_check.exponent]))
    return int(outcome == "refused")


def timing_section(shape) -> None:
    """Best of three wall times of each check on one frame of ``shape``."""
    print(f"\n## Time per frame ({shape[0]}x{shape[1]} Bayer mosaic)\n")
    light, flat, _ = synthetic_pair(0, shape=tuple(shape))
    flats, _, _ = synthetic_flats(0, shape=tuple(shape), n=2)
    for label, func in (("check_light_linearity (light + flat)",
                         lambda: check_light_linearity(light, flat)),
                        ("check_flat_linearity (2 flats)", lambda: check_flat_linearity(flats))):
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            func()
            best = min(best, time.perf_counter() - t)
        print(f"{label}: {best:.2f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of the real files (default ../shared/data/real)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per synthetic case")
    parser.add_argument("--shape", type=int, nargs=2, default=(3000, 4000),
                        help="frame shape for the timing (default 12 MP)")
    args = parser.parse_args(argv)
    seeds = range(args.seeds)
    t0 = time.perf_counter()
    false_alarms, encoded = lights_section(args.data, seeds)
    encoded_section(encoded)
    print(f"(light checks: {time.perf_counter() - t0:.0f} s in all)")
    flat_false = flats_section(args.data, seeds)
    timing_section(args.shape)
    return 0 if false_alarms == 0 and flat_false == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
