"""The smooth distortion field fitted to an indexed grid of spots."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
from astropy.table import Table
from scipy import optimize
from scipy.interpolate import BSpline

from ..errors import InvalidSettingsError
from ._detect import (
    LINE_FIX,
    LINE_PROBLEM,
    _check_args,
    _polarity_fix,
    _summary,
    find_indexed,
)
from ._lattice import index_lattice

__all__ = ["DistortionModel", "FailedDistortionFit", "FitSettings"]

log = logging.getLogger(__name__)
_NONE = np.iinfo(np.int32).min
# column ordering for the symmetric banded spline normal matrices (less fill, faster
# factorisation than the default COLAMD)
_ORDER = "MMD_AT_PLUS_A"


# named stiffness levels of FitSettings.flexibility: (radial_order, knot_spacing)
_LEVELS = {"stiff": (3, 3.0), "default": (3, 2.0), "flexible": (5, 1.5),
           "very-flexible": (7, 1.0)}


@dataclass
class FitSettings:
    """Settings of :meth:`DistortionModel.fit`.

    Parameters
    ----------
    radial_order : int
        Number of radial polynomial terms ``r**1 .. r**n`` of the global part.
    knot_spacing : float
        Knot spacing of the residual spline, in lattice pitches.
    lambdas : tuple of float
        Candidate smoothing weights (relative) tried by cross-validation.
    folds : int
        Cross-validation folds.
    clip : float
        Spots whose residual exceeds ``clip`` robust standard deviations
        (and 0.1 px) are rejected and the fit repeated.
    tolerance : float
        Lattice growth acceptance radius, in pitches.
    seed : int
        Seed of the random assignment of spots to folds (and to the
        held-out set of ``select_stiffness``).
    select_stiffness : bool
        Choose ``radial_order`` and ``knot_spacing`` from the data: each
        pair of ``stiffness_candidates`` is fitted without a held-out share
        of the spots and scored by how far those spots fall from their
        lattice points; the stiffest pair within 2 % of the best score is
        used for the final fit (on all spots).  The scores are in the
        model's ``meta["stiffness"]``.  For strong (wide-angle) distortion.
    stiffness_candidates : tuple of (int, float)
        ``(radial_order, knot_spacing)`` pairs, from stiff to flexible.
    time_budget : float
        Seconds for trying candidates: no new candidate is started after
        it (the first is always tried).
    holdout : float
        Share of the spots held out to score the candidates.

    Examples
    --------
    >>> FitSettings(radial_order=5, knot_spacing=1.0).radial_order
    5
    >>> FitSettings.flexibility("auto").select_stiffness
    True
    """

    radial_order: int = 3
    knot_spacing: float = 2.0
    lambdas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    folds: int = 5
    clip: float = 5.0
    tolerance: float = 0.25
    seed: int = 0
    select_stiffness: bool = False
    stiffness_candidates: tuple[tuple[int, float], ...] = (
        (3, 2.0), (5, 2.0), (5, 1.5), (7, 1.5), (7, 1.0))
    time_budget: float = 30.0
    holdout: float = 0.2

    def __post_init__(self):
        if not (isinstance(self.radial_order, (int, np.integer)) and 1 <= self.radial_order <= 9):
            raise InvalidSettingsError(f"radial_order must be an integer from 1 to 9, got "
                                       f"{self.radial_order!r}")
        if not self.knot_spacing > 0:
            raise InvalidSettingsError(f"knot_spacing must be positive (in lattice pitches), "
                                       f"got {self.knot_spacing!r}")
        if not 0 < self.holdout < 1:
            raise InvalidSettingsError(f"holdout must be between 0 and 1, got {self.holdout!r}")
        if not self.time_budget >= 0:
            raise InvalidSettingsError(f"time_budget must be a number of seconds >= 0, got "
                                       f"{self.time_budget!r}")
        self.stiffness_candidates = tuple((int(o), float(k))
                                          for o, k in self.stiffness_candidates)

    @classmethod
    def flexibility(cls, level: str, **kwargs) -> FitSettings:
        """Settings for a named stiffness: ``"auto"``, or a fixed level.

        ``"auto"`` turns on ``select_stiffness``; ``"stiff"``, ``"default"``,
        ``"flexible"`` and ``"very-flexible"`` set ``(radial_order,
        knot_spacing)`` to ``(3, 3.0)``, ``(3, 2.0)``, ``(5, 1.5)`` and ``(7,
        1.0)``.  Other settings are passed on.
        """
        if level == "auto":
            return cls(select_stiffness=True, **kwargs)
        if level not in _LEVELS:
            raise InvalidSettingsError(f"flexibility must be 'auto' or one of "
                                       f"{', '.join(_LEVELS)}, got {level!r}")
        order, spacing = _LEVELS[level]
        return cls(radial_order=order, knot_spacing=spacing, **kwargs)


class FailedDistortionFit:
    """A distortion fit that could not be made; falsy, with the ``reason``.

    Parameters
    ----------
    reason : str
        What went wrong, with what was found when the fit started from an
        image (``found N candidate spots, M fitted, K indexed ...``).
    problem : str, optional
        The problem alone (``reason`` without the counts).
    fix : str, optional
        How to fix it, when that does not depend on the options (a polarity
        to try is given by ``polarity`` and ``auto_polarity``).
    ncandidates, nfitted, nindexed : int, optional
        Candidate spots (peaks), spots whose profile fit was kept, spots
        given a lattice index.
    polarity : str, optional
        The polarity tried (``"bright"`` or ``"dark"``).
    auto_polarity : bool
        The polarity was detected from the image, not requested.
    line_pattern : bool
        The image looks like a pattern of lines rather than dots.
    tried : list of dict, optional
        With an automatic polarity, when both were tried: the counts
        (``polarity``, ``ncandidates``, ``nfitted``, ``nindexed``) and the
        ``problem`` of the other polarity.

    Examples
    --------
    >>> bad = FailedDistortionFit("only 3 spots indexed")
    >>> bool(bad), bad.reason
    (False, 'only 3 spots indexed')
    """

    def __init__(self, reason: str, *, problem: str | None = None, fix: str | None = None,
                 ncandidates: int | None = None, nfitted: int | None = None,
                 nindexed: int | None = None, polarity: str | None = None,
                 auto_polarity: bool = False, line_pattern: bool = False,
                 tried: list | None = None):
        self.reason = reason
        self.problem = reason if problem is None else problem
        self.fix = fix
        self.ncandidates = ncandidates
        self.nfitted = nfitted
        self.nindexed = nindexed
        self.polarity = polarity
        self.auto_polarity = auto_polarity
        self.line_pattern = line_pattern
        self.tried = [] if tried is None else [
            {k: t.get(k) for k in ("polarity", "ncandidates", "nfitted", "nindexed", "problem")}
            for t in tried]

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"FailedDistortionFit({self.reason!r})"

    def suggestion(self, *, cli: bool = False) -> str:
        """How to fix the failure (options spelt for the command line with ``cli=True``)."""
        if self.fix:
            return self.fix
        return _polarity_fix({"polarity": self.polarity, "auto_polarity": self.auto_polarity,
                              "tried": self.tried}, cli=cli)


def _failure(info, problem, fix=None, nindexed=0):
    """A :class:`FailedDistortionFit` from the detection ``info``."""
    line = info.get("line_fraction", 0.0) > 0.5
    if line:
        problem, fix = LINE_PROBLEM, LINE_FIX
        if info.get("line_detail"):
            problem = f"{problem} ({info['line_detail']})"
        elif info.get("target") == "lines":
            problem = f"{LINE_PROBLEM} ({problem})"
    info = dict(info, nindexed=nindexed)
    return FailedDistortionFit(f"{_summary(info)}; {problem}", problem=problem, fix=fix,
                               ncandidates=info["ncandidates"], nfitted=info["nfitted"],
                               nindexed=nindexed, polarity=info["polarity"],
                               auto_polarity=info["auto_polarity"], line_pattern=line,
                               tried=info.get("tried"))


def _line_crossings(data, bad, polarity, info):
    """``(table, info)`` of the crossings of a line-grid image; ``(None, info)`` if none."""
    from ..errors import InvalidSettingsError
    from ._lines import find_line_crossings

    try:
        table = find_line_crossings(data, polarity=polarity, mask=bad)
    except InvalidSettingsError as err:
        info = dict(info, line_detail=str(err).removeprefix("image: "))
        return None, info
    table.meta.update(auto_polarity=polarity == "auto", target="lines")
    info = dict(info, polarity=table.meta["polarity"], ncandidates=len(table),
                nfitted=len(table), tried=None, target="lines")
    log.info("line grid: %d crossings (polarity %s, pitch %.2f px)", len(table),
             table.meta["polarity"], table.meta["pitch"])
    return table, info


def _knots(lo, hi, spacing):
    m = max(2, int(np.ceil((hi - lo) / spacing)) + 1)
    inner = np.linspace(lo, hi, m)
    return np.r_[[lo] * 3, inner, [hi] * 3]


def _dmat(x, t):
    x = np.clip(x, t[3], t[-4])
    return BSpline.design_matrix(x, t, 3)


def _d2(n):
    d = np.zeros((n - 2, n))
    for r in range(n - 2):
        d[r, r:r + 3] = (1, -2, 1)
    return d.T @ d


def _convex_fill(shape, vx):
    """Boolean image, True at the pixel centres inside a convex polygon.

    ``vx`` holds the ``(x, y)`` vertices.  Row by row: the span between the
    polygon's left and right edges at that row's centre (half-plane tests per
    edge), so the cost is one pass over the rows, not a test per pixel.
    """
    ny, nx = shape
    out = np.zeros(shape, bool)
    x0, y0 = vx[:, 0], vx[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    rows = np.arange(max(0, int(np.ceil(y0.min()))), min(ny, int(np.floor(y0.max())) + 1))
    if rows.size == 0:
        return out
    r = rows.astype(float)[:, None]
    # each edge is a half-plane a x + b y + c >= 0 (interior side), solved for x per row
    a = (y1 - y0)
    b = -(x1 - x0)
    c = -(a * x0 + b * y0)
    side = a * x0.mean() + b * y0.mean() + c
    a, b, c = np.where(side < 0, -a, a), np.where(side < 0, -b, b), np.where(side < 0, -c, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        xb = -(b * r + c) / a
    horiz = a == 0
    lo = np.max(np.where(a > 0, xb, -np.inf), axis=1)
    hi = np.min(np.where(a < 0, xb, np.inf), axis=1)
    inside_h = np.all(np.where(horiz, b * r + c >= 0, True), axis=1)
    cl = np.clip(np.ceil(lo), 0, nx).astype(int)
    ch = np.clip(np.floor(hi) + 1, 0, nx).astype(int)
    for k in np.flatnonzero(inside_h & (ch > cl)):
        out[rows[k], cl[k]:ch[k]] = True
    return out


def _radial(x, y, centre, scale, k):
    u = (x - centre[0]) / scale
    v = (y - centre[1]) / scale
    r = np.sqrt(u * u + v * v)
    f = np.zeros_like(r)
    for n, kn in enumerate(k, start=1):
        f = f + kn * r ** n
    return u * f * scale, v * f * scale


class DistortionModel:
    """A detector's geometric distortion: displacement from observed to ideal.

    Sign convention: ``model(x, y)`` returns ``(dx, dy)`` such that the ideal
    (undistorted) position of what is seen at pixel ``(x, y)`` is
    ``(x + dx, y + dy)``; ``model.inverse(x, y)`` returns ``(dx, dy)`` such
    that the observed position of the ideal point ``(x, y)`` is
    ``(x + dx, y + dy)``.  Pixel centres are at integers, ``x`` the column.

    The field is ``T(p + R(p) + S(p)) - p``: ``R`` is a radial polynomial
    about a fitted centre, ``S`` a cubic tensor-product B-spline of the
    remaining displacement (a P-spline: knots every ``knot_spacing`` pitches
    and a second-difference roughness penalty whose weight is chosen by
    K-fold cross-validation), and ``T`` the affine map that makes the field
    free of any affine part over the spots (zero mean shift, rotation, scale
    and shear), so that the corrected image overlays the raw one.

    Build one with :meth:`fit` or :meth:`from_fits`.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the detector.
    centre : array_like
        ``(x, y)`` centre of the radial term, in pixels.
    scale : float
        Radius (pixels) that the radial polynomial's variable is divided by.
    k : array_like
        Coefficients of the radial polynomial.
    tx, ty : array_like
        Knots of the B-spline term along x and y.
    coef_x, coef_y : array_like
        B-spline coefficients of the x and y displacement.
    T : array_like
        The 2x3 affine map that removes the affine part of the field.
    spots : `~astropy.table.Table`
        The spots the model was fitted to, with their lattice indices.
    meta : dict
        Fit statistics and settings (``nspots``, ``pitch_px``, ``settings``...).
    """

    def __init__(self, shape, centre, scale, k, tx, ty, coef_x, coef_y, T, spots, meta):
        self.shape = tuple(int(n) for n in shape)
        self.centre = np.asarray(centre, float)
        self.scale = float(scale)
        self.k = np.asarray(k, float)
        self.tx, self.ty = np.asarray(tx, float), np.asarray(ty, float)
        self.coef_x = np.asarray(coef_x, float)
        self.coef_y = np.asarray(coef_y, float)
        self.T = np.asarray(T, float)  # 2x3 affine
        self.spots = spots
        self.meta = dict(meta)
        self._maps = None
        self._inverse_maps = None

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return (f"DistortionModel(shape={self.shape}, nspots={len(self.spots)}, "
                f"rms={self.rms:.4f} px)")

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, spots_or_image, *, pitch: float | None = None, shape=None,
            polarity: str = "auto", spot_radius: float | None = None, mask=None,
            channel: str | None = None, settings: FitSettings | None = None):
        """Fit the distortion of a grid image (or of already detected spots).

        Parameters
        ----------
        spots_or_image : astropy.table.Table, CCDData or array-like
            A table with ``x`` and ``y`` columns (as from
            :func:`detect_grid_spots`), or the grid image itself.
        pitch : float, optional
            Approximate lattice pitch in pixels (measured if not given).
        shape : tuple of int, optional
            ``(ny, nx)`` of the detector; required with a table.
        polarity, spot_radius, mask, channel
            Passed to :func:`detect_grid_spots` for an image (``channel`` picks
            the plane of a ``(3, ny, nx)`` colour cube).
        settings : FitSettings, optional
            Model and fit settings.

        Returns
        -------
        DistortionModel or FailedDistortionFit
            A falsy :class:`FailedDistortionFit` with the ``reason`` when too
            few spots are found or indexed or the fit is degenerate; for an
            image it says how many spots were found, fitted and indexed, and
            with which polarity.

        Raises
        ------
        InvalidSettingsError
            For a table without ``x``/``y`` columns or without ``shape``, a
            pitch that is not positive, and for bad detection arguments (a
            colour cube without ``channel``, a wrong polarity...).

        Examples
        --------
        >>> from calframe.datasets._grid import make_grid_image, GridDistortion
        >>> field = GridDistortion((192, 192), radial=1.0, smooth=0.5, seed=2)
        >>> img, truth = make_grid_image((192, 192), pitch=20, distortion=field, seed=1)
        >>> model = DistortionModel.fit(img)
        >>> bool(model), bool(model.rms < 0.05)
        (True, True)
        """
        settings = settings or FitSettings()
        if pitch is not None and not pitch > 0:
            raise InvalidSettingsError(f"pitch must be positive, got {pitch!r}")
        info = None
        index = None
        if isinstance(spots_or_image, Table):
            spots = spots_or_image
            if "x" not in spots.colnames or "y" not in spots.colnames:
                raise InvalidSettingsError("spots: the table needs 'x' and 'y' columns "
                                           f"(found {spots.colnames}); use detect_grid_spots")
            if shape is None:
                raise InvalidSettingsError("shape: give the detector shape (ny, nx) when "
                                           "fitting a table of spots")
        else:
            data, bad = _check_args(spots_or_image, polarity, spot_radius, mask, channel)
            shape = data.shape
            spots, info, index = find_indexed(data, bad, polarity, spot_radius, pitch=pitch,
                                              tolerance=settings.tolerance)
            if spots is None and info.get("line_fraction", 0.0) > 0.5:
                # a line-grid target: its line crossings are the lattice points
                spots, info = _line_crossings(data, bad, polarity, info)
            if spots is None:
                return _failure(info, info["problem"], info["fix"])
        spots = Table(spots, copy=True)
        x = np.asarray(spots["x"], float)
        y = np.asarray(spots["y"], float)
        if pitch is None:
            pitch = spots.meta.get("pitch")
        if index is None:
            index = index_lattice(x, y, pitch=pitch, tolerance=settings.tolerance)
        i, j, nconflict = index
        good = i != _NONE
        if good.sum() < 16:
            problem = f"only {int(good.sum())} spots indexed (need 16)"
            if info is None:
                return FailedDistortionFit(problem, nfitted=len(x), nindexed=int(good.sum()))
            return _failure(info, problem, nindexed=int(good.sum()))
        ny, nx = shape
        scale = 0.5 * float(np.hypot(nx, ny))
        xg, yg, ig, jg = x[good], y[good], i[good].astype(float), j[good].astype(float)
        stiffness = None
        if settings.select_stiffness:
            settings, stiffness = _select_stiffness(xg, yg, ig, jg, shape, scale, settings)
        core = _fit_core(xg, yg, ig, jg, shape, scale, settings)
        if core is None:
            problem = "the global lattice fit is degenerate"
            if info is None:
                return FailedDistortionFit(problem, nfitted=len(x), nindexed=int(good.sum()))
            return _failure(info, problem, nindexed=int(good.sum()))
        (centre, k, L, tx, ty, cx, cy, lam, keep, nclip, rx, ry, sx, sy, lx, ly) = core
        # ideal = p + R + S, in the lattice frame; choose T so that T(ideal) - p has no
        # affine part over the spots
        ux, uy = xg + rx + sx, yg + ry + sy
        A = np.column_stack([np.ones(keep.sum()), ux[keep], uy[keep]])
        T = np.vstack([np.linalg.lstsq(A, xg[keep], rcond=None)[0],
                       np.linalg.lstsq(A, yg[keep], rcond=None)[0]])
        spots = spots[good]
        spots["i"] = ig.astype(int) - int(ig.min())
        spots["j"] = jg.astype(int) - int(jg.min())
        spots["used"] = keep
        # ideal lattice positions in the final frame
        Lx = T[0, 0] + T[0, 1] * lx + T[0, 2] * ly
        Ly = T[1, 0] + T[1, 1] * lx + T[1, 2] * ly
        spots["x_ideal"], spots["y_ideal"] = Lx, Ly
        basis = T[:, 1:] @ L[:, 1:]
        meta = {"nspots": len(x), "nindexed": int(good.sum()),
                "nrejected": int(len(x) - good.sum()) + nclip, "nconflict": int(nconflict),
                "nclipped": nclip, "pitch_px": float(np.hypot(*basis[:, 0])),
                "basis": basis.tolist(), "lambda": float(lam),
                "settings": asdict(settings)}
        if stiffness is not None:
            meta["stiffness"] = stiffness
        model = cls(shape, centre, scale, k, tx, ty, cx, cy, T, spots, meta)
        log.info("distortion fit: %d spots, %d indexed, rms %.4f px", len(x), good.sum(),
                 model.rms)
        return model

    # ------------------------------------------------------------ evaluation
    def _ideal(self, x, y):
        rx, ry = _radial(x, y, self.centre, self.scale, self.k)
        sx, sy = _eval_spline(x, y, self.tx, self.ty, self.coef_x, self.coef_y)
        ux, uy = x + rx + sx, y + ry + sy
        T = self.T
        return T[0, 0] + T[0, 1] * ux + T[0, 2] * uy, T[1, 0] + T[1, 1] * ux + T[1, 2] * uy

    def __call__(self, x, y):
        """Displacement ``(dx, dy)`` at observed positions: ideal = observed + d."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        shp = np.broadcast(x, y).shape
        x, y = np.broadcast_to(x, shp).ravel(), np.broadcast_to(y, shp).ravel()
        outx = np.empty(x.size)
        outy = np.empty(x.size)
        chunk = 1 << 20
        for s in range(0, x.size, chunk):
            ux, uy = self._ideal(x[s:s + chunk], y[s:s + chunk])
            outx[s:s + chunk] = ux - x[s:s + chunk]
            outy[s:s + chunk] = uy - y[s:s + chunk]
        return outx.reshape(shp), outy.reshape(shp)

    def inverse(self, x, y, *, iterations: int = 8):
        """Displacement ``(dx, dy)`` at ideal positions: observed = ideal + d."""
        from ._kernels import inverse_field

        xi = np.asarray(x, float)
        yi = np.asarray(y, float)
        shp = np.broadcast(xi, yi).shape
        xi = np.ascontiguousarray(np.broadcast_to(xi, shp).ravel())
        yi = np.ascontiguousarray(np.broadcast_to(yi, shp).ravel())
        nb, na = self.ty.size - 4, self.tx.size - 4
        # the fixed-point iteration of the full model, point by point in compiled code
        dx, dy = inverse_field(xi, yi, float(self.centre[0]), float(self.centre[1]),
                               float(self.scale), np.asarray(self.k, float),
                               np.asarray(self.tx, float), np.asarray(self.ty, float),
                               np.ascontiguousarray(self.coef_x, float).reshape(nb, na),
                               np.ascontiguousarray(self.coef_y, float).reshape(nb, na),
                               np.asarray(self.T, float), int(iterations))
        return dx.reshape(shp), dy.reshape(shp)

    def maps(self):
        """``(dx, dy)`` images over the detector (observed pixel grid), float32."""
        if self._maps is None:
            from ._io import grid_values

            # the model at every pixel, in a compiled kernel (spline basis per row/column)
            ny, nx = self.shape
            dx, dy = grid_values(self, np.arange(nx, dtype=float), np.arange(ny, dtype=float))
            self._maps = (dx.astype(np.float32), dy.astype(np.float32))
        return self._maps

    def inverse_maps(self, *, step: int = 8):
        """``(dx, dy)`` images over the ideal pixel grid: observed = ideal + d, float32.

        Computed on a coarse grid (every ``step`` pixels) and interpolated
        with cubic splines (the field is smooth on the scale of a pitch).
        """
        if self._inverse_maps is None:
            from scipy.interpolate import RectBivariateSpline

            ny, nx = self.shape
            gx = np.unique(np.r_[np.arange(0, nx, step), nx - 1]).astype(float)
            gy = np.unique(np.r_[np.arange(0, ny, step), ny - 1]).astype(float)
            yy, xx = np.meshgrid(gy, gx, indexing="ij")
            dx, dy = self.inverse(xx, yy)
            kx, ky = min(3, gx.size - 1), min(3, gy.size - 1)
            fx = RectBivariateSpline(gy, gx, dx, kx=ky, ky=kx)
            fy = RectBivariateSpline(gy, gx, dy, kx=ky, ky=kx)
            ax, ay = np.arange(nx, dtype=float), np.arange(ny, dtype=float)
            self._inverse_maps = (fx(ay, ax).astype(np.float32), fy(ay, ax).astype(np.float32))
        return self._inverse_maps

    # --------------------------------------------------------------- summary
    @property
    def residuals(self) -> Table:
        """Per spot: ``x``, ``y``, ``i``, ``j``, ``dx``, ``dy`` (corrected - lattice), ``used``."""
        s = self.spots
        x = np.asarray(s["x"], float)
        y = np.asarray(s["y"], float)
        ux, uy = self._ideal(x, y)
        return Table({"x": x, "y": y, "i": s["i"], "j": s["j"],
                      "dx": ux - np.asarray(s["x_ideal"]), "dy": uy - np.asarray(s["y_ideal"]),
                      "used": s["used"]})

    @property
    def rms(self) -> float:
        """Root-mean-square length of the residuals of the spots used (pixels)."""
        r = self.residuals
        u = np.asarray(r["used"], bool)
        return float(np.sqrt(np.mean(np.asarray(r["dx"])[u] ** 2 + np.asarray(r["dy"])[u] ** 2)))

    def pixel_size(self, pitch_mm: float):
        """Pixel size ``(x, y)`` in the units of ``pitch_mm`` for a square target.

        Solves ``pitch**2 = (sx a_x)**2 + (sy a_y)**2`` for both lattice
        steps ``a`` (in ideal pixels).

        Examples
        --------
        >>> from calframe.datasets._grid import make_grid_image
        >>> img, _ = make_grid_image((192, 192), pitch=20, seed=1)
        >>> sx, sy = DistortionModel.fit(img).pixel_size(1.0)
        >>> round(sx, 3), round(sy, 3)
        (0.05, 0.05)
        """
        if not pitch_mm > 0:
            raise InvalidSettingsError(f"pitch_mm must be positive, got {pitch_mm!r}")
        B = np.asarray(self.meta["basis"], float)  # columns: steps along i and j
        M = (B.T) ** 2
        s2 = np.linalg.solve(M, np.full(2, float(pitch_mm) ** 2))
        return float(np.sqrt(abs(s2[0]))), float(np.sqrt(abs(s2[1])))

    @property
    def valid_mask(self) -> np.ndarray:
        """True inside the convex hull of the indexed spots (observed pixel grid)."""
        from scipy.spatial import ConvexHull

        pts = np.column_stack([np.asarray(self.spots["x"], float),
                               np.asarray(self.spots["y"], float)])
        hull = ConvexHull(pts)
        return _convex_fill(self.shape, pts[hull.vertices])

    def valid_mask_cached(self) -> np.ndarray:
        """:attr:`valid_mask`, computed once."""
        if getattr(self, "_valid", None) is None:
            self._valid = self.valid_mask
        return self._valid

    # ------------------------------------------------------------------- I/O
    def to_fits(self, path, *, overwrite: bool = False, maps: bool = False) -> None:
        """Write the model: its parameters, the spots, and dx/dy images.

        The parameters (radial centre and factors, spline knots and
        coefficients, affine frame, in the ``DISTPAR``, ``KNOTSX``,
        ``KNOTSY`` and ``SPLCOEF`` extensions) define the model:
        :meth:`from_fits` rebuilds an identical one and computes the maps
        from them.  The primary (dx) and ``DY`` images, with the valid area
        as their mask, are a preview sampled every ``DISTSTEP`` pixels (at
        most 256 samples a side), so a 10 MP model takes a few MB; with
        ``maps=True`` they are full size (``DISTSTEP`` = 1).

        Parameters
        ----------
        path : str or path-like
            Output FITS file.
        overwrite : bool
            Replace an existing file.
        maps : bool
            Store full-size dx/dy images (for other software that reads
            them); the default stores a coarse preview.
        """
        from ._io import write_model

        write_model(self, path, overwrite=overwrite, maps=maps)

    @classmethod
    def from_fits(cls, path) -> DistortionModel:
        """Read a model written by :meth:`to_fits`."""
        from ._io import read_model

        return read_model(cls, path)

    def to_pyfai(self, path, *, pixel_size=(1e-4, 1e-4), overwrite: bool = False):
        """Write a pyFAI NeXus detector whose pixel corners carry this distortion.

        pyFAI's ``Distortion(detector).correct(image)`` then moves what is seen
        at ``(x, y)`` to ``(x + dx, y + dy)``, the same as
        :func:`correct_distortion`.  Pixels outside the valid area are masked.

        Parameters
        ----------
        path : str or path-like
            Output ``.h5`` file.
        pixel_size : tuple of float
            ``(x, y)`` pixel size in metres (e.g. from :meth:`pixel_size`).
        overwrite : bool
            Replace an existing file.
        """
        from ._io import write_pyfai

        return write_pyfai(self, path, pixel_size=pixel_size, overwrite=overwrite)

    def params_json(self) -> str:
        """The model parameters as JSON (for headers and provenance)."""
        return json.dumps({"centre": self.centre.tolist(), "scale": self.scale,
                           "k": self.k.tolist(), "T": self.T.tolist()})


