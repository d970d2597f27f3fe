"""A trim that starts at an odd pixel shifts the Bayer pattern: the output says so."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from calframe import calibrate
from calframe.bayer import PATTERNS, channel_index, effective_pattern


@pytest.mark.parametrize("roworder", ["TOP-DOWN", "BOTTOM-UP"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_odd_trim_keeps_colours_right(pattern, roworder):
    ny, nx = 9, 12
    header = fits.Header({"BAYERPAT": pattern, "XBAYROFF": 1, "YBAYROFF": 0,
                          "ROWORDER": roworder, "EGAIN": 1.0, "RDNOISE": 1.0})
    truth = effective_pattern(header, shape=(ny, nx))
    # each pixel holds its colour's code (R=0, G1=1, G2=2, B=3) times 100, plus 1000
    codes = channel_index((ny, nx), truth).astype(np.float32)
    light = CCDData(1000 + 100 * codes, unit="adu", meta=header)
    bias = CCDData(np.full((ny, nx), 1000, np.float32), unit="adu", meta=header.copy())
    out = calibrate(light, bias=bias, trim="[2:11,2:8]")  # x from 1, y from 1 (0-based)
    got = effective_pattern(out, shape=out.shape)
    expected_codes = channel_index(out.shape, got)
    assert np.array_equal(np.round(out.data / 100).astype(int), expected_codes)
