"""Masters and calibration on real instrument files (../shared/data/real)."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calframe.calibration import calibrate
from calframe.errors import UncertaintyUnknownWarning
from calframe.io import read_frame
from calframe.masters import make_master_dark, make_master_flat

pytestmark = pytest.mark.realdata

_SUFFIX = {120: "D120s.fit", 300: "D300s_.fit", 900: "D900s.fit"}


def _st7(folder, t, **kw):
    return [read_frame(folder / f"DarkBefore-00{i}{_SUFFIX[t]}", **kw) for i in (1, 2, 3)]


def _robust_std(x):
    return 1.482602218505602 * np.median(np.abs(x - np.median(x)))


@pytest.fixture(scope="module")
def st7_masters(real_data):
    """Mean master darks of the ST-7 at 120, 300 and 900 s, with a noise model.

    The headers give EGAIN (2.55 e-/ADU) but no read noise and no bias: the
    read noise comes from the difference of two 120 s darks (dark current is
    negligible there), the bias level (no photon noise) from the intercept of
    the dark signal against exposure.
    """
    folder = real_data / "ast325-st7"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        plain = {t: _st7(folder, t) for t in _SUFFIX}
    diff = plain[120][0].data - plain[120][1].data
    read_noise_adu = _robust_std(diff) / np.sqrt(2)
    gain = float(plain[120][0].meta["EGAIN"])
    med = {t: np.median([f.data for f in plain[t]], axis=0) for t in plain}
    pedestal = float(np.median(med[120] - 120 * (med[900] - med[120]) / 780))
    frames = {t: _st7(folder, t, read_noise=read_noise_adu * gain, pedestal=pedestal)
              for t in _SUFFIX}
    masters = {t: make_master_dark(frames[t], method="mean") for t in frames}
    return masters, pedestal


def test_st7_rate_from_120_and_900_s_predicts_the_300_s_master(st7_masters):
    masters, pedestal = st7_masters
    m120, m300, m900 = (masters[t] for t in (120, 300, 900))
    for m in (m120, m300, m900):
        assert m.meta["BIASSUB"] is False and m.meta["NCOMBINE"] == 3
    # straight line through (120 s, M120) and (900 s, M900), evaluated at 300 s
    w900 = (300 - 120) / (900 - 120)
    predicted = (1 - w900) * m120.data + w900 * m900.data
    sigma = np.sqrt(m300.uncertainty.array**2 + (1 - w900) ** 2 * m120.uncertainty.array**2
                    + w900**2 * m900.uncertainty.array**2)
    pull = (m300.data - predicted) / sigma
    rate = (m900.data - m120.data) / 780.0
    # almost every pixel: the prediction holds to within the noise
    assert abs(pull.mean()) < 0.1
    assert abs(pull.std() - 1) < 0.05
    warm = (rate > 0.05) & (rate <= 2)
    assert warm.sum() > 1000
    assert abs(pull[warm].mean()) < 0.3 and abs(pull[warm].std() - 1) < 0.15
    # hot pixels (> 2 ADU/s) are several sigma above the line: their dark
    # signal grows sublinearly (the rate over 300-900 s is lower than over
    # 120-300 s), by a few per cent of the signal
    hot = rate > 2
    assert 100 < hot.sum() < 1000
    assert np.median(pull[hot]) > 1
    early = (m300.data - m120.data)[hot] / 180.0
    late = (m900.data - m300.data)[hot] / 600.0
    slowdown = np.median(late / early)
    assert 0.85 < slowdown < 0.98
    excess = np.median((m300.data - predicted)[hot] / (predicted[hot] - pedestal))
    assert 0.01 < excess < 0.08


def test_st7_scaled_dark_needs_the_bias(st7_masters):
    from calframe.errors import IncompatibleFramesError

    masters, _ = st7_masters
    with pytest.raises(IncompatibleFramesError, match="includes the bias"):
        calibrate(masters[300], dark=masters[900])


def test_esrf_normalised_projection(real_data):
    folder = real_data / "esrf-id16b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        plain = read_frame(folder / "dark.edf")
    # the files carry no gain: the noise model is stated, not measured
    # (1 e-/ADU; read noise from the dark's pixel scatter, with its offset as
    # the level that carries no photon noise)
    offset = float(np.median(plain.data))
    read_noise = float(_robust_std(plain.data))
    model = dict(gain=1.0, read_noise=read_noise, pedestal=offset)
    dark = read_frame(folder / "dark.edf", **model)
    flat = read_frame(folder / "flat.edf", **model)
    data = read_frame(folder / "data.edf", **model)
    master_flat = make_master_flat([flat], dark=dark, normalize=None, dark_scale=None)
    out = calibrate(data, dark=dark, flat=master_flat, dark_scale=None)
    d, f, k = (np.asarray(x.data, np.float64) for x in (data, flat, dark))
    expected = (d - k) / (f - k)
    good = ~out.mask
    assert good.mean() > 0.999
    assert_allclose(out.data[good], expected[good], rtol=1e-5)
    assert out.unit.physical_type == "dimensionless"
    # per-pixel uncertainty: first-order propagation of the three frames', the
    # dark being in numerator and denominator: dT/dk = (T - 1) / (f - k)
    sd, sf, sk = (np.asarray(x.uncertainty.array, np.float64) for x in (data, flat, dark))
    num, den = d - k, f - k
    var = (sd**2 + expected**2 * sf**2 + (1 - expected) ** 2 * sk**2) / den**2
    assert_allclose(out.uncertainty.array[good], np.sqrt(var)[good], rtol=1e-4)
    assert np.all(out.uncertainty.array[good] > 0)
    # transmission of a phase-contrast projection: about 1 with a few % contrast
    assert np.median(out.data[good]) == pytest.approx(1.0, abs=0.01)
    assert num.shape == out.shape
