"""Dark optimisation: the scale of a master dark that best removes a frame's dark current.

:func:`fit_dark_scale` fits one factor for the whole frame,
:func:`fit_dark_scale_per_channel` one per CFA channel of a Bayer mosaic;
:func:`calframe.calibrate` uses them for ``dark_scale='optimize'`` and
``'optimize-per-channel'``, and re-exports them.
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.nddata import CCDData

from ._arith import Plane
from ._calutil import cfa_groups
from ._stats import MAD_TO_SIGMA
from .errors import IncompatibleFramesError, MissingMetadataError

__all__ = ["DarkScaleFit", "fit_dark_scale", "fit_dark_scale_per_channel"]

# the fitted scales are reported by calibrate(), under its logger
log = logging.getLogger("calframe.calibration")


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
    from scipy import ndimage  # imported when needed: it costs start-up time

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
        sigma = MAD_TO_SIGMA * np.median(np.abs(resid[use] - med))
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

