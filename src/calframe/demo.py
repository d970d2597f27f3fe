"""The demonstration run: a synthetic night with a known truth, processed and checked.

:func:`run_demo` writes a synthetic night for two cameras (a cooled monochrome
CCD and a one-shot-colour CMOS camera with a Bayer filter) into a folder,
reads every frame back with :func:`calframe.read_frame`, summarises each
frame type, and measures the detector from the frames alone (bias level,
read noise, gain, dark current and hot pixels, flat field, sky level) and
compares every figure with the truth, each as a PASS/FAIL :class:`DemoCheck`.
It then builds master bias, dark and flat frames with :mod:`calframe.masters`,
calibrates the lights with :func:`calframe.calibrate`, writes them with
:func:`calframe.write_frame`, and checks that their errors from the truth
match the uncertainties they claim (pull distributions).  Every file written
is read back and must keep its unit and values, and the whole-folder run
(:func:`calframe.pipeline.run_pipeline`, what ``calframe run`` does) is run on
each camera's raw folders and checked the same way.

The run is a list of steps (:data:`DEFAULT_STEPS`), each a function of a
:class:`DemoContext`.  A step reads what earlier steps left in the context
(``ctx.frames``, ``ctx.products``) and adds checks with :meth:`DemoContext.check`;
later work (masters, calibration, distortion) adds steps without rewriting
the ones here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from scipy import ndimage

from ._stats import MAD_TO_SIGMA
from .datasets import (
    GridDistortion,
    Night,
    StarField,
    SyntheticCamera,
    SyntheticFrame,
    make_grid_image,
    make_night,
)
from .errors import OutputExistsError

__all__ = [
    "DEFAULT_STEPS",
    "DemoCheck",
    "DemoContext",
    "DemoResult",
    "DemoSettings",
    "DemoStep",
    "TypeSummary",
    "run_demo",
]

log = logging.getLogger(__name__)

_MARKER = "calframe-demo.json"


@dataclass(frozen=True)
class DemoSettings:
    """What the demonstration night contains.

    Parameters
    ----------
    shape : tuple of int
        Frame shape of both cameras.
    cfa : str
        Bayer pattern of the colour camera.
    n_bias, n_dark, n_flat, n_light : int
        Frames of each type per camera (``n_dark`` for each dark exposure).
    dark_exptimes : tuple of float
        The two dark exposure times (s).
    light_exptime : float
        Exposure of the lights (s).
    n_sigma : float
        A statistical check passes when the measured figure is within
        ``n_sigma`` standard errors of the truth.
    """

    shape: tuple[int, int] = (256, 256)
    cfa: str = "RGGB"
    n_bias: int = 20
    n_dark: int = 8
    dark_exptimes: tuple[float, float] = (60.0, 300.0)
    n_flat: int = 10
    n_light: int = 5
    light_exptime: float = 60.0
    n_sigma: float = 5.0

    def star_field(self) -> StarField:
        """The stars of the lights: 40 per 256x256 pixels (at least 3)."""
        n = max(3, round(40 * self.shape[0] * self.shape[1] / 256**2))
        return StarField(n_stars=n)

    def cameras(self) -> dict[str, SyntheticCamera]:
        """The two demonstration cameras, by name."""
        mono = SyntheticCamera(shape=self.shape, bias_level=1000.0, read_noise=5.0, gain=1.5,
                               dark_current=0.1, temperature=-10.0,
                               instrument="calframe synthetic CCD (mono)", pattern_seed=11)
        colour = SyntheticCamera(shape=self.shape, cfa=self.cfa,
                                 bias_level=(2048.0, 2052.0, 2050.0, 2046.0),
                                 read_noise=2.5, gain=0.8, dark_current=0.3, temperature=0.0,
                                 full_well=45000.0, n_hot_pixels=40,
                                 instrument="calframe synthetic OSC (colour)", pattern_seed=12)
        return {"mono": mono, "colour": colour}


@dataclass
class DemoCheck:
    """One comparison of a measured figure with the truth.

    Attributes
    ----------
    camera : str
        Camera name ('mono', 'colour').
    name : str
        What was measured.
    measured, expected : float
        The figure measured from the frames and the truth.
    tolerance : float
        Allowed ``|measured - expected|``.
    unit : str
        Unit of the figures.
    how : str
        How the tolerance was set.
    """

    camera: str
    name: str
    measured: float
    expected: float
    tolerance: float
    unit: str = ""
    how: str = ""

    @property
    def passed(self) -> bool:
        """True when ``|measured - expected| <= tolerance`` (and both are finite)."""
        return bool(np.isfinite(self.measured) and
                    abs(self.measured - self.expected) <= self.tolerance)

    def line(self) -> str:
        """One printable line."""
        status = "PASS" if self.passed else "FAIL"
        return (f"{status} {self.camera:<6s} {self.name:<40s} {self.measured:>10.5g}  truth "
                f"{self.expected:<9.5g} +/- {self.tolerance:<8.3g} {self.unit:<6s}"
                + (f" ({self.how})" if self.how else "")).rstrip()


@dataclass
class TypeSummary:
    """Frames of one type and exposure of one camera, as read back.

    ``mean_adu`` and ``std_adu`` are the mean over frames of each frame's pixel
    mean and standard deviation; ``truth_mean_adu`` the mean of the noise-free
    expectation.  Masked and saturated pixels and pixels hit by cosmic rays are
    left out.

    Attributes
    ----------
    camera : str
        The camera's name.
    frametype : str
        The frame type.
    exptime : float
        Exposure time in seconds.
    count : int
        Number of frames.
    mean_adu, std_adu : float
        Mean over the frames of their pixel mean and standard deviation (ADU).
    truth_mean_adu : float
        Mean of the noise-free expectation (ADU).
    """

    camera: str
    frametype: str
    exptime: float
    count: int
    mean_adu: float
    std_adu: float
    truth_mean_adu: float


@dataclass
class DemoResult:
    """Everything the demonstration measured.

    Attributes
    ----------
    outdir : pathlib.Path
        Folder of the night.
    nights : dict of str to Night
        The synthetic nights by camera name, with their truth.
    summaries : list of TypeSummary
        Per-type summary of the frames read back.
    checks : list of DemoCheck
        Every comparison with the truth.
    timings : dict of str to float
        Wall time of each step (s).
    outputs : list of pathlib.Path
        Files the steps wrote besides the synthetic night (masters, calibrated
        lights).
    """

    outdir: Path
    nights: dict[str, Night]
    summaries: list[TypeSummary] = field(default_factory=list)
    checks: list[DemoCheck] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when there are checks and every one passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary_table(self) -> str:
        """The per-type summary as a text table."""
        head = (f"{'camera':<7s} {'type':<9s} {'exptime':>8s} {'count':>5s} "
                f"{'mean ADU':>10s} {'std ADU':>9s} {'truth mean':>10s} {'difference':>10s}")
        lines = [head, "-" * len(head)]
        for s in self.summaries:
            lines.append(f"{s.camera:<7s} {s.frametype:<9s} {s.exptime:>8g} {s.count:>5d} "
                         f"{s.mean_adu:>10.2f} {s.std_adu:>9.2f} {s.truth_mean_adu:>10.2f} "
                         f"{s.mean_adu - s.truth_mean_adu:>+10.3f}")
        return "\n".join(lines)

    def checks_table(self) -> str:
        """Every check, one per line, then the count of passes."""
        lines = [c.line() for c in self.checks]
        npass = sum(c.passed for c in self.checks)
        lines.append(f"{npass}/{len(self.checks)} checks passed")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (written to ``calframe-demo.json`` in the folder)."""
        return {"outdir": str(self.outdir), "passed": self.passed,
                "summaries": [asdict(s) for s in self.summaries],
                "checks": [{**asdict(c), "passed": c.passed} for c in self.checks],
                "timings": self.timings, "outputs": [str(p) for p in self.outputs]}


