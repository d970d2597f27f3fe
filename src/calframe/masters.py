"""Master bias, dark and flat frames.

Each function combines raw calibration frames with :func:`calframe.combine`
(any of its options, e.g. ``rejection=SigmaClip(...)``, ``memory_limit``,
``workers``, pass through) and returns a :class:`~astropy.nddata.CCDData`
with the combine's uncertainty, mask, per-pixel counts (``ncombine``,
``rejected``) and provenance, plus keywords that tell
:func:`calframe.calibrate` how to apply it:

- master bias: ``FRAMETYP = 'bias'``;
- master dark: ``FRAMETYP = 'dark'``, ``EXPTIME``, ``CCD-TEMP`` (mean of the
  inputs), ``BIASSUB`` (T: dark current only; F: the bias is included),
  ``BIASID`` (fingerprint of the bias subtracted) and, with
  ``per_second=True``, unit adu/s (``DARKRATE = T``);
- master flat: ``FRAMETYP = 'flat'``, ``FLATNORM`` (how it was normalised),
  ``FLATCHAN`` (normalised per CFA colour), ``NORM_<colour>`` levels,
  ``FLATMIN`` (values below it are masked) and, for a flat made with a dark
  and no bias, ``DARKID`` and ``DKCOEF<colour>`` (that dark and its share of
  the flat).

The fingerprints let :func:`calframe.calibrate` count an error that is in two
of its inputs (the bias in the master dark, the dark in the master flat) with
its covariance rather than twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty

from ._arith import Plane, subtract
from ._calkernel import normalise_flat
from ._calutil import (
    as_frame,
    cfa_groups,
    cfa_pattern,
    data_id,
    exposure_of,
    header_of,
    parse_section,
    std_of,
    temperature_of,
)
from ._collection import collection_paths
from .bayer import standard_regions
from .blacklevel import black_level, decide_black_level, subtract_black_level
from .calibration import calibrate
from .combining import combine, median_efficiency_factor
from .contract import check_master_frames, check_role
from .errors import (
    IncompatibleFramesError,
    InvalidSettingsError,
    MissingMetadataError,
    NoFramesError,
)
from .linearity import check_flat_linearity
from .provenance import Provenance, get_provenance, set_provenance

__all__ = ["make_master_bias", "make_master_dark", "make_master_flat"]

log = logging.getLogger(__name__)

def _combine(frames, *, method, rejection, **options) -> CCDData:
    return combine(frames, method=method, rejection=rejection, **options)


def _check_frames(frames, what: str) -> list:
    frames = collection_paths(frames, what)
    if isinstance(frames, str | CCDData) or not isinstance(frames, Sequence | np.ndarray):
        try:
            frames = list(frames)
        except TypeError as err:
            raise TypeError(f"{what}: expected a list of frames (paths or CCDData), got "
                            f"{type(frames).__name__}") from err
    frames = list(frames)
    if not frames:
        raise NoFramesError(f"{what}: no frames given; pass at least one frame")
    return frames


def _finish(result: CCDData, combined: CCDData, prov: Provenance) -> CCDData:
    """Carry the per-pixel counts of the combine over and attach provenance."""
    for name in ("ncombine", "rejected"):
        value = getattr(combined, name, None)
        if value is not None:
            setattr(result, name, value)
    set_provenance(result, prov)
    return result


def _overrides(checked) -> dict:
    """The provenance parameter recording what ``allow_mixed`` let through."""
    return {"allow_mixed": checked.overridden} if checked.overridden else {}


def _flat_linearity(frames: list, *, assume_linear: bool) -> dict:
    """The photon-transfer check of up to four of the flats (spread over the list)."""
    if len(frames) < 2:
        return {"method": "photon-transfer", "verdict": None}
    picks = sorted({round(i * (len(frames) - 1) / 3) for i in range(4)})
    sample = [as_frame(frames[i], role="flat") for i in picks]
    check = check_flat_linearity(sample, assume_linear=assume_linear)
    return {"method": check.method, "verdict": check.verdict,
            "exponent": None if check.exponent is None else round(float(check.exponent), 4),
            "uncertainty": None if check.uncertainty is None
            else round(float(check.uncertainty), 4)}


def _label(value, role: str) -> str:
    return os.fsdecode(value) if isinstance(value, str | os.PathLike) else f"the {role}"


def _reevaluate_model_variance(plane: Plane, combined: CCDData, bias: CCDData,
                               method: str) -> None:
    """Variance of a combined dark from the detector model, with the bias known.

    Frames read with the detector model (``UNCSRC = 'detector model'``) count
    the bias level as photon signal, because the reader does not know it.
    With the master bias known, the variance of one frame is
    ``max(M - B, 0) / g + (RN / g)**2`` and that of the combined value that
    over the number of frames combined (times the median's efficiency factor
    squared for a median).
    """
    meta = combined.meta
    if str(meta.get("UNCSRC", "")).strip() != "detector model" or plane.var is None:
        return
    if method not in ("mean", "median") or combined.unit != u.adu:
        return
    try:
        g = float(meta["EGAIN"])
        rn = float(meta["RDNOISE"])
    except (KeyError, TypeError, ValueError):
        return
    n = getattr(combined, "ncombine", None)
    if n is None:
        return
    n = np.maximum(np.asarray(n, np.int64), 1)
    factor = 1.0 / n
    if method == "median":
        table = {int(k): median_efficiency_factor(int(k)) ** 2 for k in np.unique(n)}
        factor = np.vectorize(table.__getitem__, otypes=[float])(n) / n
    signal = np.maximum(np.nan_to_num(plane.data - np.asarray(bias.data, np.float32)), 0)
    single = signal / g + (rn / g) ** 2
    plane.var = (single * factor).astype(np.float32)


def _master_ccd(plane: Plane, *, unit, meta) -> CCDData:
    """A master as float32 data, standard deviation and mask."""
    unc = None if plane.var is None else StdDevUncertainty(
        np.sqrt(plane.var).astype(np.float32))
    return CCDData(plane.data.astype(np.float32), unit=unit, uncertainty=unc,
                   mask=plane.mask, meta=meta)


def _subtract_bias(plane: Plane, combined: CCDData, bias: CCDData, method: str) -> Plane:
    """The combined dark less the master bias (whose shape and unit must match)."""
    if bias.shape != combined.shape:
        raise IncompatibleFramesError(
            f"make_master_dark: bias shape {bias.shape} differs from the darks' "
            f"{combined.shape}")
    if bias.unit != combined.unit:
        raise u.UnitsError(f"make_master_dark: bias unit '{bias.unit}' differs from "
                           f"the darks' '{combined.unit}'")
    _reevaluate_model_variance(plane, combined, bias, method)
    return subtract(plane, Plane.from_ccd(bias))


def _dark_rate(plane: Plane, unit, exptime) -> tuple[Plane, u.UnitBase]:
    """The dark current per second."""
    if exptime is None or not exptime > 0:
        raise MissingMetadataError(
            "make_master_dark: per_second=True but the darks have no positive EXPTIME; "
            "set meta['EXPTIME'] (seconds) on the frames")
    rate = Plane(plane.data / np.float32(exptime),
                 None if plane.var is None else plane.var / np.float32(exptime) ** 2,
                 plane.mask)
    return rate, u.Unit(unit / u.s)


def _dark_keywords(combined: CCDData, checked, *, exptime, bias: CCDData | None,
                   per_second: bool, nframes: int):
    """The header of a master dark (see :mod:`calframe.masters`)."""
    meta = header_of(combined.meta)
    if exptime is not None:
        meta["EXPTIME"] = (exptime, "[s] exposure time of the darks")
    if checked.temperature is not None:
        meta["CCD-TEMP"] = (checked.temperature, "[C] mean sensor temperature of the darks")
    elif temperature_of(combined) is not None:
        meta["CCD-TEMP"] = temperature_of(combined)
    meta["FRAMETYP"] = ("dark", "calframe master dark")
    meta["IMAGETYP"] = "Dark Frame"
    meta["BIASSUB"] = (bias is not None, "T: dark current only; F: includes the bias")
    if bias is not None:
        meta["BIASID"] = (data_id(bias), "data SHA-256 (16 hex) of the bias subtracted")
    meta["DARKRATE"] = (bool(per_second), "T: dark current per second")
    meta.setdefault("NCOMBINE", nframes)
    return meta


def make_master_bias(frames, *, method: str = "median", rejection=None,
                     allow_mixed: bool = False, **combine_options) -> CCDData:
    """Combine bias frames into a master bias.

    Parameters
    ----------
    frames : sequence of CCDData or paths, or ImageFileCollection
        The bias frames.
    method : str
        Combine method (``'median'``, ``'mean'``...; see :func:`calframe.combine`).
    rejection : settings object, optional
        Rejection for the combine, e.g. ``SigmaClip(low=3, high=3)`` (None:
        no rejection).
    allow_mixed : bool
        Combine frames that the input contract (:mod:`calframe.contract`)
        refuses: other frame types, calframe outputs, display-encoded images,
        different exposures (darks), binning, CFA pattern, ISO / gain or
        offset.  Each problem let through is logged and recorded in the
        provenance.
    **combine_options
        Passed to :func:`calframe.combine` (``weights``, ``memory_limit``,
        ``workers``, ``scheduler``...).

    Returns
    -------
    CCDData
        The master bias with uncertainty, mask, ``ncombine``/``rejected``
        counts, ``FRAMETYP = 'bias'`` and provenance.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> rng = np.random.default_rng(0)
    >>> biases = [CCDData(rng.normal(100, 5, (8, 8)).astype("f4"), unit="adu")
    ...           for _ in range(9)]
    >>> master = make_master_bias(biases)
    >>> master.meta["FRAMETYP"], bool(abs(master.data.mean() - 100) < 2)
    ('bias', True)
    """
    frames = _check_frames(frames, "make_master_bias")
    checked = check_master_frames(frames, "bias", allow_mixed=allow_mixed)
    combined = _combine(frames, method=method, rejection=rejection, **combine_options)
    prov = get_provenance(combined).copy()
    out = combined.copy()
    out.meta = header_of(combined.meta)
    out.meta["FRAMETYP"] = ("bias", "calframe master bias")
    out.meta["IMAGETYP"] = "Bias Frame"
    out.meta["EXPTIME"] = (0.0, "[s] exposure time")
    out.meta.setdefault("NCOMBINE", len(frames))
    prov.add_step("make_master_bias", method=method, nframes=len(frames),
                  **_overrides(checked))
    return _finish(out, combined, prov)


def make_master_dark(frames, *, bias=None, method: str = "median", rejection=None,
                     per_second: bool = False, allow_mixed: bool = False,
                     **combine_options) -> CCDData:
    """Combine dark frames of one exposure into a master dark.

    With a ``bias``, the result is the dark current of that exposure (bias
    subtracted after combining, uncertainties added in quadrature) and can
    be scaled to any exposure; without, it is a dark that still contains the
    bias (``BIASSUB = F``), to be applied to frames of the same exposure:
    :func:`calframe.calibrate` recognises it and never subtracts the bias
    twice.

    Parameters
    ----------
    frames : sequence of CCDData or paths, or ImageFileCollection
        Darks of one exposure time (EXPTIME) and temperature.
    bias : CCDData or path, optional
        Master bias.
    method, rejection, allow_mixed, **combine_options
        As in :func:`make_master_bias`.
    per_second : bool
        Return the dark-current rate (unit adu/s, or electron/s): the dark
        current divided by EXPTIME.  Needs ``bias``.

    Returns
    -------
    CCDData
        ``FRAMETYP = 'dark'``, ``EXPTIME``, ``CCD-TEMP`` (mean of the
        inputs, when known), ``BIASSUB``, ``DARKRATE``.

    Raises
    ------
    MixedFramesError
        If the darks have different exposure times (or other settings, see
        :mod:`calframe.contract`).
    WrongFrameTypeError
        A frame that is not a dark, or a ``bias`` that is not a bias.
    MissingMetadataError
        ``per_second=True`` without EXPTIME.
    InvalidSettingsError
        ``per_second=True`` without a bias.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> rng = np.random.default_rng(0)
    >>> bias = CCDData(np.full((8, 8), 100.0, "f4"), unit="adu")
    >>> darks = [CCDData(rng.normal(160, 5, (8, 8)).astype("f4"), unit="adu",
    ...                  meta={"EXPTIME": 300.0}) for _ in range(9)]
    >>> rate = make_master_dark(darks, bias=bias, per_second=True)
    >>> rate.unit, bool(abs(rate.data.mean() - 0.2) < 0.01)
    (Unit("adu / s"), True)
    """
    frames = _check_frames(frames, "make_master_dark")
    if per_second and bias is None:
        raise InvalidSettingsError(
            "make_master_dark: per_second=True needs bias= (the rate of a dark that "
            "includes the bias has no meaning); pass the master bias")
    checked = check_master_frames(frames, "dark", allow_mixed=allow_mixed)
    bias_ccd = None
    if bias is not None:
        bias_ccd = as_frame(bias, role="bias")
        check_role(bias_ccd, "bias", label=_label(bias, "bias"))
    combined = _combine(frames, method=method, rejection=rejection, **combine_options)
    prov = get_provenance(combined).copy()
    exptime = checked.exptime
    if exptime is None:
        exptime = exposure_of(combined, name="combined dark", required=False)
    plane = Plane.from_ccd(combined)
    unit = combined.unit
    if bias_ccd is not None:
        prov.extend(get_provenance(bias_ccd))
        plane = _subtract_bias(plane, combined, bias_ccd, method)
    if per_second:
        plane, unit = _dark_rate(plane, unit, exptime)
    meta = _dark_keywords(combined, checked, exptime=exptime, bias=bias_ccd,
                          per_second=per_second, nframes=len(frames))
    out = _master_ccd(plane, unit=unit, meta=meta)
    prov.add_step("make_master_dark", method=method, nframes=len(frames),
                  bias_subtracted=bias is not None, per_second=bool(per_second),
                  exptime=exptime, **_overrides(checked))
    return _finish(out, combined, prov)


def _regions(region, shape):
    """numpy (rows, cols) of the normalisation region."""
    if region is None or (isinstance(region, str) and region == "full"):
        return slice(None), slice(None)
    if isinstance(region, str) and region == "centre":
        return standard_regions(shape)["centre"]
    if isinstance(region, str):
        return parse_section(region, shape, what="region")
    try:
        y0, y1, x0, x1 = (int(v) for v in region)
    except (TypeError, ValueError) as err:
        raise InvalidSettingsError(f"region: {region!r} is not None, 'centre', a FITS section or "
                         "(y0, y1, x0, x1)") from err
    return slice(y0, y1), slice(x0, x1)


#: Pixels of a flat below this fraction of its bright level (98th percentile) are
#: taken as unlit (outside a spectrograph's slit, a masked edge) when they are at
#: least ``UNLIT_MIN_SHARE`` of a colour: its level is measured on the others.
UNLIT_FRACTION = 0.1
UNLIT_MIN_SHARE = 0.01


def _levels(data: np.ndarray, good: np.ndarray, groups, region, statistic: str
            ) -> tuple[list[float], str]:
    """Level of each group of CFA sites inside the region, and which pixels it used.

    With ``region=None`` the level is measured over the pixels the flat
    illuminates: a flat that leaves part of the sensor unlit would otherwise
    be normalised by a median that falls in the dark part.
    """
    rows, cols = _regions(region, data.shape)
    inside = np.zeros(data.shape, bool)
    inside[rows, cols] = True
    func = np.median if statistic == "median" else np.mean
    levels, lit, total = [], 0, 0
    for group in groups:
        values = np.concatenate([data[sl][(good & inside)[sl]] for sl in group])
        if values.size == 0:
            raise IncompatibleFramesError(
                "make_master_flat: a CFA colour has no valid pixel in the normalisation "
                "region; choose a larger region")
        total += values.size
        if region is None:
            bright = float(np.percentile(values, 98))
            dark = values < UNLIT_FRACTION * bright
            if bright > 0 and dark.mean() >= UNLIT_MIN_SHARE:
                values = values[~dark]
        lit += values.size
        levels.append(float(func(values)))
    if region is not None:
        where = "the whole frame" if region == "full" else f"region {region!r}"
    elif lit < total:
        where = f"the illuminated pixels ({100 * lit / total:.1f}%)"
    else:
        where = "all pixels (all illuminated)"
    return levels, where


@dataclass(eq=False)
class _MasterFlat:
    """A master flat on its way through :func:`make_master_flat`, and what the steps decided.

    The settings are those of :func:`make_master_flat`; the corrected flats
    fill in ``groups``, ``chan``, ``levels``, the coefficients of the bias and
    the dark and ``black`` as they go by.
    """

    frames: list
    method: str
    normalize: str | None
    region: Any
    per_channel: bool | None
    min_value: float
    dark_scale: Any
    subtract_black: bool | None
    prov: Provenance = field(default_factory=Provenance)
    # the masters as given (with their uncertainty), and without it for the
    # correction of each flat: their error is common to all flats, added once
    bias: CCDData | None = None
    dark: CCDData | None = None
    bias_nounc: CCDData | None = None
    dark_nounc: CCDData | None = None
    # the pixel groups the levels are measured on (one per CFA colour, or one)
    groups: list | None = None
    chan: bool = False
    levels: list = field(default_factory=list)  # per flat, per group
    bias_coeff: np.ndarray | None = None  # sum over the flats of bias share / level
    dark_coeff: np.ndarray | None = None
    black: list | None = None  # the camera black level subtracted, if any

    @property
    def dark_without_bias(self) -> bool:
        """A dark and no bias: the dark's error is in the flat (DARKID, DKCOEF)."""
        return self.dark is not None and self.bias is None


