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

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData
from scipy import ndimage

from ._arith import Plane, divide, multiply, subtract
from ._calutil import (
    as_frame,
    cfa_groups,
    cfa_pattern,
    data_id,
    exposure_of,
    header_of,
    parse_section,
    plane_to_ccd,
    std_of,
    temperature_of,
)
from .bayer import crop_keywords
from .blacklevel import black_level, decide_black_level, subtract_tile
from .contract import check_role, file_of
from .cosmetic import Cosmetic, correct_bad_pixels, find_bad_pixels, remove_cosmic_rays
from .errors import (
    IncompatibleFramesError,
    InvalidSettingsError,
    MissingMetadataError,
    NegativePixelsWarning,
    NonLinearDataWarning,
    TemperatureMismatchWarning,
    UnitMismatchError,
)
from .linearity import check_light_linearity, check_linear_pair, linearity
from .provenance import Provenance, get_provenance, set_provenance

__all__ = ["DarkScaleFit", "calibrate", "dark_includes_bias", "fit_dark_scale",
           "fit_dark_scale_per_channel"]

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


class DarkScaleFit:
    """Result of :func:`fit_dark_scale`: the scale, its error and the data used.

    Attributes
    ----------
    scale : float
        Factor k minimising the noise of ``light - k * dark``.
    error : float
        Its standard error, from the residuals weighted by the dark's
        high-pass values (robust to noise that grows with the dark signal).
    npix : int
        Pixels used after clipping.
    """

    def __init__(self, scale: float, error: float, npix: int):
        self.scale = float(scale)
        self.error = float(error)
        self.npix = int(npix)

    def __repr__(self) -> str:
        return f"DarkScaleFit(scale={self.scale:.6g}, error={self.error:.2g}, npix={self.npix})"


def _highpass(plane: np.ndarray, good: np.ndarray) -> np.ndarray:
    # A linear filter (value minus the mean of its 8 neighbours), so that the
    # residual of the light is exactly k times the dark's plus filtered noise;
    # a median filter would make the two filters' errors correlate with k.
    filled = np.where(good, plane, np.median(plane[good]) if good.any() else 0)
    box = ndimage.uniform_filter(filled, size=3, mode="reflect")
    return filled - (9.0 * box - filled) / 8.0


def fit_dark_scale(light, dark, *, meta=None, clip: float = 5.0,
                   iterations: int = 5) -> DarkScaleFit:
    """Fit the dark-current scale k that minimises the noise of ``light - k dark``.

    This is the dark optimisation of Siril (``calibrate -opt``) and
    PixInsight (ImageCalibration "optimize dark frames"): both search the
    factor that minimises a noise estimate of the calibrated frame.  Here the
    noise is the variance of the high-pass residual (each value minus the
    mean of its 8 same-site neighbours), so smooth sky or nebulosity does not
    pull the fit; that variance is quadratic in k, so its minimum is the clipped least
    squares solution ``k = sum(h_L h_D) / sum(h_D**2)``, iterated with
    ``clip``-sigma rejection of stars and cosmic rays.

    Parameters
    ----------
    light : CCDData or ndarray
        The frame with the bias removed (and nothing else).
    dark : CCDData or ndarray
        The dark current (bias-free master dark, any exposure).
    meta : header, optional
        CFA keywords when arrays are passed (default: ``light.meta``).
    clip : float
        Rejection threshold in robust sigma.
    iterations : int
        Clipping iterations.

    Returns
    -------
    DarkScaleFit

    Raises
    ------
    ValueError
        If the dark has no structure to fit (too few usable pixels).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> current = rng.gamma(0.5, 20.0, (128, 128))
    >>> light = 1.7 * current + rng.normal(0, 3, current.shape) + 100.0
    >>> fit = fit_dark_scale(light, current)
    >>> abs(fit.scale - 1.7) < 0.01
    True
    """
    lmask = dmask = None
    if isinstance(light, CCDData):
        meta = light.meta if meta is None else meta
        lmask = light.mask
        light = light.data
    if isinstance(dark, CCDData):
        dmask = dark.mask
        dark = dark.data
    light = np.asarray(light, dtype=np.float64)
    dark = np.asarray(dark, dtype=np.float64)
    if light.shape != dark.shape:
        raise IncompatibleFramesError(
            f"fit_dark_scale: light shape {light.shape} differs from dark shape "
            f"{dark.shape}; trim both to the same area")
    good = np.isfinite(light) & np.isfinite(dark)
    for m in (lmask, dmask):
        if m is not None:
            good &= ~np.asarray(m, bool)
    hl = np.empty_like(light)
    hd = np.empty_like(dark)
    groups = cfa_groups(meta if meta is not None else {}, light.shape, by_colour=False)
    for group in groups:
        for sl in group:
            hl[sl] = _highpass(light[sl], good[sl])
            hd[sl] = _highpass(dark[sl], good[sl])
    use = good.copy()
    scale = 0.0
    for _ in range(max(1, iterations)):
        den = float(np.sum(hd[use] ** 2))
        if use.sum() < 10 or den <= 0:
            raise IncompatibleFramesError(
                "fit_dark_scale: the dark has no usable structure to fit "
                             "(too few pixels or a flat dark); use dark_scale='exposure'")
        scale = float(np.sum(hl[use] * hd[use]) / den)
        resid = hl - scale * hd
        med = np.median(resid[use])
        sigma = 1.482602218505602 * np.median(np.abs(resid[use] - med))
        new_use = good & (np.abs(resid - med) <= clip * sigma)
        if np.array_equal(new_use, use):
            break
        use = new_use
    resid = (hl - scale * hd)[use]
    resid -= resid.mean()
    den = float(np.sum(hd[use] ** 2))
    # heteroscedasticity-robust ("sandwich") error: the noise is larger on the
    # hot pixels that weigh most in the fit, which a single residual scatter
    # would understate (by ~15% on a gamma-distributed dark current)
    error = float(np.sqrt(np.sum(hd[use] ** 2 * resid**2)) / den) if den > 0 \
        else float("inf")
    return DarkScaleFit(scale, error, int(use.sum()))