@dataclass
class DemoContext:
    """What the steps of a demonstration share.

    Attributes
    ----------
    outdir : pathlib.Path
        Folder of the run.
    seed : int
        Seed of the run.
    settings : DemoSettings
        What the night contains.
    result : DemoResult
        Where steps put summaries and checks.
    frames : dict
        ``frames[camera][path] -> CCDData`` as read back.
    products : dict
        ``products[camera][name] -> value``: what a step measured for later steps
        (e.g. ``'bias'`` mean bias array, ``'dark_current'`` e-/s array,
        ``'flat'`` normalised flat array).
    """

    outdir: Path
    seed: int
    settings: DemoSettings
    result: DemoResult
    frames: dict[str, dict[Path, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    _synthetic: dict[str, dict[Path, SyntheticFrame]] = field(default_factory=dict,
                                                              repr=False)

    @property
    def nights(self) -> dict[str, Night]:
        """The synthetic nights by camera name."""
        return self.result.nights

    def check(self, camera: str, name: str, measured: float, expected: float,
              tolerance: float, unit: str = "", how: str = "") -> DemoCheck:
        """Record a comparison of a measured figure with the truth."""
        item = DemoCheck(camera=camera, name=name, measured=float(measured),
                         expected=float(expected), tolerance=float(tolerance), unit=unit,
                         how=how)
        self.result.checks.append(item)
        log.info(item.line())
        return item

    def synthetic(self, camera: str, path: Path) -> SyntheticFrame:
        """The synthetic frame written to ``path``, with its truth (made once, kept)."""
        cache = self._synthetic.setdefault(camera, {})
        if path not in cache:
            cache[path] = self.nights[camera].frame(path)
        return cache[path]

    def stack(self, camera: str, frametype: str, exptime: float | None = None) -> np.ndarray:
        """The data of the frames of one type (and exposure) as a float64 cube."""
        paths = self.nights[camera].files_of(frametype, exptime)
        return np.stack([np.asarray(self.frames[camera][p].data, dtype=np.float64)
                         for p in paths])


#: A step of the demonstration: a name and a function of the context.
DemoStep = tuple[str, Callable[[DemoContext], None]]


# ------------------------------------------------------------------------ steps
# Each step imports the parts of calframe it checks (calframe.io, masters,
# calibration, pipeline, distortion, astropy.nddata): importing this module, or running only the
# first steps, then takes about 1.2 s instead of 2.7 s (a busy machine).
def _step_make_nights(ctx: DemoContext) -> None:
    s = ctx.settings
    for k, (name, camera) in enumerate(s.cameras().items()):
        ctx.result.nights[name] = make_night(
            ctx.outdir / name, seed=ctx.seed + 1000 * k, camera=camera, n_bias=s.n_bias,
            n_dark=s.n_dark, dark_exptimes=s.dark_exptimes, n_flat=s.n_flat,
            n_light=s.n_light, light_exptime=s.light_exptime, field=s.star_field(),
            overwrite=True)


def _read(path: Path):
    from .io import read_frame

    return read_frame(path)


def _step_read_back(ctx: DemoContext) -> None:
    """Read every frame with read_frame; check type, exposure and pixel values."""
    for name, night in ctx.nights.items():
        frames = ctx.frames.setdefault(name, {})
        wrong_meta = 0
        max_diff = 0.0
        for rec in night.frames:
            ccd = _read(rec.path)
            frames[rec.path] = ccd
            if ccd.meta.get("FRAMETYP") != rec.frametype or \
                    not np.isclose(float(ccd.meta.get("EXPTIME", np.nan)), rec.exptime):
                wrong_meta += 1
                log.warning("%s read as %s %s s, written as %s %s s", rec.path,
                            ccd.meta.get("FRAMETYP"), ccd.meta.get("EXPTIME"),
                            rec.frametype, rec.exptime)
            truth = ctx.synthetic(name, rec.path)
            max_diff = max(max_diff, float(np.max(np.abs(
                np.asarray(ccd.data, dtype=np.float64) - truth.data))))
        ctx.check(name, "frames with wrong type/exposure", wrong_meta, 0, 0,
                  how=f"of {len(night.frames)} read back")
        ctx.check(name, "max |ADU read - ADU written|", max_diff, 0, 0, "ADU")
        _summarise(ctx, name, night)


def _summarise(ctx: DemoContext, name: str, night: Night) -> None:
    groups: dict[tuple[str, float], list] = {}
    for rec in night.frames:
        groups.setdefault((rec.frametype, rec.exptime), []).append(rec)
    for (frametype, exptime), recs in groups.items():
        means, stds, truths = [], [], []
        for rec in recs:
            ccd = ctx.frames[name][rec.path]
            truth = ctx.synthetic(name, rec.path).truth
            good = ~truth.cosmic_mask & ~truth.saturated
            if ccd.mask is not None:
                good &= ~ccd.mask
            values = np.asarray(ccd.data, dtype=np.float64)[good]
            means.append(values.mean())
            stds.append(values.std())
            truths.append(truth.expected[good].mean())
        ctx.result.summaries.append(TypeSummary(
            camera=name, frametype=frametype, exptime=exptime, count=len(recs),
            mean_adu=float(np.mean(means)), std_adu=float(np.mean(stds)),
            truth_mean_adu=float(np.mean(truths))))


def _exptime_of(night: Night, frametype: str) -> float:
    return next(f.exptime for f in night.frames if f.frametype == frametype)


def _robust_std(values: np.ndarray) -> float:
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def _pair_variance(cube: np.ndarray) -> tuple[float, int]:
    """Half the variance of differences of independent pairs of frames (clipped at
    6 robust sigma against cosmic rays), and the number of pairs."""
    values = []
    for a, b in zip(cube[0::2], cube[1::2], strict=False):
        d = (a - b).ravel()
        keep = np.abs(d - np.median(d)) <= 6 * _robust_std(d)
        values.append(d[keep].var() / 2)
    return float(np.mean(values)), len(values)


def _clipped_mean(cube: np.ndarray, bias: np.ndarray, gain: float, read_noise_adu: float
                  ) -> np.ndarray:
    """Per-pixel mean of a cube without values more than 6 model sigma from the
    per-pixel median (cosmic rays), the model sigma being that of the detector."""
    med = np.median(cube, axis=0)
    sigma = np.sqrt(np.clip(med - bias, 0, None) / gain + read_noise_adu**2 + 1 / 12)
    keep = np.abs(cube - med) <= 6 * sigma
    return np.where(keep, cube, 0).sum(axis=0) / np.maximum(keep.sum(axis=0), 1)


def _step_bias(ctx: DemoContext) -> None:
    """Bias level, its convergence rate, read noise and gain."""
    n_sig = ctx.settings.n_sigma
    for name, night in ctx.nights.items():
        truth = night.truth
        products = ctx.products.setdefault(name, {})
        biases = ctx.stack(name, "bias")
        n, npix = len(biases), biases[0].size
        sigma1 = np.sqrt((truth.read_noise / truth.gain) ** 2 + 1 / 12)
        mean_bias = biases.mean(axis=0)
        products["bias"] = mean_bias
        resid = mean_bias - truth.bias
        err = sigma1 / np.sqrt(n * npix)
        ctx.check(name, "bias level (mean of all pixels)", mean_bias.mean(), truth.bias.mean(),
                  n_sig * err, "ADU", f"{n_sig:g} x sigma/sqrt(N npix)")
        rel = 1 / np.sqrt(2 * (npix - 1))
        ctx.check(name, f"mean-bias scatter about truth, N={n}", resid.std(),
                  sigma1 / np.sqrt(n), n_sig * rel * sigma1 / np.sqrt(n), "ADU",
                  "expected sigma/sqrt(N)")
        # gain from pairs of flats (photon transfer): mean signal / photon variance
        var_bias, npairs = _pair_variance(biases)
        flats = ctx.stack(name, "flat")
        signal = flats.mean() - mean_bias.mean()
        var_flat, fpairs = _pair_variance(flats)
        gain = signal / (var_flat - var_bias)
        rel_g = np.sqrt(2 / (fpairs * npix))
        ctx.check(name, "gain from flat pairs (photon transfer)", gain, truth.gain,
                  n_sig * rel_g * truth.gain, "e-/ADU", f"{fpairs} pairs of flats")
        # read noise from bias differences (the fixed pattern cancels), with that gain
        rn = np.sqrt(max(var_bias - 1 / 12, 0)) * gain
        rel_rn = np.hypot(0.5 * np.sqrt(2 / (npairs * npix)), rel_g)
        ctx.check(name, "read noise from bias pairs", rn, truth.read_noise,
                  n_sig * rel_rn * truth.read_noise, "e-", f"{npairs} pairs, measured gain")
        products["gain"] = float(gain)
        products["gain_rel_error"] = float(rel_g)
        products["read_noise_adu"] = float(rn / gain)


def _step_dark(ctx: DemoContext) -> None:
    """Dark current from the two dark exposures; hot pixels."""
    n_sig = ctx.settings.n_sigma
    for name, night in ctx.nights.items():
        truth = night.truth
        p = ctx.products[name]
        t1, t2 = night.dark_exptimes[0], night.dark_exptimes[-1]
        d1, d2 = (_clipped_mean(ctx.stack(name, "dark", t), p["bias"], p["gain"],
                                p["read_noise_adu"]) for t in (t1, t2))
        current = (d2 - d1) / (t2 - t1) * p["gain"]
        p["dark_current"] = current
        n = len(night.files_of("dark", t1))
        var = (truth.dark_current * (t1 + t2) / truth.gain**2
               + 2 * ((truth.read_noise / truth.gain) ** 2 + 1 / 12)) / n
        err = np.sqrt(var.mean() / var.size) * truth.gain / (t2 - t1)
        rel_g = p.get("gain_rel_error", 0.01)
        ctx.check(name, "mean dark current", current.mean(), truth.dark_current.mean(),
                  n_sig * np.hypot(err, rel_g * truth.dark_current.mean()), "e-/s",
                  "two exposures, measured gain")
        threshold = np.median(current) + 10 * _robust_std(current)
        found = set(zip(*np.nonzero(current > max(threshold, 1.0)), strict=True))
        hot = {(int(y), int(x)) for y, x in zip(truth.hot_pixels["y"], truth.hot_pixels["x"],
                                                strict=True)}
        ctx.check(name, "hot pixels found", len(found & hot), len(hot), 0,
                  how=f"above {max(threshold, 1.0):.2f} e-/s")
        ctx.check(name, "hot pixels falsely found", len(found - hot), 0, 0)
        hy, hx = truth.hot_pixels["y"], truth.hot_pixels["x"]
        ratio = current[hy, hx] / truth.hot_pixels["current"]
        ctx.check(name, "hot-pixel current / truth (median)", np.median(ratio), 1.0,
                  n_sig * rel_g, how="gain error dominates")


def _step_flat(ctx: DemoContext) -> None:
    """The flat field, normalised per CFA colour, against the truth."""
    n_sig = ctx.settings.n_sigma
    for name, night in ctx.nights.items():
        truth = night.truth
        p = ctx.products[name]
        flats = ctx.stack(name, "flat")
        t_flat = _exptime_of(night, "flat")
        dark = p["dark_current"] * t_flat / p["gain"]
        signal = _clipped_mean(flats, p["bias"], p["gain"], p["read_noise_adu"]) \
            - p["bias"] - dark
        colour = night.camera.colour_index()
        norm = np.empty_like(signal)
        for c in np.unique(colour):
            sel = colour == c
            norm[sel] = signal[sel] / signal[sel].mean()
        ctx.products[name]["flat"] = norm
        # expected scatter of the measured normalised flat about the truth
        n = len(flats)
        s_adu = truth.flat * truth.flat_level
        sig = np.sqrt((s_adu / truth.gain + (truth.read_noise / truth.gain) ** 2 + 1 / 12)
                      / n) / s_adu * truth.flat_normalised
        pull = (norm - truth.flat_normalised) / sig
        rel = 1 / np.sqrt(2 * pull.size)
        ctx.check(name, "flat from mean of flats: rms pull", pull.std(), 1.0,
                  n_sig * rel + 0.02, how="pull = (value - truth) / expected noise")
        dust_depth = 1 - night.camera.dust_map().min()
        i = np.unravel_index(np.argmin(night.camera.dust_map()), signal.shape)
        ratio = norm[i] / truth.flat_normalised[i]
        ctx.check(name, "flat at deepest dust point / truth", ratio, 1.0, n_sig * sig[i]
                  / truth.flat_normalised[i], how=f"dust depth {dust_depth:.3f}")


def _step_light(ctx: DemoContext) -> None:
    """Sky level of lights calibrated with the measured bias, dark and flat."""
    for name, night in ctx.nights.items():
        truth = night.truth
        p = ctx.products[name]
        colour = night.camera.colour_index()
        exptime = _exptime_of(night, "light")
        lights = ctx.stack(name, "light")
        cal = (lights - p["bias"] - p["dark_current"] * exptime / p["gain"]) / p["flat"]
        # mask the stars found in the data (3 robust sigma above the median, grown
        # by 2 FWHM), then take the median of what is left in each colour
        mean_light = np.median(cal, axis=0)
        stars = np.zeros(mean_light.shape, bool)
        for c in np.unique(colour):
            sel = colour == c
            values = mean_light[sel]
            stars[sel] = values > np.median(values) + 4 * _robust_std(values)
        grow = max(int(np.rint(2 * truth.field.fwhm)), 1)
        stars = ndimage.binary_dilation(stars, iterations=grow)
        for c in np.unique(colour):
            sel = (colour == c) & ~stars
            values = cal[:, sel]
            measured = np.median(values)
            response = truth.flat[colour == c].mean()
            expected = truth.field.sky * exptime * response / truth.gain
            # the median of n values has 1.25 sigma/sqrt(n); 0.5 % more for the
            # wings of faint stars that the mask misses
            err = 1.25 * _robust_std(values) / np.sqrt(values.size)
            label = "sky" if night.camera.cfa is None else f"sky ({'RGB'[c]} pixels)"
            ctx.check(name, f"{label} level in lights", measured, expected,
                      ctx.settings.n_sigma * err + 0.005 * expected, "ADU",
                      f"stars masked: {stars.mean():.0%} of pixels")


def _step_noise_model(ctx: DemoContext) -> None:
    """The uncertainty read_frame attaches (detector model from EGAIN / RDNOISE, with
    the measured bias level as pedestal) against the true per-pixel sigma."""
    from .io import read_frame

    for name, night in ctx.nights.items():
        pedestal = float(ctx.products[name]["bias"].mean())
        for frametype in ("flat", "light"):
            path = night.files_of(frametype)[0]
            ccd = read_frame(path, pedestal=pedestal)
            truth = ctx.synthetic(name, path).truth
            good = ~truth.saturated & ~truth.cosmic_mask
            if ccd.uncertainty is None:
                ratio = np.nan
            else:
                ratio = np.median(ccd.uncertainty.array[good] / truth.sigma[good])
            ctx.check(name, f"read_frame sigma / true sigma, {frametype}", ratio, 1.0, 0.02,
                      how="median over pixels")


def _pull_checks(ctx: DemoContext, camera: str, what: str, pull: np.ndarray,
                 *, rms_tol: float = 0.08, mean_tol: float = 0.1,
                 how: str = "pull = (value - truth) / uncertainty") -> None:
    ctx.check(camera, f"{what}: rms pull", pull.std(), 1.0, rms_tol, how=how)
    # a variance taken from the noisy data itself biases the mean pull by about
    # -1 / (2 gain sigma): a few hundredths here
    ctx.check(camera, f"{what}: mean pull", pull.mean(), 0.0, mean_tol)


def _step_masters(ctx: DemoContext) -> None:
    """Master bias, dark and flat made by calframe.masters from the frames as read,
    against the truth."""
    from .io import write_frame
    from .masters import make_master_bias, make_master_dark, make_master_flat

    for name, night in ctx.nights.items():
        truth = night.truth
        p = ctx.products[name]
        colour = night.camera.colour_index()
        folder = ctx.outdir / name / "masters"
        bias = make_master_bias([ctx.frames[name][f] for f in night.files_of("bias")])
        t_dark = night.dark_exptimes[-1]
        dark = make_master_dark([ctx.frames[name][f] for f in night.files_of("dark", t_dark)],
                                bias=bias)
        flat = make_master_flat([ctx.frames[name][f] for f in night.files_of("flat")],
                                bias=bias, dark=dark)
        p.update(master_bias=bias, master_dark=dark, master_flat=flat)
        written = p.setdefault("written", {})
        for ccd, fname in ((bias, "master_bias.fits"), (dark, f"master_dark_{t_dark:g}s.fits"),
                           (flat, "master_flat.fits")):
            path = write_frame(ccd, folder / fname, overwrite=True)
            ctx.result.outputs.append(path)
            written[path] = ccd

        good = ~np.asarray(bias.mask) if bias.mask is not None else np.ones(bias.shape, bool)
        # the median of whole-ADU values keeps their rounding (it does not average
        # down as in a mean); combine adds that term, without it the pull is ~1.03
        _pull_checks(ctx, name, "master bias",
                     ((bias.data - truth.bias) / bias.uncertainty.array)[good],
                     rms_tol=0.02, how="median of whole ADU, rounding term included")
        dark_adu = truth.dark_current * t_dark / truth.gain
        good = ~np.asarray(dark.mask) if dark.mask is not None else np.ones(dark.shape, bool)
        _pull_checks(ctx, name, f"master dark {t_dark:g} s",
                     ((dark.data - dark_adu) / dark.uncertainty.array)[good])
        hot = truth.hot_pixels
        ratio = dark.data[hot["y"], hot["x"]] / dark_adu[hot["y"], hot["x"]]
        ctx.check(name, "master dark: hot pixels / truth (median)", np.median(ratio), 1.0,
                  0.01)
        # the level of a normalised flat is a convention (here the median of each
        # colour of the master); its shape is what is measured
        good = ~np.asarray(flat.mask) if flat.mask is not None else np.ones(flat.shape, bool)
        true_flat = np.empty_like(truth.flat)
        for c in np.unique(colour):
            sel = colour == c
            true_flat[sel] = truth.flat[sel] * np.median(flat.data[sel & good]
                                                         / truth.flat[sel & good])
        p["true_flat"] = true_flat
        pull = ((flat.data - true_flat) / flat.uncertainty.array)[good]
        ctx.check(name, "master flat: rms pull", pull.std(), 1.0, 0.08,
                  how="truth scaled to the master's level")


def _step_calibrate(ctx: DemoContext) -> None:
    """Lights calibrated by calframe.calibrate with the masters, against the truth."""
    from .calibration import calibrate
    from .io import write_frame

    for name, night in ctx.nights.items():
        truth = night.truth
        p = ctx.products[name]
        true_flat = p["true_flat"]
        pulls = []
        for path in night.files_of("light"):
            cal = calibrate(ctx.frames[name][path], bias=p["master_bias"],
                            dark=p["master_dark"], flat=p["master_flat"])
            out = write_frame(cal, ctx.outdir / name / "calibrated" / path.name,
                              overwrite=True)
            ctx.result.outputs.append(out)
            p.setdefault("written", {})[out] = cal
            frame = ctx.synthetic(name, path).truth
            light_adu = (frame.signal - frame.dark_current * frame.exptime) / truth.gain
            good = ~frame.cosmic_mask & ~frame.saturated
            if cal.mask is not None:
                good &= ~np.asarray(cal.mask)
            pulls.append(((cal.data - light_adu / true_flat) / cal.uncertainty.array)[good])
        _pull_checks(ctx, name, "calibrated lights", np.concatenate(pulls))


def _step_pipeline(ctx: DemoContext) -> None:
    """The whole-folder run (what ``calframe run`` does) on each camera's raw folders:
    every planned output made without problems, calibrated lights in ADU whose
    errors from the truth match their uncertainties."""
    from .io import read_frame
    from .pipeline import PipelineConfig, run_pipeline

    for name, night in ctx.nights.items():
        truth = night.truth
        colour = night.camera.colour_index()
        raw = sorted({rec.path.parent for rec in night.frames})
        out = night.path / "run"
        config = PipelineConfig(inputs=[str(folder) for folder in raw], output=str(out),
                                report=False)
        run = run_pipeline(config)
        # a rerun of the demonstration finds the outputs of the last one up to date
        outputs = [Path(m) for m in (*run.made, *run.skipped)]
        ctx.result.outputs.extend(outputs)
        ctx.check(name, "calframe run: outputs failed", len(run.failed), 0, 0,
                  how=f"{len(run.made)} made, {len(run.skipped)} up to date")
        ctx.check(name, "calframe run: problems reported", len(run.problems), 0, 0)
        pulls, wrong_unit = [], 0
        made = {m.name: m for m in outputs}
        lights = night.files_of("light")
        ctx.check(name, "calframe run: calibrated lights made",
                  sum(p.name in made for p in lights), len(lights), 0)
        for path in lights:
            written = made.get(path.name)
            if written is None:
                continue
            wrong_unit += fits.getheader(written).get("BUNIT", "").strip().lower() != "adu"
            cal = read_frame(written)
            frame = ctx.synthetic(name, path).truth
            light_adu = (frame.signal - frame.dark_current * frame.exptime) / truth.gain
            good = ~frame.cosmic_mask & ~frame.saturated
            if cal.mask is not None:
                good &= ~np.asarray(cal.mask)
            # the truth at the level of the run's master flat (one number per colour)
            expected = np.empty_like(light_adu)
            for c in np.unique(colour):
                sel = colour == c
                level = np.median((cal.data * truth.flat / light_adu)[sel & good])
                expected[sel] = light_adu[sel] * level / truth.flat[sel]
            pulls.append(((cal.data - expected) / cal.uncertainty.array)[good])
        ctx.check(name, "calframe run: lights not in ADU (BUNIT)", wrong_unit, 0, 0,
                  how=f"of {len(pulls)} calibrated lights")
        if pulls:
            _pull_checks(ctx, name, "calframe run: lights", np.concatenate(pulls))


def _unit_name(unit) -> str:
    return unit.to_string() or "dimensionless"


def _step_read_outputs(ctx: DemoContext) -> None:
    """Every file written by the steps reads back with the same unit and values."""
    from .io import read_frame

    for name in ctx.nights:
        folder = ctx.outdir / name
        wrong = []
        mine = [path for path in ctx.result.outputs if folder in path.parents]
        for path in mine:
            back = read_frame(path)
            kind = path.parent.name
            original = ctx.products[name].get("written", {}).get(path)
            if original is None:
                continue
            same_unit = back.unit == original.unit
            same_data = np.array_equal(np.asarray(back.data), np.asarray(original.data,
                                                                         dtype=back.dtype))
            if not (same_unit and same_data):
                wrong.append(f"{kind}/{path.name}: unit {_unit_name(original.unit)} -> "
                             f"{_unit_name(back.unit)}"
                             + ("" if same_data else ", data differ"))
        for line in wrong:
            log.warning("read back differs: %s", line)
        ctx.check(name, "outputs read back with other unit/data", len(wrong), 0, 0,
                  how=f"of {len(mine)}" + (f"; {'; '.join(wrong)}" if wrong else ""))


def _step_distortion(ctx: DemoContext) -> None:
    """A grid target imaged through a known distortion: the fitted field against
    the truth, and the model written as a calframe FITS file."""
    from astropy.nddata import CCDData

    from .distortion import DistortionModel, field_error
    from .io import read_frame, write_frame

    shape = (512, 512)
    field = GridDistortion(shape, radial=3.0, smooth=2.0, seed=ctx.seed + 7)
    image, truth = make_grid_image(shape, pitch=24.0, distortion=field, angle=3.0,
                                   seed=ctx.seed + 8)
    folder = ctx.outdir / "grid"
    target = write_frame(CCDData(image.astype(np.float32), unit="adu",
                                 meta={"IMAGETYP": "Grid target", "EXPTIME": 1.0,
                                       # the target was rendered with Poisson noise
                                       # at gain 1 and a read noise of 3
                                       "EGAIN": 1.0, "RDNOISE": 3.0}),
                         folder / "grid_target.fits", overwrite=True)
    model = DistortionModel.fit(read_frame(target))
    if not model:
        ctx.check("grid", "distortion fit succeeded", 0, 1, 0, how=str(model))
        return
    present = int(np.count_nonzero(truth.spots["inside"] & truth.spots["present"]))
    ctx.check("grid", "distortion: spots indexed / present", model.meta["nindexed"] / present,
              1.0, 0.05, how=f"{model.meta['nindexed']} of {present}; edge spots may be cut")
    rms, worst = field_error(model, field)
    ctx.check("grid", "distortion: field error rms", rms, 0.0, 0.015, "px",
              how="inside the hull minus one pitch, affine gauge removed")
    ctx.check("grid", "distortion: field error worst", worst, 0.0, 0.15, "px")
    path = folder / "distortion.fits"
    model.to_fits(path, overwrite=True)
    ctx.result.outputs.append(path)


#: The steps of :func:`run_demo`, in order.
DEFAULT_STEPS: tuple[DemoStep, ...] = (
    ("make night", _step_make_nights),
    ("read back", _step_read_back),
    ("bias, read noise, gain", _step_bias),
    ("dark current", _step_dark),
    ("flat field", _step_flat),
    ("lights", _step_light),
    ("noise model", _step_noise_model),
    ("masters", _step_masters),
    ("calibrate lights", _step_calibrate),
    ("read outputs back", _step_read_outputs),
    ("whole-folder run", _step_pipeline),
    ("distortion", _step_distortion),
)


def _prepare(outdir: Path) -> None:
    if outdir.exists():
        if not outdir.is_dir():
            raise OutputExistsError(f"{outdir} exists and is not a folder; choose another "
                                    "output folder for the demonstration")
        if any(outdir.iterdir()) and not (outdir / _MARKER).exists():
            raise OutputExistsError(f"{outdir} is not empty and was not written by "
                                    "calframe demo; choose an empty or new folder")
    outdir.mkdir(parents=True, exist_ok=True)


def run_demo(outdir: str | os.PathLike = "calframe-demo", *, seed: int = 0,
             settings: DemoSettings | None = None,
             steps: Sequence[DemoStep] | None = None) -> DemoResult:
    """Run the demonstration in ``outdir`` and return what it measured.

    Parameters
    ----------
    outdir : str or path-like
        Folder for the synthetic night (created; a folder written by an
        earlier demonstration is reused, any other non-empty folder is refused).
    seed : int
        Seed of the synthetic night.
    settings : DemoSettings, optional
        What the night contains (default :class:`DemoSettings`).
    steps : sequence of DemoStep, optional
        Steps to run (default :data:`DEFAULT_STEPS`).

    Returns
    -------
    DemoResult
        Summaries and checks; ``result.passed`` tells whether all checks passed.

    Raises
    ------
    calframe.OutputExistsError
        If ``outdir`` is a file, or a non-empty folder not written by the demo.

    Examples
    --------
    >>> import tempfile
    >>> small = DemoSettings(shape=(64, 64), n_bias=8, n_dark=4, n_flat=6, n_light=2)
    >>> result = run_demo(tempfile.mkdtemp(), seed=1, settings=small)
    >>> [c.line()[:40] for c in result.checks if c.name.startswith("gain")]
    ['PASS mono   gain from flat pairs (photon', 'PASS colour gain from flat pairs (photon']
    >>> sorted(result.nights)
    ['colour', 'mono']
    """
    outdir = Path(outdir)
    _prepare(outdir)
    settings = DemoSettings() if settings is None else settings
    # mark the folder as the demonstration's before writing into it, so that a
    # run that stops half-way can be rerun into the same folder
    (outdir / _MARKER).write_text(json.dumps({"seed": int(seed), "passed": None}))
    result = DemoResult(outdir=outdir, nights={})
    ctx = DemoContext(outdir=outdir, seed=int(seed), settings=settings, result=result)
    for name, step in (DEFAULT_STEPS if steps is None else steps):
        start = time.perf_counter()
        log.info("demo step: %s", name)
        step(ctx)
        result.timings[name] = time.perf_counter() - start
    record = {"seed": int(seed), "settings": asdict(settings), **result.to_dict()}
    (outdir / _MARKER).write_text(json.dumps(record, indent=1, default=str))
    return result