def _check_flat_settings(normalize, min_value) -> None:
    if normalize not in ("median", "mean", "exposure", None):
        raise InvalidSettingsError(f"make_master_flat: normalize={normalize!r} must be 'median', "
                         "'mean', 'exposure' or None")
    if not min_value >= 0:
        raise InvalidSettingsError(f"make_master_flat: min_value={min_value} must not be negative")


def _without_uncertainty(ccd: CCDData) -> CCDData:
    return CCDData(ccd.data, unit=ccd.unit, mask=ccd.mask, meta=ccd.meta)


def _flat_masters(run: _MasterFlat, bias, dark) -> None:
    """Read the bias and the dark, check their roles, and keep copies without uncertainty."""
    run.bias = None if bias is None else as_frame(bias, role="bias", prov=run.prov)
    run.dark = None if dark is None else as_frame(dark, role="dark", prov=run.prov)
    for value, ccd, role in ((bias, run.bias, "bias"), (dark, run.dark, "dark")):
        if ccd is not None:
            check_role(ccd, role, label=_label(value, role))
    if run.bias is not None:
        run.bias_nounc = _without_uncertainty(run.bias)
    if run.dark is not None:
        run.dark_nounc = _without_uncertainty(run.dark)
        set_provenance(run.dark_nounc, get_provenance(run.dark))


