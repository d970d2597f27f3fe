"""Crossings of a line-grid target, to sub-pixel accuracy, as the spots of a lattice.

Not yet used by :meth:`DistortionModel.fit` on images (a line-grid image is
still refused there); the table it returns is fitted as a table of spots.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from photutils.detection import find_peaks
from scipy import ndimage
from scipy.spatial import cKDTree

from .._stats import MAD_TO_SIGMA
from ..errors import InvalidSettingsError
from ._detect import _check_args, _polarity, _signal

__all__ = ["find_line_crossings"]


def _pitch(sig):
    """Line spacing from the first autocorrelation maximum of the mean profiles."""
    lags = []
    for axis in (0, 1):
        prof = sig.mean(axis=axis)
        prof = prof - prof.mean()
        ac = np.correlate(prof, prof, "full")[prof.size - 1:]
        if not ac[0] > 0:
            return float("nan")
        ac = ac / ac[0]
        first_min = int(np.argmax(np.diff(ac) > 0))
        k = first_min + int(np.argmax(ac[first_min:prof.size // 2]))
        lag = float(k)
        if 0 < k < ac.size - 1:
            a, b, c = ac[k - 1], ac[k], ac[k + 1]
            if a - 2 * b + c != 0:
                lag = k + 0.5 * (a - c) / (a - 2 * b + c)
        lags.append(lag)
    return float(np.mean(lags))


def _centre(sig, fixed, start, half, axis):
    """Centroid across a line in a window symmetric about the estimate.

    The window's edge pixels get fractional weights, so that the estimate is a
    fixed point of a symmetric window (no pull towards the pixel grid).
    """
    c = start
    for _ in range(4):
        pos = np.arange(int(np.floor(c - half)) - 1, int(np.ceil(c + half)) + 2)
        if not (np.isfinite(c) and pos[0] >= 0 and pos[-1] < sig.shape[axis]):
            return np.nan
        w = np.clip(half + 0.5 - np.abs(pos - c), 0.0, 1.0)
        prof = sig[fixed, pos] if axis == 1 else sig[pos, fixed]
        tot = float((w * prof).sum())
        if not tot > 0:
            return np.nan
        c = float((w * prof * pos).sum() / tot)
    return c


def _robust_quadratic(t, v):
    """Quadratic fit of ``v(t)``, refitted without outliers (a broken or spoilt line).

    A straight line when fewer than 6 points are usable (a small pitch);
    None with fewer than 4.
    """
    good = np.isfinite(v)
    if good.sum() < 4:
        return None
    deg = 2 if good.sum() >= 6 else 1
    p = np.polyfit(t[good], v[good], deg)
    r = v[good] - np.polyval(p, t[good])
    keep = np.abs(r) < max(0.3, 4 * MAD_TO_SIGMA * np.median(np.abs(r)))
    if keep.sum() < 4:
        return None
    return np.polyfit(t[good][keep], v[good][keep], 2 if keep.sum() >= 6 else 1)


def find_line_crossings(image, *, polarity: str = "auto", width: float | None = None,
                        mask=None, channel: str | None = None) -> Table:
    """The crossings of the lines of a line-grid target, to sub-pixel accuracy.

    Each crossing is seeded where a signal smoothed along x (horizontal
    lines) and one smoothed along y (vertical lines) are both high.  Around
    it, the centre of the vertical line is measured row by row and that of
    the horizontal line column by column (centroids in windows symmetric
    about the line), away from the crossing itself; a quadratic curve is
    fitted to each (outliers, as on a broken line, left out) and the two
    curves are intersected.  The result is a table of "spots" that
    :meth:`DistortionModel.fit <calframe.DistortionModel.fit>` fits like any
    other.

    Parameters
    ----------
    image : CCDData or array-like
        The line-grid image (as for :func:`detect_grid_spots`).
    polarity : {"auto", "bright", "dark"}
        Bright lines on a dark field or dark lines on a bright one
        (``"auto"``: from the image histogram, lines being the minority).
    width : float, optional
        Line width in pixels (estimated if not given).
    mask, channel
        As for :func:`detect_grid_spots`.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` of each crossing; ``meta`` holds ``pitch`` (nearest-
        neighbour spacing of the crossings), ``polarity`` and ``width``.

    Raises
    ------
    InvalidSettingsError
        For bad arguments, and when fewer than 4 crossings are found.

    Examples
    --------
    >>> from calframe.datasets._linegrid import make_line_grid
    >>> from calframe.distortion import DistortionModel
    >>> img = make_line_grid((240, 320), pitch=30, seed=1)
    >>> crossings = find_line_crossings(img)
    >>> model = DistortionModel.fit(crossings, shape=img.shape)
    >>> bool(model) and len(crossings) > 50
    True
    """
    data, bad = _check_args(image, polarity, None, mask, channel)
    if width is not None and not width > 0:
        raise InvalidSettingsError(f"width must be positive, got {width!r}")
    ny, nx = data.shape
    if bad.all() or min(ny, nx) < 32:
        raise InvalidSettingsError("image: too small or fully masked to hold a line grid; "
                                   "give the whole line-grid image")
    if polarity == "auto":
        polarity = _polarity(data, bad)
    box = int(max(32, min(ny, nx) // 8))
    sig, sbad, _ = _signal(data, bad, polarity, box)
    sig = np.where(sbad, 0.0, sig)
    pitch = _pitch(sig)
    if not (np.isfinite(pitch) and pitch >= 6):
        raise InvalidSettingsError("image: no regular line spacing found; check that the "
                                   "image shows a grid of lines")
    horiz = ndimage.gaussian_filter1d(sig, pitch / 4, axis=1)
    vert = ndimage.gaussian_filter1d(sig, pitch / 4, axis=0)
    horiz = np.clip(horiz - np.median(horiz), 0, None)
    vert = np.clip(vert - np.median(vert), 0, None)
    cross = ndimage.gaussian_filter(horiz * vert, 1.0)
    top = float(np.percentile(cross, 99.5))
    peaks = find_peaks(cross, 0.2 * top, min_separation=pitch / 2) if top > 0 else None
    if peaks is None or len(peaks) < 4:
        raise InvalidSettingsError(f"image: fewer than 4 line crossings found (polarity "
                                   f"{polarity}); check the image and the polarity")
    if width is None:
        thr = 0.5 * np.percentile(sig[~sbad], 99)
        width = max(1.0, 0.5 * pitch * float(np.mean(sig[~sbad] > thr)))
    half = width / 2 + 2.5
    win = int(0.42 * pitch)
    excl = width / 2 + 3
    margin = win + half + 3
    found = []
    for x0, y0 in zip(np.asarray(peaks["x_peak"], float), np.asarray(peaks["y_peak"], float),
                      strict=True):
        if not (margin < x0 < nx - 1 - margin and margin < y0 < ny - 1 - margin):
            continue
        x, y = x0, y0
        for _ in range(3):
            rows = np.arange(round(y) - win, round(y) + win + 1)
            rows = rows[np.abs(rows - y) > excl]
            cols = np.arange(round(x) - win, round(x) + win + 1)
            cols = cols[np.abs(cols - x) > excl]
            xv = np.array([_centre(sig, r, x, half, 1) for r in rows])
            yh = np.array([_centre(sig, c, y, half, 0) for c in cols])
            pv = _robust_quadratic(rows - y, xv)
            ph = _robust_quadratic(cols - x, yh)
            if pv is None or ph is None:
                x = np.nan
                break
            xn, yn = x, y
            for _ in range(5):
                xn = float(np.polyval(pv, yn - y))
                yn = float(np.polyval(ph, xn - x))
            if abs(xn - x0) > pitch / 3 or abs(yn - y0) > pitch / 3:
                x = np.nan
                break
            x, y = xn, yn
        if np.isfinite(x):
            found.append((x, y))
    if len(found) < 4:
        raise InvalidSettingsError(f"image: fewer than 4 line crossings measured (of "
                                   f"{len(peaks)} found); check the image and the polarity")
    pts = np.asarray(found)
    d, _ = cKDTree(pts).query(pts, k=2)
    out = Table({"x": pts[:, 0], "y": pts[:, 1]})
    out.meta.update(pitch=float(np.median(d[:, 1])), polarity=polarity, width=float(width))
    return out
