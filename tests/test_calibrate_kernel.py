"""The fused calibration kernels against the step-by-step arithmetic of calframe._arith.

``calibrate`` applies its terms with two compiled passes (calframe._calkernel);
they must give, bit for bit, what the chain of ``subtract``, ``divide`` and
``multiply`` followed by the square root of the variance gives, including the
masked, non-finite and non-positive master pixels, per-pixel (CFA) scales and
the correlated-error correction of a bias inside the dark.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

from calframe._arith import Plane, divide, multiply, subtract
from calframe._calkernel import divide_and_finish, master_arrays, subtract_terms

SHAPE = (37, 53)


def _frame(rng, lo, hi, slo, shi, *, std=True, bad=True):
    data = rng.uniform(lo, hi, SHAPE).astype(np.float32)
    mask = np.zeros(SHAPE, bool)
    if bad:
        data[tuple(rng.integers(0, n, 6) for n in SHAPE)] = np.nan
        data[tuple(rng.integers(0, n, 2) for n in SHAPE)] = np.inf
        mask[tuple(rng.integers(0, n, 7) for n in SHAPE)] = True
    unc = StdDevUncertainty(rng.uniform(slo, shi, SHAPE).astype(np.float32)) if std else None
    if std and bad:
        unc.array[tuple(rng.integers(0, n, 3) for n in SHAPE)] = np.nan
    return CCDData(data, unit="adu", uncertainty=unc, mask=mask if bad else None)


def _reference(light, *, dark, k, bias, c, mode, correlated, flat, rate, gain):
    """The step-by-step arithmetic, as calibrate did it before the kernels."""
    plane = Plane.from_ccd(light, copy=False)
    if dark is not None:
        d = Plane.from_ccd(dark, copy=False)
        if np.ndim(k):
            d = Plane(d.data * k, None if d.var is None else d.var * k**2, d.mask)
            plane = subtract(plane, d, 1.0)
        else:
            plane = subtract(plane, d, float(k))
    if bias is not None:
        b = Plane.from_ccd(bias, copy=False)
        if mode == 1:
            if np.ndim(c):
                b2 = Plane(b.data * c, None if b.var is None else b.var * c**2, b.mask)
                plane = subtract(plane, b2, 1.0)
            else:
                plane = subtract(plane, b, float(c))
            if correlated and plane.var is not None and b.var is not None:
                two_k = 2 * np.asarray(k, np.float32)
                plane.var = np.maximum(plane.var - two_k * np.where(b.valid(), b.var, 0),
                                       0).astype(np.float32)
        else:
            plane.mask |= ~b.valid()
    if rate != 1.0:
        plane = multiply(plane, rate)
    if flat is not None:
        plane = divide(plane, Plane.from_ccd(flat, copy=False))
    if gain != 1.0:
        plane = multiply(plane, gain)
    std = None if plane.var is None else np.sqrt(np.maximum(plane.var, 0)).astype(np.float32)
    return plane.data, std, plane.mask


def _fused(light, *, dark, k, bias, c, mode, correlated, flat, rate, gain):
    plane = Plane.from_ccd(light, copy=False)
    data, var, mask = plane.data, plane.var, plane.mask
    if dark is not None or bias is not None:
        b = None if bias is None else master_arrays(bias, SHAPE)
        data, var, mask = subtract_terms(
            data, var, mask, dark=None if dark is None else master_arrays(dark, SHAPE),
            dark_scale=k, bias=b, bias_mode=mode if bias is not None else 0,
            bias_coefficient=c, correlated=correlated and b is not None and b.has_var)
    data, std, mask, nvalid, nneg = divide_and_finish(
        data, var, mask, rate=rate, flat=None if flat is None else master_arrays(flat, SHAPE),
        gain=gain, std=True)
    valid = ~mask & np.isfinite(data)
    assert nvalid == np.count_nonzero(valid)
    assert nneg == np.count_nonzero(data[valid] < 0)
    return data, std, mask


def _cfa_map(rng):
    values = rng.uniform(0.3, 2.0, 4).astype(np.float32)
    out = np.empty(SHAPE, np.float32)
    for i, (y, x) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[y::2, x::2] = values[i]
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("case", ["full", "dark-in-bias", "correlated", "maps", "no-var",
                                  "flat-only", "rate-and-gain", "no-master-var"])
def test_kernels_equal_the_step_by_step_arithmetic(case, seed):
    rng = np.random.default_rng(seed)
    light = _frame(rng, 500, 9000, 20, 90, std=case != "no-var")
    bias = _frame(rng, 950, 1050, 1, 3, std=case != "no-master-var")
    dark = _frame(rng, -5, 400, 1, 6, std=case != "no-master-var")
    flat = _frame(rng, 0.6, 1.3, 0.001, 0.01)
    flat.data[0, :5] = [0.0, -1.0, 0.5, np.nan, 1.0]
    args = dict(dark=dark, k=np.float32(0.75), bias=bias, c=np.float32(1.0), mode=1,
                correlated=False, flat=flat, rate=1.0, gain=1.0)
    if case == "dark-in-bias":
        args.update(c=np.float32(0.25))
        if seed % 2:
            args.update(k=np.float32(1.0), mode=2)
    elif case == "correlated":
        args.update(correlated=True, k=np.float32(rng.uniform(0.2, 3.0)))
    elif case == "maps":
        k = _cfa_map(rng)
        args.update(k=k, c=(1 - k).astype(np.float32), correlated=bool(seed % 2))
    elif case == "flat-only":
        args.update(dark=None, bias=None)
    elif case == "rate-and-gain":
        args.update(rate=1 / 37.0, gain=1.7, dark=None if seed % 2 else dark)
    ref = _reference(light, **args)
    got = _fused(light, **args)
    for name, r, g in zip(("data", "std", "mask"), ref, got, strict=True):
        if r is None:
            assert g is None, name
            continue
        np.testing.assert_array_equal(g, r, err_msg=name)  # NaN == NaN here, bit for bit
        if r.dtype == np.float32:
            same = (r.view(np.uint32) == g.view(np.uint32)) | (np.isnan(r) & np.isnan(g))
            assert same.all(), name


def test_kernels_leave_their_inputs_alone():
    rng = np.random.default_rng(1)
    light, bias, dark, flat = (_frame(rng, 1, 9, 1, 2) for _ in range(4))
    plane = Plane.from_ccd(light, copy=True)
    before = [a.copy() for a in (plane.data, plane.var, plane.mask)]
    subtract_terms(plane.data, plane.var, plane.mask, dark=master_arrays(dark, SHAPE),
                   dark_scale=2.0, bias=master_arrays(bias, SHAPE), bias_mode=1,
                   bias_coefficient=1.0, correlated=True)
    divide_and_finish(plane.data, plane.var, plane.mask, rate=0.5,
                      flat=master_arrays(flat, SHAPE), gain=2.0, std=True)
    for a, b in zip(before, (plane.data, plane.var, plane.mask), strict=True):
        np.testing.assert_array_equal(a, b)


def _variance_reference(raw, offset, gain, rdnoise_e, cfa):
    """The detector-model variance as calibrate computed it with scipy.ndimage."""
    from scipy import ndimage

    signal = np.maximum(np.nan_to_num(raw - offset), 0).astype(np.float32)
    sites = [(slice(y, None, 2), slice(x, None, 2)) for y in (0, 1) for x in (0, 1)] \
        if cfa else [(slice(None), slice(None))]
    smooth = np.empty_like(signal)
    for sl in sites:
        smooth[sl] = ndimage.uniform_filter(signal[sl], size=3, mode="nearest")
    rn2 = np.float32((rdnoise_e / gain) ** 2)
    g = np.float32(gain)
    var_smooth = smooth / g + rn2
    differs = np.abs(signal - smooth) > 3 * np.sqrt(var_smooth)
    return np.where(differs, signal / g + rn2, var_smooth).astype(np.float32)


@pytest.mark.parametrize("cfa", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4), (64, 81)])
def test_detector_variance_equals_the_scipy_arithmetic(cfa, shape):
    from calframe._calkernel import detector_variance

    rng = np.random.default_rng(shape[0] * 7 + cfa)
    offset = rng.normal(1000, 3, shape).astype(np.float32)
    raw = (offset + rng.poisson(rng.uniform(0, 3000, shape))).astype(np.float32)
    raw.flat[::17] = offset.flat[::17] - 40           # below the offset
    raw.flat[3::29] += 20000                          # hot pixels and star cores
    raw.flat[5::31] = np.nan
    offset.flat[7::37] = np.nan
    ref = _variance_reference(raw, np.nan_to_num(offset), 1.7, 5.5, cfa)
    got = detector_variance(raw, offset, step=2 if cfa else 1, gain=1.7, rdnoise_e=5.5)
    assert got.dtype == np.float32
    # scipy sums the neighbourhood incrementally along each line: an ulp apart at most
    np.testing.assert_array_max_ulp(got, ref, maxulp=1)
    assert np.mean(got == ref) > 0.99
    scalar = detector_variance(raw, 0.0, step=1, gain=2.0, rdnoise_e=3.0)
    np.testing.assert_array_max_ulp(scalar, _variance_reference(raw, 0.0, 2.0, 3.0, False),
                                    maxulp=1)


def test_kernels_on_a_cube_equal_the_step_by_step_arithmetic():
    """A colour cube (3, ny, nx) goes through the kernels plane after plane."""
    rng = np.random.default_rng(7)
    shape = (3, 11, 13)

    def cube(lo, hi, slo, shi):
        data = rng.uniform(lo, hi, shape).astype(np.float32)
        data[0, 2, 3] = np.nan
        mask = rng.random(shape) < 0.05
        return CCDData(data, unit="adu", mask=mask, uncertainty=StdDevUncertainty(
            rng.uniform(slo, shi, shape).astype(np.float32)))

    light, bias, dark, flat = cube(500, 900, 5, 9), cube(90, 110, 1, 2), \
        cube(1, 20, 1, 2), cube(0.5, 1.5, 0.01, 0.02)
    plane = Plane.from_ccd(light, copy=False)
    ref = subtract(subtract(plane, Plane.from_ccd(dark, copy=False), 0.5),
                   Plane.from_ccd(bias, copy=False), 1.0)
    ref = multiply(divide(ref, Plane.from_ccd(flat, copy=False)), 2.0)
    data, var, mask = subtract_terms(
        plane.data, plane.var, plane.mask, dark=master_arrays(dark, shape), dark_scale=0.5,
        bias=master_arrays(bias, shape), bias_mode=1, bias_coefficient=1.0,
        correlated=False)
    data, std, mask, _, _ = divide_and_finish(data, var, mask, rate=1.0,
                                              flat=master_arrays(flat, shape), gain=2.0,
                                              std=True, out=(data, var, mask))
    assert data.shape == shape
    np.testing.assert_array_equal(data, ref.data)
    np.testing.assert_array_equal(mask, ref.mask)
    np.testing.assert_array_equal(std, np.sqrt(np.maximum(ref.var, 0)).astype(np.float32))
