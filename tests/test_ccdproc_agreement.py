"""calframe's calibration against ccdproc's on the same inputs.

Where ccdproc is right, the two agree to 1e-5 relative in data, uncertainty
and mask.  Where it is not (a NaN or masked garbage value in a flat, flat
values below ``min_value``), the tests show what each does; the docs
(guide/ccdproc-differences) explain why.
"""

import warnings

import ccdproc
import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose
from packaging.version import Version

from calframe.calibration import calibrate
from calframe.errors import UncertaintyUnknownWarning

SHAPE = (40, 50)
RTOL = 1e-5


def _ccd(data, sigma, *, unit="adu", **meta):
    return CCDData(np.asarray(data, np.float32), unit=unit, meta=meta,
                   uncertainty=StdDevUncertainty(np.asarray(sigma, np.float32)))


def _inputs(seed=0, *, masks=True):
    rng = np.random.default_rng(seed)
    light = _ccd(rng.uniform(2000, 9000, SHAPE), rng.uniform(30, 90, SHAPE), EXPTIME=90.0)
    bias = _ccd(rng.uniform(950, 1050, SHAPE), rng.uniform(1, 3, SHAPE))
    dark = _ccd(rng.uniform(5, 400, SHAPE), rng.uniform(1, 6, SHAPE), EXPTIME=300.0)
    flat = rng.uniform(0.6, 1.3, SHAPE)
    flat /= flat.astype(np.float32).mean(dtype=np.float64)  # mean 1: ccdproc renormalises
    flat = _ccd(flat, rng.uniform(0.001, 0.01, SHAPE), unit="")
    if masks:
        for ccd, (y, x) in ((light, (3, 4)), (bias, (5, 6)), (dark, (7, 8))):
            ccd.mask = np.zeros(SHAPE, bool)
            ccd.mask[y, x] = True
    return light, bias, dark, flat


def _agree(ours, theirs):
    """Same unit and mask; same data and uncertainty where not masked.

    (Under a pixel masked in a master, ccdproc still applies the master's
    value; calframe leaves the pixel uncorrected.  Both mask it.)
    """
    assert ours.unit == theirs.unit
    theirs_mask = np.zeros(ours.shape, bool) if theirs.mask is None else theirs.mask
    assert_allclose(ours.mask, theirs_mask)
    good = ~ours.mask
    assert_allclose(ours.data[good], theirs.data[good], rtol=RTOL)
    assert_allclose(ours.uncertainty.array[good], theirs.uncertainty.array[good], rtol=RTOL)


def test_ccd_process_bias_dark_flat_gain():
    light, bias, dark, flat = _inputs()
    theirs = ccdproc.ccd_process(light, master_bias=bias, dark_frame=dark, master_flat=flat,
                                 exposure_key="EXPTIME", exposure_unit=u.s, dark_scale=True,
                                 gain=1.7 * u.electron / u.adu, gain_corrected=False)
    ours = calibrate(light, bias=bias, dark=dark, flat=flat, gain=1.7)
    _agree(ours, theirs)


def test_individual_steps():
    light, bias, dark, flat = _inputs(1)
    _agree(calibrate(light, bias=bias), ccdproc.subtract_bias(light, bias))
    _agree(calibrate(light, dark=dark),
           ccdproc.subtract_dark(light, dark, exposure_time="EXPTIME", exposure_unit=u.s,
                                 scale=True))
    _agree(calibrate(light, dark=dark, dark_scale=None),
           ccdproc.subtract_dark(light, dark, exposure_time="EXPTIME", exposure_unit=u.s))
    _agree(calibrate(light, flat=flat), ccdproc.flat_correct(light, flat))


def test_overscan_and_trim_data():
    rng = np.random.default_rng(2)
    rows = rng.uniform(500, 510, (30, 1))
    data = np.hstack([rng.uniform(100, 900, (30, 40)) + rows,
                      rows + rng.normal(0, 2, (30, 8))]).astype(np.float32)
    light = CCDData(data, unit="adu")
    theirs = ccdproc.ccd_process(light, oscan="[41:48,1:30]", trim="[1:40,1:30]",
                                 oscan_median=True)
    ours = calibrate(light, overscan="[41:48,1:30]", trim="[1:40,1:30]")
    assert ours.shape == theirs.shape == (30, 40)
    assert_allclose(ours.data, theirs.data, rtol=RTOL)