def _decide_groups(run: _MasterFlat, flat: CCDData) -> None:
    """On the first flat: normalise per CFA colour or not, and the pixel groups."""
    if run.groups is not None:
        return
    pattern = cfa_pattern(flat.meta)
    chan = (pattern is not None) if run.per_channel is None else bool(run.per_channel)
    if chan and pattern is None:
        raise InvalidSettingsError(
            "make_master_flat: per_channel=True but the flats have no BAYERPAT; set it in "
            "their headers or use per_channel=False")
    run.chan = chan
    run.groups = cfa_groups(flat.meta if chan else {}, flat.shape, by_colour=True)


def _subtract_masters(run: _MasterFlat, flat: CCDData) -> tuple[CCDData, float, float]:
    """The flat less the bias and the dark (or the camera black level).

    Returns the corrected flat and the coefficients of the dark and of the
    bias in it.
    """
    if run.bias_nounc is not None or run.dark_nounc is not None:
        cal = calibrate(flat, bias=run.bias_nounc, dark=run.dark_nounc,
                        dark_scale=run.dark_scale, subtract_black=run.subtract_black)
        step = get_provenance(cal).steps[-1].parameters
        k = float(step.get("dark_scale", 0.0)) if run.dark_nounc is not None else 0.0
        c = float(step.get("bias_coefficient", 0.0 if run.bias_nounc is None else 1.0))
        if "black_level" in step:
            run.black = step["black_level"]
        return cal, k, c
    if decide_black_level(flat.meta, run.subtract_black, removed_by=None):
        cal = subtract_black_level(flat)
        run.black = [float(v) for v in black_level(flat.meta).ravel()]
        return cal, 0.0, 0.0
    return flat, 0.0, 0.0


