"""Calibration of a frame with master bias, dark and flat.

:func:`calibrate` applies, in this order: overscan subtraction, trim, bias,
dark (scaled), flat, gain, cosmetic correction and cosmic-ray removal.  Every
step propagates the variance of the frame *and of the masters* (first order,
independent errors), ORs the masks, and records itself in the provenance.

A pixel that is masked or not finite in a master is masked in the output and
left uncorrected by that master; it never changes any other pixel.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty

from ._arith import Plane, subtract
from ._calkernel import (
    MasterArrays,
    detector_variance,
    divide_and_finish,
    master_arrays,
    subtract_terms,
)
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
from ._darkscale import (
    DarkScaleFit,
    _optimize_dark,
    fit_dark_scale,
    fit_dark_scale_per_channel,
)
from .bayer import crop_keywords
from .blacklevel import black_level, decide_black_level, subtract_tile
from .contract import check_role, file_of
from .cosmetic import Cosmetic, correct_bad_pixels, find_bad_pixels, remove_cosmic_rays
from .errors import (
    IncompatibleFramesError,
    InvalidSettingsError,
    NegativePixelsWarning,
    NonLinearDataWarning,
    TemperatureMismatchWarning,
    UnitMismatchError,
)
from .linearity import check_light_linearity, check_linear_pair, linearity
from .provenance import Provenance, get_provenance, set_provenance

__all__ = ["DarkScaleFit", "calibrate", "dark_holds_offset", "dark_includes_bias",
           "fit_dark_scale", "fit_dark_scale_per_channel"]

log = logging.getLogger(__name__)

#: Largest |CCD-TEMP(frame) - CCD-TEMP(dark)| (deg C) accepted without a warning.
TEMPERATURE_TOLERANCE = 2.0
#: Fraction of negative calibrated pixels above which a warning is emitted.
NEGATIVE_FRACTION = 0.2
#: Header keywords (value, error) of the per-channel dark scale factors.
DARK_SCALE_KEYWORDS = {"R": ("DKSCALR", "DKSERRR"), "G1": ("DKSCAG1", "DKSERG1"),
                       "G2": ("DKSCAG2", "DKSERG2"), "B": ("DKSCALB", "DKSERRB")}
_DARK_SCALE_MODES = ("exposure", "optimize", "optimize-per-channel")


def dark_includes_bias(dark: CCDData) -> bool:
    """True if a master dark still contains the bias.

    Read from ``BIASSUB`` in the header (written by
    :func:`calframe.make_master_dark`) or, failing that, from the
    ``make_master_dark`` step of its provenance.  A dark that says nothing is
    taken to be bias-subtracted (dark current only).

    Parameters
    ----------
    dark : CCDData
        A master dark.

    Returns
    -------
    bool
        True when the bias is still in the dark.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> d = CCDData(np.zeros((2, 2)), unit="adu", meta={"BIASSUB": False})
    >>> dark_includes_bias(d)
    True
    """
    value = dark.meta.get("BIASSUB")
    if value is not None:
        if isinstance(value, str):
            return value.strip().upper() in ("F", "FALSE", "N", "NO", "0")
        return not bool(value)
    for step in reversed(get_provenance(dark).steps):
        if step.step == "make_master_dark":
            return not step.parameters.get("bias_subtracted", True)
    return False


def dark_holds_offset(dark: CCDData) -> bool:
    """True if ``dark`` is a frame as the detector gave it, so it holds the offset.

    A dark read from a file (or combined from darks read from files) that
    says nothing about a bias (no ``BIASSUB``, no ``DARKRATE``, no bias, black
    level or calibration step in its provenance) and is not a rate is a raw
    dark: detector offset plus dark current.  Subtracted as it is from a
    frame of the same exposure, it removes both; scaled, it would scale the
    offset too.  A dark made in memory that says nothing is taken to be dark
    current only, as :func:`dark_includes_bias` does.

    Parameters
    ----------
    dark : CCDData
        The dark, with its header (and provenance, when it was read or combined
        by calframe).

    Returns
    -------
    bool
        True for a raw dark (offset plus dark current), False for dark current
        only.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from calframe import read_frame
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dark_3s.fits"
    >>> header = fits.Header({"EXPTIME": 3.0, "EGAIN": 1.0, "RDNOISE": 2.0})
    >>> fits.PrimaryHDU(np.full((4, 4), 100, np.uint16), header=header).writeto(path)
    >>> dark_holds_offset(read_frame(path))
    True
    >>> from astropy.nddata import CCDData
    >>> dark_holds_offset(CCDData(np.full((4, 4), 5.0), unit="adu"))  # made in memory
    False
    """
    meta = dark.meta
    if any(key in meta for key in ("BIASSUB", "DARKRATE")) or _truthy(meta.get("BLKSUB")):
        return False
    if "B" in str(meta.get("CALSTAT", "")) or "O" in str(meta.get("CALSTAT", "")):
        return False
    unit = _unit(dark)
    if any(base == u.s and power < 0 for base, power in zip(unit.bases, unit.powers,
                                                             strict=True)):
        return False  # a rate (adu/s)
    steps = {step.step for step in get_provenance(dark).steps}
    return "read" in steps and not steps & {"make_master_dark", "make_master_bias", "calibrate",
                                            "subtract_bias", "normalise_channels"}


def _channel_values(value, pattern: str | None):
    """JSON-safe form of a scalar or a per-channel map: a float or {channel: float}."""
    if np.ndim(value) == 0:
        return float(value)
    from .bayer import channel_slices

    return {name: float(np.asarray(value)[sl].flat[0])
            for name, sl in channel_slices(pattern).items()}


def _frame_type(ccd: CCDData) -> str | None:
    """Normalised frame type (FRAMETYP, else IMAGETYP), or None."""
    from .metadata import parse_frame_type

    for key in ("FRAMETYP", "IMAGETYP"):
        ftype = parse_frame_type(ccd.meta.get(key))
        if ftype is not None:
            return ftype
    return None


def _dark_flat_covariance(plane: Plane, flat: CCDData, dark: CCDData, k) -> None:
    """Remove the covariance of a dark that is in the frame and in its flat.

    ``k`` is the dark's scale: a float or a per-pixel array.
    """
    pattern_meta = flat.meta if flat.meta.get("FLATCHAN") else {}
    groups = cfa_groups(pattern_meta, flat.shape, by_colour=True)
    names = ["R", "G", "B"] if len(groups) == 3 else [""]
    coef = np.zeros(flat.shape, np.float32)
    for name, group in zip(names, groups, strict=True):
        value = flat.meta.get("DKCOEF" + name)
        if value is None:
            return
        for sl in group:
            coef[sl] = float(value)
    fdata = np.asarray(flat.data, np.float32)
    dvar = np.square(np.nan_to_num(np.asarray(std_of(dark), np.float32)))
    good = ~plane.mask & np.isfinite(fdata) & (fdata > 0)
    fsafe = np.where(good, fdata, 1)
    term = 2 * np.asarray(k, np.float32) * plane.data * coef * dvar / fsafe**2
    plane.var = np.maximum(plane.var - np.where(good, term, 0), 0).astype(np.float32)


def _display_name(value, default: str) -> str:
    if isinstance(value, CCDData):
        return file_of(value) or default
    return str(value)


def _named(ccd: CCDData, light: CCDData) -> CCDData:
    """``ccd`` with the provenance of ``light`` (so that messages name its file)."""
    set_provenance(ccd, get_provenance(light))
    return ccd


def _unit(ccd: CCDData) -> u.UnitBase:
    return ccd.unit if ccd.unit is not None else u.adu


def _prepare_master(value, *, role: str, prov: Provenance, raw_shape, shape, rows_cols):
    if value is None:
        return None
    ccd = as_frame(value, role=role, prov=prov)
    check_role(ccd, role, label=_display_name(value, f"the {role}"))
    if ccd.shape == shape:
        return ccd
    if rows_cols is not None and ccd.shape == raw_shape:
        rows, cols = rows_cols
        cropped = ccd[rows, cols]
        if cfa_pattern(ccd.meta) is not None:
            cropped.meta = header_of(ccd.meta)
            cropped.meta.update(crop_keywords(ccd.meta, origin=_origin(rows_cols),
                                              shape=raw_shape, cropped_shape=shape))
        return cropped
    raise IncompatibleFramesError(
        f"{role}: shape {ccd.shape} does not match the frame ({shape} after trim, "
        f"{raw_shape} before); use masters made from frames of the same detector area")


def _origin(rows_cols) -> tuple[int, int]:
    rows, cols = rows_cols
    return (cols.start or 0, rows.start or 0)


def _overscan_plane(plane: Plane, section, *, shape) -> tuple[Plane, str, np.ndarray]:
    rows, cols = parse_section(section, shape, what="overscan")
    region = plane.data[rows, cols].astype(np.float64)
    nrow, ncol = region.shape
    if ncol <= nrow:  # a band of columns: one value per row
        if nrow != shape[0]:
            raise InvalidSettingsError(f"overscan: the column band {section!r} must span all "
                             f"{shape[0]} rows (it spans {nrow})")
        level = np.median(region, axis=1)
        spread = np.std(region, axis=1)
        value = level[:, None]
        var = (np.pi / 2) * spread**2 / ncol
        var = var[:, None]
        kind = "rows"
    else:  # a band of rows: one value per column
        if ncol != shape[1]:
            raise InvalidSettingsError(f"overscan: the row band {section!r} must span all "
                             f"{shape[1]} columns (it spans {ncol})")
        level = np.median(region, axis=0)
        spread = np.std(region, axis=0)
        value = level[None, :]
        var = ((np.pi / 2) * spread**2 / nrow)[None, :]
        kind = "columns"
    data = (plane.data - value).astype(plane.data.dtype)
    pvar = None if plane.var is None else (plane.var + var).astype(plane.var.dtype)
    return Plane(data, pvar, plane.mask.copy()), kind, var.astype(np.float32)


def _estimate_variance(raw: np.ndarray, offset: np.ndarray | float, gain: float,
                       rdnoise_e: float, meta=None) -> np.ndarray:
    """Detector-model variance in adu**2: Poisson on the signal plus read noise.

    The Poisson term is taken from the mean of the 3x3 neighbourhood of
    each pixel's CFA site rather than from the pixel alone: a pixel that
    fluctuated low would otherwise get a smaller sigma (and one that
    fluctuated high a larger one), which biases pulls negative at low counts
    (about -0.06 at 30 e-).  Where the pixel and its neighbourhood differ by
    more than 3 sigma (a star's core or wing, a hot pixel) its own value is
    used.

    The arithmetic runs in one compiled pass (:func:`calframe._calkernel.detector_variance`),
    on the four sites of a CFA mosaic apart.
    """
    if np.ndim(raw) != 2:  # a cube: the 3x3x3 neighbourhood, as scipy gives it
        return _estimate_variance_nd(raw, offset, gain, rdnoise_e)
    step = 1 if cfa_pattern(meta if meta is not None else {}) is None else 2
    return detector_variance(np.asarray(raw), offset, step=step, gain=gain,
                             rdnoise_e=rdnoise_e)


def _estimate_variance_nd(raw, offset, gain: float, rdnoise_e: float) -> np.ndarray:
    """:func:`_estimate_variance` of an array that is not 2-D (no CFA sites)."""
    from scipy import ndimage

    signal = np.maximum(np.nan_to_num(raw - np.nan_to_num(offset)), 0).astype(np.float32)
    rn2 = np.float32((rdnoise_e / gain) ** 2)
    g = np.float32(gain)
    smooth = ndimage.uniform_filter(signal, size=3, mode="nearest")
    var_smooth = smooth / g + rn2
    differs = np.abs(signal - smooth) > 3 * np.sqrt(var_smooth)
    return np.where(differs, signal / g + rn2, var_smooth).astype(np.float32)


def _as_gain(gain, light: CCDData, unit) -> tuple[float, u.UnitBase]:
    """Gain factor and the unit after multiplying by it."""
    if isinstance(gain, str):
        if gain.upper() not in ("EGAIN", "HEADER"):
            raise InvalidSettingsError(f"gain: '{gain}' is not understood; give a number in "
                             "e-/adu, a Quantity, or 'EGAIN' to use the header value")
        if light.meta.get("EGAIN") is None:
            from .errors import MissingMetadataError

            raise MissingMetadataError("gain='EGAIN' but the frame has no EGAIN keyword; "
                                       "pass the gain in e-/adu as a number")
        gain = float(light.meta["EGAIN"])
    if isinstance(gain, u.Quantity):
        factor = float(gain.value)
        gain_unit = gain.unit
    else:
        factor = float(gain)
        gain_unit = u.electron / u.adu
    if not factor > 0:
        raise InvalidSettingsError(f"gain: {factor} must be positive (e-/adu)")
    new_unit = u.Unit(unit * gain_unit)
    return factor, new_unit


def _check_unit(role: str, ccd: CCDData, expected, name: str) -> None:
    if _unit(ccd) != expected:
        raise UnitMismatchError(
            f"{name}: the {role}'s unit '{_unit(ccd)}' does not match the frame's "
            f"'{expected}'; calibrate with masters in the frame's unit (apply the gain "
            "after)")


def _check_bias_removed(dark: CCDData, *, with_bias: bool, bias, overscan: bool, meta,
                        names: tuple[str, str]) -> None:
    """Refuse a dark of dark current only when nothing removes the frame's bias.

    A master dark made with a bias (``BIASSUB = T``, or a rate in adu/s)
    holds the dark current alone; subtracted from a raw frame with no bias
    and no overscan, it leaves the whole bias level in the result.
    """
    if with_bias or bias is not None or overscan:
        return
    if _truthy(meta.get("BLKSUB")):       # black level removed when read
        return
    current_only = _truthy(dark.meta.get("BIASSUB")) or _truthy(dark.meta.get("DARKRATE"))
    if current_only:
        frame, dark_name = names
        raise IncompatibleFramesError(
            f"{frame}: {dark_name} is dark current only (the bias was subtracted when it "
            "was made), and no bias or overscan was given, so the frame's bias level "
            "would stay in; pass the master bias too (bias=), or a dark that includes "
            "the bias")


def _truthy(value) -> bool:
    return value is True or str(value).strip().upper() in ("T", "TRUE", "1")


@dataclass(eq=False)
class _Calibration:
    """A frame on its way through :func:`calibrate`, and what the steps decided.

    The steps replace ``plane`` and add to ``meta``, ``calstat`` and
    ``params`` (the provenance parameters, in the order they are decided).
    The steps that warn are called by :func:`calibrate` itself, so that
    ``stacklevel=3`` names its caller.
    """

    given: dict[str, Any]  # the arguments as passed: light, bias, dark, flat
    light: CCDData
    prov: Provenance
    plane: Plane
    unit: u.UnitBase
    raw_shape: tuple[int, ...]
    raw_data: np.ndarray  # the values before the overscan subtraction
    out_unit: Any = None
    shape: tuple[int, ...] = ()
    meta: Any = None
    params: dict = field(default_factory=dict)
    calstat: str = ""
    overscan_used: bool = False
    overscan_var: np.ndarray | None = None  # of the overscan level, per pixel
    rows_cols: tuple[slice, slice] | None = None
    # the masters, trimmed like the frame, and the masters as given
    bias: CCDData | None = None
    dark: CCDData | None = None
    flat: CCDData | None = None
    bias_untrimmed: CCDData | None = None
    dark_untrimmed: CCDData | None = None
    on_nonlinear: str = "raise"
    # the terms: black level, bias and dark arrays, their coefficients
    black: np.ndarray | None = None
    bias_arrays: MasterArrays | None = None
    dark_arrays: MasterArrays | None = None
    dark_is_rate: bool = False
    dark_with_bias: bool = False
    dark_offset: bool = False  # a raw dark: it holds the detector offset
    dark_scale: Any = 1.0  # a float, or a per-pixel map (per CFA channel)
    channel_fits: dict | None = None
    bias_coefficient: Any = 1.0
    # the flat and the factors applied around it (1.0: none)
    flat_arrays: MasterArrays | None = None
    rate: float = 1.0
    gain_factor: float = 1.0
    dark_flat_covariance: bool = False
    owned: bool = False  # the plane's arrays are this calibration's own (writable)
    counts: tuple[int, int] | None = None  # valid and negative pixels of the result

    def name(self, role: str, default: str) -> str:
        """The file name of the input given for ``role``, else ``default``."""
        return _display_name(self.given[role], default)


def _prepare_light(frame, *, bias, dark, flat) -> _Calibration:
    """Read the frame and start its record."""
    prov = Provenance()
    light = as_frame(frame, role="light", prov=prov)
    unit = _unit(light)
    plane = Plane.from_ccd(light, copy=False)
    return _Calibration(given={"light": frame, "bias": bias, "dark": dark, "flat": flat},
                        light=light, prov=prov, plane=plane, unit=unit,
                        raw_shape=light.shape, raw_data=plane.data, out_unit=unit)


def _overscan_and_trim(cal: _Calibration, overscan, trim) -> None:
    """Subtract the overscan level, keep the trim region, describe the trimmed frame."""
    if overscan is not None:
        cal.plane, kind, cal.overscan_var = _overscan_plane(cal.plane, overscan,
                                                            shape=cal.raw_shape)
        cal.overscan_used = True
        cal.params["overscan"] = overscan if isinstance(overscan, str) else str(overscan)
        cal.params["overscan_per"] = kind
        cal.calstat += "O"
    if trim is not None:
        cal.rows_cols = parse_section(trim, cal.raw_shape, what="trim")
        rows, cols = cal.rows_cols
        plane = cal.plane
        cal.plane = Plane(plane.data[rows, cols], None if plane.var is None
                          else plane.var[rows, cols], plane.mask[rows, cols])
        cal.raw_data = cal.raw_data[rows, cols]
        if cal.overscan_used:
            cal.overscan_var = np.broadcast_to(cal.overscan_var, cal.raw_shape)[rows, cols]
        cal.params["trim"] = trim if isinstance(trim, str) else str(trim)
        cal.calstat += "T"
    cal.shape = cal.plane.data.shape
    cal.meta = header_of(cal.light.meta)
    if cal.rows_cols is not None and cfa_pattern(cal.meta) is not None:
        # the trimmed mosaic's pixel [0, 0] may be another colour
        cal.meta.update(crop_keywords(cal.meta, origin=_origin(cal.rows_cols),
                                      shape=cal.raw_shape, cropped_shape=cal.shape))


def _prepare_masters(cal: _Calibration, *, allow_no_masters: bool, on_nonlinear: str,
                     assume_linear: bool) -> None:
    """Read the masters, check their roles, and trim those of the untrimmed shape."""
    bias, dark, flat = cal.given["bias"], cal.given["dark"], cal.given["flat"]
    if bias is None and dark is None and flat is None and not cal.overscan_used \
            and not allow_no_masters:
        raise InvalidSettingsError(
            f"{cal.name('light', 'calibrate')}: no bias, dark, flat or overscan was "
            "given, so nothing would be calibrated; pass the masters (bias=, dark=, "
            "flat=), or allow_no_masters=True to only trim, apply the gain or correct "
            "cosmetics")
    master_kw = dict(prov=cal.prov, raw_shape=cal.raw_shape, shape=cal.shape,
                     rows_cols=cal.rows_cols)
    cal.bias = _prepare_master(bias, role="bias", **master_kw)
    cal.dark = _prepare_master(dark, role="dark", **master_kw)
    if cal.bias is not None:
        cal.bias_untrimmed = bias if isinstance(bias, CCDData) else cal.bias
    cal.dark_untrimmed = dark if isinstance(dark, CCDData) else cal.dark
    try:
        cal.flat = _prepare_master(flat, role="flat", **master_kw)
    except IncompatibleFramesError:
        # an RGB light met a mosaic flat: say why that cannot work (a developed,
        # gamma-encoded picture), rather than only that the shapes differ
        if not assume_linear and on_nonlinear == "raise" and \
                linearity(cal.light)[0] is False:
            check_linear_pair(cal.light, as_frame(flat, role="flat"), on_mismatch="raise",
                              light_name=cal.name("light", "light"),
                              flat_name=cal.name("flat", "flat"))
        raise


def _check_linear_pair(cal: _Calibration, *, on_nonlinear: str, assume_linear: bool) -> None:
    """Refuse (or warn about) a display-encoded frame or flat, as their headers say."""
    if assume_linear:
        on_nonlinear = "ignore"
        cal.params["assume_linear"] = True
    cal.on_nonlinear = on_nonlinear
    if cal.flat is not None:
        # a display-encoded (gamma) light divided by a linear flat over-corrects
        check_linear_pair(cal.light, cal.flat, on_mismatch=on_nonlinear,
                          light_name=cal.name("light", "light"),
                          flat_name=cal.name("flat", "flat"))


def _black_level(cal: _Calibration, subtract_black: bool | None) -> None:
    """Subtract the camera's black level when nothing else removes it."""
    removed_by = ("the bias" if cal.bias is not None else
                  "the overscan" if cal.overscan_used else
                  "the dark (it includes the bias)"
                  if cal.dark is not None and dark_includes_bias(cal.dark) else None)
    if not decide_black_level(cal.light.meta, subtract_black, removed_by=removed_by):
        return
    tile = black_level(cal.light.meta)
    if cal.rows_cols is not None:  # the cell as seen from the trimmed frame's [0, 0]
        x0, y0 = _origin(cal.rows_cols)
        tile = np.roll(tile, (-y0, -x0), axis=(0, 1))
    cal.plane = Plane(subtract_tile(cal.plane.data, tile), cal.plane.var, cal.plane.mask)
    cal.black = subtract_tile(np.zeros(cal.shape, np.float32), -tile)
    cal.meta["BLKSUB"] = (True, "camera black level subtracted")
    cal.params["black_level"] = [float(v) for v in black_level(cal.light.meta).ravel()]
    cal.calstat += "B"


def _signal_free_level(cal: _Calibration):
    """The level of the raw values that carries no photon noise, or None if unknown.

    Without a bias, an overscan or a black level, a dark that holds the
    offset (``BIASSUB = F``, or a raw dark) is that level: the pedestal,
    estimated from the dark (its dark current counted as offset).
    """
    if cal.bias is not None:  # NaN counts as 0 (in the variance kernel)
        return np.asarray(cal.bias.data, np.float32)
    if cal.dark is not None and dark_includes_bias(cal.dark):
        return np.asarray(cal.dark.data, np.float32)
    if cal.overscan_used:
        return 0.0
    if cal.black is None and cal.dark is not None and dark_holds_offset(cal.dark):
        return np.nan_to_num(np.asarray(cal.dark.data, np.float32))
    return cal.black


def _record_pedestal(cal: _Calibration, level: np.ndarray) -> None:
    """Say that the pedestal (the level without photon noise) comes from the dark."""
    median = float(np.median(level))
    cal.meta["PEDESTAL"] = (round(median, 4), "[adu] median level without photon noise")
    cal.meta["PEDSRC"] = ("dark", "PEDESTAL from the dark (it holds the offset)")
    cal.params["pedestal"] = {"source": "dark", "median": round(median, 6)}
    log.info("calibrate: %s: the photon noise is counted above the dark (it holds the "
             "offset; median pedestal %.6g adu)", cal.name("light", "the frame"), median)


def _read_pedestal_given(light: CCDData) -> bool:
    """Whether the frame was read with ``pedestal=`` (its photon term is then right)."""
    return any(step.step == "read" and "pedestal" in step.parameters
               for step in get_provenance(light).steps)


def _uncertainty(cal: _Calibration) -> None:
    """Estimate the frame's variance when unknown or from the detector model at read time.

    The reader did not know the bias level, so its model counted the bias as
    signal carrying photon noise.
    """
    meta = cal.meta
    from_model = str(meta.get("UNCSRC", "")).strip() == "detector model"
    if cal.plane.var is not None and (not from_model or _read_pedestal_given(cal.light)):
        return
    g = meta.get("EGAIN")
    rn = meta.get("RDNOISE")
    offset = _signal_free_level(cal)
    if g is not None and rn is not None and offset is not None and cal.unit == u.adu:
        # after an overscan subtraction the values (and a master bias made
        # the same way) are relative to the overscan level
        values = cal.plane.data if cal.overscan_used else cal.raw_data
        cal.plane.var = _estimate_variance(values, offset, float(g), float(rn), meta=meta)
        if cal.bias is None and not cal.overscan_used and cal.dark is not None \
                and np.ndim(offset) > 0 and offset is not cal.black:
            _record_pedestal(cal, offset)
        if cal.overscan_used:
            cal.plane.var = (cal.plane.var + cal.overscan_var).astype(np.float32)
        cal.params["uncertainty"] = ("detector model (EGAIN, RDNOISE) with the bias as the "
                                     "level without photon noise")
        log.info("calibrate: uncertainty from EGAIN=%s, RDNOISE=%s and the bias", g, rn)
    elif cal.plane.var is None:
        cal.params["uncertainty"] = "unknown"
        log.info("calibrate: the frame has no uncertainty and EGAIN/RDNOISE/offset "
                 "are not all known; the output has no uncertainty")


def _bias_and_dark_planes(cal: _Calibration) -> None:
    """Check the units of the bias and the dark; refuse a dark that leaves the bias in."""
    if cal.bias is not None:
        _check_unit("bias", cal.bias, cal.unit, cal.name("bias", "bias"))
        cal.bias_arrays = master_arrays(cal.bias, cal.shape)
    if cal.dark is None:
        return
    dark_unit = _unit(cal.dark)
    cal.dark_is_rate = dark_unit != cal.unit and (dark_unit * u.s) == cal.unit
    if not cal.dark_is_rate:
        _check_unit("dark", cal.dark, cal.unit, cal.name("dark", "dark"))
    cal.dark_with_bias = dark_includes_bias(cal.dark)
    _check_bias_removed(cal.dark, with_bias=cal.dark_with_bias, bias=cal.bias,
                        overscan=cal.overscan_used, meta=cal.meta,
                        names=(cal.name("light", "the frame"), cal.name("dark", "the dark")))
    cal.dark_arrays = master_arrays(cal.dark, cal.shape)
    cal.dark_offset = cal.bias is None and not cal.overscan_used \
        and cal.black is None and dark_holds_offset(cal.dark)
    if cal.dark_offset:
        cal.dark_arrays = _offset_dark_arrays(cal.dark, cal.dark_arrays)


def _offset_dark_arrays(dark: CCDData, arrays: MasterArrays) -> MasterArrays:
    """A raw dark's arrays, its standard deviation the read noise when the reader's
    model counted the offset as photon signal (``UNCSRC = 'detector model'``, no
    pedestal given)."""
    meta = dark.meta
    if arrays.std is None or str(meta.get("UNCSRC", "")).strip() != "detector model" \
            or _read_pedestal_given(dark):
        return arrays
    g, rn = meta.get("EGAIN"), meta.get("RDNOISE")
    if g is None or rn is None or _unit(dark) != u.adu:
        return arrays
    std = np.broadcast_to(np.float32(float(rn) / float(g)), arrays.data.shape)
    return MasterArrays(arrays.data, std, arrays.mask)


def _decide_dark_scale(cal: _Calibration, mode) -> None:
    """Decide the dark's scale k: 1, t_frame / t_dark, fitted, or the number given."""
    if cal.dark is None:
        return
    if isinstance(mode, str) and mode not in _DARK_SCALE_MODES:
        raise InvalidSettingsError(f"dark_scale: '{mode}' is not one of 'exposure', "
                                   "'optimize', 'optimize-per-channel', a number, or None")
    if mode is None:
        if cal.dark_is_rate:
            raise InvalidSettingsError("dark_scale=None with a dark-current rate (adu/s): a "
                                       "rate must be scaled; use dark_scale='exposure'")
        k = 1.0
    elif mode == "exposure":
        t_frame = exposure_of(cal.light, name="frame")
        t_dark = 1.0 if cal.dark_is_rate else exposure_of(cal.dark, name="dark")
        if not t_dark > 0:
            raise InvalidSettingsError(f"dark: EXPTIME={t_dark} must be positive to scale it")
        k = t_frame / t_dark
    elif mode in ("optimize", "optimize-per-channel"):
        k = _optimized_dark_scale(cal, mode)
    else:
        k = float(mode)
    cal.dark_scale = k


def _optimized_dark_scale(cal: _Calibration, mode: str):
    """The fitted scale of the dark current (per CFA channel: a per-pixel map)."""
    bias = None if cal.bias is None else Plane.from_ccd(cal.bias, copy=False)
    if cal.dark_with_bias and bias is None:
        raise IncompatibleFramesError(
            f"dark_scale='{mode}': the dark includes the bias (BIASSUB=F) "
            "and no bias was given; pass bias= so the dark current can be "
            "separated")
    current = Plane.from_ccd(cal.dark, copy=False)
    if cal.dark_with_bias:
        current = subtract(current, bias)
    target = cal.plane if bias is None else subtract(cal.plane, bias)
    pattern = None
    if mode == "optimize-per-channel" and cfa_pattern(cal.meta) is not None:
        from .bayer import effective_pattern

        # the pattern at pixel [0, 0] of the (trimmed) arrays: ``meta``
        # already describes the trimmed frame
        pattern = effective_pattern(cal.meta, shape=cal.shape)
    k, cal.channel_fits = _optimize_dark(
        target, current, meta=cal.meta, per_channel=mode == "optimize-per-channel",
        pattern=pattern, params=cal.params)
    return k


def _check_offset_scaling(cal: _Calibration, mode) -> None:
    """Refuse to scale a dark that holds the detector offset (it would scale the offset)."""
    if cal.dark is None or not cal.dark_offset or cal.dark_with_bias or cal.dark_is_rate:
        return
    k = cal.dark_scale
    if not isinstance(mode, str) or not np.any(np.abs(np.asarray(k) - 1.0) > 1e-6):
        return  # a number given is an explicit choice, and recorded
    how = f"dark_scale={mode!r}"
    t_frame, t_dark = cal.light.meta.get("EXPTIME"), cal.dark.meta.get("EXPTIME")
    times = f" ({t_frame} s / {t_dark} s)" if mode == "exposure" else ""
    raise IncompatibleFramesError(
        f"{cal.name('light', 'the frame')}: {cal.name('dark', 'the dark')} is a raw dark "
        "(no BIASSUB, no bias given), so it holds the detector's offset, and "
        f"{how} would multiply the offset too by {float(np.mean(k)):.4g}{times}; use a dark "
        "of the frame's exposure (calframe.select_dark), pass the bias (bias=), or "
        "dark_scale=None to subtract the dark as it is (if the dark holds dark current "
        "only, write BIASSUB = T in its header)")


def _decide_bias_coefficient(cal: _Calibration) -> None:
    """Decide the bias's coefficient when the dark includes the bias: 0 or 1 - k."""
    if cal.dark is None or not cal.dark_with_bias:
        return
    k = cal.dark_scale
    if np.any(np.abs(np.asarray(k) - 1.0) > 1e-6):
        if cal.bias is None:
            raise IncompatibleFramesError(
                f"dark: it includes the bias (BIASSUB=F) and would be scaled by {k:.4g} "
                "(different exposure); pass bias= as well, give a dark of the frame's "
                "exposure, or use dark_scale=None")
        # frame - bias - k (dark - bias) = frame - k dark - (1 - k) bias
        cal.bias_coefficient = 1.0 - k
    else:
        cal.bias_coefficient = 0.0  # the dark removes the bias


def _check_dark_temperature(cal: _Calibration, tolerance: float) -> None:
    """Warn when the dark was taken at another temperature than the frame."""
    if cal.dark is None:
        return
    t_light, t_dk = temperature_of(cal.light), temperature_of(cal.dark)
    if t_light is not None and t_dk is not None and abs(t_light - t_dk) > tolerance:
        warnings.warn(
            f"dark: CCD-TEMP {t_dk:g} C differs from the frame's {t_light:g} C by more "
            f"than {tolerance:g} C; dark current depends steeply on "
            "temperature, use a dark taken at the frame's temperature",
            TemperatureMismatchWarning, stacklevel=3)


def _record_dark(cal: _Calibration, mode) -> None:
    """Write the dark's scale to the header and the provenance."""
    if cal.dark is None:
        return
    if cal.channel_fits is None:
        cal.params["dark_scale"] = float(cal.dark_scale)
        cal.meta["DARKSCAL"] = (float(cal.dark_scale), "factor applied to the master dark")
    else:
        for name, fit in cal.channel_fits.items():
            key, err_key = DARK_SCALE_KEYWORDS[name]
            cal.meta[key] = (fit.scale, f"dark scale factor, CFA channel {name}")
            cal.meta[err_key] = (fit.error, f"error of {key}")
    cal.params["dark_scale_mode"] = mode if isinstance(mode, str | None) else "given"
    cal.params["dark_includes_bias"] = cal.dark_with_bias
    cal.calstat += "D"


def _subtract_bias_and_dark(cal: _Calibration) -> None:
    """Apply the decided terms, ``frame - k dark - c bias``, in one pass over the pixels."""
    bias = cal.bias_arrays
    bias_mode = 0
    correlated = False
    if bias is not None:
        if np.any(np.asarray(cal.bias_coefficient) != 0.0):
            bias_mode = 1
            if cal.dark is not None and cal.plane.var is not None \
                    and bias.has_var and "BIASID" in cal.dark.meta \
                    and cal.dark.meta["BIASID"] == data_id(cal.bias_untrimmed):
                # the dark was made with this very bias: its error is in both
                # terms of frame - bias - k (dark_raw - bias), which therefore
                # carries (1 - k)**2 var_bias, not (1 + k**2) var_bias
                correlated = True
                cal.params["dark_bias_correlated"] = True
        else:
            bias_mode = 2  # the bias is contained in the dark: mask its bad pixels only
        cal.params["bias_coefficient"] = _channel_values(
            cal.bias_coefficient, cal.params.get("dark_scale_pattern"))
        cal.calstat += "B"
    if cal.dark_arrays is not None or bias_mode:
        plane = cal.plane
        data, var, mask = subtract_terms(
            plane.data, plane.var, plane.mask, dark=cal.dark_arrays,
            dark_scale=cal.dark_scale, bias=bias, bias_mode=bias_mode,
            bias_coefficient=cal.bias_coefficient, correlated=correlated)
        cal.plane = Plane(data, var, mask)
        cal.owned = True
    cal.calstat = "".join(sorted(cal.calstat, key="OTBD".index))


def _check_flat_linearity(cal: _Calibration) -> None:
    """Measure the light's response to the flat's vignetting; refuse a gamma-encoded light.

    The light is taken as it will be divided (bias, dark and black level
    removed).
    """
    if cal.flat is None:
        return
    light = CCDData(cal.plane.data, unit=cal.unit, mask=cal.plane.mask, meta=cal.meta)
    check = check_light_linearity(_named(light, cal.light), cal.flat,
                                  assume_linear=cal.on_nonlinear != "raise")
    if check.verdict is False and cal.on_nonlinear == "warn":
        warnings.warn(f"{cal.name('light', 'light')}: {check.reason}",
                      NonLinearDataWarning, stacklevel=3)
    cal.params["linearity"] = {"method": check.method, "verdict": check.verdict,
                               "exponent": None if check.exponent is None
                               else round(float(check.exponent), 4),
                               "uncertainty": None if check.uncertainty is None
                               else round(float(check.uncertainty), 4)}


def _flat_unit(flat: CCDData) -> u.UnitBase:
    """The flat's unit; a normalised master flat is dimensionless whatever it says."""
    if str(flat.meta.get("FLATNORM", "")).strip() in ("median", "mean"):
        # a normalised master flat has no unit; FITS files carry none
        # (no BUNIT), which a reader may take for adu
        return u.dimensionless_unscaled
    return _unit(flat)


def _divide_flat(cal: _Calibration) -> None:
    """Decide the division by the flat (the frame's rate by a flat rate) and the output unit.

    :func:`_apply_flat_and_gain` divides.
    """
    if cal.flat is None:
        return
    ratio_unit = u.Unit(cal.unit / _flat_unit(cal.flat))
    if ratio_unit.physical_type == "time":
        t_frame = exposure_of(cal.light, name="frame", fix="or divide by a normalised flat "
                              "(make_master_flat with normalize='median'), not a flat rate")
        cal.rate = 1.0 / t_frame
        ratio_unit = u.Unit(ratio_unit / u.s)
        cal.params["flat_rate"] = True
    cal.flat_arrays = master_arrays(cal.flat, cal.shape)
    if cal.dark is not None and cal.bias is None and "DARKID" in cal.flat.meta \
            and cal.plane.var is not None \
            and cal.flat.meta["DARKID"] == data_id(cal.dark_untrimmed):
        # the flat was made with this very dark: its error is in numerator
        # and denominator, T = (d - k D) / F(D), and
        # var_T gets -2 k T a var_D / F**2 (a: the dark's share of F)
        cal.dark_flat_covariance = True
        cal.params["dark_flat_correlated"] = True
    cal.out_unit = ratio_unit.decompose() if ratio_unit.physical_type == \
        "dimensionless" else ratio_unit
    cal.params["flat"] = True
    cal.calstat += "F"


def _apply_gain(cal: _Calibration, gain) -> None:
    """Decide the gain (e-/adu) to multiply by."""
    if gain is None:
        return
    factor, cal.out_unit = _as_gain(gain, cal.light, cal.out_unit)
    cal.gain_factor = factor
    cal.params["gain"] = factor
    cal.meta["GAINCORR"] = (factor, "gain applied (e-/adu)")
    cal.calstat += "G"


def _apply_flat_and_gain(cal: _Calibration) -> CCDData:
    """Apply the flat, the rate and the gain, and make the output frame, in one pass.

    A dark shared by the frame and its flat needs the quotient before the gain
    for its covariance term: that case takes two passes.
    """
    plane = cal.plane
    rate, flat = cal.rate, cal.flat_arrays
    if cal.dark_flat_covariance:
        data, var, mask, _, _ = divide_and_finish(
            plane.data, plane.var, plane.mask, rate=rate, flat=flat, gain=1.0, std=False,
            out=(plane.data, plane.var, plane.mask) if cal.owned else None)
        plane = Plane(data, var, mask)
        cal.owned = True
        k_eff = cal.dark_scale
        if cal.params.get("flat_rate"):
            k_eff = k_eff / exposure_of(cal.light, name="frame")
        _dark_flat_covariance(plane, cal.flat, cal.dark, k_eff)
        rate, flat = 1.0, None
    data, std, mask, nvalid, nnegative = divide_and_finish(
        plane.data, plane.var, plane.mask, rate=rate, flat=flat, gain=cal.gain_factor,
        std=True, out=(plane.data, plane.var, plane.mask) if cal.owned else None)
    cal.counts = (nvalid, nnegative)
    unc = None if std is None else StdDevUncertainty(std, copy=False)
    return CCDData(data, unit=u.Unit(cal.out_unit), uncertainty=unc, mask=mask,
                   meta=header_of(cal.meta))


def _cosmetic_settings(cosmetic) -> Cosmetic | None:
    """The :class:`Cosmetic` settings ``cosmetic`` stands for, or None for none."""
    if cosmetic is None or cosmetic is False:
        return None
    if cosmetic is True:
        cosmetic = Cosmetic()
    if isinstance(cosmetic, np.ndarray):
        cosmetic = Cosmetic(bad_pixels=cosmetic)
    if not isinstance(cosmetic, Cosmetic):
        raise TypeError(f"cosmetic: expected a Cosmetic, a bool ndarray or True, got "
                        f"{type(cosmetic).__name__}")
    return cosmetic


def _bad_pixels(cal: _Calibration, cosmetic: Cosmetic) -> np.ndarray:
    """Bad pixels: the map given (trimmed like the frame), hot in the dark, cold in the flat."""
    bad = np.zeros(cal.shape, bool)
    if cosmetic.bad_pixels is not None:
        mapped = np.asarray(cosmetic.bad_pixels, bool)
        if mapped.shape == cal.raw_shape and cal.rows_cols is not None:
            mapped = mapped[cal.rows_cols[0], cal.rows_cols[1]]
        if mapped.shape != cal.shape:
            raise IncompatibleFramesError(
                f"cosmetic: bad-pixel map shape {mapped.shape} does not match the "
                f"frame {cal.shape}")
        bad |= mapped
    if cosmetic.hot_sigma is not None and cal.dark is not None:
        bad |= find_bad_pixels(cal.dark, hot_sigma=cosmetic.hot_sigma, box=cosmetic.box)
    if cosmetic.cold_sigma is not None and cal.flat is not None:
        bad |= find_bad_pixels(cal.flat, hot_sigma=None, cold_sigma=cosmetic.cold_sigma,
                               box=cosmetic.box)
    return bad


def _cosmetics(cal: _Calibration, out: CCDData, cosmetic) -> CCDData:
    """Replace the bad pixels by a same-colour neighbour median; remove cosmic rays."""
    cosmetic = _cosmetic_settings(cosmetic)
    if cosmetic is None:
        return out
    cal.counts = None  # the values may change
    bad = _bad_pixels(cal, cosmetic)
    if bad.any():
        out = correct_bad_pixels(out, bad, unmask=cosmetic.unmask)
    else:
        out.meta["COSMCORR"] = (0, "pixels replaced by a same-colour neighbour median")
    cal.params["cosmetic_corrected"] = int(out.meta["COSMCORR"])
    cal.calstat += "C"
    if cosmetic.cosmic_rays is not None:
        out = remove_cosmic_rays(out, cosmetic.cosmic_rays)
        cal.params["cosmic_rays"] = int(out.meta["NCOSMIC"])
        cal.calstat += "R"
    return out


def _finish(cal: _Calibration, out: CCDData) -> CCDData:
    """Warn about an over-subtracted result; write CALSTAT, HISTORY and the provenance."""
    if cal.counts is None:
        valid = ~out.mask & np.isfinite(out.data)
        cal.counts = (int(np.count_nonzero(valid)), int(np.count_nonzero(out.data[valid] < 0)))
    nvalid, nnegative = cal.counts
    if nvalid and _frame_type(cal.light) not in ("bias", "dark", "darkflat"):
        negative = nnegative / nvalid
        if negative > NEGATIVE_FRACTION:
            warnings.warn(
                f"calibrate: {100 * negative:.0f}% of the calibrated pixels are negative; "
                "the bias or dark was probably over-subtracted (wrong master, exposure or "
                "a dark that includes the bias)", NegativePixelsWarning, stacklevel=3)
    out.meta["CALSTAT"] = (cal.calstat, "O=overscan T=trim B=bias D=dark F=flat G=gain C/R")
    out.meta["HISTORY"] = f"calframe calibrate: steps {cal.calstat or 'none'}"
    cal.prov.add_step("calibrate", **cal.params)
    set_provenance(out, cal.prov)
    return out


def calibrate(frame, *, bias=None, dark=None, flat=None, gain=None,
              dark_scale: str | float | None = "exposure",
              cosmetic: Cosmetic | np.ndarray | bool | None = None,
              overscan: str | Sequence[slice] | None = None,
              trim: str | Sequence[slice] | None = None,
              temperature_tolerance: float = TEMPERATURE_TOLERANCE,
              on_nonlinear: str = "raise", allow_no_masters: bool = False,
              subtract_black: bool | None = None, assume_linear: bool = False) -> CCDData:
    """Calibrate one frame: overscan, trim, bias, dark, flat, gain, cosmetics.

    Every argument accepts a :class:`~astropy.nddata.CCDData` or a path.

    Parameters
    ----------
    frame : CCDData or path
        The raw frame (light, or a flat/dark to be calibrated).
    bias : CCDData or path, optional
        Master bias (same unit as the frame).
    dark : CCDData or path, optional
        Master dark: dark current of exposure EXPTIME (from
        :func:`~calframe.make_master_dark` with a bias), a rate in adu/s
        (``per_second=True``), or a dark that still contains the bias
        (``BIASSUB = F``); the bias is never subtracted twice.
    flat : CCDData or path, optional
        Master flat, divided as given (no renormalisation).  A normalised
        (dimensionless) flat keeps the frame's unit; an un-normalised flat in
        adu gives a dimensionless ratio, and a flat rate in adu/s divides the
        frame's rate (``frame / EXPTIME``), as in beamline normalisation.
    gain : float, Quantity or 'EGAIN', optional
        Convert to electrons (e-/adu; ``'EGAIN'`` reads the header).
    dark_scale : 'exposure', 'optimize', 'optimize-per-channel', float or None
        ``'exposure'`` scales the dark current by t_frame / t_dark;
        ``'optimize'`` fits the factor that minimises the noise
        (:func:`fit_dark_scale`, written to ``DARKSCAL``); a number is used
        as given; None subtracts the dark as it is.
        ``'optimize-per-channel'`` fits one factor per CFA channel of a Bayer
        mosaic (R, G1, G2, B; :func:`fit_dark_scale_per_channel`), for
        sensors whose colour sites do not all scale alike; each channel's
        dark and its uncertainty are scaled by that channel's factor, and the
        factors and their errors are written to ``DKSCALR``/``DKSERRR``,
        ``DKSCAG1``/``DKSERG1``, ``DKSCAG2``/``DKSERG2``,
        ``DKSCALB``/``DKSERRB`` (no ``DARKSCAL``) and to the provenance
        (``dark_scale`` and ``dark_scale_error`` as ``{channel: value}``).
        On a frame without ``BAYERPAT`` it is exactly ``'optimize'``.
    cosmetic : Cosmetic, ndarray of bool or True, optional
        Bad-pixel correction: a :class:`~calframe.cosmetic.Cosmetic` settings
        object (hot pixels found in ``dark``, cold ones in ``flat``, optional
        cosmic rays), a bad-pixel map, or True for ``Cosmetic()``.
    overscan : str or (slice, slice), optional
        Overscan region (FITS section ``'[x1:x2,y1:y2]'`` or numpy slices);
        its median per row (a column band) or per column (a row band) is
        subtracted.
    trim : str or (slice, slice), optional
        Region to keep.  Masters of the untrimmed shape are trimmed alike.
    temperature_tolerance : float
        Largest CCD-TEMP difference (deg C) between frame and dark without a
        :class:`~calframe.errors.TemperatureMismatchWarning`.
    on_nonlinear : {"raise", "warn", "ignore"}
        What to do when the frame or the flat is display-encoded (gamma, e.g. a
        developed JPEG/TIFF) while the other is linear, as their headers say
        (:func:`calframe.linearity.check_linear_pair`) or as the light's
        response to the flat's vignetting measures
        (:func:`calframe.linearity.check_light_linearity`): dividing them
        over-corrects the vignetting.
    allow_no_masters : bool
        Go ahead with none of ``bias``, ``dark``, ``flat`` and ``overscan``
        (only trim, gain or cosmetics).  By default that is refused: a
        "calibrated" frame that nothing calibrated is a mistake.
    assume_linear : bool
        Take the frame and the flat as linear whatever their headers and
        pixels suggest.  By default a light divided by a flat is checked twice:
        from the headers (``on_nonlinear``) and from the data, by the response
        exponent of the light against the flat's vignetting
        (:func:`calframe.linearity.check_light_linearity`), and a
        gamma-encoded light is refused.  The measurement, and this override,
        are recorded in the provenance.
    subtract_black : bool, optional
        Subtract the camera black level the frame records (BLKLEV0..3 per CFA
        position, from a RAW file).  Default: exactly when nothing else
        removes it (no ``bias``, no ``dark`` that includes the bias, no
        ``overscan``); see :mod:`calframe.blacklevel`.  True next to such a
        master is refused (it would be subtracted twice); False keeps it.

    Returns
    -------
    CCDData
        float32 data, StdDevUncertainty (None if the frame's is unknown and
        cannot be estimated from EGAIN/RDNOISE), bool mask, provenance.

    Raises
    ------
    IncompatibleFramesError
        Shapes differ; a dark containing bias would need scaling without a
        bias to separate it; a dark of dark current only (``BIASSUB = T``)
        with neither a bias nor an overscan, which would leave the frame's
        bias in.
    WrongFrameTypeError
        A master whose header says it is something else (a flat given as the
        bias...); see :func:`calframe.contract.check_role`.
    UnitMismatchError
        A master's unit does not match the frame's (an
        ``astropy.units.UnitsError`` too).
    InvalidSettingsError
        No bias, dark, flat or overscan, and ``allow_no_masters`` is False.
    MissingMetadataError
        Exposure times needed for scaling are missing.

    Warns
    -----
    TemperatureMismatchWarning
        Frame and dark temperatures differ by more than the tolerance.
    NegativePixelsWarning
        More than 20% of the calibrated pixels are negative (not checked for a
        frame whose FRAMETYP or IMAGETYP says bias or dark, which have no
        signal left).

    Notes
    -----
    When the frame has no uncertainty but its header gives EGAIN (e-/adu)
    and RDNOISE (e-), the variance is estimated from the detector model,
    ``(raw - offset) / g + (RN / g)**2`` in adu**2, where the offset is the
    master bias (or the overscan level, or a bias-including dark).  The same
    is done when the uncertainty came from that model when the frame was
    read (``UNCSRC = 'detector model'``), because the reader cannot know the
    bias level and counts it as signal.  Without EGAIN and RDNOISE the
    output has no uncertainty (the masters' alone would understate it).

    Errors shared by two inputs are counted with their covariance: the
    master bias inside a master dark made with it (``BIASID``), and the dark
    inside a master flat made with it and no bias (``DARKID``).  Other
    first-order terms treat the inputs as independent.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData, StdDevUncertainty
    >>> light = CCDData(np.full((4, 4), 1100.0, dtype="f4"), unit="adu",
    ...                 uncertainty=StdDevUncertainty(np.full((4, 4), 10.0)),
    ...                 meta={"EXPTIME": 60.0})
    >>> bias = CCDData(np.full((4, 4), 100.0, dtype="f4"), unit="adu")
    >>> dark = CCDData(np.full((4, 4), 20.0, dtype="f4"), unit="adu",
    ...                meta={"EXPTIME": 120.0})
    >>> flat = CCDData(np.full((4, 4), 0.5, dtype="f4"), unit="")
    >>> out = calibrate(light, bias=bias, dark=dark, flat=flat)
    >>> float(out.data[0, 0])  # (1100 - 100 - 20 * 60/120) / 0.5
    1980.0
    >>> float(out.uncertainty.array[0, 0])
    20.0
    """
    cal = _prepare_light(frame, bias=bias, dark=dark, flat=flat)
    _overscan_and_trim(cal, overscan, trim)
    _prepare_masters(cal, allow_no_masters=allow_no_masters, on_nonlinear=on_nonlinear,
                     assume_linear=assume_linear)
    _check_linear_pair(cal, on_nonlinear=on_nonlinear, assume_linear=assume_linear)
    _black_level(cal, subtract_black)
    _uncertainty(cal)
    _bias_and_dark_planes(cal)
    _decide_dark_scale(cal, dark_scale)
    _check_offset_scaling(cal, dark_scale)
    _decide_bias_coefficient(cal)
    _check_dark_temperature(cal, temperature_tolerance)
    _record_dark(cal, dark_scale)
    _subtract_bias_and_dark(cal)
    _check_flat_linearity(cal)
    _divide_flat(cal)
    _apply_gain(cal, gain)
    out = _apply_flat_and_gain(cal)
    out = _cosmetics(cal, out, cosmetic)
    return _finish(cal, out)
