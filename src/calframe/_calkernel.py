"""The calibration arithmetic of a frame in two compiled passes (private).

:func:`calframe.calibrate` decides its terms step by step (the dark's scale,
the bias's coefficient, the correlated-error corrections, the flat, the gain)
and these kernels apply them, row by row in parallel, in float32, computing
data, variance and mask together and reading the masters' data, standard
deviation and mask as they are (no variance or mask array is made for a
master):

1. :func:`subtract_terms`: ``frame - k dark - c bias`` (with the correction of a
   bias that is also inside the dark);
2. :func:`divide_and_finish`: ``(frame * r) / flat * g``, then the standard
   deviation, and the counts of valid and negative pixels.

Every operation is done in the order and the precision of
:mod:`calframe._arith` (``subtract``, ``divide``, ``multiply``) followed by
the square root of :func:`calframe._calutil.plane_to_ccd`, so the results are
the same to the last bit.  A pixel that is masked or not finite in a master
keeps the frame's value there and is masked, as in :mod:`calframe._arith`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

__all__ = ["MasterArrays", "detector_variance", "divide_and_finish", "master_arrays",
           "subtract_terms"]


@dataclass
class MasterArrays:
    """A master's float32 data, standard deviation (or None) and input mask (or None),
    broadcast to the frame's shape, as the kernels read them."""

    data: np.ndarray
    std: np.ndarray | None
    mask: np.ndarray | None

    @property
    def has_var(self) -> bool:
        """Whether the master has a variance anywhere (as :meth:`Plane.from_ccd` says)."""
        if self.std is None:
            return False
        first = self.std.flat[0]
        if np.isfinite(first * first):
            return True
        return bool(np.isfinite(np.square(self.std)).any())


def master_arrays(ccd, shape) -> MasterArrays:
    """The arrays of a master (a CCDData) for the kernels, without copies where possible."""
    from astropy.nddata import StdDevUncertainty

    data = np.broadcast_to(np.asarray(ccd.data, dtype=np.float32), shape)
    std = None
    if ccd.uncertainty is not None:
        unc = ccd.uncertainty
        if not isinstance(unc, StdDevUncertainty):
            unc = unc.represent_as(StdDevUncertainty)
        std = np.broadcast_to(np.asarray(unc.array, dtype=np.float32), shape)
    mask = None if ccd.mask is None else np.broadcast_to(
        np.asarray(ccd.mask, dtype=bool), shape)
    return MasterArrays(data, std, mask)


_SINK = np.zeros((1, 1), np.float32)  # the variance output when there is none (never written)


def _rows(array, shape) -> np.ndarray | None:
    """``array`` broadcast to ``shape`` and seen as 2-D rows (the kernels' layout)."""
    if array is None:
        return None
    array = np.broadcast_to(array, shape)
    if len(shape) == 2:
        return array
    return np.reshape(array, (-1, shape[-1]) if len(shape) else (1, 1))


def _full(value, shape, dtype) -> np.ndarray:
    """``value`` (None, a scalar or an array) as a read-only array of ``shape``."""
    if value is None:
        value = 0
    return np.broadcast_to(np.asarray(value, dtype=dtype), shape)