def fit_dark_scale_per_channel(light, dark, *, pattern: str | None = None,
                               clip: float = 5.0, iterations: int = 5
                               ) -> dict[str, DarkScaleFit]:
    """Fit one dark scale factor per CFA channel (R, G1, G2, B) of a Bayer mosaic.

    Each channel is fitted on its own with :func:`fit_dark_scale` (the
    high-pass residual of a channel uses only that channel's pixels, so it is
    the same residual as in the single-factor fit).  The two greens get
    separate factors: they sit on different rows and columns of the sensor,
    and their dark signal (column structure, amplifier glow) need not scale
    alike; a factor common to both is the weighted mean of the two.

    Parameters
    ----------
    light : CCDData or ndarray
        The frame with the bias removed (and nothing else).
    dark : CCDData or ndarray
        The dark current (bias-free master dark, any exposure).
    pattern : str, optional
        Bayer pattern at pixel ``[0, 0]`` of the arrays as passed (default:
        :func:`calframe.bayer.effective_pattern` of ``light.meta``).
    clip, iterations : float, int
        Passed to :func:`fit_dark_scale`.

    Returns
    -------
    dict of str to DarkScaleFit
        Keys ``'R'``, ``'G1'``, ``'G2'``, ``'B'``.

    Raises
    ------
    MissingMetadataError
        No pattern given and the light has no ``BAYERPAT``.
    ValueError
        A channel of the dark has no structure to fit.

    Examples
    --------
    >>> import numpy as np
    >>> from calframe.bayer import channel_views
    >>> rng = np.random.default_rng(1)
    >>> current = rng.gamma(0.5, 20.0, (256, 256))
    >>> light = current.copy()
    >>> for name, k in {"R": 1.3, "G1": 1.1, "G2": 1.1, "B": 0.9}.items():
    ...     channel_views(light, "RGGB")[name][...] *= k
    >>> light += rng.normal(0, 3, current.shape) + 100.0
    >>> fits = fit_dark_scale_per_channel(light, current, pattern="RGGB")
    >>> {name: round(fit.scale, 2) for name, fit in fits.items()}
    {'R': 1.3, 'G1': 1.1, 'G2': 1.1, 'B': 0.9}
    """
    from .bayer import channel_views, effective_pattern

    lmask = dmask = None
    if isinstance(light, CCDData):
        if pattern is None:
            pattern = effective_pattern(light)
        lmask = light.mask
        light = light.data
    if isinstance(dark, CCDData):
        dmask = dark.mask
        dark = dark.data
    if pattern is None:
        raise MissingMetadataError(
            "fit_dark_scale_per_channel: no Bayer pattern; pass pattern='RGGB' (or the "
            "frame's pattern) or a CCDData light with BAYERPAT, or use fit_dark_scale "
            "for a mono frame")
    light = np.array(light, dtype=np.float64)
    dark = np.array(dark, dtype=np.float64)
    if light.shape != dark.shape:
        raise IncompatibleFramesError(
            f"fit_dark_scale_per_channel: light shape {light.shape} differs from dark "
            f"shape {dark.shape}; trim both to the same area")
    for m in (lmask, dmask):
        if m is not None:
            light[np.broadcast_to(np.asarray(m, bool), light.shape)] = np.nan
    lviews = channel_views(light, pattern)
    dviews = channel_views(dark, pattern)
    fits: dict[str, DarkScaleFit] = {}
    for name in lviews:
        try:
            fits[name] = fit_dark_scale(lviews[name], dviews[name], meta={}, clip=clip,
                                        iterations=iterations)
        except ValueError as err:
            raise IncompatibleFramesError(f"fit_dark_scale_per_channel: CFA channel {name} "
                             f"(pattern {pattern}): {err}") from err
    return fits


