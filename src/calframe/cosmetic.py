"""Cosmetic correction: hot, cold and dead pixels, and cosmic rays.

- :func:`find_bad_pixels` flags pixels of a master dark (hot) or master flat
  (cold) that stand out from their same-colour neighbourhood by more than a
  number of robust standard deviations.
- :func:`correct_bad_pixels` replaces flagged pixels by the median of their
  unflagged same-colour neighbours (on a CFA mosaic the neighbours two pixels
  away, never a pixel of another colour) and records how many it corrected.
- :func:`remove_cosmic_rays` runs L.A.Cosmic (astroscrappy) on the frame
  (a CFA mosaic with its colours equalised) and ORs the detections into the
  mask.

The :class:`Cosmetic` settings object tells :func:`calframe.calibrate` what to
do.  Corrected pixels keep their mask bit by default (the value is an
interpolation, not a measurement, so a later combine should not use it);
``Cosmetic(unmask=True)`` clears it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import astroscrappy
import numpy as np
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty

from ._calutil import as_frame, cfa_groups, cfa_pattern, header_of, std_of
from ._stats import MAD_TO_SIGMA
from .errors import IncompatibleFramesError, InvalidSettingsError
from .provenance import Provenance, set_provenance

__all__ = [
    "Cosmetic",
    "CosmicRays",
    "correct_bad_pixels",
    "find_bad_pixels",
    "remove_cosmic_rays",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CosmicRays:
    """Settings of the L.A.Cosmic cosmic-ray detection (astroscrappy).

    ``sigclip``, ``sigfrac``, ``objlim`` and ``niter`` are astroscrappy's
    parameters of the same names.  ``satlevel`` is in the frame's data units.
    The gain and read noise come from the frame (EGAIN, RDNOISE in e-) unless
    the frame is in electrons (gain 1).

    Parameters
    ----------
    sigclip : float
        Detection limit for cosmic rays, in units of the noise.
    sigfrac : float
        Fraction of ``sigclip`` that detects the neighbours of a cosmic-ray pixel.
    objlim : float
        Contrast a cosmic ray must have over the fine structure of stars.
    niter : int
        Number of detection passes.
    satlevel : float
        Saturation level, in the frame's data units (saturated stars are not
        taken for cosmic rays).
    """

    sigclip: float = 4.5
    sigfrac: float = 0.3
    objlim: float = 5.0
    niter: int = 4
    satlevel: float = 65535.0


@dataclass(frozen=True, eq=False)
class Cosmetic:
    """What cosmetic correction :func:`calframe.calibrate` applies.

    Parameters
    ----------
    bad_pixels : ndarray of bool, optional
        A known bad-pixel map (True = bad), same shape as the frame.
    hot_sigma : float or None
        Flag hot pixels of the master dark passed to ``calibrate`` above this
        many robust standard deviations (None: do not look for hot pixels).
    cold_sigma : float or None
        Flag cold pixels of the master flat passed to ``calibrate`` below this
        many robust standard deviations (None: do not look).
    box : int
        Size of the same-colour median window used to detect outliers.
    cosmic_rays : CosmicRays or None
        Also remove cosmic rays with these settings.
    unmask : bool
        Clear the mask of corrected pixels (default: keep them masked).
    """

    bad_pixels: np.ndarray | None = None
    hot_sigma: float | None = 5.0
    cold_sigma: float | None = None
    box: int = 5
    cosmic_rays: CosmicRays | None = None
    unmask: bool = False


def _robust_sigma(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    med = np.median(values)
    return float(MAD_TO_SIGMA * np.median(np.abs(values - med)))


def _quantum(values: np.ndarray, centre: float, magnitude: float) -> float:
    """The step of the lattice that ``values`` lie on near ``centre`` (0: none).

    Integer-valued data (and integers times a gain or BSCALE) give the step;
    continuous values give 0.  Only the unique values nearest the centre are
    looked at, so float rounding far from it does not matter; differences
    below the float32 rounding of values of ``magnitude`` are ties.
    """
    sample = values if values.size <= 400_000 else values[:: values.size // 400_000 + 1]
    unique = np.unique(sample)
    if unique.size < 2:
        return 0.0
    near = np.sort(unique[np.argsort(np.abs(unique - centre))[:33]])
    tol = 64 * float(np.finfo(np.float32).eps) * max(abs(magnitude), 1.0)
    gaps = np.diff(near)
    gaps = gaps[gaps > tol]
    if gaps.size == 0:
        return 0.0
    step = float(gaps.min())
    k = (near - centre) / step
    if np.max(np.abs(k - np.round(k))) > 0.05:
        return 0.0
    return step


def _quantised_sigma(values: np.ndarray, step: float) -> float:
    """Robust sigma of values on a lattice of ``step``, from an interpolated MAD.

    The median of the absolute deviations of quantised values is itself a
    multiple of ``step`` (0 when more than half of them equal the median),
    so it is interpolated within its quantisation step as the median of
    grouped data: the values in the median's step are taken as spread
    evenly over it (over ``[0, step/2)`` for the step at 0, which holds the
    deviations of both signs).  The result has a floor of the quantisation
    noise, ``step / sqrt(12)``.
    """
    med = float(np.median(values))
    k = np.rint(np.abs(values - med) / step).astype(np.int64)
    n = k.size
    j = int(np.rint(np.median(np.abs(values - med)) / step))
    below = int(np.count_nonzero(k < j))
    inside = max(int(np.count_nonzero(k == j)), 1)
    if j == 0:
        mad = 0.5 * step * min(1.0, (n / 2) / inside)
    else:
        mad = step * ((j - 0.5) + (n / 2 - below) / inside)
    return max(MAD_TO_SIGMA * mad, step / np.sqrt(12.0))


def find_bad_pixels(master, *, hot_sigma: float | None = 5.0,
                    cold_sigma: float | None = None, box: int = 5) -> np.ndarray:
    """Flag hot and/or cold pixels of a master dark or flat.

    Each pixel is compared with the median of a ``box`` x ``box`` window of its
    own CFA site (the whole frame for a mono frame), and the difference is
    expressed in robust standard deviations (1.4826 MAD of all differences of
    that site).  Masked and non-finite pixels of the master are bad too.

    On quantised data (integer-valued, or integers times a constant) whose
    noise is not much larger than the quantisation step, the MAD is a
    multiple of the step, often 0, and would flag every pixel above its
    neighbours' median.  There the MAD is interpolated within its step (the
    median of grouped data) and the sigma has a floor of the quantisation
    noise, ``step / sqrt(12)``; on data with a spread of many steps this
    changes the sigma by a small fraction of a step.

    Parameters
    ----------
    master : CCDData or path
        A master dark (for hot pixels) or master flat (for cold pixels).
    hot_sigma, cold_sigma : float or None
        Thresholds above / below the local median, in robust sigma; None
        switches that side off.
    box : int
        Window size in pixels of one CFA site (odd, >= 3).

    Returns
    -------
    ndarray of bool
        True for bad pixels.

    Raises
    ------
    ValueError
        If both thresholds are None, a threshold is not positive, or ``box``
        is not an odd integer >= 3.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> rng = np.random.default_rng(0)
    >>> dark = CCDData(rng.normal(10, 1, (64, 64)).astype("f4"), unit="adu")
    >>> dark.data[5, 7] += 50
    >>> bad = find_bad_pixels(dark, hot_sigma=6)
    >>> np.argwhere(bad).tolist()
    [[5, 7]]
    """
    from ._medfilt import median_filter

    if hot_sigma is None and cold_sigma is None:
        raise InvalidSettingsError("find_bad_pixels: hot_sigma and cold_sigma are both None; "
                         "give at least one threshold")
    for name, value in (("hot_sigma", hot_sigma), ("cold_sigma", cold_sigma)):
        if value is not None and not value > 0:
            raise InvalidSettingsError(f"find_bad_pixels: {name}={value} must be positive")
    if int(box) != box or box < 3 or box % 2 == 0:
        raise InvalidSettingsError(f"find_bad_pixels: box={box} must be an odd integer >= 3")
    ccd = as_frame(master, role="master")
    data = np.asarray(ccd.data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if ccd.mask is not None:
        bad |= np.asarray(ccd.mask, dtype=bool)
    out = bad.copy()
    for group in cfa_groups(ccd.meta, data.shape, by_colour=False):
        for sl in group:
            plane = data[sl]
            pbad = bad[sl]
            if pbad.all():
                continue
            filled = np.where(pbad, np.median(plane[~pbad]), plane)
            # scipy.ndimage.median_filter(filled, size=box, mode="reflect"), exactly
            dev = filled - median_filter(filled, int(box))
            good = dev[~pbad]
            step = _quantum(good, float(np.median(good)), float(np.median(np.abs(plane[~pbad]))))
            sigma = _quantised_sigma(good, step) if step > 0 else _robust_sigma(good)
            if sigma == 0:
                sigma = float(np.finfo(np.float32).tiny)
            flag = np.zeros(plane.shape, dtype=bool)
            if hot_sigma is not None:
                flag |= dev > hot_sigma * sigma
            if cold_sigma is not None:
                flag |= dev < -cold_sigma * sigma
            out[sl] |= flag
    log.info("find_bad_pixels: %d bad pixels (%.4f%%)", int(out.sum()),
             100.0 * out.mean())
    return out


def _neighbour_median(values: np.ndarray, usable: np.ndarray, targets: np.ndarray,
                      radius: int) -> np.ndarray:
    """Median of usable values within ``radius`` of each (row, col) target."""
    ny, nx = values.shape
    offsets = [(dy, dx) for dy in range(-radius, radius + 1)
               for dx in range(-radius, radius + 1) if (dy, dx) != (0, 0)]
    gathered = np.full((targets.shape[0], len(offsets)), np.nan, dtype=np.float64)
    for j, (dy, dx) in enumerate(offsets):
        yy = targets[:, 0] + dy
        xx = targets[:, 1] + dx
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        yy = np.clip(yy, 0, ny - 1)
        xx = np.clip(xx, 0, nx - 1)
        ok = inside & usable[yy, xx]
        gathered[ok, j] = values[yy[ok], xx[ok]]
    result = np.full(targets.shape[0], np.nan)
    has = np.isfinite(gathered).any(axis=1)
    if has.any():
        result[has] = np.nanmedian(gathered[has], axis=1)
    return result


def correct_bad_pixels(frame, bad: np.ndarray, *, unmask: bool = False,
                       max_radius: int = 3) -> CCDData:
    """Replace bad pixels by the median of their good same-colour neighbours.

    The neighbourhood starts at the 8 nearest pixels of the same CFA site
    (3x3 in that site's plane) and grows up to ``max_radius`` for clusters.
    Pixels with no good neighbour within ``max_radius`` are left as they are.
    The uncertainty of a replaced pixel is the median of its neighbours'.
    ``meta['COSMCORR']`` is the number of corrected pixels, ``COSMFAIL`` the
    number that could not be corrected.

    Parameters
    ----------
    frame : CCDData or path
        The frame to correct (not modified).
    bad : ndarray of bool
        Pixels to replace (True), same shape as the frame.
    unmask : bool
        Clear the mask of the corrected pixels (default: keep them masked).
    max_radius : int
        Largest neighbourhood radius, in pixels of one CFA site.

    Returns
    -------
    CCDData

    Raises
    ------
    ValueError
        If ``bad`` does not have the frame's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> ccd = CCDData(np.full((6, 6), 5.0, dtype="f4"), unit="adu")
    >>> ccd.data[2, 3] = 900.0
    >>> bad = np.zeros((6, 6), bool); bad[2, 3] = True
    >>> out = correct_bad_pixels(ccd, bad)
    >>> float(out.data[2, 3]), out.meta["COSMCORR"], bool(out.mask[2, 3])
    (5.0, 1, True)
    """
    prov = Provenance()
    ccd = as_frame(frame, role="light", prov=prov)
    bad = np.asarray(bad, dtype=bool)
    if bad.shape != ccd.shape:
        raise IncompatibleFramesError(
            f"correct_bad_pixels: bad-pixel map has shape {bad.shape}, the "
                         f"frame {ccd.shape}; give a map of the frame's shape")
    data = np.array(ccd.data, dtype=np.float32, copy=True)
    std = None if ccd.uncertainty is None else np.array(std_of(ccd), dtype=np.float32,
                                                         copy=True)
    mask = np.zeros(ccd.shape, bool) if ccd.mask is None else np.array(ccd.mask, bool)
    unusable = bad | mask | ~np.isfinite(data)
    corrected = 0
    failed = 0
    for group in cfa_groups(ccd.meta, ccd.shape, by_colour=False):
        for sl in group:
            pdata, pbad = data[sl], bad[sl]
            targets = np.argwhere(pbad)
            if targets.size == 0:
                continue
            usable = ~unusable[sl]
            values = np.full(targets.shape[0], np.nan)
            sigmas = np.full(targets.shape[0], np.nan)
            todo = np.ones(targets.shape[0], bool)
            for radius in range(1, max_radius + 1):
                if not todo.any():
                    break
                values[todo] = _neighbour_median(pdata, usable, targets[todo], radius)
                if std is not None:
                    sigmas[todo] = _neighbour_median(std[sl], usable, targets[todo], radius)
                todo = ~np.isfinite(values)
            done = np.isfinite(values)
            rows, cols = targets[done, 0], targets[done, 1]
            pdata[rows, cols] = values[done]
            if std is not None:
                std[sl][rows, cols] = sigmas[done]
            pmask = mask[sl]
            if unmask:
                pmask[rows, cols] = False
            else:
                pmask[rows, cols] = True
            pmask[targets[~done, 0], targets[~done, 1]] = True
            corrected += int(done.sum())
            failed += int((~done).sum())
    meta = header_of(ccd.meta)
    meta["COSMCORR"] = (corrected, "pixels replaced by a same-colour neighbour median")
    meta["COSMFAIL"] = (failed, "bad pixels with no good neighbour (left masked)")
    out = CCDData(data, unit=ccd.unit, mask=mask, meta=meta,
                  uncertainty=None if std is None else StdDevUncertainty(std))
    prov.add_step("correct_bad_pixels", corrected=corrected, failed=failed,
                  unmask=bool(unmask), max_radius=int(max_radius))
    set_provenance(out, prov)
    log.info("correct_bad_pixels: %d corrected, %d left masked", corrected, failed)
    return out


def remove_cosmic_rays(frame, settings: CosmicRays | None = None) -> CCDData:
    """Detect cosmic rays with L.A.Cosmic (astroscrappy), clean and mask them.

    On a CFA mosaic each colour site is first divided by its median level
    (relative to the frame's), so that the mosaic's pixel-to-pixel colour
    pattern is not mistaken for cosmic rays while stars keep their full
    sampling (the noise model is then approximate by that factor).
    Detected pixels are OR-ed into the mask and replaced by the median of
    their good same-colour neighbours (as :func:`correct_bad_pixels`);
    ``meta['NCOSMIC']`` counts them.

    Parameters
    ----------
    frame : CCDData or path
        A calibrated frame in adu (EGAIN, RDNOISE used when present) or in
        electrons.
    settings : CosmicRays, optional
        Detection settings (defaults of :class:`CosmicRays`).

    Returns
    -------
    CCDData
    """
    settings = settings or CosmicRays()
    prov = Provenance()
    ccd = as_frame(frame, role="light", prov=prov)
    if ccd.unit == u.electron:
        gain = 1.0
    else:
        gain = float(ccd.meta.get("EGAIN", 1.0) or 1.0)
    readnoise = float(ccd.meta.get("RDNOISE", 0.0) or 0.0)
    data = np.array(ccd.data, dtype=np.float32, copy=True)
    mask = np.zeros(ccd.shape, bool) if ccd.mask is None else np.array(ccd.mask, bool)
    inmask = mask | ~np.isfinite(data)
    # masked pixels keep their value (a zeroed saturated star core would turn
    # its rim into sharp peaks); only non-finite ones are filled
    finite = np.isfinite(data)
    work = np.where(finite, data, np.median(data[finite]) if finite.any() else 0)
    # a CFA mosaic is equalised (each colour site divided by its level relative
    # to the whole frame) so that stars keep their full sampling and the
    # colour pattern of the sky is not taken for cosmic rays
    scale = np.ones(ccd.shape, np.float32)
    good = finite & ~inmask
    overall = float(np.median(work[good])) if good.any() else 1.0
    if cfa_pattern(ccd.meta) is not None and overall > 0:
        for group in cfa_groups(ccd.meta, ccd.shape, by_colour=False):
            for sl in group:
                level = float(np.median(work[sl][good[sl]])) if good[sl].any() else overall
                scale[sl] = level / overall if level > 0 else 1.0
    found, clean = astroscrappy.detect_cosmics(
        (work / scale).astype(np.float32), inmask=inmask, gain=gain, readnoise=readnoise,
        sigclip=settings.sigclip, sigfrac=settings.sigfrac, objlim=settings.objlim,
        niter=settings.niter, satlevel=settings.satlevel * gain, verbose=False)
    crmask = np.asarray(found, bool) & ~inmask
    del clean  # replaced below by the same-colour neighbour median
    ncosmic = int(crmask.sum())
    unc = ccd.uncertainty
    work_ccd = CCDData(data, unit=ccd.unit, mask=mask, meta=header_of(ccd.meta),
                       uncertainty=None if unc is None else StdDevUncertainty(
                           np.array(std_of(ccd), dtype=np.float32, copy=True)))
    fixed = correct_bad_pixels(work_ccd, crmask)
    meta = header_of(ccd.meta)
    meta["NCOSMIC"] = (ncosmic, "pixels flagged as cosmic rays (L.A.Cosmic)")
    out = CCDData(fixed.data, unit=ccd.unit, mask=mask | crmask, meta=meta,
                  uncertainty=fixed.uncertainty)
    prov.add_step("remove_cosmic_rays", ncosmic=ncosmic, sigclip=settings.sigclip,
                  sigfrac=settings.sigfrac, objlim=settings.objlim,
                  niter=settings.niter, gain=gain, readnoise=readnoise)
    set_provenance(out, prov)
    return out
