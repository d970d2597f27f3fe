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
from astropy.nddata import StdDevUncertainty
from numba import njit, prange

__all__ = ["Plane", "divide", "multiply", "subtract"]


@dataclass
class Plane:
    """Data, variance (or None) and bad-pixel mask of one frame."""

    data: np.ndarray
    var: np.ndarray | None
    mask: np.ndarray

    @classmethod
    def from_ccd(cls, ccd, *, dtype=np.float32, copy: bool = True) -> Plane:
        """Arrays of a CCDData.

        With ``copy=False`` the data array may be the frame's own (when it
        already has ``dtype``): the caller must not write into it.  The mask
        is always a new array.
        """
        data = np.array(ccd.data, dtype=dtype, copy=True) if copy else \
            np.asarray(ccd.data, dtype=dtype)
        std = None
        if ccd.uncertainty is not None:
            unc = ccd.uncertainty
            if not isinstance(unc, StdDevUncertainty):
                unc = unc.represent_as(StdDevUncertainty)  # variance, inverse variance
            std = np.broadcast_to(np.asarray(unc.array, dtype=dtype), data.shape)
        inmask = None
        if ccd.mask is not None:
            inmask = np.broadcast_to(np.asarray(ccd.mask, dtype=bool), data.shape)
        var = None if std is None else np.empty(data.shape, dtype=dtype)
        mask = np.empty(data.shape, dtype=bool)
        finite_var = _load_kernel(_flat(data), _flat(std), std is not None,
                                  _flat(inmask) if inmask is not None else _NOMASK,
                                  inmask is not None, _flat(var), mask.reshape(-1))
        if var is not None and not finite_var:
            var = None  # an uncertainty of NaN everywhere says nothing
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
    data, var, mask = _prepare(a)
    bvar = b.var if b.var is not None else _EMPTY
    _subtract_kernel(_flat(a.data), _flat(a.var), _flat(a.mask), _flat(b.data), _flat(bvar),
                     _flat(b.mask), np.float32(scale), a.var is not None, b.var is not None,
                     data.reshape(-1), _flat(var), mask.reshape(-1))
    return Plane(data, var, mask)


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
    data, var, mask = _prepare(a)
    fvar = f.var if f.var is not None else _EMPTY
    _divide_kernel(_flat(a.data), _flat(a.var), _flat(a.mask), _flat(f.data), _flat(fvar),
                   _flat(f.mask), a.var is not None, f.var is not None,
                   data.reshape(-1), _flat(var), mask.reshape(-1))
    return Plane(data, var, mask)


def multiply(a: Plane, factor: float, factor_var: float = 0.0) -> Plane:
    """``a * factor`` for a scalar factor with its own variance."""
    data = a.data * np.float32(factor)
    var = None
    if a.var is not None:
        var = a.var * np.float32(factor) ** 2
        if factor_var:
            var += a.data.astype(var.dtype) ** 2 * np.float32(factor_var)
    return Plane(data.astype(a.data.dtype, copy=False), var, a.mask.copy())


# ---------------------------------------------------------------------------
# Kernels: one pass over the pixels, in parallel, no temporaries.
# ---------------------------------------------------------------------------
_EMPTY = np.zeros(1, dtype=np.float32)
_NOMASK = np.zeros(1, dtype=bool)


def _flat(array: np.ndarray | None) -> np.ndarray:
    """A 1-D C-contiguous view (or copy) of an array; a dummy for None."""
    if array is None:
        return _EMPTY
    return np.ascontiguousarray(array).reshape(-1)


def _prepare(a: Plane):
    data = np.empty(a.data.shape, dtype=a.data.dtype)
    var = None if a.var is None else np.empty(a.var.shape, dtype=a.var.dtype)
    mask = np.empty(a.data.shape, dtype=bool)
    return data, var, mask


@njit(parallel=True, cache=True, nogil=True)
def _load_kernel(data, std, has_std, inmask, has_mask, var, mask):  # pragma: no cover
    any_finite = 0
    for i in prange(data.size):
        m = not np.isfinite(data[i])
        if has_mask:
            m = m or inmask[i]
        mask[i] = m
        if has_std:
            v = std[i] * std[i]
            var[i] = v
            if np.isfinite(v):
                any_finite += 1
    return any_finite > 0


@njit(parallel=True, cache=True, nogil=True)
def _subtract_kernel(a, avar, amask, b, bvar, bmask, scale, has_avar, has_bvar,
                     out, outvar, outmask):  # pragma: no cover - compiled
    for i in prange(a.size):
        bv = b[i]
        good = (not bmask[i]) and np.isfinite(bv)
        if good:
            out[i] = a[i] - scale * bv
        else:
            out[i] = a[i]
        outmask[i] = amask[i] or (not good) or (not np.isfinite(a[i]))
        if has_avar:
            v = avar[i]
            if has_bvar and good:
                v += scale * scale * bvar[i]
            outvar[i] = v


@njit(parallel=True, cache=True, nogil=True)
def _divide_kernel(a, avar, amask, f, fvar, fmask, has_avar, has_fvar,
                   out, outvar, outmask):  # pragma: no cover - compiled
    for i in prange(a.size):
        fv = f[i]
        good = (not fmask[i]) and np.isfinite(fv) and fv > 0
        if good:
            q = a[i] / fv
        else:
            fv = np.float32(1.0)
            q = a[i]
        out[i] = q
        outmask[i] = amask[i] or (not good) or (not np.isfinite(a[i]))
        if has_avar:
            v = avar[i] / (fv * fv)
            if has_fvar and good:
                v += q * q * fvar[i] / (fv * fv)
            outvar[i] = v