def _optimize_dark(target: Plane, current: Plane, *, meta, per_channel: bool,
                   pattern: str | None, params: dict):
    """Fitted dark scale: a float, or a float32 per-pixel map (per CFA channel)."""
    light = np.where(target.mask, np.nan, target.data)
    dark = np.where(current.mask, np.nan, current.data)
    if per_channel and pattern is not None:
        from .bayer import channel_slices

        fits = fit_dark_scale_per_channel(light, dark, pattern=pattern)
        k_map = np.empty(light.shape, np.float32)
        for name, sl in channel_slices(pattern).items():
            k_map[sl] = fits[name].scale
        params["dark_scale"] = {name: fit.scale for name, fit in fits.items()}
        params["dark_scale_error"] = {name: fit.error for name, fit in fits.items()}
        params["dark_scale_pattern"] = pattern
        log.info("calibrate: optimised dark scales per channel %s",
                 ", ".join(f"{n} {f.scale:.5f} +- {f.error:.5f}" for n, f in fits.items()))
        return k_map, fits
    if per_channel:
        log.info("calibrate: dark_scale='optimize-per-channel' on a frame without "
                 "BAYERPAT: one factor for the whole frame")
        params["dark_scale_pattern"] = None
    fit = fit_dark_scale(light, dark, meta=meta)
    params["dark_scale"] = fit.scale
    params["dark_scale_error"] = fit.error
    log.info("calibrate: optimised dark scale %.5f +- %.5f", fit.scale, fit.error)
    return fit.scale, None