def subtract_terms(data: np.ndarray, var: np.ndarray | None, mask: np.ndarray, *,
                   dark: MasterArrays | None, dark_scale, bias: MasterArrays | None,
                   bias_mode: int, bias_coefficient, correlated: bool):
    """``data - k dark - c bias`` with variance and mask, in one pass.

    Parameters
    ----------
    data, var, mask : numpy.ndarray
        The frame (``var`` may be None); not modified.
    dark : MasterArrays or None
        The dark and its scale ``dark_scale`` (a number or a per-pixel map).
    bias : MasterArrays or None
        The bias.  ``bias_mode`` 1 subtracts ``bias_coefficient`` (a number or a
        map) times it; 2 only masks its bad pixels (the dark removed the bias).
    correlated : bool
        The bias is also inside the dark (made with it): the variance loses
        ``2 k var_bias`` where the bias is good, and is kept at 0 or above.

    Returns
    -------
    tuple of numpy.ndarray
        New data, variance (None if ``var`` is None) and mask arrays.
    """
    if data.ndim != 2:  # a cube: its planes one after the other, as rows
        full = data.shape
        rows = _rows(data, full).shape
        flat = [None if m is None else MasterArrays(_rows(m.data, full), _rows(m.std, full),
                                                    _rows(m.mask, full))
                for m in (dark, bias)]
        out = subtract_terms(_rows(data, full), _rows(var, full), _rows(mask, full),
                             dark=flat[0], dark_scale=_rows(np.asarray(dark_scale), full),
                             bias=flat[1], bias_mode=bias_mode,
                             bias_coefficient=_rows(np.asarray(bias_coefficient), full),
                             correlated=correlated)
        del rows
        return tuple(None if a is None else a.reshape(full) for a in out)
    shape = data.shape
    out = np.empty(shape, np.float32)
    outvar = np.empty(shape, np.float32) if var is not None else None
    outmask = np.empty(shape, bool)
    nothing = _full(None, shape, np.float32)
    nomask = _full(False, shape, bool)
    use_dark = dark is not None
    use_bias = bias is not None and bias_mode in (1, 2)
    dk = dark if use_dark else MasterArrays(nothing, None, None)
    bs = bias if use_bias else MasterArrays(nothing, None, None)
    k = _full(dark_scale if use_dark else 0.0, shape, np.float32)
    c = _full(bias_coefficient if use_bias and bias_mode == 1 else 0.0, shape, np.float32)
    two_k = _full(2 * np.asarray(dark_scale, np.float32) if correlated else 0.0, shape,
                  np.float32)
    dvar = use_dark and dk.has_var
    bvar = use_bias and bs.has_var
    _subtract_terms_kernel(
        data, nothing if var is None else var, var is not None, mask,
        dk.data, nothing if dk.std is None else dk.std, dvar,
        nomask if dk.mask is None else dk.mask, k, use_dark,
        bs.data, nothing if bs.std is None else bs.std, bvar,
        nomask if bs.mask is None else bs.mask, c, bias_mode if use_bias else 0,
        correlated and bvar and var is not None, two_k,
        out, _SINK if outvar is None else outvar, outmask)
    return out, outvar, outmask


def divide_and_finish(data: np.ndarray, var: np.ndarray | None, mask: np.ndarray, *,
                      rate: float, flat: MasterArrays | None, gain: float, std: bool,
                      out=None):
    """``(data * rate) / flat * gain``, then the standard deviation, in one pass.

    ``rate`` and ``gain`` of 1 are not applied (as :func:`calframe._arith.multiply`
    would not be called).  ``out`` gives the (data, variance, mask) arrays to write
    into (they may be the inputs); by default new ones.  With ``std`` the
    variance array receives ``sqrt(max(var, 0))``.

    Returns
    -------
    tuple
        data, variance or standard deviation (None if ``var`` is None), mask, and
        the counts of valid (unmasked, finite) pixels and of those below 0.
    """
    if data.ndim != 2:  # a cube: its planes one after the other, as rows
        full = data.shape
        fl = None if flat is None else MasterArrays(
            _rows(flat.data, full), _rows(flat.std, full), _rows(flat.mask, full))
        rows_out = None if out is None else tuple(
            None if a is None else a.reshape(-1, full[-1]) for a in out)
        if rows_out is not None and any(a is not None and not np.shares_memory(a, b)
                                        for a, b in zip(rows_out, out, strict=True)):
            rows_out = None  # not views: write new arrays
        odata, ovar, omask, nvalid, nneg = divide_and_finish(
            _rows(data, full), _rows(var, full), _rows(mask, full), rate=rate, flat=fl,
            gain=gain, std=std, out=rows_out)
        return (odata.reshape(full), None if ovar is None else ovar.reshape(full),
                omask.reshape(full), nvalid, nneg)
    shape = data.shape
    if out is None:
        out = (np.empty(shape, np.float32),
               np.empty(shape, np.float32) if var is not None else None,
               np.empty(shape, bool))
    odata, ovar, omask = out
    nothing = _full(None, shape, np.float32)
    nomask = _full(False, shape, bool)
    use_flat = flat is not None
    fl = flat if use_flat else MasterArrays(nothing, None, None)
    counts = np.zeros((shape[0], 2), np.int64)
    _divide_kernel(data, nothing if var is None else var, var is not None, mask,
                   np.float32(rate), rate != 1.0,
                   fl.data, nothing if fl.std is None else fl.std, use_flat and fl.has_var,
                   nomask if fl.mask is None else fl.mask, use_flat,
                   np.float32(gain), gain != 1.0, std,
                   odata, _SINK if ovar is None else ovar, omask, counts)
    total = counts.sum(axis=0)
    return odata, ovar, omask, int(total[0]), int(total[1])


