"""Uncertainty-propagating arithmetic on plain arrays (private kernels).

A :class:`Plane` is a frame reduced to three arrays: ``data``, ``var`` (the
variance, or ``None`` when unknown) and ``mask`` (True = bad).  The kernels
here implement first-order (linear) propagation for independent operands:

- ``a - k b``: ``var = var_a + k**2 var_b``
- ``a / f``: ``var = var_a / f**2 + (a / f)**2 var_f / f**2``

A pixel that is masked or not finite in a *calibration* operand (``b`` or
``f``) never spreads: that output pixel keeps the value of ``a``, is masked,
and every other pixel is computed normally.  (ccdproc's ``flat_correct``
normalises by ``flat.data.mean()``, so a single NaN makes its whole result
NaN; see ccdproc issue #800.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Plane", "divide", "multiply", "subtract"]


@dataclass
class Plane:
    """Data, variance (or None) and bad-pixel mask of one frame."""

    data: np.ndarray
    var: np.ndarray | None
    mask: np.ndarray

    @classmethod
    def from_ccd(cls, ccd, *, dtype=np.float32) -> Plane:
        """Arrays of a CCDData (copied; the input is never modified)."""
        data = np.array(ccd.data, dtype=dtype, copy=True)
        var = None
        if ccd.uncertainty is not None:
            std = np.asarray(ccd.uncertainty.array, dtype=dtype)
            var = np.broadcast_to(std, data.shape).astype(dtype) ** 2
            if not np.isfinite(var).any():
                var = None  # an uncertainty of NaN everywhere says nothing
        mask = np.zeros(data.shape, dtype=bool)
        if ccd.mask is not None:
            mask |= np.broadcast_to(np.asarray(ccd.mask, dtype=bool), data.shape)
        mask |= ~np.isfinite(data)
        return cls(data, var, mask)

    def valid(self) -> np.ndarray:
        """True where the pixel's value is usable (not masked and finite).

        A non-finite variance does not make a value unusable: it makes the
        result's variance non-finite (unknown) at that pixel.
        """
        return ~self.mask & np.isfinite(self.data)

    def std(self) -> np.ndarray | None:
        """Standard deviation (sqrt of the variance), or None."""
        return None if self.var is None else np.sqrt(self.var)


def subtract(a: Plane, b: Plane, scale: float = 1.0) -> Plane:
    """``a - scale * b`` with variance and mask propagation.

    Where ``b`` is bad the output keeps ``a``'s value and is masked.

    Examples
    --------
    >>> import numpy as np
    >>> a = Plane(np.array([10.0, 10.0]), np.array([4.0, 4.0]), np.zeros(2, bool))
    >>> b = Plane(np.array([1.0, np.nan]), np.array([1.0, 1.0]), np.zeros(2, bool))
    >>> r = subtract(a, b, 2.0)
    >>> r.data.tolist(), r.var.tolist(), r.mask.tolist()
    ([8.0, 10.0], [8.0, 4.0], [False, True])
    """
    good = b.valid()
    data = a.data - np.float32(scale) * np.where(good, b.data, 0).astype(a.data.dtype)
    var = None
    if a.var is not None:
        var = a.var.copy()
        if b.var is not None:
            var += np.float32(scale) ** 2 * np.where(good, b.var, 0).astype(var.dtype)
    mask = a.mask | ~good
    return Plane(data.astype(a.data.dtype, copy=False), var, mask)


def divide(a: Plane, f: Plane) -> Plane:
    """``a / f`` with variance and mask propagation.

    Where ``f`` is bad (masked, not finite, or not positive) the output keeps
    ``a``'s value and is masked: it is never divided by.

    Examples
    --------
    >>> import numpy as np
    >>> a = Plane(np.array([10.0, 10.0, 3.0]), np.array([4.0, 4.0, 1.0]),
    ...           np.zeros(3, bool))
    >>> f = Plane(np.array([2.0, 0.0, 1.0]), np.array([0.01, 0.0, 0.0]),
    ...           np.array([False, False, True]))
    >>> r = divide(a, f)
    >>> r.data.tolist(), r.mask.tolist()
    ([5.0, 10.0, 3.0], [False, True, True])
    >>> round(float(r.var[0]), 6)  # 4/4 + 25 * 0.01/4
    1.0625
    """
    good = f.valid() & (np.where(np.isfinite(f.data), f.data, 0) > 0)
    denom = np.where(good, f.data, 1).astype(a.data.dtype)
    data = a.data / denom
    var = None
    if a.var is not None:
        var = a.var / denom**2
        if f.var is not None:
            fvar = np.where(good, f.var, 0).astype(var.dtype)
            var += data**2 * fvar / denom**2
    return Plane(data.astype(a.data.dtype, copy=False), var, a.mask | ~good)


def multiply(a: Plane, factor: float, factor_var: float = 0.0) -> Plane:
    """``a * factor`` for a scalar factor with its own variance."""
    data = a.data * np.float32(factor)
    var = None
    if a.var is not None:
        var = a.var * np.float32(factor) ** 2
        if factor_var:
            var += a.data.astype(var.dtype) ** 2 * np.float32(factor_var)
    return Plane(data.astype(a.data.dtype, copy=False), var, a.mask.copy())