def _flat_levels(run: _MasterFlat, plane: Plane, flat: CCDData, i: int) -> list[float]:
    """The level of each pixel group of one corrected flat, which it is divided by."""
    groups = run.groups
    good = plane.valid()
    if run.normalize in ("median", "mean"):
        levels, _ = _levels(plane.data, good, groups, run.region, run.normalize)
    elif run.normalize == "exposure":
        t = exposure_of(flat, name=f"flat {i}", fix="or use normalize=None")
        levels = [t] * len(groups)
    else:
        levels = [1.0] * len(groups)
    if not all(np.isfinite(v) and v > 0 for v in levels):
        raise IncompatibleFramesError(
            f"make_master_flat: flat {i} has a non-positive level {levels}; is it "
            "bias-subtracted twice, or not a flat?")
    return levels


def _scaled_flat(run: _MasterFlat, cal: CCDData, plane: Plane, levels: list[float], *,
                 k: float, c: float) -> CCDData:
    """One corrected flat divided by its levels; the masters' shares are summed up.

    One compiled pass (:func:`calframe._calkernel.normalise_flat`): ``data /
    level``, ``sqrt(var / level**2)`` and the sums of ``c / level`` and ``k /
    level``, in the float32 arithmetic of the same numpy expressions.
    """
    tile = np.empty((2, 2), np.float32)  # the level of each site of the 2x2 cell
    for level, group in zip(levels, run.groups, strict=True):
        for sl in group:
            tile[sl] = level
    if run.bias_coeff is None:
        run.bias_coeff = np.zeros(plane.data.shape, np.float64)
        run.dark_coeff = np.zeros(plane.data.shape, np.float64)
    data, std = normalise_flat(plane.data, plane.var, tile, bias_coefficient=c,
                               dark_coefficient=k, bias_sum=run.bias_coeff,
                               dark_sum=run.dark_coeff)
    return CCDData(data, unit=cal.unit, mask=plane.mask, meta=header_of(cal.meta),
                   uncertainty=None if std is None else StdDevUncertainty(std, copy=False))