@njit(parallel=True, cache=True, nogil=True)
def _subtract_terms_kernel(a, avar, has_avar, amask, d, dstd, has_dvar, dmask, k, use_dark,
                           b, bstd, has_bvar, bmask, c, bias_mode, correlated, two_k,
                           out, outvar, outmask):  # pragma: no cover - compiled
    ny, nx = a.shape
    for y in prange(ny):
        for x in range(nx):
            value = a[y, x]
            m = amask[y, x]
            v = avar[y, x] if has_avar else np.float32(0)
            if use_dark:  # _arith.subtract(frame, dark, k)
                dv = d[y, x]
                good = (not dmask[y, x]) and np.isfinite(dv)
                m = m or (not good) or (not np.isfinite(value))
                if good:
                    kk = k[y, x]
                    value = value - kk * dv
                    if has_avar and has_dvar:
                        s = dstd[y, x]
                        v += kk * kk * (s * s)
            if bias_mode != 0:
                bv = b[y, x]
                good = (not bmask[y, x]) and np.isfinite(bv)
                if bias_mode == 1:  # _arith.subtract(frame, bias, c)
                    m = m or (not good) or (not np.isfinite(value))
                    if good:
                        cc = c[y, x]
                        value = value - cc * bv
                        if has_avar and has_bvar:
                            s = bstd[y, x]
                            v += cc * cc * (s * s)
                    if correlated:
                        if good:
                            s = bstd[y, x]
                            v = v - two_k[y, x] * (s * s)
                        else:
                            v = v - two_k[y, x] * np.float32(0)
                        if v < 0:
                            v = np.float32(0)
                else:  # the bias is inside the dark: its bad pixels are masked
                    m = m or (not good)
            out[y, x] = value
            outmask[y, x] = m
            if has_avar:
                outvar[y, x] = v


@njit(parallel=True, cache=True, nogil=True)
def _divide_kernel(a, avar, has_avar, amask, rate, use_rate, f, fstd, has_fvar, fmask,
                   use_flat, gain, use_gain, to_std, out, outvar, outmask,
                   counts):  # pragma: no cover - compiled
    ny, nx = a.shape
    rate2 = rate * rate
    gain2 = gain * gain
    for y in prange(ny):
        nvalid = 0
        nneg = 0
        for x in range(nx):
            value = a[y, x]
            m = amask[y, x]
            v = avar[y, x] if has_avar else np.float32(0)
            if use_rate:  # _arith.multiply(plane, rate)
                value = value * rate
                v = v * rate2
            if use_flat:  # _arith.divide(plane, flat)
                fv = f[y, x]
                good = (not fmask[y, x]) and np.isfinite(fv) and fv > 0
                m = m or (not good) or (not np.isfinite(value))
                if good:
                    q = value / fv
                else:
                    fv = np.float32(1.0)
                    q = value
                v = v / (fv * fv)
                if has_fvar and good:
                    s = fstd[y, x]
                    v += q * q * (s * s) / (fv * fv)
                value = q
            if use_gain:  # _arith.multiply(plane, gain)
                value = value * gain
                v = v * gain2
            if has_avar:
                if to_std:  # plane_to_ccd: sqrt(max(var, 0))
                    if v < 0:
                        v = np.float32(0)
                    v = np.float32(math.sqrt(np.float64(v)))
                outvar[y, x] = v
            out[y, x] = value
            outmask[y, x] = m
            if not m and np.isfinite(value):
                nvalid += 1
                if value < 0:
                    nneg += 1
        counts[y, 0] = nvalid
        counts[y, 1] = nneg