def _fit_core(xg, yg, ig, jg, shape, scale, settings):
    """Global lattice + radial fit, then the residual spline, with outlier clipping.

    Returns None for a degenerate global fit, else ``(centre, k, L, tx, ty,
    cx, cy, lam, keep, nclip, rx, ry, sx, sy, lx, ly)``: the radial part,
    the lattice ``L``, knots and coefficients of the spline, its smoothing
    weight, the spots kept, and at every spot the radial and spline
    displacements and the lattice position.
    """
    ny, nx = shape
    keep = np.ones(xg.size, bool)
    nclip = 0
    lam = None
    for _ in range(3):
        glob = _fit_global(xg[keep], yg[keep], ig[keep], jg[keep], shape, scale,
                           settings.radial_order)
        if glob is None:
            return None
        centre, k, L = glob
        rx, ry = _radial(xg, yg, centre, scale, k)
        lx = L[0, 0] + L[0, 1] * ig + L[0, 2] * jg
        ly = L[1, 0] + L[1, 1] * ig + L[1, 2] * jg
        resx, resy = lx - xg - rx, ly - yg - ry
        step = float(np.hypot(L[0, 1], L[1, 1]))
        spacing = settings.knot_spacing * step
        tx = _knots(-0.5, nx - 0.5, spacing)
        ty = _knots(-0.5, ny - 0.5, spacing)
        cx, cy, lam = _fit_spline(xg[keep], yg[keep], resx[keep], resy[keep], tx, ty,
                                  settings, lam)
        sx, sy = _eval_spline(xg, yg, tx, ty, cx, cy)
        ex, ey = resx - sx, resy - sy
        e = np.hypot(ex, ey)
        sig = 1.4826 * np.median(e[keep]) / 1.1774 * 1.0  # Rayleigh median -> sigma
        bad = e > max(settings.clip * sig, 0.1)
        if np.array_equal(bad, ~keep):
            break
        keep = ~bad
        nclip = int(bad.sum())
    return centre, k, L, tx, ty, cx, cy, lam, keep, nclip, rx, ry, sx, sy, lx, ly