def _corrected_flats(run: _MasterFlat):
    """Yield the flats corrected and scaled to one level, one at a time.

    The combine takes them as an iterator and caches each to disk: memory
    stays bounded however many flats there are.
    """
    for i, frame in enumerate(run.frames):
        flat = as_frame(frame, role="flat", prov=run.prov)
        _decide_groups(run, flat)
        cal, k, c = _subtract_masters(run, flat)
        plane = Plane.from_ccd(cal, copy=False)  # not written into
        levels = _flat_levels(run, plane, flat, i)
        run.levels.append(levels)
        yield _scaled_flat(run, cal, plane, levels, k=k, c=c)


def _add_common_errors(run: _MasterFlat, plane: Plane) -> None:
    """The errors of the bias and the dark, common to all flats, added once."""
    if plane.var is None:
        return
    n = len(run.frames)
    if run.bias is not None and run.bias.uncertainty is not None:
        a = run.bias_coeff / n
        plane.var = plane.var + a**2 * np.nan_to_num(std_of(run.bias)) ** 2
    if run.dark is not None and run.dark.uncertainty is not None:
        a = run.dark_coeff / n
        plane.var = plane.var + a**2 * np.nan_to_num(std_of(run.dark)) ** 2


def _master_levels(run: _MasterFlat, plane: Plane
                   ) -> tuple[list[float], list[float], str]:
    """What the master is divided by, its masking threshold (per group) and where
    the levels were measured."""
    stat = run.normalize if run.normalize in ("median", "mean") else "median"
    levels, where = _levels(plane.data, plane.valid(), run.groups, run.region, stat)
    if run.normalize in ("median", "mean"):
        return levels, [run.min_value] * len(levels), where
    return [1.0] * len(levels), [run.min_value * v for v in levels], where


