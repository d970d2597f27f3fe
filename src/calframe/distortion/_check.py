"""Straightness of the rows and columns of a grid image: the proof of a correction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table

from ..errors import InvalidSettingsError
from ._channel import is_colour
from ._detect import _check_args, _polarity_fix, _summary, find_indexed

__all__ = ["Straightness", "grid_straightness"]

_NONE = np.iinfo(np.int32).min
# a line is measured when it holds at least this many spots (a line through
# fewer has too few degrees of freedom for its scatter to mean anything)
MIN_LINE_SPOTS = 4
# at least this many indexed spots are needed, as for a fit
_MIN_INDEXED = 16


@dataclass(frozen=True)
class Straightness:
    """How straight the lattice rows and columns of a grid image are.

    Attributes
    ----------
    mean, p99, max : float
        Mean, 99th percentile and maximum of the absolute perpendicular
        distance (pixels) of the spots from the straight line fitted to
        their row or column; a spot on a measured row and a measured column
        counts twice.
    nlines : int
        Rows plus columns measured (those of at least 4 spots).
    nspots : int
        Indexed spots on at least one measured line.
    spots : astropy.table.Table
        One row per such spot: ``x``, ``y``, lattice indices ``i`` (along
        x) and ``j`` (along y), ``row_residual`` and ``column_residual``
        (signed perpendicular distances in pixels, NaN where the line is
        not measured) and ``row_normal_x``, ``row_normal_y``,
        ``column_normal_x``, ``column_normal_y`` (unit normals of the two
        lines, so that ``residual * normal`` is the offset from the line).
    polarity : str
        The polarity the spots were detected with.
    """

    mean: float
    p99: float
    max: float
    nlines: int
    nspots: int
    spots: Table
    polarity: str

    def summary(self) -> str:
        """The numbers as lines of ``name: value``, as the command line prints them.

        Returns
        -------
        str
        """
        return (f"lines: {self.nlines}\nspots: {self.nspots}\nmean: {self.mean:.4f} px\n"
                f"p99: {self.p99:.4f} px\nmax: {self.max:.4f} px")

    def plot(self, image=None, *, exaggerate: float | None = None, figure=None):
        """A residual map: each spot's offset from its row and column lines.

        Parameters
        ----------
        image : array-like or CCDData, optional
            The (corrected) grid image, shown under the spots.
        exaggerate : float, optional
            Scale of the arrows (default: half the spot spacing for the
            p99 residual).
        figure : matplotlib.figure.Figure, optional
            Figure to draw in (a new one if not given).

        Returns
        -------
        matplotlib.figure.Figure
            Two panels: the map (arrows, coloured by the size of the offset)
            and the histogram of the absolute residuals.
        """
        from matplotlib.figure import Figure

        fig = figure if figure is not None else Figure(figsize=(12, 5), dpi=100)
        ax, hx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
        s = self.spots
        x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
        rr = np.nan_to_num(np.asarray(s["row_residual"], float))
        rc = np.nan_to_num(np.asarray(s["column_residual"], float))
        u = rr * np.asarray(s["row_normal_x"]) + rc * np.asarray(s["column_normal_x"])
        v = rr * np.asarray(s["row_normal_y"]) + rc * np.asarray(s["column_normal_y"])
        if image is not None:
            img = np.asarray(getattr(image, "data", image), float)
            if img.ndim == 3:
                img = img.mean(axis=0)
            lo, hi = np.nanpercentile(img, [1, 99])
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        spacing = 1.0
        if x.size > 1:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
            spacing = float(np.median(d[:, 1]))
        scale = exaggerate or 0.5 * spacing / max(self.p99, 1e-6)
        mag = np.hypot(u, v)
        q = ax.quiver(x, y, u * scale, v * scale, mag, angles="xy", scale_units="xy", scale=1,
                      cmap="viridis", width=0.003)
        q.set_clim(0.0, max(self.p99, 1e-6))  # a few large outliers do not wash out the rest
        fig.colorbar(q, ax=ax, shrink=0.8, label="offset from the lines (px, up to p99)")
        ax.set_aspect("equal")
        ax.set_title(f"offsets from straight rows/columns (x{scale:.0f})")
        res = np.abs(np.concatenate([s["row_residual"], s["column_residual"]]))
        hx.hist(res[np.isfinite(res)], bins=40, color="tab:blue")
        for val, name, style in ((self.mean, "mean", "-"), (self.p99, "p99", "--"),
                                 (self.max, "max", ":")):
            hx.axvline(val, color="k", ls=style, label=f"{name} {val:.4f} px")
        hx.set_xlabel("|perpendicular residual| (px)")
        hx.set_ylabel("spots")
        hx.legend(fontsize=8)
        hx.set_title(f"{self.nlines} lines, {self.nspots} spots")
        return fig


def _line_residuals(x, y, key):
    """Signed perpendicular distance from a total-least-squares line per group of ``key``.

    Returns residuals (NaN for groups of fewer than ``MIN_LINE_SPOTS``), the
    unit normal of each spot's line, and the number of lines fitted.
    """
    res = np.full(x.size, np.nan)
    normal = np.full((x.size, 2), np.nan)
    nlines = 0
    for k in np.unique(key):
        sel = np.flatnonzero(key == k)
        if sel.size < MIN_LINE_SPOTS:
            continue
        pts = np.column_stack([x[sel], y[sel]])
        centred = pts - pts.mean(axis=0)
        # the line's direction is the first right singular vector; its normal the second
        n = np.linalg.svd(centred, full_matrices=False)[2][1]
        res[sel] = centred @ n
        normal[sel] = n
        nlines += 1
    return res, normal, nlines


def _measure(data, bad, polarity, spot_radius, pitch):
    """``(Straightness, info)`` of a checked array; ``(None, info)`` on failure."""
    spots, info, index = find_indexed(data, bad, polarity, spot_radius, pitch=pitch)
    if spots is None:
        return None, info
    i, j, _ = index
    good = i != _NONE
    if good.sum() < _MIN_INDEXED:
        info = dict(info, problem=f"only {int(good.sum())} spots indexed (need "
                                  f"{_MIN_INDEXED})", fix=None)
        return None, info
    x = np.asarray(spots["x"], float)[good]
    y = np.asarray(spots["y"], float)[good]
    i, j = i[good], j[good]
    rres, rnorm, nrows = _line_residuals(x, y, j)
    cres, cnorm, ncols = _line_residuals(x, y, i)
    on = np.isfinite(rres) | np.isfinite(cres)
    allres = np.abs(np.concatenate([rres[on], cres[on]]))
    allres = allres[np.isfinite(allres)]
    if nrows + ncols < 2 or allres.size == 0:
        info = dict(info, problem=f"no row or column of {MIN_LINE_SPOTS} spots among the "
                                  f"{int(good.sum())} indexed", fix=None)
        return None, info
    table = Table({"x": x[on], "y": y[on], "i": i[on] - i.min(), "j": j[on] - j.min(),
                   "row_residual": rres[on], "column_residual": cres[on],
                   "row_normal_x": rnorm[on, 0], "row_normal_y": rnorm[on, 1],
                   "column_normal_x": cnorm[on, 0], "column_normal_y": cnorm[on, 1]})
    result = Straightness(mean=float(allres.mean()), p99=float(np.percentile(allres, 99)),
                          max=float(allres.max()), nlines=nrows + ncols, nspots=int(on.sum()),
                          spots=table, polarity=str(spots.meta.get("polarity", "")))
    return result, info


def _failure_text(info, *, cli=False):
    """``problem (counts); fix`` of a failed measurement."""
    fix = info.get("fix") or _polarity_fix(info, cli=cli)
    return f"no grid measured: {info['problem']} ({_summary(info)}); {fix}"


def grid_straightness(image, model=None, *, polarity: str = "auto",
                      spot_radius: float | None = None, pitch: float | None = None,
                      channel: str | None = None, mask=None) -> Straightness:
    """How straight the rows and columns of spots of a grid image are.

    The spots are detected and indexed on the lattice as by
    :meth:`DistortionModel.fit <calframe.DistortionModel.fit>`; a straight
    line is fitted to each lattice row and each lattice column of at least 4
    spots by total least squares (the principal axis of its spots), and each
    spot's signed perpendicular distance from it is its residual.  Without
    distortion, and with perfect centring, every residual is zero; what is
    left after a correction is the distortion it missed plus the centring
    noise.  The measure needs no model, so it compares corrections made by
    any tool.

    Parameters
    ----------
    image : CCDData or array-like
        A grid image: ``(ny, nx)``, a ``(3, ny, nx)`` colour cube, or a
        CFA mosaic (as for :func:`detect_grid_spots`).
    model : DistortionModel, optional
        When given, ``image`` is first corrected with it
        (:func:`correct_distortion`, ``method="interpolate"``); without it,
        ``image`` is measured as it is (raw, or already corrected).
    polarity : {"auto", "bright", "dark"}
        As for :func:`detect_grid_spots` (``"auto"`` tries both when the
        first does not index).
    spot_radius, pitch : float, optional
        Spot radius and approximate pitch in pixels (measured if not given).
    channel : {"luminance", "luma", "r", "g", "b"}, optional
        The plane of a colour cube to measure (default ``"luminance"``), or
        the colour of a CFA mosaic's sites (default green).
    mask : array-like of bool, optional
        Pixels to ignore, of the image's ``(ny, nx)`` shape (with a model,
        applied before the correction).

    Returns
    -------
    Straightness
        ``mean``, ``p99`` and ``max`` of the absolute residuals in pixels,
        ``nlines``, ``nspots`` and the per-spot table.

    Raises
    ------
    InvalidSettingsError
        For bad arguments, and when no grid is measured (too few spots
        found or indexed): the message gives the counts and what to try.
    IncompatibleFramesError
        When ``model`` was fitted on an image of another shape.

    Examples
    --------
    >>> from calframe.datasets import GridDistortion, make_grid_image
    >>> from calframe.distortion import DistortionModel
    >>> field = GridDistortion((192, 192), radial=8.0, smooth=0.0, seed=1)
    >>> img, _ = make_grid_image((192, 192), pitch=20, distortion=field, seed=1)
    >>> raw = grid_straightness(img)
    >>> fixed = grid_straightness(img, DistortionModel.fit(img))
    >>> bool(raw.max > 0.5), bool(fixed.p99 < 0.1)
    (True, True)
    """
    if is_colour(np.shape(getattr(image, "data", image))) and channel is None:
        channel = "luminance"
    if model is not None:
        from ._correct import correct_distortion

        if mask is not None:
            # the mask is in the frame of the image: applied before the correction
            base = image if isinstance(image, CCDData) else CCDData(
                np.asarray(image, float), unit="adu")
            extra = np.asarray(mask, bool)
            if extra.shape != base.shape[-2:]:
                raise InvalidSettingsError(f"mask: shape {extra.shape} differs from the image "
                                           f"{base.shape[-2:]}; give a mask of the image's "
                                           "shape")
            extra = np.array(np.broadcast_to(extra, base.shape))
            image = CCDData(base.data, unit=base.unit, meta=base.meta,
                            mask=extra if base.mask is None else base.mask | extra)
            mask = None
        if is_colour(np.shape(image)):
            image = correct_distortion(image, model, method="interpolate", channel=channel)
            channel = None
        else:
            image = correct_distortion(image, model, method="interpolate")
    data, bad = _check_args(image, polarity, spot_radius, mask, channel)
    if pitch is not None and not pitch > 0:
        raise InvalidSettingsError(f"pitch must be positive, got {pitch!r}")
    result, info = _measure(data, bad, polarity, spot_radius, pitch)
    if result is None:
        raise InvalidSettingsError(f"image: {_failure_text(info)}")
    return result
