"""Alignment of frames and warping with uncertainty and mask carried.

Three ways to find where a frame lies relative to a reference:

- ``"translation"``: masked phase cross-correlation (scikit-image), refined to
  sub-pixel precision by a Gauss-Newton (Lucas-Kanade) fit of the shift on the
  pixels that both masks leave valid.  A fixed mask (a beam stop, a detector
  gap) is ignored instead of being locked onto.
- ``"stars"``: stars detected with photutils in both frames, matched by
  astroalign's triangle invariants, then a deterministic least-squares fit of a
  similarity or affine transform over every star pair that the match predicts
  (so the result does not depend on astroalign's unseeded RANSAC draw).
- ``"control-points"``: a homography (scikit-image ``ProjectiveTransform``) from
  pairs of points the user gives.

Convention: an :class:`Alignment` maps *reference* pixel coordinates (x, y) to
the coordinates of the same point in the *frame*.  For a frame displaced by
(+dx, +dy) from the reference, ``alignment.matrix`` is a translation by
(dx, dy).  :func:`warp` uses this map to resample a frame onto the reference
grid.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from .errors import CalframeError, IncompatibleFramesError
from .provenance import get_provenance, set_provenance

__all__ = ["Alignment", "AlignmentError", "align", "stack", "warp"]

log = logging.getLogger(__name__)

_METHODS = ("translation", "stars", "control-points")


class AlignmentError(CalframeError, ValueError):
    """A frame could not be aligned to the reference."""


@dataclass
class Alignment:
    """Where a frame lies relative to the reference.

    Attributes
    ----------
    matrix : ndarray, shape (3, 3)
        Homogeneous transform from reference pixel coordinates (x, y) to frame
        pixel coordinates.
    method : str
        How it was found.
    nmatch : int
        Number of star or control-point pairs used (0 for translation).
    rms : float
        RMS residual of the pairs in pixels (NaN for translation).
    """

    matrix: np.ndarray
    method: str
    nmatch: int = 0
    rms: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shift(self) -> tuple[float, float]:
        """Translation part (dx, dy) of the transform, in pixels."""
        return float(self.matrix[0, 2]) + 0.0, float(self.matrix[1, 2]) + 0.0

    @property
    def rotation(self) -> float:
        """Rotation angle in degrees (counter-clockwise in x, y)."""
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    @property
    def scale(self) -> float:
        """Mean linear scale of the transform."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))

    def __call__(self, x, y):
        """Map reference coordinates to frame coordinates."""
        return _apply_matrix(self.matrix, np.asarray(x, float), np.asarray(y, float))

    def inverse(self) -> Alignment:
        """The transform from frame to reference coordinates."""
        return Alignment(np.linalg.inv(self.matrix), self.method, self.nmatch, self.rms,
                         dict(self.info))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for provenance)."""
        return {"method": self.method, "matrix": np.round(self.matrix, 10).tolist(),
                "nmatch": int(self.nmatch),
                "rms": None if not np.isfinite(self.rms) else round(float(self.rms), 6)}


def _apply_matrix(matrix, x, y):
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    xo = (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / w
    yo = (matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]) / w
    return xo, yo


def _as_frame(frame) -> CCDData:
    """A CCDData from a path, CCDData or array (arrays get unit 'adu')."""
    if isinstance(frame, CCDData):
        return frame
    if isinstance(frame, np.ndarray):
        return CCDData(np.asarray(frame, dtype=np.float32), unit="adu")
    from .io import read_frame

    return read_frame(frame)


def _valid(ccd: CCDData, extra_mask=None) -> np.ndarray:
    valid = np.isfinite(ccd.data)
    if ccd.mask is not None:
        valid &= ~np.asarray(ccd.mask, bool)
    if extra_mask is not None:
        extra = np.asarray(extra_mask, bool)
        if extra.shape != ccd.shape:
            raise IncompatibleFramesError(
                f"mask has shape {extra.shape} but the frames are {ccd.shape}; "
                "pass a mask of the frames' shape (True = ignore)")
        valid &= ~extra
    return valid


def _refuse_cfa(ccd: CCDData, what: str) -> None:
    if ccd.ndim == 2 and ccd.meta.get("BAYERPAT"):
        raise IncompatibleFramesError(
            f"{what}: the frame is a colour-filter-array mosaic "
            f"(BAYERPAT={ccd.meta['BAYERPAT']}); interpolating it would mix colours. "
            "Demosaic it first with calframe.demosaic")


# ---------------------------------------------------------------- translation
def _translation(ref: np.ndarray, ref_valid: np.ndarray, img: np.ndarray,
                 img_valid: np.ndarray, *, masked: bool, refine: bool) -> np.ndarray:
    from skimage.registration import phase_cross_correlation

    ref0 = np.where(ref_valid, ref, 0.0)
    img0 = np.where(img_valid, img, 0.0)
    if masked:
        shift = phase_cross_correlation(ref0, img0, reference_mask=ref_valid,
                                        moving_mask=img_valid)[0]
    else:
        shift = phase_cross_correlation(ref0, img0, upsample_factor=20)[0]
    dy, dx = -float(shift[0]), -float(shift[1])
    if refine:
        dx, dy = _refine_shift(ref, ref_valid, img, img_valid, dx, dy)
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _refine_shift(ref, ref_valid, img, img_valid, dx, dy, *, iterations=10):
    """Gauss-Newton fit of (dx, dy, gain, offset) with img(p + d) = gain*ref(p) + offset."""
    from scipy import ndimage

    ny, nx = ref.shape
    gy, gx = np.gradient(ref.astype(np.float64))
    core = ndimage.binary_erosion(ref_valid, iterations=2)
    yy, xx = np.mgrid[0:ny, 0:nx]
    imgf = np.where(img_valid, img, 0.0).astype(np.float64)
    invalid_img = (~img_valid).astype(np.float64)
    for _ in range(iterations):
        xs, ys = xx + dx, yy + dy
        warped = ndimage.map_coordinates(imgf, [ys, xs], order=1, mode="constant", cval=0.0)
        bad = ndimage.map_coordinates(invalid_img, [ys, xs], order=1, mode="constant",
                                      cval=1.0)
        use = core & (bad == 0.0)
        if use.sum() < 16:
            break
        r = ref[use].astype(np.float64)
        w = warped[use]
        # Solve w - (a*r + b) ~ a*(gx*ddx + gy*ddy) linearised at the current shift:
        # img(p + d + dd) ~ img(p + d) + grad_img . dd, and grad_img ~ a*grad_ref.
        a_design = np.column_stack([gx[use], gy[use], r, np.ones_like(r)])
        coeffs, *_ = np.linalg.lstsq(a_design, w, rcond=None)
        gain = coeffs[2] if coeffs[2] != 0 else 1.0
        ddx, ddy = -coeffs[0] / gain, -coeffs[1] / gain
        dx, dy = dx + ddx, dy + ddy
        if abs(ddx) < 1e-5 and abs(ddy) < 1e-5:
            break
    return dx, dy


# ---------------------------------------------------------------------- stars
def _detect_stars(data: np.ndarray, valid: np.ndarray, *, fwhm: float, nstars: int,
                  threshold: float) -> np.ndarray:
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder

    _, median, std = sigma_clipped_stats(data[valid], sigma=3.0)
    finder = DAOStarFinder(threshold=threshold * std, fwhm=fwhm, n_brightest=nstars,
                           exclude_border=True)
    from photutils.utils.exceptions import NoDetectionsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # reported as AlignmentError
        table = finder(np.where(valid, data - median, 0.0), mask=~valid)
    if table is None or len(table) == 0:
        return np.empty((0, 2))
    table.sort("flux", reverse=True)
    return np.column_stack([np.asarray(table["x_centroid"], float),
                            np.asarray(table["y_centroid"], float)])


def _fit_points(src: np.ndarray, dst: np.ndarray, model: str) -> np.ndarray:
    """Least-squares transform matrix mapping src -> dst."""
    from skimage import transform as sktf

    cls = {"similarity": sktf.SimilarityTransform, "affine": sktf.AffineTransform,
           "projective": sktf.ProjectiveTransform, "euclidean": sktf.EuclideanTransform}
    if model not in cls:
        raise ValueError(f"model={model!r} is not one of {sorted(cls)}")
    tform = cls[model].from_estimate(src, dst)
    if not tform:
        raise AlignmentError(f"the {model} fit of {len(src)} point pairs failed: {tform}")
    return np.asarray(tform.params, dtype=float)


def _stars(ref_xy: np.ndarray, img_xy: np.ndarray, *, model: str, tolerance: float):
    import astroalign

    if len(ref_xy) < 3 or len(img_xy) < 3:
        raise AlignmentError(
            f"only {len(ref_xy)} stars in the reference and {len(img_xy)} in the frame "
            "were detected (3 are needed); lower `threshold` or check `fwhm`")
    try:
        with warnings.catch_warnings():
            # astroalign calls scikit-image's deprecated ``estimate``.
            warnings.simplefilter("ignore", FutureWarning)
            tform, _ = astroalign.find_transform(ref_xy, img_xy,
                                                 max_control_points=min(len(ref_xy), 50))
    except (ValueError, astroalign.MaxIterError) as err:
        raise AlignmentError(f"no star pattern of the reference was found in the frame "
                             f"({err})") from err
    matrix = np.asarray(tform.params, float)
    from scipy.spatial import cKDTree

    tree = cKDTree(img_xy)
    for _ in range(4):
        px, py = _apply_matrix(matrix, ref_xy[:, 0], ref_xy[:, 1])
        dist, idx = tree.query(np.column_stack([px, py]))
        pairs = dist < tolerance
        if pairs.sum() < 3:
            raise AlignmentError("fewer than 3 stars match after the pattern match")
        matrix = _fit_points(ref_xy[pairs], img_xy[idx[pairs]], model)
        res = _residuals(matrix, ref_xy[pairs], img_xy[idx[pairs]])
        keep = res < max(3.0 * 1.4826 * np.median(res), 0.05)
        if keep.sum() >= 3 and not keep.all():
            sel = np.flatnonzero(pairs)[keep]
            matrix = _fit_points(ref_xy[sel], img_xy[idx[sel]], model)
            res = _residuals(matrix, ref_xy[sel], img_xy[idx[sel]])
    return matrix, len(res), float(np.sqrt(np.mean(res**2)))


def _residuals(matrix, src, dst):
    px, py = _apply_matrix(matrix, src[:, 0], src[:, 1])
    return np.hypot(px - dst[:, 0], py - dst[:, 1])


# ---------------------------------------------------------------------- align
def align(frames, *, reference=None, method: str = "translation", mask=None,
          model: str = "similarity", fwhm: float = 3.0, nstars: int = 60,
          threshold: float = 5.0, tolerance: float = 2.0,
          control_points: Sequence | None = None, refine: bool = True) -> list[Alignment]:
    """Find the transform from a reference frame to each frame.

    Parameters
    ----------
    frames : iterable of path, CCDData or ndarray
        The frames to align.
    reference : path, CCDData, ndarray or int, optional
        The reference frame, or the index of one of ``frames`` (default: the
        first frame).
    method : {"translation", "stars", "control-points"}
        How to align (see the module description).
    mask : ndarray of bool, optional
        Pixels to ignore in every frame (True = ignore), e.g. a beam stop.  Each
        frame's own mask and non-finite values are always ignored.  Only used by
        ``"translation"`` and star detection.
    model : {"similarity", "affine", "euclidean", "projective"}
        Transform fitted to star pairs (``"stars"``).
    fwhm, nstars, threshold : float, int, float
        Star detection: expected FWHM in pixels, number of brightest stars used,
        and detection threshold in units of the background standard deviation.
    tolerance : float
        Largest distance in pixels between a predicted and a detected star for
        them to be paired.
    control_points : sequence of (ref_xy, frame_xy) pairs
        For ``"control-points"``: for each frame, an (N, 2) array of (x, y)
        positions in the reference and the (N, 2) array of the same points in
        the frame (N >= 4).  A homography is fitted by least squares.
    refine : bool
        Refine the translation to sub-pixel precision (``"translation"``).

    Returns
    -------
    list of Alignment
        One per frame, mapping reference coordinates to frame coordinates.

    Raises
    ------
    AlignmentError
        When a frame cannot be aligned (too few stars, no match...).
    ValueError
        For an unknown method or model, or missing control points.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(1)
    >>> ref = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3)
    >>> moved = ndimage.shift(ref, (1.5, -2.25), order=3, mode="wrap")
    >>> (result,) = align([moved], reference=ref)
    >>> [round(v, 2) for v in result.shift]
    [-2.25, 1.5]
    """
    if method not in _METHODS:
        raise ValueError(f"method={method!r} is not one of {_METHODS}")
    frames = list(frames)
    if method == "control-points":
        if control_points is None or len(control_points) != len(frames):
            raise ValueError("method='control-points' needs control_points: one "
                             "(ref_xy, frame_xy) pair of (N, 2) arrays per frame")
        out = []
        for ref_xy, img_xy in control_points:
            ref_xy = np.asarray(ref_xy, float)
            img_xy = np.asarray(img_xy, float)
            if ref_xy.shape != img_xy.shape or ref_xy.ndim != 2 or ref_xy.shape[0] < 4:
                raise ValueError("control points must be two (N, 2) arrays with N >= 4, "
                                 f"got shapes {ref_xy.shape} and {img_xy.shape}")
            matrix = _fit_points(ref_xy, img_xy, "projective")
            res = _residuals(matrix, ref_xy, img_xy)
            out.append(Alignment(matrix, method, len(ref_xy), float(np.sqrt(np.mean(res**2)))))
        return out

    if reference is None:
        reference = 0
    ref_ccd = _as_frame(frames[reference] if isinstance(reference, int) else reference)
    ref_valid = _valid(ref_ccd, mask)
    ref_data = np.asarray(ref_ccd.data, np.float64)
    ref_xy = None
    results = []
    for frame in frames:
        ccd = _as_frame(frame)
        if ccd.shape != ref_ccd.shape and method == "translation":
            raise IncompatibleFramesError(
                f"frame shape {ccd.shape} differs from the reference {ref_ccd.shape}; "
                "translation alignment needs frames of one shape")
        valid = _valid(ccd, mask if ccd.shape == ref_ccd.shape else None)
        data = np.asarray(ccd.data, np.float64)
        if method == "translation":
            masked = mask is not None or not ref_valid.all() or not valid.all()
            matrix = _translation(ref_data, ref_valid, data, valid, masked=masked,
                                  refine=refine)
            results.append(Alignment(matrix, method))
        else:
            if ref_xy is None:
                ref_xy = _detect_stars(ref_data, ref_valid, fwhm=fwhm, nstars=nstars,
                                       threshold=threshold)
            img_xy = _detect_stars(data, valid, fwhm=fwhm, nstars=nstars,
                                   threshold=threshold)
            matrix, nmatch, rms = _stars(ref_xy, img_xy, model=model, tolerance=tolerance)
            results.append(Alignment(matrix, method, nmatch, rms))
        log.info("aligned frame %d: shift (%.3f, %.3f)", len(results), *results[-1].shift)
    return results


_align_frames = align  # ``stack`` takes an argument named ``align``


# ----------------------------------------------------------------------- warp
def _kernel(order: int):
    if order == 0:
        return 1, lambda t: np.ones_like(t)
    if order == 1:
        return 2, lambda t: 1.0 - np.abs(t)

    def keys(t, a=-0.5):
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))

    return 4, keys


def warp(ccd, transform, *, output_shape: tuple[int, int] | None = None, order: int = 1,
         block_rows: int = 256) -> CCDData:
    """Resample a frame onto the reference grid.

    Every output pixel is a linear combination ``sum(w_i * d_i)`` of input
    pixels (nearest, bilinear or Keys bicubic weights), so its uncertainty is
    exactly ``sqrt(sum(w_i**2 * sigma_i**2))``.  An output pixel is masked when
    any input pixel with a non-zero weight is masked, non-finite, or outside the
    frame.

    Parameters
    ----------
    ccd : CCDData, path or ndarray
        The frame (2-D, not a CFA mosaic; demosaic first).
    transform : Alignment, skimage transform or (3, 3) array
        Map from output (reference) pixel coordinates to frame coordinates.
    output_shape : tuple, optional
        Shape of the output (default: the frame's shape).
    order : {0, 1, 3}
        Interpolation: nearest, bilinear, or bicubic (Keys, a = -0.5).
    block_rows : int
        Rows computed at a time (bounds the memory used).

    Returns
    -------
    CCDData
        The warped frame, with uncertainty (when the input has one), mask and
        a ``warp`` provenance step.

    Raises
    ------
    IncompatibleFramesError
        For a CFA mosaic (BAYERPAT set) or a frame that is not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> frame = CCDData(np.arange(16, dtype=np.float32).reshape(4, 4), unit="adu")
    >>> shifted = warp(frame, np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1.0]]))
    >>> shifted.data[0].tolist(), shifted.mask[0].tolist()
    ([1.0, 2.0, 3.0, 0.0], [False, False, False, True])
    """
    ccd = _as_frame(ccd)
    if ccd.ndim != 2:
        raise IncompatibleFramesError(
            f"warp needs a 2-D frame, got shape {ccd.shape}; warp each channel of a "
            "colour cube separately")
    _refuse_cfa(ccd, "warp")
    if order not in (0, 1, 3):
        raise ValueError(f"order={order} is not supported; use 0, 1 or 3")
    if isinstance(transform, Alignment):
        matrix = transform.matrix
    elif hasattr(transform, "params"):
        matrix = np.asarray(transform.params, float)
    else:
        matrix = np.asarray(transform, float)
    if matrix.shape != (3, 3):
        raise ValueError(f"transform must be a 3x3 matrix, got shape {matrix.shape}")
    ny, nx = output_shape or ccd.shape
    data = np.asarray(ccd.data, np.float64)
    bad_in = ~_valid(ccd)
    var_in = None
    if ccd.uncertainty is not None:
        var_in = np.asarray(ccd.uncertainty.represent_as(StdDevUncertainty).array,
                            np.float64) ** 2
    width, kern = _kernel(order)
    in_ny, in_nx = data.shape
    out = np.zeros((ny, nx), np.float32)
    out_var = np.zeros((ny, nx), np.float32) if var_in is not None else None
    out_mask = np.zeros((ny, nx), bool)
    xg = np.arange(nx, dtype=np.float64)
    for y0 in range(0, ny, block_rows):
        y1 = min(ny, y0 + block_rows)
        yy, xx = np.meshgrid(np.arange(y0, y1, dtype=np.float64), xg, indexing="ij")
        xs, ys = _apply_matrix(matrix, xx, yy)
        if order == 0:
            bx, by = np.floor(xs + 0.5), np.floor(ys + 0.5)
        else:
            bx, by = np.floor(xs) - (width // 2 - 1), np.floor(ys) - (width // 2 - 1)
        acc = np.zeros(xs.shape)
        acc_var = np.zeros(xs.shape) if var_in is not None else None
        bad = np.zeros(xs.shape, bool)
        for j in range(width):
            iy = by + j
            wy = kern(ys - iy)
            for i in range(width):
                ix = bx + i
                w = wy * kern(xs - ix)
                nonzero = w != 0
                inside = (ix >= 0) & (ix < in_nx) & (iy >= 0) & (iy < in_ny)
                bad |= nonzero & ~inside
                cx = np.clip(ix, 0, in_nx - 1).astype(np.intp)
                cy = np.clip(iy, 0, in_ny - 1).astype(np.intp)
                bad |= nonzero & bad_in[cy, cx]
                vals = np.where(nonzero & inside, data[cy, cx], 0.0)
                acc += w * np.where(np.isfinite(vals), vals, 0.0)
                if acc_var is not None:
                    acc_var += w * w * np.where(nonzero & inside, var_in[cy, cx], 0.0)
        out[y0:y1] = acc
        out_mask[y0:y1] = bad
        if out_var is not None:
            out_var[y0:y1] = acc_var
    out[out_mask] = 0.0
    result = CCDData(out, unit=ccd.unit, mask=out_mask, meta=ccd.meta.copy(),
                     uncertainty=None if out_var is None
                     else StdDevUncertainty(np.sqrt(out_var).astype(np.float32)))
    prov = get_provenance(ccd).copy()
    prov.add_step("warp", matrix=np.round(matrix, 10).tolist(), order=order,
                  output_shape=[int(ny), int(nx)])
    set_provenance(result, prov)
    return result


# ---------------------------------------------------------------------- stack
def stack(frames: Iterable, *, reference=None, align: str | None = "translation",
          transforms: Sequence | None = None, mask=None, order: int = 1,
          method: str = "mean", rejection=None, scale=None, weights=None,
          memory_limit: str | int = "1GiB", scheduler=None,
          **align_options) -> CCDData:
    """Align frames to a reference, resample them onto it, and combine them.

    The frames are aligned with :func:`align` (or by the given ``transforms``),
    warped one at a time with :func:`warp`, and streamed into
    :func:`calframe.combine` (same rejection, scaling, weights, uncertainty and
    memory bounds, local or on a Dask cluster).

    Parameters
    ----------
    frames : iterable of path or CCDData
        Calibrated frames (demosaiced if they came from a CFA camera).
    reference : path, CCDData or int, optional
        Reference frame or index into ``frames`` (default: the first frame).
    align : {"translation", "stars", "control-points"} or None
        Alignment method; None stacks the frames as they are.
    transforms : sequence of Alignment or (3, 3) arrays, optional
        Known transforms (reference -> frame), instead of aligning.
    mask : ndarray of bool, optional
        Pixels to ignore when aligning (e.g. a beam stop).
    order : {0, 1, 3}
        Interpolation order of the warp.
    method, rejection, scale, weights, memory_limit, scheduler
        Passed to :func:`calframe.combine`.
    **align_options
        Passed to :func:`align` (``fwhm``, ``model``, ``control_points``...).

    Returns
    -------
    CCDData
        The stacked frame with uncertainty, mask, per-pixel counts and
        provenance (every input, every alignment, the combine).
    """
    from .combine import combine

    frames = list(frames)
    if not frames:
        raise ValueError("stack needs at least one frame")
    if transforms is None and align is not None:
        transforms = _align_frames(frames, reference=reference, method=align, mask=mask,
                                   **align_options)
    if transforms is not None and len(transforms) != len(frames):
        raise ValueError(f"{len(transforms)} transforms for {len(frames)} frames")
    ref_index = reference if isinstance(reference, int) else 0
    if reference is None or isinstance(reference, int):
        out_shape = _as_frame(frames[ref_index]).shape
    else:
        out_shape = _as_frame(reference).shape

    def warped():
        for i, frame in enumerate(frames):
            ccd = _as_frame(frame)
            if transforms is None:
                yield ccd
            else:
                yield warp(ccd, transforms[i], output_shape=out_shape, order=order)

    result = combine(warped(), method=method, rejection=rejection, scale=scale,
                     weights=weights, memory_limit=memory_limit, scheduler=scheduler)
    prov = get_provenance(result)
    prov.add_step("stack", align=align, order=order, nframes=len(frames),
                  transforms=None if transforms is None else
                  [t.to_dict() if isinstance(t, Alignment)
                   else np.asarray(getattr(t, "params", t), float).round(10).tolist()
                   for t in transforms])
    return result
