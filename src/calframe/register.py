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
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ._calutil import as_frame
from ._collection import collection_paths
from ._register_kernels import warp_kernel
from ._stats import MAD_TO_SIGMA
from .errors import CalframeError, IncompatibleFramesError, InvalidSettingsError
from .provenance import get_provenance, set_provenance

# scikit-image, scipy, photutils, astroalign and calframe.combining are imported by
# the functions that use them (each alignment method needs only some of them):
# `import calframe.register` takes about 1.6 s instead of 2.6 s (a busy machine).

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
    info : dict
        Further facts about the alignment (empty unless a caller adds some;
        copied by :meth:`inverse`).
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
    if isinstance(frame, np.ndarray):
        return CCDData(np.asarray(frame, dtype=np.float32), unit="adu")
    return as_frame(frame, role="light")


def _valid(ccd: CCDData, extra_mask=None) -> np.ndarray:
    valid = np.isfinite(ccd.data)
    if ccd.mask is not None:
        valid &= ~np.asarray(ccd.mask, bool)
    if ccd.ndim == 3:  # a colour cube: a pixel is usable where every channel is
        valid = valid.all(axis=0)
    if extra_mask is not None:
        extra = np.asarray(extra_mask, bool)
        if extra.shape != valid.shape:
            raise IncompatibleFramesError(
                f"mask has shape {extra.shape} but the frames' images are {valid.shape}; "
                "pass a mask of the image shape (True = ignore)")
        valid &= ~extra
    return valid


def _plane(ccd: CCDData, extra_mask=None) -> tuple[np.ndarray, np.ndarray]:
    """The image that alignment works on (the channel sum of a colour cube), and
    where it is valid."""
    _refuse_cfa(ccd, "align")
    if ccd.ndim not in (2, 3):
        raise IncompatibleFramesError(
            f"alignment needs 2-D frames or (channel, y, x) cubes, got shape {ccd.shape}")
    valid = _valid(ccd, extra_mask)
    data = np.asarray(ccd.data, np.float64)
    if ccd.ndim == 3:
        data = np.where(valid, data.sum(axis=0), 0.0)
    return data, valid


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
    """(x, y) of the ``nstars`` brightest stars, brightest first.

    Pixels above ``threshold`` background deviations are grouped into
    connected regions; the brightest regions' peaks are then recentred with
    photutils' centre-of-mass centroid in a disk of radius ~1.5 FWHM, on the
    background-subtracted image (twice, so the disk is centred on the star).
    Only the candidate regions are measured, so a 12 MP frame takes a fraction
    of a second.
    """
    from photutils.centroids import centroid_com, centroid_sources
    from scipy import ndimage

    step = max(1, int(np.sqrt(data.size / 250_000)))
    sample = data[::step, ::step][valid[::step, ::step]]
    if sample.size < 16:
        return np.empty((0, 2))
    background = float(np.median(sample))
    noise = MAD_TO_SIGMA * float(np.median(np.abs(sample - background)))
    if not noise > 0:
        return np.empty((0, 2))
    clean = np.where(valid, data - background, 0.0)
    labels, count = ndimage.label(clean > threshold * noise)
    if count == 0:
        return np.empty((0, 2))
    # Peak of each region from its (few) labelled pixels: sort by (label, value).
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat]
    val = clean.ravel()[flat]
    order = np.lexsort((val, lab))
    last = np.flatnonzero(np.diff(lab[order], append=count + 1))  # max of each label
    peak_pixel = flat[order[last]]
    peaks = val[order[last]]
    sizes = np.bincount(lab, minlength=count + 1)[1:]
    keep = sizes >= 3  # single hot pixels or noise spikes are not stars
    if not keep.any():
        return np.empty((0, 2))
    brightest = np.argsort(peaks[keep])[::-1][:nstars]
    pixel = peak_pixel[keep][brightest]
    positions = np.column_stack(np.unravel_index(pixel, data.shape)).astype(float)
    y, x = positions[:, 0], positions[:, 1]
    radius = max(2, round(1.5 * fwhm))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    footprint = xx**2 + yy**2 <= radius**2
    ny, nx = data.shape
    inside = (x >= radius) & (x < nx - radius) & (y >= radius) & (y < ny - radius)
    x, y = x[inside], y[inside]
    for _ in range(2):
        x, y = centroid_sources(clean, x, y, footprint=footprint, mask=~valid,
                                centroid_func=centroid_com)
        good = np.isfinite(x) & np.isfinite(y)
        x, y = x[good], y[good]
    return np.column_stack([x, y])