def _master_unit(run: _MasterFlat, unit) -> u.UnitBase:
    if run.normalize in ("median", "mean"):
        return u.dimensionless_unscaled
    if run.normalize == "exposure":
        return u.Unit(unit / u.s)
    return unit


def _divide_master(run: _MasterFlat, plane: Plane, final: list[float],
                   threshold: list[float]) -> Plane:
    """The combined flat divided by its levels, values below the threshold masked."""
    data = plane.data.copy()
    var = None if plane.var is None else plane.var.copy()
    mask = plane.mask.copy()
    for level, thr, group in zip(final, threshold, run.groups, strict=True):
        for sl in group:
            data[sl] /= level
            if var is not None:
                var[sl] /= level**2
            low = ~(data[sl] >= thr)
            mask[sl] |= low
    return Plane(data, var, mask)


def _flat_keywords(run: _MasterFlat, meta, final: list[float], threshold: list[float],
                   where: str) -> None:
    """The keywords of a master flat (see :mod:`calframe.masters`)."""
    names = ["R", "G", "B"] if run.chan else ["ALL"]
    n = len(run.frames)
    for level, group, name in zip(final, run.groups, names, strict=True):
        overall = level * float(np.mean([lv[names.index(name)] for lv in run.levels]))
        meta[f"NORM_{name}"] = (overall, "mean level of the flats in this colour")
        if run.dark_without_bias:
            # how much of the dark is in this colour of the master flat, so
            # that calibrate can account for the dark's error being in both
            coef = float(np.mean(run.dark_coeff[group[0]])) / n / level
            meta["DKCOEF" + ("" if name == "ALL" else name)] = (
                coef, "coefficient of the dark in the master flat")
    if run.dark_without_bias:
        meta["DARKID"] = (data_id(run.dark), "data SHA-256 (16 hex) of the dark subtracted")
    meta["FRAMETYP"] = ("flat", "calframe master flat")
    meta["IMAGETYP"] = "Flat Field"
    meta["FLATNORM"] = (str(run.normalize), "normalisation of the master flat")
    meta["FLATCHAN"] = (run.chan, "normalised per CFA colour")
    meta["FLATREG"] = (where[:68], "pixels the level was measured on")
    meta["FLATMIN"] = (float(threshold[0]), "values below are masked, never divided by")
    meta.setdefault("NCOMBINE", n)