def test_nan_in_flat_poisons_ccdproc_but_not_calframe():
    """ccdproc issue #800: flat_correct divides by ``flat.data.mean()``."""
    light, _, _, flat = _inputs(3, masks=False)
    reference = calibrate(light, flat=flat)
    flat.data[10, 10] = np.nan
    ours = calibrate(light, flat=flat)
    assert ours.mask.sum() == 1 and ours.mask[10, 10]
    good = ~ours.mask
    assert_allclose(ours.data[good], reference.data[good], rtol=RTOL)
    assert np.isfinite(ours.data).all()
    theirs = ccdproc.flat_correct(light, flat)
    if Version(ccdproc.__version__) <= Version("2.5.1"):
        assert np.isnan(theirs.data).all()  # every pixel, not only the NaN one


def test_masked_garbage_in_flat_changes_ccdproc_normalisation():
    """ccdproc normalises by the mean of all flat values, masked ones included."""
    light, _, _, flat = _inputs(4, masks=False)
    reference = calibrate(light, flat=flat)
    flat.mask = np.zeros(SHAPE, bool)
    flat.mask[0, 0] = True
    flat.data[0, 0] = 1e5  # a masked, meaningless value
    ours = calibrate(light, flat=flat)
    good = ~ours.mask
    assert_allclose(ours.data[good], reference.data[good], rtol=RTOL)
    theirs = ccdproc.flat_correct(light, flat)
    ratio = np.median(theirs.data[good] / reference.data[good])
    assert ratio == pytest.approx(flat.data.mean(dtype=np.float64), rel=1e-4)
    assert ratio > 40  # every pixel scaled by the masked value


def test_low_flat_values_masked_rather_than_clipped():
    light, _, _, flat = _inputs(5, masks=False)
    flat.data[2, 3] = 0.01
    theirs = ccdproc.flat_correct(light, flat, min_value=0.1, norm_value=1.0)
    # ccdproc divides by min_value: a 10x too bright, unmasked pixel
    assert theirs.data[2, 3] == pytest.approx(light.data[2, 3] / 0.1, rel=RTOL)
    assert theirs.mask is None or not theirs.mask[2, 3]
    ours = calibrate(light, flat=flat.copy())
    assert not ours.mask[2, 3]  # calibrate divides by what it is given (0.01 > 0)
    from calframe.masters import make_master_flat

    master = make_master_flat([CCDData(flat.data * 1000, unit="adu")], normalize="mean",
                              min_value=0.1)
    out = calibrate(light, flat=master)
    assert out.mask[2, 3] and out.data[2, 3] == pytest.approx(light.data[2, 3])


@pytest.mark.realdata
def test_real_st7_dark_subtraction_agrees(real_data):
    from calframe.io import read_frame
    from calframe.masters import make_master_dark

    folder = real_data / "ast325-st7"
    with warnings.catch_warnings():  # no read noise in these headers
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        darks = [read_frame(folder / f"DarkBefore-00{i}D120s.fit") for i in (1, 2, 3)]
        light = read_frame(folder / "Vega.fit")
    master = make_master_dark(darks, method="mean")
    assert master.meta["BIASSUB"] is False  # same exposure: subtracted as it is
    theirs = ccdproc.subtract_dark(light, master, exposure_time="EXPTIME",
                                   exposure_unit=u.s, scale=True)
    ours = calibrate(light, dark=master)
    good = ~ours.mask
    assert good.mean() > 0.99
    assert_allclose(ours.data[good], theirs.data[good], rtol=RTOL, atol=1e-3)


@pytest.mark.realdata
def test_real_saao_overscan_and_trim_agree(real_data):
    """BIASSEC and TRIMSEC of a real CCD frame, applied by both."""
    from calframe.io import read_frame

    light = read_frame(real_data / "saao-ste3" / "a8280271.fits")
    biassec, trimsec = light.meta["BIASSEC"], light.meta["TRIMSEC"]
    theirs = ccdproc.ccd_process(light, oscan=biassec, trim=trimsec, oscan_median=True)
    ours = calibrate(light, overscan=biassec, trim=trimsec)
    assert ours.shape == theirs.shape == (520, 512)
    assert_allclose(ours.data, theirs.data, rtol=RTOL, atol=1e-3)
    assert ours.meta["CALSTAT"] == "OT"
