"""Hand-off of a calibrated frame to pyFAI's integrate1d: mask and variance carried over."""

import numpy as np
import pytest

from calframe import calibrate, read_frame
from hdf5_layouts import write_eiger, write_lima

pyFAI = pytest.importorskip("pyFAI")


def _integrator(shape):
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    detector = Detector(pixel1=75e-6, pixel2=75e-6, max_shape=shape)
    return AzimuthalIntegrator(dist=0.08, poni1=shape[0] / 2 * 75e-6,
                               poni2=shape[1] / 2 * 75e-6, detector=detector,
                               wavelength=1e-10)


@pytest.mark.slow
def test_integrate1d_with_calframe_mask_and_variance(tmp_path):
    shape = (192, 200)
    ai = _integrator(shape)
    r = ai.array_from_unit(shape=shape, typ="center", unit="r_mm")

    def profile(radius):
        return 300.0 * np.exp(-radius / 4.0) + 40.0      # counts in the exposure

    rng = np.random.default_rng(7)
    offset = 50.0
    n = 4
    frames = (rng.poisson(profile(r), size=(n, *shape)) + offset
              + rng.normal(0, 2.0, (n, *shape))).round()
    mask = np.zeros(shape, np.uint32)
    mask[90:94, :] = 1                                  # a module gap
    frames[:, 90:94, :] = np.iinfo(np.uint32).max       # as the detector writes it
    master = write_eiger(tmp_path, "ring", frames.astype(np.uint32), pixel_mask=mask,
                         count_time=1.0, frame_time=1.0)
    dark = write_lima(tmp_path / "dark_1s.h5",
                      (offset + rng.normal(0, 2.0, (1, *shape))).round().astype(np.uint32),
                      exposure_time=1.0)
    model = {"gain": 1.0, "read_noise": 2.0}
    pulls = []
    for k in range(n):
        ccd = calibrate(read_frame(master, frame=k, **model), dark=read_frame(dark, **model))
        assert ccd.mask[90:94].all() and ccd.meta["PEDSRC"] == "dark"
        result = ai.integrate1d(np.asarray(ccd.data, np.float64), 80, unit="r_mm",
                                mask=ccd.mask, variance=ccd.uncertainty.array.astype(float) ** 2,
                                method=("no", "histogram", "cython"),
                                correctSolidAngle=False, polarization_factor=None)
        assert np.all(np.isfinite(result.intensity)) and result.intensity.max() < 1000
        # the mean over each ring of the truth, by the same binning
        truth = ai.integrate1d(profile(r), 80, unit="r_mm", mask=ccd.mask,
                               method=("no", "histogram", "cython"),
                               correctSolidAngle=False, polarization_factor=None)
        pulls.append((result.intensity - truth.intensity) / result.sigma)
    pulls = np.concatenate(pulls)
    assert abs(np.std(pulls) - 1.0) < 0.15, np.std(pulls)
    assert abs(np.mean(pulls)) < 0.2, np.mean(pulls)