def _record_flat(run: _MasterFlat, *, nlow: int, where: str, linear: dict,
                 assume_linear: bool, checked, final: list[float]) -> None:
    """The provenance step of the master flat, and its log lines."""
    region = run.region
    run.prov.add_step(
        "make_master_flat", method=run.method, nframes=len(run.frames),
        normalize=run.normalize, per_channel=run.chan, min_value=float(run.min_value),
        region=region if region is None or isinstance(region, str)
        else [int(v) for v in region],
        bias=run.bias is not None, dark=run.dark is not None, masked_low=nlow,
        level_from=where, linearity=linear,
        **({"assume_linear": True} if assume_linear else {}),
        **({"black_level": run.black} if run.black else {}),
        **_overrides(checked))
    if run.black:
        log.info("make_master_flat: camera black level %s subtracted from every flat "
                 "(nothing else removes it)", run.black)
    log.info("make_master_flat: %d flats, levels %s, %d pixels below min_value masked",
             len(run.frames), final, nlow)


def make_master_flat(frames, *, bias=None, dark=None, method: str = "median",
                     rejection=None, normalize: str | None = "median", region=None,
                     per_channel: bool | None = None, min_value: float = 0.1,
                     dark_scale: str | float | None = "exposure",
                     subtract_black: bool | None = None, allow_mixed: bool = False,
                     assume_linear: bool = False, **combine_options) -> CCDData:
    """Calibrate, scale, combine and normalise flat fields into a master flat.

    Each flat is corrected with the bias and the dark (scaled to the flat's
    exposure; a dark-flat that includes the bias is recognised, see
    :func:`calframe.calibrate`), divided by its own level (per CFA colour on
    a mosaic) so that all flats share one level, and combined; the master
    is then divided by its level, so it is 1 on average in each colour.  The
    bias and dark are common to all flats, so their uncertainty is added
    once, after the combine (it does not average down).

    Parameters
    ----------
    frames : sequence of CCDData or paths, or ImageFileCollection
        The flat fields.
    bias, dark : CCDData or path, optional
        Master bias and master dark (or dark-flat).
    method, rejection, allow_mixed, **combine_options
        As in :func:`make_master_bias`.
    assume_linear : bool
        Take the flats as linear.  By default the photon noise of up to four
        of them is measured against their level
        (:func:`calframe.linearity.check_flat_linearity`), and gamma-encoded
        flats are refused; the measurement, and this override, are recorded
        in the provenance.
    normalize : {'median', 'mean', 'exposure', None}
        How each flat and the master are scaled: to a median or mean of 1;
        ``'exposure'`` divides each flat by its EXPTIME (a rate in adu/s, for
        beamline normalisation ``(raw / t_raw) / (flat / t_flat)``); None
        keeps the counts (same-exposure flats, ``(data - dark) / (flat - dark)``).
    region : None, 'full', 'centre', FITS section or (y0, y1, x0, x1)
        Where levels are measured.  Default: the pixels the flat illuminates
        (those above 10% of its bright level, when they leave at least 1% of
        a colour unlit, as a spectrograph's flat does; else all pixels);
        ``'full'`` takes every pixel.  ``FLATREG`` says which.
    per_channel : bool, optional
        Normalise each CFA colour (R, G, B) separately.  Default: True when
        the frames have BAYERPAT, so the flat never changes colour balance.
    min_value : float
        Pixels of the normalised master below this are masked (calibrate
        never divides by them); for ``normalize`` None or 'exposure', the
        threshold is relative to the master's median.
    dark_scale : 'exposure', float or None
        How the dark is scaled to each flat (as in :func:`calframe.calibrate`;
        None subtracts it as it is, e.g. a beam-off dark without EXPTIME).
    subtract_black : bool, optional
        Subtract the camera black level each flat records (BLKLEV0..3, camera
        RAW) before its level is measured.  Default: exactly when no bias and
        no dark that includes the bias remove it (see
        :mod:`calframe.blacklevel`); left in, it makes the vignetting look
        shallower than it is.

    Returns
    -------
    CCDData
        Dimensionless (normalised), adu (``normalize=None``) or adu/s
        (``'exposure'``), with uncertainty, mask and the keywords listed in
        :mod:`calframe.masters`.

    Raises
    ------
    ValueError
        Unknown ``normalize``, or a flat without positive level.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> rng = np.random.default_rng(0)
    >>> response = np.linspace(0.8, 1.2, 64).reshape(8, 8)
    >>> flats = [CCDData(rng.normal(level * response, 1).astype("f4"), unit="adu")
    ...          for level in (1000.0, 2000.0, 3000.0)]
    >>> master = make_master_flat(flats)
    >>> bool(np.allclose(master.data, response / np.median(response), atol=0.01))
    True
    """
    frames = _check_frames(frames, "make_master_flat")
    _check_flat_settings(normalize, min_value)
    checked = check_master_frames(frames, "flat", allow_mixed=allow_mixed)
    linear = _flat_linearity(frames, assume_linear=assume_linear)
    run = _MasterFlat(frames=frames, method=method, normalize=normalize, region=region,
                      per_channel=per_channel, min_value=min_value, dark_scale=dark_scale,
                      subtract_black=subtract_black)
    _flat_masters(run, bias, dark)
    combined = _combine(_corrected_flats(run), method=method, rejection=rejection,
                        **combine_options)
    run.prov.extend(get_provenance(combined))
    plane = Plane.from_ccd(combined)
    _add_common_errors(run, plane)
    final, threshold, where = _master_levels(run, plane)
    master = _divide_master(run, plane, final, threshold)
    meta = header_of(combined.meta)
    _flat_keywords(run, meta, final, threshold, where)
    out = _master_ccd(master, unit=_master_unit(run, combined.unit), meta=meta)
    nlow = int(master.mask.sum() - plane.mask.sum())
    _record_flat(run, nlow=nlow, where=where, linear=linear, assume_linear=assume_linear,
                 checked=checked, final=final)
    return _finish(out, combined, run.prov)
