"""Comparison of a fitted distortion model with a known field."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["field_error"]


def field_error(model, field, *, step: int = 4) -> tuple[float, float]:
    """RMS and worst difference (px) between a fitted model and the true field.

    The comparison is made on a grid of pixels inside the grid's hull shrunk by
    one pitch (where the model is constrained by spots on every side).  The
    ideal frame of a grid target is only defined up to an affine map (the
    target's position, rotation and pitch in pixels are fitted, not known), so
    the best affine map between the two corrected positions is removed first.

    Parameters
    ----------
    model : DistortionModel
        The fitted model; ``model(x, y)`` gives the displacement to the ideal
        position.
    field : callable
        The true displacement ``field(x, y) -> (dx, dy)`` with the same sign
        convention (e.g. :class:`calframe.datasets.GridDistortion`).
    step : int
        Spacing in pixels of the comparison grid.

    Returns
    -------
    rms, worst : float
        Of the length of the difference vectors, in pixels.

    Examples
    --------
    >>> from calframe.datasets import GridDistortion, make_grid_image
    >>> from calframe.distortion import DistortionModel
    >>> field = GridDistortion((256, 256), radial=2.0, smooth=1.0, seed=1)
    >>> image, _ = make_grid_image((256, 256), pitch=22, distortion=field, seed=2)
    >>> rms, worst = field_error(DistortionModel.fit(image), field)
    >>> rms < 0.03
    True
    """
    pitch = round(float(model.meta["pitch_px"]))
    inner = ndimage.binary_erosion(model.valid_mask, iterations=max(1, pitch))
    yy, xx = np.nonzero(inner[::step, ::step])
    if xx.size < 3:
        return float("nan"), float("nan")
    xx = xx * float(step)
    yy = yy * float(step)
    dx, dy = model(xx, yy)
    tx, ty = field(xx, yy)
    design = np.column_stack([np.ones(xx.size), xx + dx, yy + dy])
    target = np.column_stack([xx + tx, yy + ty])
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    err = np.hypot(*(design @ coef - target).T)
    return float(np.sqrt(np.mean(err**2))), float(err.max())
