"""calibrate() refuses a display-encoded light meeting a linear flat."""

import numpy as np
import pytest
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe import calibrate
from calframe.errors import NonLinearDataError, NonLinearDataWarning
from calframe.linearity import encode_gamma


def _vignetted(level):
    yy, xx = np.mgrid[0:64, 0:64]
    vig = 1 - 0.5 * ((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 32**2)
    return vig.astype(np.float32), (level * vig).astype(np.float32)


def test_gamma_light_with_linear_flat_is_refused_or_warned():
    vig, scene = _vignetted(3000.0)
    flat = CCDData(vig, unit="")
    linear = CCDData(scene, unit="adu")
    developed = encode_gamma(linear, white=65535.0)
    assert str(developed.meta.get("GAMMA", "")) != ""
    out = calibrate(linear, flat=flat)
    assert_allclose(out.data, 3000.0, rtol=1e-5)  # linear path: flat field removed
    with pytest.raises(NonLinearDataError, match="flat"):
        calibrate(developed, flat=flat)
    with pytest.warns(NonLinearDataWarning):
        over = calibrate(developed, flat=flat, on_nonlinear="warn")
    corner_over_centre = over.data[0, 0] / over.data[32, 32]
    assert corner_over_centre > 1.05  # the over-correction the check prevents