def detector_variance(raw: np.ndarray, offset, *, step: int, gain: float,
                      rdnoise_e: float) -> np.ndarray:
    """The detector-model variance of :func:`calframe.calibrate._estimate_variance`.

    ``signal = max(raw - offset, 0)`` (NaN as 0), its mean over the 3x3
    neighbourhood of the pixel's site (``step`` 2 on a CFA mosaic: the same
    colour site; edges repeat the nearest value, as ``scipy.ndimage``'s
    ``uniform_filter(size=3, mode='nearest')``), and ``smooth / g + (rn / g)**2``,
    or ``signal / g + (rn / g)**2`` where the two differ by more than 3 sigma.
    Row by row in parallel, without temporary frames.  The neighbourhood means
    are computed in double precision and rounded to float32 after each axis,
    as scipy does (which sums along a line incrementally: the two differ by an
    ulp now and then).
    """
    shape = raw.shape
    if raw.ndim != 2:
        raise ValueError("detector_variance: a 2-D frame is needed")
    off = np.broadcast_to(np.asarray(offset), shape)
    out = np.empty(shape, np.float32)
    g = np.float32(gain)
    rn2 = np.float32((rdnoise_e / gain) ** 2)
    _detector_variance_kernel(raw, off, int(step), g, rn2, out)
    return out


_F32_MAX = np.float64(np.finfo(np.float32).max)


@njit(inline="always")
def _signal(raw, off, y, x):  # pragma: no cover - compiled
    """``max(nan_to_num(raw - nan_to_num(offset)), 0)`` as float32, at one pixel."""
    o = np.float64(off[y, x])
    if np.isnan(o):
        o = 0.0
    elif np.isinf(o):
        o = _F32_MAX if o > 0 else -_F32_MAX
    d = np.float64(raw[y, x]) - o
    if np.isnan(d) or d < 0:
        return np.float32(0)
    if d > _F32_MAX:
        return np.float32(_F32_MAX)
    return np.float32(d)


@njit(parallel=True, cache=True, nogil=True)
def _detector_variance_kernel(raw, off, step, g, rn2, out):  # pragma: no cover
    ny, nx = raw.shape
    third = np.float64(3.0)
    for row in prange(ny):
        y = np.int64(row)
        up = y - step if y - step >= 0 else y
        down = y + step if y + step < ny else y
        column = np.empty(nx, np.float32)  # the vertical means of this row
        for x in range(nx):
            total = np.float64(_signal(raw, off, up, x)) + np.float64(_signal(raw, off, y, x))
            total += np.float64(_signal(raw, off, down, x))
            column[x] = np.float32(total / third)
        for col in range(nx):
            x = np.int64(col)
            left = x - step if x - step >= 0 else x
            right = x + step if x + step < nx else x
            total = np.float64(column[left]) + np.float64(column[x])
            total += np.float64(column[right])
            smooth = np.float32(total / third)
            signal = _signal(raw, off, y, x)
            var_smooth = smooth / g + rn2
            sigma = np.float32(math.sqrt(np.float64(var_smooth)))
            if abs(signal - smooth) > np.float32(3) * sigma:
                out[y, x] = signal / g + rn2
            else:
                out[y, x] = var_smooth


def normalise_flat(data: np.ndarray, var: np.ndarray | None, tile: np.ndarray, *,
                   bias_coefficient: float, dark_coefficient: float,
                   bias_sum: np.ndarray, dark_sum: np.ndarray):
    """A flat divided by its level, in one pass (for :func:`calframe.make_master_flat`).

    ``tile`` is the 2x2 cell of levels (the level of each CFA site).  Returns
    the new data and standard deviation (``sqrt(var / level**2)``, None without
    ``var``) and adds ``c / level`` and ``k / level`` to ``bias_sum`` and
    ``dark_sum`` (float64), with the float32 arithmetic of
    ``data / scale_map``, ``var / scale_map**2``, ``np.sqrt`` and
    ``c / scale_map``.
    """
    out = np.empty(data.shape, np.float32)
    std = np.empty(data.shape, np.float32) if var is not None else _SINK
    _normalise_kernel(data, _full(None, data.shape, np.float32) if var is None else var,
                      var is not None, np.asarray(tile, np.float32),
                      np.float32(bias_coefficient), np.float32(dark_coefficient),
                      bias_sum, dark_sum, out, std)
    return out, (std if var is not None else None)


@njit(parallel=True, cache=True, nogil=True)
def _normalise_kernel(data, var, has_var, tile, c, k, bias_sum, dark_sum,
                      out, std):  # pragma: no cover - compiled
    ny, nx = data.shape
    for y in prange(ny):
        for x in range(nx):
            s = tile[y % 2, x % 2]
            out[y, x] = data[y, x] / s
            if has_var:
                std[y, x] = np.float32(math.sqrt(np.float64(var[y, x] / (s * s))))
            bias_sum[y, x] += np.float64(c / s)
            dark_sum[y, x] += np.float64(k / s)