def _fit_points(src: np.ndarray, dst: np.ndarray, model: str) -> np.ndarray:
    """Least-squares transform matrix mapping src -> dst."""
    from skimage import transform as sktf

    cls = {"similarity": sktf.SimilarityTransform, "affine": sktf.AffineTransform,
           "projective": sktf.ProjectiveTransform, "euclidean": sktf.EuclideanTransform}
    if model not in cls:
        raise InvalidSettingsError(f"model={model!r} is not one of {sorted(cls)}")
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
        keep = res < max(3.0 * MAD_TO_SIGMA * np.median(res), 0.05)
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
    frames : iterable of path, CCDData or ndarray, or ImageFileCollection
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
        raise InvalidSettingsError(f"method={method!r} is not one of {_METHODS}")
    frames = list(collection_paths(frames, "align"))
    if method == "control-points":
        if control_points is None or len(control_points) != len(frames):
            raise InvalidSettingsError("method='control-points' needs control_points: one "
                             "(ref_xy, frame_xy) pair of (N, 2) arrays per frame")
        out = []
        for ref_xy, img_xy in control_points:
            ref_xy = np.asarray(ref_xy, float)
            img_xy = np.asarray(img_xy, float)
            if ref_xy.shape != img_xy.shape or ref_xy.ndim != 2 or ref_xy.shape[0] < 4:
                raise InvalidSettingsError("control points must be two (N, 2) arrays with N >= 4, "
                                 f"got shapes {ref_xy.shape} and {img_xy.shape}")
            matrix = _fit_points(ref_xy, img_xy, "projective")
            res = _residuals(matrix, ref_xy, img_xy)
            out.append(Alignment(matrix, method, len(ref_xy), float(np.sqrt(np.mean(res**2)))))
        return out

    if reference is None:
        reference = 0
    ref_ccd = _as_frame(frames[reference] if isinstance(reference, int) else reference)
    ref_data, ref_valid = _plane(ref_ccd, mask)
    ref_xy = None
    results = []
    for index, frame in enumerate(frames):
        ccd = ref_ccd if isinstance(reference, int) and index == reference else \
            _as_frame(frame)
        if ccd.shape != ref_ccd.shape and method == "translation":
            raise IncompatibleFramesError(
                f"frame shape {ccd.shape} differs from the reference {ref_ccd.shape}; "
                "translation alignment needs frames of one shape")
        data, valid = _plane(ccd, mask if ccd.shape == ref_ccd.shape else None)
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
def warp(ccd, transform, *, output_shape: tuple[int, int] | None = None, order: int = 1,
         ) -> CCDData:
    """Resample a frame onto the reference grid.

    Every output pixel is a linear combination ``sum(w_i * d_i)`` of input
    pixels (nearest, bilinear or Keys bicubic weights), so its uncertainty is
    exactly ``sqrt(sum(w_i**2 * sigma_i**2))``.  An output pixel is masked when
    any input pixel with a non-zero weight is masked, non-finite, or outside the
    frame.

    Parameters
    ----------
    ccd : CCDData, path or ndarray
        The frame: 2-D (not a CFA mosaic; demosaic first) or a (channel, y, x)
        colour cube, whose planes are warped alike.
    transform : Alignment, skimage transform or (3, 3) array
        Map from output (reference) pixel coordinates to frame coordinates.
    output_shape : tuple, optional
        Shape of the output (default: the frame's shape).
    order : {0, 1, 3}
        Interpolation: nearest, bilinear, or bicubic (Keys, a = -0.5).

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
    if ccd.ndim not in (2, 3):
        raise IncompatibleFramesError(
            f"warp needs a 2-D frame or a (channel, y, x) cube, got shape {ccd.shape}")
    _refuse_cfa(ccd, "warp")
    if order not in (0, 1, 3):
        raise InvalidSettingsError(f"order={order} is not supported; use 0, 1 or 3")
    if isinstance(transform, Alignment):
        matrix = transform.matrix
    elif hasattr(transform, "params"):
        matrix = np.asarray(transform.params, float)
    else:
        matrix = np.asarray(transform, float)
    if matrix.shape != (3, 3):
        raise InvalidSettingsError(f"transform must be a 3x3 matrix, got shape {matrix.shape}")
    ny, nx = output_shape or ccd.shape[-2:]
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    data = np.ascontiguousarray(ccd.data, dtype=np.float32)
    bad_in = ~np.isfinite(data)
    if ccd.mask is not None:
        bad_in |= np.asarray(ccd.mask, bool)
    var_in = None
    if ccd.uncertainty is not None:
        var_in = np.square(ccd.uncertainty.represent_as(StdDevUncertainty).array,
                           dtype=np.float32)
    planes = [(data, bad_in, var_in)] if ccd.ndim == 2 else \
        [(data[k], bad_in[k], None if var_in is None else var_in[k])
         for k in range(ccd.shape[0])]
    outs, variances, masks = [], [], []
    for plane, bad, var in planes:
        o, v, m = warp_kernel(plane, bad, var if var is not None
                              else np.zeros((1, 1), np.float32), var is not None,
                              matrix, int(ny), int(nx), int(order))
        outs.append(o)
        variances.append(v)
        masks.append(m)
    if ccd.ndim == 2:
        out, out_var, out_mask = outs[0], variances[0], masks[0]
    else:
        out, out_var, out_mask = np.stack(outs), np.stack(variances), np.stack(masks)
    if var_in is None:
        out_var = None
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
    frames : iterable of path or CCDData, or ImageFileCollection
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
    from .combining import combine

    frames = list(collection_paths(frames, "stack"))
    if not frames:
        raise InvalidSettingsError("stack needs at least one frame")
    if transforms is None and align is not None:
        transforms = _align_frames(frames, reference=reference, method=align, mask=mask,
                                   **align_options)
    if transforms is not None and len(transforms) != len(frames):
        raise InvalidSettingsError(f"{len(transforms)} transforms for {len(frames)} frames")
    ref_index = reference if isinstance(reference, int) else 0
    reference_frame = frames[ref_index] if reference is None or isinstance(reference, int) \
        else reference
    first = _as_frame(reference_frame)
    out_shape = first.shape[-2:]
    channels = [None] if first.ndim == 2 else list(range(first.shape[0]))

    def warped(channel):
        for i, frame in enumerate(frames):
            ccd = _as_frame(frame)
            if ccd.ndim != first.ndim:
                kinds = {2: "a 2-D image", 3: "a colour cube"}
                raise IncompatibleFramesError(
                    f"{_name(frame, i)}: {kinds.get(ccd.ndim, f'{ccd.ndim}-D')} of shape "
                    f"{ccd.shape}, while the reference {_name(reference_frame, ref_index)} "
                    f"is {kinds.get(first.ndim, f'{first.ndim}-D')} of shape "
                    f"{first.shape}; stack frames of one kind")
            if channel is not None:
                ccd = _channel(ccd, channel)
            if transforms is None:
                yield ccd
            else:
                yield warp(ccd, transforms[i], output_shape=out_shape, order=order)

    # The combine engine works on 2-D images: a colour cube is stacked plane by
    # plane (each frame is read once per plane, never held whole in memory).
    planes = [combine(warped(channel), method=method, rejection=rejection, scale=scale,
                      weights=weights, memory_limit=memory_limit, scheduler=scheduler)
              for channel in channels]
    result = planes[0] if len(planes) == 1 else _stack_planes(planes)
    prov = get_provenance(result)
    prov.add_step("stack", align=align, order=order, nframes=len(frames),
                  transforms=None if transforms is None else
                  [t.to_dict() if isinstance(t, Alignment)
                   else np.asarray(getattr(t, "params", t), float).round(10).tolist()
                   for t in transforms])
    return result


def _name(frame, index: int) -> str:
    """A frame's file as given, or ``frame <index>``."""
    return os.fsdecode(frame) if isinstance(frame, str | os.PathLike) else f"frame {index}"