def _holdout_error(core, x, y, i, j, scale):
    """Distance (px) of held-out spots from the lattice point the model predicts."""
    centre, k, L, tx, ty, cx, cy = core[:7]
    rx, ry = _radial(x, y, centre, scale, k)
    sx, sy = _eval_spline(x, y, tx, ty, cx, cy)
    lx = L[0, 0] + L[0, 1] * i + L[0, 2] * j
    ly = L[1, 0] + L[1, 1] * i + L[1, 2] * j
    return np.hypot(x + rx + sx - lx, y + ry + sy - ly)


def _select_stiffness(x, y, i, j, shape, scale, settings):
    """Radial order and knot spacing chosen by their error on held-out spots.

    A share ``settings.holdout`` of the spots (at random, seeded) is left
    out; each candidate of ``settings.stiffness_candidates`` (from stiff to
    flexible) is fitted on the rest and scored by the rms distance of the
    held-out spots from their lattice points (the worst 1 % left out, so a
    few misdetected spots do not decide).  A candidate is skipped when the
    time spent plus its expected cost (that of the last one tried, scaled by
    the inverse knot spacing to the power 4.5) would pass ``settings.time_budget``
    seconds; the first is always tried.  The stiffest candidate whose score
    is within 2 % of the best is kept.
    """
    import time
    from dataclasses import replace

    t0 = time.perf_counter()
    rng = np.random.default_rng(settings.seed + 1)
    held = rng.random(x.size) < settings.holdout
    tried = []
    if held.sum() < 8 or (~held).sum() < 16:
        return settings, {"candidates": tried, "chosen": None,
                          "reason": "too few spots to hold some out"}
    skipped = []
    for order, spacing in settings.stiffness_candidates:
        if tried:
            # the cost grows about as the inverse knot spacing ** 4.5 (measured on the
            # real dot grids: 2 -> 1.5 pitches took 3.9 times longer)
            last = tried[-1]
            guess = last["seconds"] * (last["knot_spacing"] / spacing) ** 4.5
            if time.perf_counter() - t0 + guess > settings.time_budget:
                skipped.append([int(order), float(spacing)])
                continue
        t1 = time.perf_counter()
        cand = replace(settings, radial_order=int(order), knot_spacing=float(spacing))
        core = _fit_core(x[~held], y[~held], i[~held], j[~held], shape, scale, cand)
        if core is None:
            continue
        e = np.sort(_holdout_error(core, x[held], y[held], i[held], j[held], scale))
        e = e[:max(1, int(np.floor(0.99 * e.size)))]
        tried.append({"radial_order": int(order), "knot_spacing": float(spacing),
                      "holdout_rms": float(np.sqrt(np.mean(e ** 2))),
                      "seconds": round(time.perf_counter() - t1, 3)})
    if not tried:
        return settings, {"candidates": tried, "chosen": None,
                          "reason": "no candidate could be fitted"}
    best = min(t["holdout_rms"] for t in tried)
    pick = next(t for t in tried if t["holdout_rms"] <= 1.02 * best)
    log.info("stiffness by held-out spots: %s; chosen radial order %d, knot spacing %g",
             ", ".join(f"({t['radial_order']}, {t['knot_spacing']:g}): "
                       f"{t['holdout_rms']:.4f} px" for t in tried),
             pick["radial_order"], pick["knot_spacing"])
    chosen = replace(settings, radial_order=pick["radial_order"],
                     knot_spacing=pick["knot_spacing"])
    return chosen, {"candidates": tried, "chosen": [pick["radial_order"],
                                                     pick["knot_spacing"]],
                    "skipped": skipped, "nheld": int(held.sum()),
                    "seconds": round(time.perf_counter() - t0, 3)}