def _subtract_scaled(a: Plane, b: Plane, scale) -> Plane:
    """``a - scale * b`` for a scalar or a per-pixel ``scale`` array."""
    if np.ndim(scale) == 0:
        return subtract(a, b, float(scale))
    scale = np.asarray(scale, np.float32)
    scaled = Plane(b.data * scale, None if b.var is None else b.var * scale**2, b.mask)
    return subtract(a, scaled, 1.0)


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
    """
    signal = np.maximum(np.nan_to_num(raw - offset), 0).astype(np.float32)
    groups = cfa_groups(meta if meta is not None else {}, signal.shape, by_colour=False)
    rn2 = np.float32((rdnoise_e / gain) ** 2)
    g = np.float32(gain)

    def local_mean(values):
        out = np.empty_like(values)
        for group in groups:
            for sl in group:
                out[sl] = ndimage.uniform_filter(values[sl], size=3, mode="nearest")
        return out

    # the neighbourhood stands for the pixel only where the two agree within
    # the noise; next to a star's core or a hot pixel (whose neighbours'
    # mean it would raise) and on such peaks, the pixel's own value is used
    smooth = local_mean(signal)
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
    prov = Provenance()
    light = as_frame(frame, role="light", prov=prov)
    raw_shape = light.shape
    unit = _unit(light)
    plane = Plane.from_ccd(light, copy=False)
    raw_data = plane.data
    params: dict = {}
    calstat = ""

    # 1. overscan and trim
    overscan_used = False
    overscan_var = np.float32(0.0)
    if overscan is not None:
        plane, kind, overscan_var = _overscan_plane(plane, overscan, shape=raw_shape)
        overscan_used = True
        params["overscan"] = overscan if isinstance(overscan, str) else str(overscan)
        params["overscan_per"] = kind
        calstat += "O"
    rows_cols = None
    if trim is not None:
        rows_cols = parse_section(trim, raw_shape, what="trim")
        rows, cols = rows_cols
        plane = Plane(plane.data[rows, cols], None if plane.var is None
                      else plane.var[rows, cols], plane.mask[rows, cols])
        raw_data = raw_data[rows, cols]
        if overscan_used:
            overscan_var = np.broadcast_to(overscan_var, raw_shape)[rows, cols]
        params["trim"] = trim if isinstance(trim, str) else str(trim)
        calstat += "T"
    shape = plane.data.shape
    meta = header_of(light.meta)
    if rows_cols is not None and cfa_pattern(meta) is not None:
        # the trimmed mosaic's pixel [0, 0] may be another colour
        meta.update(crop_keywords(meta, origin=_origin(rows_cols), shape=raw_shape,
                                  cropped_shape=shape))

    if bias is None and dark is None and flat is None and overscan is None \
            and not allow_no_masters:
        raise InvalidSettingsError(
            f"{_display_name(frame, 'calibrate')}: no bias, dark, flat or overscan was "
            "given, so nothing would be calibrated; pass the masters (bias=, dark=, "
            "flat=), or allow_no_masters=True to only trim, apply the gain or correct "
            "cosmetics")
    master_kw = dict(prov=prov, raw_shape=raw_shape, shape=shape, rows_cols=rows_cols)
    bias_ccd = _prepare_master(bias, role="bias", **master_kw)
    dark_ccd = _prepare_master(dark, role="dark", **master_kw)
    bias_untrimmed = None
    if bias_ccd is not None:
        bias_untrimmed = bias if isinstance(bias, CCDData) else bias_ccd
    try:
        flat_ccd = _prepare_master(flat, role="flat", **master_kw)
    except IncompatibleFramesError:
        # an RGB light met a mosaic flat: say why that cannot work (a developed,
        # gamma-encoded picture), rather than only that the shapes differ
        if not assume_linear and on_nonlinear == "raise" and linearity(light)[0] is False:
            check_linear_pair(light, as_frame(flat, role="flat"), on_mismatch="raise",
                              light_name=_display_name(frame, "light"),
                              flat_name=_display_name(flat, "flat"))
        raise
    if assume_linear:
        on_nonlinear = "ignore"
        params["assume_linear"] = True
    if flat_ccd is not None:
        # a display-encoded (gamma) light divided by a linear flat over-corrects
        check_linear_pair(light, flat_ccd, on_mismatch=on_nonlinear,
                          light_name=_display_name(frame, "light"),
                          flat_name=_display_name(flat, "flat"))

    # 1b. the camera's black level, when nothing else removes it
    black = None
    removed_by = ("the bias" if bias_ccd is not None else
                  "the overscan" if overscan_used else
                  "the dark (it includes the bias)"
                  if dark_ccd is not None and dark_includes_bias(dark_ccd) else None)
    if decide_black_level(light.meta, subtract_black, removed_by=removed_by):
        tile = black_level(light.meta)
        if rows_cols is not None:  # the cell as seen from the trimmed frame's [0, 0]
            x0, y0 = _origin(rows_cols)
            tile = np.roll(tile, (-y0, -x0), axis=(0, 1))
        plane = Plane(subtract_tile(plane.data, tile), plane.var, plane.mask)
        black = subtract_tile(np.zeros(shape, np.float32), -tile)
        meta["BLKSUB"] = (True, "camera black level subtracted")
        params["black_level"] = [float(v) for v in black_level(light.meta).ravel()]
        calstat += "B"

    # 2. uncertainty of the frame: estimated when unknown, and re-evaluated
    # when it came from the detector model at read time, where the bias level
    # was not known and so carried photon noise
    from_model = str(meta.get("UNCSRC", "")).strip() == "detector model"
    if plane.var is None or from_model:
        g = meta.get("EGAIN")
        rn = meta.get("RDNOISE")
        offset = None
        if bias_ccd is not None:
            offset = np.nan_to_num(np.asarray(bias_ccd.data, np.float32))
        elif dark_ccd is not None and dark_includes_bias(dark_ccd):
            offset = np.nan_to_num(np.asarray(dark_ccd.data, np.float32))
        elif overscan_used:
            offset = 0.0
        elif black is not None:
            offset = black
        if g is not None and rn is not None and offset is not None and unit == u.adu:
            # after an overscan subtraction the values (and a master bias made
            # the same way) are relative to the overscan level
            values = plane.data if overscan_used else raw_data
            plane.var = _estimate_variance(values, offset, float(g), float(rn), meta=meta)
            if overscan_used:
                plane.var = (plane.var + overscan_var).astype(np.float32)
            params["uncertainty"] = ("detector model (EGAIN, RDNOISE) with the bias as the "
                                     "level without photon noise")
            log.info("calibrate: uncertainty from EGAIN=%s, RDNOISE=%s and the bias", g, rn)
        elif plane.var is None:
            params["uncertainty"] = "unknown"
            log.info("calibrate: the frame has no uncertainty and EGAIN/RDNOISE/offset "
                     "are not all known; the output has no uncertainty")

    # 3. bias and dark
    bias_plane = None
    if bias_ccd is not None:
        _check_unit("bias", bias_ccd, unit, _display_name(bias, "bias"))
        bias_plane = Plane.from_ccd(bias_ccd, copy=False)
    bias_coefficient = 1.0
    k = 1.0  # the dark's scale: a float, or a per-pixel map (per CFA channel)
    if dark_ccd is not None:
        dark_unit = _unit(dark_ccd)
        is_rate = dark_unit != unit and (dark_unit * u.s) == unit
        if not is_rate:
            _check_unit("dark", dark_ccd, unit, _display_name(dark, "dark"))
        with_bias = dark_includes_bias(dark_ccd)
        _check_bias_removed(dark_ccd, with_bias=with_bias, bias=bias_plane,
                            overscan=overscan_used, meta=meta,
                            names=(_display_name(frame, "the frame"),
                                   _display_name(dark, "the dark")))
        dark_plane = Plane.from_ccd(dark_ccd, copy=False)
        t_frame = t_dark = None
        if isinstance(dark_scale, str) and dark_scale not in _DARK_SCALE_MODES:
            raise InvalidSettingsError(f"dark_scale: '{dark_scale}' is not one of 'exposure', "
                             "'optimize', 'optimize-per-channel', a number, or None")
        channel_fits = None
        if dark_scale is None:
            if is_rate:
                raise InvalidSettingsError("dark_scale=None with a dark-current rate (adu/s): a "
                                 "rate must be scaled; use dark_scale='exposure'")
            k = 1.0
        elif dark_scale == "exposure":
            t_frame = exposure_of(light, name="frame")
            t_dark = 1.0 if is_rate else exposure_of(dark_ccd, name="dark")
            if not t_dark > 0:
                raise InvalidSettingsError(f"dark: EXPTIME={t_dark} must be positive to scale it")
            k = t_frame / t_dark
        elif dark_scale in ("optimize", "optimize-per-channel"):
            if with_bias and bias_plane is None:
                raise IncompatibleFramesError(
                    f"dark_scale='{dark_scale}': the dark includes the bias (BIASSUB=F) "
                    "and no bias was given; pass bias= so the dark current can be "
                    "separated")
            current = dark_plane
            if with_bias:
                current = subtract(dark_plane, bias_plane)
            target = plane if bias_plane is None else subtract(plane, bias_plane)
            pattern = None
            if dark_scale == "optimize-per-channel" and cfa_pattern(meta) is not None:
                from .bayer import effective_pattern

                # the pattern at pixel [0, 0] of the (trimmed) arrays: ``meta``
                # already describes the trimmed frame
                pattern = effective_pattern(meta, shape=shape)
            k, channel_fits = _optimize_dark(
                target, current, meta=meta, per_channel=dark_scale == "optimize-per-channel",
                pattern=pattern, params=params)
        else:
            k = float(dark_scale)
        if with_bias and np.any(np.abs(np.asarray(k) - 1.0) > 1e-6):
            if bias_plane is None:
                raise IncompatibleFramesError(
                    f"dark: it includes the bias (BIASSUB=F) and would be scaled by {k:.4g} "
                    "(different exposure); pass bias= as well, give a dark of the frame's "
                    "exposure, or use dark_scale=None")
            # frame - bias - k (dark - bias) = frame - k dark - (1 - k) bias
            bias_coefficient = 1.0 - k
        elif with_bias:
            bias_coefficient = 0.0  # the dark removes the bias
        t_light, t_dk = temperature_of(light), temperature_of(dark_ccd)
        if t_light is not None and t_dk is not None and \
                abs(t_light - t_dk) > temperature_tolerance:
            warnings.warn(
                f"dark: CCD-TEMP {t_dk:g} C differs from the frame's {t_light:g} C by more "
                f"than {temperature_tolerance:g} C; dark current depends steeply on "
                "temperature, use a dark taken at the frame's temperature",
                TemperatureMismatchWarning, stacklevel=2)
        plane = _subtract_scaled(plane, dark_plane, k)
        if channel_fits is None:
            params["dark_scale"] = float(k)
            meta["DARKSCAL"] = (float(k), "factor applied to the master dark")
        else:
            for name, fit in channel_fits.items():
                key, err_key = DARK_SCALE_KEYWORDS[name]
                meta[key] = (fit.scale, f"dark scale factor, CFA channel {name}")
                meta[err_key] = (fit.error, f"error of {key}")
        params["dark_scale_mode"] = dark_scale if isinstance(dark_scale, str | None) \
            else "given"
        params["dark_includes_bias"] = with_bias
        calstat += "D"
    if bias_plane is not None:
        if np.any(np.asarray(bias_coefficient) != 0.0):
            plane = _subtract_scaled(plane, bias_plane, bias_coefficient)
            if dark_ccd is not None and plane.var is not None \
                    and bias_plane.var is not None and "BIASID" in dark_ccd.meta \
                    and dark_ccd.meta["BIASID"] == data_id(bias_untrimmed):
                # the dark was made with this very bias: its error is in both
                # terms of frame - bias - k (dark_raw - bias), which therefore
                # carries (1 - k)**2 var_bias, not (1 + k**2) var_bias
                good = bias_plane.valid()
                two_k = 2 * np.asarray(k, np.float32)
                plane.var = np.maximum(
                    plane.var - two_k * np.where(good, bias_plane.var, 0), 0
                ).astype(plane.var.dtype)
                params["dark_bias_correlated"] = True
        else:
            # the bias is contained in the dark: mask its bad pixels only
            plane.mask |= ~bias_plane.valid()
        params["bias_coefficient"] = _channel_values(bias_coefficient,
                                                     params.get("dark_scale_pattern"))
        calstat += "B"
    calstat = "".join(sorted(calstat, key="OTBD".index))

    # 4. flat
    out_unit = unit
    if flat_ccd is not None:
        # the light as it will be divided (bias, dark and black level removed),
        # against the flat's vignetting: a gamma-encoded light is refused
        check = check_light_linearity(
            _named(CCDData(plane.data, unit=unit, mask=plane.mask, meta=meta), light),
            flat_ccd, assume_linear=on_nonlinear != "raise")
        if check.verdict is False and on_nonlinear == "warn":
            warnings.warn(f"{_display_name(frame, 'light')}: {check.reason}",
                          NonLinearDataWarning, stacklevel=2)
        params["linearity"] = {"method": check.method, "verdict": check.verdict,
                               "exponent": None if check.exponent is None
                               else round(float(check.exponent), 4),
                               "uncertainty": None if check.uncertainty is None
                               else round(float(check.uncertainty), 4)}
        flat_unit = _unit(flat_ccd)
        if str(flat_ccd.meta.get("FLATNORM", "")).strip() in ("median", "mean"):
            # a normalised master flat has no unit; FITS files carry none
            # (no BUNIT), which a reader may take for adu
            flat_unit = u.dimensionless_unscaled
        ratio_unit = u.Unit(unit / flat_unit)
        if ratio_unit.physical_type == "time":
            t_frame = exposure_of(light, name="frame")
            plane = multiply(plane, 1.0 / t_frame)
            ratio_unit = u.Unit(ratio_unit / u.s)
            params["flat_rate"] = True
        flat_plane = Plane.from_ccd(flat_ccd, copy=False)
        plane = divide(plane, flat_plane)
        if dark_ccd is not None and bias_ccd is None and "DARKID" in flat_ccd.meta \
                and plane.var is not None and flat_ccd.meta["DARKID"] == data_id(
                    dark if isinstance(dark, CCDData) else dark_ccd):
            # the flat was made with this very dark: its error is in numerator
            # and denominator, T = (d - k D) / F(D), and
            # var_T gets -2 k T a var_D / F**2 (a: the dark's share of F)
            k_eff = k
            if params.get("flat_rate"):
                k_eff = k_eff / exposure_of(light, name="frame")
            _dark_flat_covariance(plane, flat_ccd, dark_ccd, k_eff)
            params["dark_flat_correlated"] = True
        out_unit = ratio_unit.decompose() if ratio_unit.physical_type == \
            "dimensionless" else ratio_unit
        params["flat"] = True
        calstat += "F"

    # 5. gain
    if gain is not None:
        factor, out_unit = _as_gain(gain, light, out_unit)
        plane = multiply(plane, factor)
        params["gain"] = factor
        meta["GAINCORR"] = (factor, "gain applied (e-/adu)")
        calstat += "G"

    out = plane_to_ccd(plane, unit=out_unit, meta=meta)

    # 6. cosmetic correction and cosmic rays
    if cosmetic is not None and cosmetic is not False:
        if cosmetic is True:
            cosmetic = Cosmetic()
        if isinstance(cosmetic, np.ndarray):
            cosmetic = Cosmetic(bad_pixels=cosmetic)
        if not isinstance(cosmetic, Cosmetic):
            raise TypeError(f"cosmetic: expected a Cosmetic, a bool ndarray or True, got "
                            f"{type(cosmetic).__name__}")
        bad = np.zeros(shape, bool)
        if cosmetic.bad_pixels is not None:
            mapped = np.asarray(cosmetic.bad_pixels, bool)
            if mapped.shape == raw_shape and rows_cols is not None:
                mapped = mapped[rows_cols[0], rows_cols[1]]
            if mapped.shape != shape:
                raise IncompatibleFramesError(
                    f"cosmetic: bad-pixel map shape {mapped.shape} does not match the "
                    f"frame {shape}")
            bad |= mapped
        if cosmetic.hot_sigma is not None and dark_ccd is not None:
            bad |= find_bad_pixels(dark_ccd, hot_sigma=cosmetic.hot_sigma, box=cosmetic.box)
        if cosmetic.cold_sigma is not None and flat_ccd is not None:
            bad |= find_bad_pixels(flat_ccd, hot_sigma=None, cold_sigma=cosmetic.cold_sigma,
                                   box=cosmetic.box)
        if bad.any():
            out = correct_bad_pixels(out, bad, unmask=cosmetic.unmask)
        else:
            out.meta["COSMCORR"] = (0, "pixels replaced by a same-colour neighbour median")
        params["cosmetic_corrected"] = int(out.meta["COSMCORR"])
        calstat += "C"
        if cosmetic.cosmic_rays is not None:
            out = remove_cosmic_rays(out, cosmetic.cosmic_rays)
            params["cosmic_rays"] = int(out.meta["NCOSMIC"])
            calstat += "R"

    # 7. checks, keywords, provenance
    valid = ~out.mask & np.isfinite(out.data)
    if valid.any() and _frame_type(light) not in ("bias", "dark", "darkflat"):
        negative = float(np.mean(out.data[valid] < 0))
        if negative > NEGATIVE_FRACTION:
            warnings.warn(
                f"calibrate: {100 * negative:.0f}% of the calibrated pixels are negative; "
                "the bias or dark was probably over-subtracted (wrong master, exposure or "
                "a dark that includes the bias)", NegativePixelsWarning, stacklevel=2)
    out.meta["CALSTAT"] = (calstat, "O=overscan T=trim B=bias D=dark F=flat G=gain C/R")
    out.meta["HISTORY"] = f"calframe calibrate: steps {calstat or 'none'}"
    prov.add_step("calibrate", **params)
    set_provenance(out, prov)
    return out