def _channel(ccd: CCDData, k: int) -> CCDData:
    """Plane ``k`` of a colour cube, with its mask, uncertainty and provenance."""
    if ccd.ndim != 3:
        raise IncompatibleFramesError(
            f"frames mix colour cubes and 2-D images (got shape {ccd.shape}); "
            "stack frames of one kind")
    plane = CCDData(np.asarray(ccd.data[k]), unit=ccd.unit, meta=ccd.meta.copy(),
                    mask=None if ccd.mask is None else np.asarray(ccd.mask[k], bool),
                    uncertainty=None if ccd.uncertainty is None else StdDevUncertainty(
                        ccd.uncertainty.represent_as(StdDevUncertainty).array[k]))
    set_provenance(plane, get_provenance(ccd).copy())
    return plane


def _stack_planes(planes: list[CCDData]) -> CCDData:
    """One colour cube from per-plane combine results."""
    first = planes[0]
    cube = CCDData(np.stack([p.data for p in planes]), unit=first.unit,
                   meta=first.meta.copy(),
                   mask=np.stack([np.zeros(p.shape, bool) if p.mask is None else p.mask
                                  for p in planes]),
                   uncertainty=None if first.uncertainty is None else StdDevUncertainty(
                       np.stack([p.uncertainty.array for p in planes])))
    for name in ("ncombine", "rejected"):
        if all(getattr(p, name, None) is not None for p in planes):
            setattr(cube, name, np.stack([getattr(p, name) for p in planes]))
    prov = get_provenance(first).copy()
    for p in planes[1:]:
        prov.extend(get_provenance(p))
    set_provenance(cube, prov)
    return cube