def _fit_global(x, y, i, j, shape, scale, order):
    """Affine lattice + radial polynomial: p + R(p) = L(i, j), centre by optimisation."""

    def solve(c):
        u = (x - c[0]) / scale
        v = (y - c[1]) / scale
        r = np.sqrt(u * u + v * v)
        n = x.size
        cols = []
        for m in range(1, order + 1):
            cols.append(r ** m)
        # unknowns: k (order), Lx (3), Ly (3); equations: x + u f scale = Lx.(1,i,j)
        Ax = np.zeros((2 * n, order + 6))
        for m, rm in enumerate(cols):
            Ax[:n, m] = -u * rm * scale
            Ax[n:, m] = -v * rm * scale
        Ax[:n, order:order + 3] = np.column_stack([np.ones(n), i, j])
        Ax[n:, order + 3:] = np.column_stack([np.ones(n), i, j])
        b = np.r_[x, y]
        try:
            sol = np.linalg.solve(Ax.T @ Ax, Ax.T @ b)
        except np.linalg.LinAlgError:
            return np.full(Ax.shape[1], np.nan), np.inf
        return sol, float(np.sum((Ax @ sol - b) ** 2))

    ny, nx = shape
    c0 = np.array([0.5 * (nx - 1), 0.5 * (ny - 1)])
    try:
        res = optimize.minimize(lambda c: solve(c)[1], c0, method="Nelder-Mead",
                                options={"xatol": 0.05, "fatol": 1e-9, "maxiter": 400})
    except np.linalg.LinAlgError:
        return None
    centre = res.x
    sol, _ = solve(centre)
    if not np.all(np.isfinite(sol)):
        return None
    k = sol[:order]
    L = np.vstack([sol[order:order + 3], sol[order + 3:]])
    if abs(np.linalg.det(L[:, 1:])) < 1e-6:
        return None
    return centre, k, L


