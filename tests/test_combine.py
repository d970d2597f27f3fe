"""Tests of calframe.combine: methods, inputs, masks, outputs, provenance, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty, VarianceUncertainty
from astropy.stats import sigma_clip
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from calframe import (
    FrameReadError,
    IncompatibleFramesError,
    MinMaxClip,
    MissingMetadataError,
    Scale,
    SigmaClip,
    UncertaintyUnknownWarning,
    combine,
    get_provenance,
    running_mean,
    write_frame,
)
from calframe.combining import c4, median_efficiency_factor
from calframe.combining._kernels import sorting_network
from calframe.errors import InvalidSettingsError, NoFramesError


def _stack(n=7, shape=(24, 40), seed=1, level=1000.0, noise=10.0):
    rng = np.random.default_rng(seed)
    return (level + noise * rng.standard_normal((n, *shape))).astype(np.float32)


def _write_uint16(path, data, **header):
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.uint16))  # astropy writes BZERO=32768
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 17, 33])
def test_sorting_network_sorts(n):
    rng = np.random.default_rng(n)
    pairs = sorting_network(n)
    x = rng.standard_normal((n, 200))
    for a, b in pairs:
        lo, hi = np.minimum(x[a], x[b]), np.maximum(x[a], x[b])
        x[a], x[b] = lo, hi
    assert np.all(np.diff(x, axis=0) >= 0)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 11])
def test_clean_methods_equal_numpy(n):
    stack = _stack(n=n)
    frames = list(stack)
    ref = stack.astype(np.float64)
    med = combine(frames, method="median")
    assert_allclose(med.data, np.median(ref, axis=0), rtol=1e-7, atol=0)
    mean = combine(frames, method="mean")
    assert_allclose(mean.data, ref.mean(axis=0), rtol=2e-7, atol=0)
    total = combine(frames, method="sum")
    assert_allclose(total.data, ref.sum(axis=0), rtol=2e-7, atol=0)
    for out in (med, mean, total):
        assert out.data.dtype == np.float32
        assert out.meta["NCOMBINE"] == n
        assert_array_equal(out.ncombine, n)
        assert_array_equal(out.rejected, 0)
        assert out.ncombine.dtype == np.int16
        assert not out.mask.any()
        assert out.unit == u.adu


def test_equal_to_ccdproc_on_unmasked_data():
    ccdproc = pytest.importorskip("ccdproc")
    stack = _stack(n=9, shape=(30, 31), seed=4)
    ccds = [CCDData(a, unit="adu") for a in stack]
    for method in ("median", "average", "sum"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ccdproc.combine(ccds, method=method)
        ours = combine(ccds, method={"average": "mean"}.get(method, method))
        assert_allclose(ours.data, ref.data, rtol=1e-5, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ccdproc.combine(ccds, method="average", sigma_clip=True,
                              sigma_clip_low_thresh=2, sigma_clip_high_thresh=2,
                              sigma_clip_func=np.ma.median, sigma_clip_dev_func=np.ma.std)
    # ccdproc clips once about the median with a ddof=0 standard deviation
    clipped = sigma_clip(stack.astype(np.float64), sigma=2, maxiters=1, axis=0,
                         cenfunc="median", stdfunc="std")
    assert_allclose(ref.data, clipped.mean(axis=0).filled(np.nan), rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 9), st.integers(0, 2**31 - 1), st.sampled_from(["median", "mean", "sum"]),
       st.booleans())
def test_order_does_not_matter(n, seed, method, clip):
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 50, size=(n, 3, 5)).astype(np.float32)  # ties on purpose
    stack[rng.random(stack.shape) < 0.1] = np.nan
    order = rng.permutation(n)
    rejection = MinMaxClip(nlow=1, nhigh=0) if clip and method != "median" else None
    a = combine(list(stack), method=method, rejection=rejection, workers=1)
    b = combine(list(stack[order]), method=method, rejection=rejection, workers=1)
    assert_allclose(a.data, b.data, rtol=1e-6, equal_nan=True)
    assert_allclose(a.uncertainty.array, b.uncertainty.array, rtol=1e-5, equal_nan=True)
    assert_array_equal(a.ncombine, b.ncombine)


def test_masks_and_nans_never_enter():
    stack = _stack(n=6, shape=(10, 12), seed=2).astype(np.float64)
    masks = np.zeros(stack.shape, bool)
    masks[0, 2, 3] = True
    masks[1:4, 5, 5] = True
    stack[0, 2, 3] = 1e9          # masked garbage
    stack[1:4, 5, 5] = -1e9
    stack[2, 7, 7] = np.nan
    stack[3, 8, 8] = np.inf
    masks[:, 9, 11] = True        # nothing survives here
    ccds = [CCDData(d, mask=m, unit="adu") for d, m in zip(stack, masks, strict=True)]
    ref = np.ma.masked_array(stack, mask=masks | ~np.isfinite(stack))
    for method, func in (("median", np.ma.median), ("mean", np.ma.mean)):
        out = combine(ccds, method=method)
        expect = func(ref, axis=0).filled(np.nan)
        assert_allclose(out.data, expect, rtol=1e-6, equal_nan=True)
    assert_array_equal(out.ncombine, (~ref.mask).sum(axis=0))
    assert out.mask[9, 11] and out.mask.sum() == 1
    assert np.isnan(out.data[9, 11])
    assert out.ncombine[5, 5] == 3 and out.ncombine[2, 3] == 5


def test_inputs_paths_ccddata_arrays_iterators_agree(tmp_path):
    rng = np.random.default_rng(3)
    ints = rng.integers(900, 1100, size=(5, 20, 30))
    paths = [_write_uint16(tmp_path / f"bias_{i}.fits", a, IMAGETYP="Bias Frame", EXPTIME=0.0)
             for i, a in enumerate(ints)]
    ref = np.median(ints.astype(np.float64), axis=0)
    from_paths = combine(paths)
    from_str = combine([str(p) for p in paths])
    from_arrays = combine(list(ints))
    from_ccd = combine([CCDData(a.astype(np.float32), unit="adu") for a in ints])
    from_iter = combine(CCDData(a.astype(np.float32), unit="adu") for a in ints)
    for out in (from_paths, from_str, from_arrays, from_ccd, from_iter):
        assert_allclose(out.data, ref, rtol=0, atol=0)
        assert out.meta["NCOMBINE"] == 5
    assert from_paths.unit == u.adu
    assert from_paths.meta["FRAMETYP"] == "bias"
    prov = get_provenance(from_paths)
    assert [r.path for r in prov.inputs] == [str(p) for p in paths]
    assert {r.role for r in prov.inputs} == {"bias"}
    assert all(len(r.sha256) == 64 for r in prov.inputs)
    assert prov.inputs[0].shape == (20, 30)
    (step,) = [s for s in prov.steps if s.step == "combine"]
    params = json.loads(step.parameters_json())
    assert params["method"] == "median" and params["nframes"] == 5


def test_fits_bzero_blank_saturation_and_float(tmp_path):
    data = np.array([[0, 100, 65535], [40000, 7, 8]], dtype=np.uint16)
    a = _write_uint16(tmp_path / "a.fits", data)
    b = _write_uint16(tmp_path / "b.fits", data)
    out = combine([a, b], method="mean")
    expect = data.astype(np.float64)
    expect[0, 2] = np.nan  # full scale is saturated, as read_frame masks it
    assert_allclose(out.data, expect, equal_nan=True)
    assert out.mask[0, 2]
    # signed with BLANK, BSCALE
    raw = np.array([[1, -5], [-32768, 300]], dtype=np.int16)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 10.0
    hdu.header["BLANK"] = -32768
    hdu.writeto(tmp_path / "c.fits", output_verify="silentfix")
    # astropy rescales on write unless told not to; write raw values explicitly
    with fits.open(tmp_path / "c.fits", do_not_scale_image_data=True) as hdul:
        stored = hdul[0].data.copy()
        bscale, bzero = hdul[0].header["BSCALE"], hdul[0].header["BZERO"]
    out = combine([tmp_path / "c.fits"] * 2)
    phys = stored * bscale + bzero
    phys[stored == -32768] = np.nan
    assert_allclose(out.data, phys, equal_nan=True)
    # float64 big-endian data
    fdata = np.array([[1.5, -2.25], [np.nan, 4.0]])
    fits.PrimaryHDU(fdata).writeto(tmp_path / "d.fits")
    out = combine([tmp_path / "d.fits", tmp_path / "d.fits"], method="median")
    assert_allclose(out.data, fdata, equal_nan=True)


def test_input_uncertainties_are_propagated():
    stack = _stack(n=4, shape=(6, 6), seed=5).astype(np.float64)
    sig = np.array([1.0, 2.0, 3.0, 4.0])
    ccds = [CCDData(d, unit="electron", uncertainty=StdDevUncertainty(np.full(d.shape, s)))
            for d, s in zip(stack, sig, strict=True)]
    mean = combine(ccds, method="mean")
    assert_allclose(mean.uncertainty.array, np.sqrt((sig**2).sum()) / 4, rtol=1e-6)
    w = np.array([1.0, 2.0, 0.5, 1.0])
    wmean = combine(ccds, method="mean", weights=w)
    assert_allclose(wmean.data, (w[:, None, None] * stack).sum(0) / w.sum(), rtol=1e-6)
    assert_allclose(wmean.uncertainty.array, np.sqrt((w**2 * sig**2).sum()) / w.sum(),
                    rtol=1e-6)
    ivar = combine(ccds, method="mean", weights="inverse-variance")
    iw = 1 / sig**2
    assert_allclose(ivar.data, (iw[:, None, None] * stack).sum(0) / iw.sum(), rtol=1e-6)
    assert_allclose(ivar.uncertainty.array, 1 / np.sqrt(iw.sum()), rtol=1e-6)
    total = combine(ccds, method="sum")
    assert_allclose(total.uncertainty.array, np.sqrt((sig**2).sum()), rtol=1e-6)
    med = combine(ccds, method="median")
    assert_allclose(med.uncertainty.array,
                    median_efficiency_factor(4) * np.sqrt((sig**2).sum()) / 4, rtol=1e-6)
    # variance uncertainties are converted
    var = [CCDData(d, unit="electron", uncertainty=VarianceUncertainty(np.full(d.shape, s**2)))
           for d, s in zip(stack, sig, strict=True)]
    assert_allclose(combine(var, method="mean").uncertainty.array, mean.uncertainty.array,
                    rtol=1e-6)
    assert mean.unit == u.electron


def test_scatter_uncertainty_small_n_exact():
    # two values a, b: mean (a+b)/2, s = |a-b|/sqrt(2), reported s/c4(2)/sqrt(2)
    a = np.zeros((1, 1))
    b = np.full((1, 1), 2.0)
    out = combine([a, b], method="mean")
    assert_allclose(out.uncertainty.array, (2 / np.sqrt(2)) / c4(2) / np.sqrt(2), rtol=1e-6)
    one = combine([a], method="mean")
    assert np.isnan(one.uncertainty.array).all() and one.data[0, 0] == 0


def test_scale_and_weights():
    base = _stack(n=5, shape=(16, 16), seed=6, level=1000, noise=1).astype(np.float64)
    factors = np.array([1.0, 1.5, 0.5, 2.0, 1.25])
    scaled = base * factors[:, None, None]
    out = combine(list(scaled), method="mean", scale="median")
    levels = np.median(scaled.reshape(5, -1), axis=1)
    norm = scaled * (levels.mean() / levels)[:, None, None]
    assert_allclose(out.data, norm.mean(0), rtol=1e-6)
    offsets = np.array([0.0, 50.0, -20.0, 5.0, 7.0])
    shifted = base + offsets[:, None, None]
    add = combine(list(shifted), method="median", scale=Scale("mean", mode="additive"))
    means = shifted.reshape(5, -1).mean(1)
    assert_allclose(add.data, np.median(shifted + (means.mean() - means)[:, None, None], 0),
                    rtol=1e-6)
    arr = combine(list(scaled), method="mean", scale=1 / factors)
    assert_allclose(arr.data, base.mean(0), rtol=1e-6)
    func = combine(list(scaled), method="mean", scale=lambda v: 1 / np.median(v))
    assert_allclose(func.data, (scaled / levels[:, None, None]).mean(0), rtol=1e-6)
    assert func.meta["COMBSCAL"] == "multiplicative:callable"
    ccds = [CCDData(d, unit="adu", meta={"EXPTIME": t}) for d, t in zip(base, factors,
                                                                        strict=True)]
    exp = combine(ccds, method="mean", weights="exposure")
    assert_allclose(exp.data, (factors[:, None, None] * base).sum(0) / factors.sum(), rtol=1e-6)
    zero = combine(list(base), method="mean", weights=[1, 1, 0, 1, 1])
    assert zero.meta["NCOMBINE"] == 4
    assert_allclose(zero.data, base[[0, 1, 3, 4]].mean(0), rtol=1e-6)


def test_header_records_settings():
    out = combine(list(_stack(n=5)), method="mean", rejection=SigmaClip(low=4, high=3),
                  scale="median", weights=[1, 2, 3, 4, 5])
    assert out.meta["COMBMETH"] == "mean"
    assert out.meta["COMBREJ"] == "SigmaClip"
    assert out.meta["COMBSCAL"] == "multiplicative:median"
    assert out.meta["COMBWGHT"] == "array"
    assert any("SigmaClip(low=4.0" in str(h) for h in out.meta["HISTORY"])
    step = get_provenance(out).steps[-1]
    params = json.loads(step.parameters_json())
    assert params["rejection"] == {"algorithm": "SigmaClip", "low": 4.0, "high": 3.0,
                                   "center": "median", "scale": "std", "maxiters": 10}
    assert params["weights"] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_small_memory_limit_and_workers_same_result():
    stack = list(_stack(n=5, shape=(50, 300), seed=8))
    a = combine(stack, rejection=SigmaClip(), memory_limit="2MB", workers=2)
    b = combine(stack, rejection=SigmaClip(), workers=1)
    assert_array_equal(a.data, b.data)
    assert_array_equal(a.uncertainty.array, b.uncertainty.array)


def test_errors(tmp_path):
    with pytest.raises(NoFramesError, match="no frames"):
        combine([])
    with pytest.raises(IncompatibleFramesError, match="same shape"):
        combine([np.zeros((3, 3)), np.zeros((3, 4))])
    with pytest.raises(IncompatibleFramesError, match="different units"):
        combine([CCDData(np.zeros((2, 2)), unit="adu"),
                 CCDData(np.zeros((2, 2)), unit="electron")])
    with pytest.raises(IncompatibleFramesError, match="2-D"):
        combine([np.zeros((2, 2, 2))])
    with pytest.raises(IncompatibleFramesError, match="wrap it in a list"):
        combine(np.zeros((2, 2)))
    with pytest.raises(InvalidSettingsError, match="method='max'"):
        combine([np.zeros((2, 2))], method="max")
    with pytest.raises(InvalidSettingsError, match="rejection='sigma'"):
        combine([np.zeros((2, 2))], rejection="sigma")
    with pytest.raises(InvalidSettingsError, match="memory_limit='lots'"):
        combine([np.zeros((2, 2))], memory_limit="lots")
    with pytest.raises(InvalidSettingsError, match="workers=0"):
        combine([np.zeros((2, 2))], workers=0)
    with pytest.raises(InvalidSettingsError, match="not weighted"):
        combine([np.zeros((2, 2))], weights=[1.0])
    with pytest.raises(InvalidSettingsError, match="one weight per frame"):
        combine([np.zeros((2, 2))], method="mean", weights=[1.0, 2.0])
    with pytest.raises(InvalidSettingsError, match="weights='best'"):
        combine([np.zeros((2, 2))], method="mean", weights="best")
    with pytest.raises(MissingMetadataError, match="EXPTIME"):
        combine([np.zeros((2, 2))], method="mean", weights="exposure")
    with pytest.raises(MissingMetadataError, match="uncertainty on every frame"):
        combine([np.zeros((2, 2))], method="mean", weights="inverse-variance")
    with pytest.raises(InvalidSettingsError, match="one per frame"):
        combine([np.zeros((2, 2))], scale=[1.0, 2.0])
    with pytest.raises(InvalidSettingsError, match="mode='both'"):
        Scale("median", mode="both")
    with pytest.raises(InvalidSettingsError, match="level 0"):
        combine([np.zeros((2, 2)), np.ones((2, 2))], scale="median")
    with pytest.raises(TypeError, match="expected a path"):
        combine([1, 2])
    with pytest.raises(FrameReadError, match="no such file"):
        combine([tmp_path / "missing.fits"])
    bad = tmp_path / "short.fits"
    _write_uint16(bad, np.zeros((10, 10)))
    bad.write_bytes(bad.read_bytes()[:3000])
    with pytest.raises(FrameReadError, match="truncated"):
        combine([bad])


def test_running_mean_matches_numpy_and_streams():

    stack = _stack(n=6, shape=(5, 7), seed=9).astype(np.float64)
    stack[2, 1, 1] = np.nan
    steps = list(running_mean(iter(list(stack))))
    assert [s.meta["NCOMBINE"] for s in steps] == [1, 2, 3, 4, 5, 6]
    for k, step in enumerate(steps, start=1):
        part = stack[:k]
        assert_allclose(step.data, np.nanmean(part, axis=0), rtol=1e-6)
        n = np.isfinite(part).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # one value: no std
            sem = np.nanstd(part, axis=0, ddof=1) / np.sqrt(n)
        sem[n < 2] = np.nan
        assert_allclose(step.uncertainty.array, sem, rtol=1e-5, equal_nan=True)
    assert steps[-1].ncombine[1, 1] == 5
    with pytest.raises(NoFramesError, match="no frames"):
        list(running_mean([]))
    with pytest.raises(IncompatibleFramesError, match="shape"):
        list(running_mean([np.zeros((2, 2)), np.zeros((3, 3))]))
    with pytest.raises(IncompatibleFramesError, match="wrap it in a list"):
        list(running_mean(np.zeros((2, 2))))


def test_other_formats_are_decoded_once(tmp_path):
    tifffile = pytest.importorskip("tifffile")

    rng = np.random.default_rng(10)
    ints = rng.integers(100, 4000, size=(4, 12, 16)).astype(np.uint16)
    paths = []
    for i, frame in enumerate(ints):
        path = tmp_path / f"dark_{i}.tif"
        tifffile.imwrite(path, frame)
        paths.append(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        out = combine(paths, method="mean")
    assert_allclose(out.data, ints.astype(np.float64).mean(0), rtol=1e-6)
    assert [r.path for r in get_provenance(out).inputs] == [str(p) for p in paths]
    leftovers = [p for p in tmp_path.parent.glob("calframe-combine-*")]
    assert not leftovers


@pytest.mark.realdata
def test_real_st7_darks(real_data):
    folder = real_data / "ast325-st7"
    paths = sorted(folder.glob("DarkBefore-00?D120s.fit"))
    assert len(paths) == 3
    out = combine(paths, method="median")
    data = np.stack([fits.getdata(p).astype(np.float64) for p in paths])
    data[data >= 65535] = np.nan
    assert_allclose(out.data, np.nanmedian(data, axis=0), rtol=0, atol=0, equal_nan=True)
    assert out.meta["FRAMETYP"] == "dark"
    assert out.meta["EXPTIME"] == pytest.approx(120.0)
    assert {r.frametype for r in get_provenance(out).inputs} == {"dark"}
    # hot pixels grow with exposure (~0.6 ADU/s): the 900 s master is brighter there
    long = combine(sorted(folder.glob("DarkBefore-00?D900s.fit")), method="median")
    hot = out.data > np.nanpercentile(out.data, 99.9)
    assert np.nanmedian(long.data[hot] - out.data[hot]) > 100


def test_weighted_and_uncertain_means_skip_masked_values():
    rng = np.random.default_rng(12)
    stack = rng.normal(50.0, 3.0, size=(5, 8, 9))
    sig = rng.uniform(1.0, 4.0, size=stack.shape)
    masks = rng.random(stack.shape) < 0.2
    masks[:, 0, 0] = True
    stack[masks] = 1e20
    ccds = [CCDData(d, mask=m, unit="adu", uncertainty=StdDevUncertainty(s))
            for d, m, s in zip(stack, masks, sig, strict=True)]
    w = np.array([1.0, 2.0, 3.0, 0.5, 1.5])
    data = np.ma.masked_array(stack, masks)
    ww = np.ma.masked_array(np.broadcast_to(w[:, None, None], stack.shape), masks)
    out = combine(ccds, method="mean", weights=w)
    assert_allclose(out.data, ((data * ww).sum(0) / ww.sum(0)).filled(np.nan), rtol=1e-6,
                    equal_nan=True)
    expect_unc = np.sqrt((ww**2 * sig**2).sum(0)) / ww.sum(0)
    assert_allclose(out.uncertainty.array, expect_unc.filled(np.nan), rtol=1e-5,
                    equal_nan=True)
    iv = combine(ccds, method="mean", weights="inverse-variance")
    iw = np.ma.masked_array(1 / sig**2, masks)
    assert_allclose(iv.data, ((data * iw).sum(0) / iw.sum(0)).filled(np.nan), rtol=1e-6,
                    equal_nan=True)
    assert out.mask[0, 0] and iv.mask[0, 0]
    assert_array_equal(out.ncombine, (~masks).sum(0))


def test_calframe_files_with_uncertainty_and_mask(tmp_path):
    # combining calframe outputs (e.g. masters): UNCERT and MASK are read by offset

    rng = np.random.default_rng(13)
    ccds, paths = [], []
    for i in range(4):
        data = rng.normal(200.0, 2.0, size=(16, 24)).astype(np.float32)
        unc = rng.uniform(1.0, 3.0, size=data.shape).astype(np.float32)
        mask = rng.random(data.shape) < 0.1
        ccd = CCDData(data, unit="electron", uncertainty=StdDevUncertainty(unc), mask=mask)
        ccds.append(ccd)
        paths.append(write_frame(ccd, tmp_path / f"cal_{i}.fits"))
    for method in ("mean", "median"):
        from_files = combine(paths, method=method)
        from_memory = combine(ccds, method=method)
        assert from_files.unit == from_memory.unit
        assert_allclose(from_files.data, from_memory.data, rtol=1e-6, equal_nan=True)
        assert_allclose(from_files.uncertainty.array, from_memory.uncertainty.array,
                        rtol=1e-6, equal_nan=True)
        assert_array_equal(from_files.ncombine, from_memory.ncombine)
    assert get_provenance(from_files).steps[-1].parameters["uncertainty"] == "propagated"


_PEAK_SCRIPT = """
import sys
from pathlib import Path
from calframe import SigmaClip, combine
paths = sorted(Path(sys.argv[2]).glob("m_*.fits"))[: int(sys.argv[1])]
combine(paths, method="mean", rejection=SigmaClip(), memory_limit="4MiB")
from calframe.combining import _kernels, _reject_tile
# kernels compiled here rather than loaded from numba's cache (which another test
# process may be writing at the time): the compiler's memory is not ours
compiled = sum(sum(f.stats.cache_misses.values()) for f in (
    _kernels.combine_block, _kernels.decode_i2be, _reject_tile.reject_tile,
    _reject_tile.reject_scratch))
with open("/proc/self/status") as status:
    print(compiled, next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"),
                    reason="peak memory is read from /proc (Linux)")
def test_memory_does_not_grow_with_the_number_of_paths(tmp_path):

    rng = np.random.default_rng(14)
    for i in range(300):
        hdu = fits.PrimaryHDU(rng.integers(900, 1100, (32, 32)).astype(np.uint16))
        for k in range(60):  # headers of real frames are large
            hdu.header[f"KEY{k}"] = (k, "a comment of a typical length for a header card")
        hdu.writeto(tmp_path / f"m_{i:04d}.fits")

    def peak_kib(n):
        for _ in range(3):  # again if the kernels had to be compiled (see _PEAK_SCRIPT)
            done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), str(tmp_path)],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            compiled, peak = map(int, done.stdout.split()[-2:])
            if not compiled:
                return peak
        raise AssertionError("the kernels were compiled on every run: numba's cache is unusable")

    growth_mib = (peak_kib(300) - peak_kib(10)) / 1024
    assert growth_mib < 10.0, growth_mib