def _design(x, y, tx, ty):
    """Sparse tensor-product design matrix (rows: points, columns: b * na + a)."""
    from scipy import sparse

    bx = _dmat(x, tx).tocsr()
    by = _dmat(y, ty).tocsr()
    na, nb = bx.shape[1], by.shape[1]
    # row-wise Kronecker product: 4 x 4 non-zeros per row
    bx.sort_indices()
    by.sort_indices()
    n = x.size
    vx = bx.data.reshape(n, -1)
    cx = bx.indices.reshape(n, -1)
    vy = by.data.reshape(n, -1)
    cy = by.indices.reshape(n, -1)
    vals = (vy[:, :, None] * vx[:, None, :]).reshape(n, -1)
    cols = (cy[:, :, None] * na + cx[:, None, :]).reshape(n, -1)
    rows = np.repeat(np.arange(n), vals.shape[1])
    B = sparse.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(n, na * nb))
    return B, na, nb


def _fit_spline(x, y, rx, ry, tx, ty, settings, lam=None):
    from scipy import sparse
    from scipy.sparse.linalg import splu

    B, na, nb = _design(x, y, tx, ty)
    P = (sparse.kron(sparse.identity(nb), sparse.csr_matrix(_d2(na)))
         + sparse.kron(sparse.csr_matrix(_d2(nb)), sparse.identity(na))).tocsc()
    BtB = (B.T @ B).tocsc()
    scale = BtB.diagonal().sum() / max(P.diagonal().sum(), 1e-12)
    R = np.column_stack([rx, ry])
    rng = np.random.default_rng(settings.seed)
    fold = rng.integers(0, settings.folds, x.size)
    ridge = 1e-9 * scale * sparse.identity(B.shape[1], format="csc")
    parts = []
    lambdas = settings.lambdas if lam is None else ()
    for f in range(settings.folds if lam is None else 0):
        tr = fold != f
        Bt = B[tr]
        parts.append(((Bt.T @ Bt).tocsc(), Bt.T @ R[tr], B[~tr], R[~tr]))
    best = (np.inf, settings.lambdas[0] if lam is None else lam)
    for lam in lambdas:
        err = 0.0
        for BtBf, rhs, Bv, Rv in parts:
            C = splu(BtBf + lam * scale * P + ridge, permc_spec=_ORDER).solve(rhs)
            err += float(np.sum((Bv @ C - Rv) ** 2))
        if err < best[0]:
            best = (err, lam)
    lam = best[1]
    C = splu(BtB + lam * scale * P + ridge, permc_spec=_ORDER).solve(B.T @ R)
    return C[:, 0], C[:, 1], lam


def _eval_spline(x, y, tx, ty, cx, cy):
    x = np.asarray(x, float).ravel()
    y = np.asarray(y, float).ravel()
    bx = _dmat(x, tx)
    by = _dmat(y, ty)
    na = bx.shape[1]
    nb = by.shape[1]
    Cx = cx.reshape(nb, na)
    Cy = cy.reshape(nb, na)
    # sum_ab By[n,b] C[b,a] Bx[n,a]
    sx = np.asarray((by @ Cx) * bx.toarray()).sum(axis=1) if x.size < 200_000 else None
    if sx is None:
        sx = np.empty(x.size)
        sy = np.empty(x.size)
        for s in range(0, x.size, 100_000):
            e = slice(s, s + 100_000)
            bxs = bx[e].toarray()
            sx[e] = ((by[e] @ Cx) * bxs).sum(axis=1)
            sy[e] = ((by[e] @ Cy) * bxs).sum(axis=1)
        return sx, sy
    sy = np.asarray((by @ Cy) * bx.toarray()).sum(axis=1)
    return sx, sy
