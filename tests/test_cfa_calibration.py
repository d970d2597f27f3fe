"""End to end on synthetic RAW-like CFA frames: bias, per-colour flat, calibration.

Each of the four patterns, a different black level per CFA position and
colour-dependent vignetting (calframe.datasets); a flat-lit light must come out
flat in every channel (centre/corner 1.000 +- 0.005) with the same colour
everywhere (each channel within 0.5 % of the others, relative to the centre).
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

import calframe
from calframe import bayer
from calframe.datasets import SyntheticCamera, bias_frame, flat_frame
from calframe.errors import UncertaintyUnknownWarning


def _relative_levels(frame):
    """Median of each channel in each corner box divided by its centre median."""
    table = bayer.channel_statistics(frame)
    out = {}
    for chan in bayer.CHANNELS:
        rows = table[table["channel"] == chan]
        centre = rows[rows["region"] == "centre"]["median"][0]
        out[chan] = np.array(rows[rows["region"] != "centre"]["median"]) / centre
    return out


@pytest.mark.parametrize("pattern", bayer.PATTERNS)
def test_flat_lit_light_is_flat_and_grey_in_every_channel(pattern):
    camera = SyntheticCamera(shape=(160, 240), cfa=pattern,
                             bias_level=(1000.0, 1040.0, 980.0, 1020.0),
                             vignetting=0.35, vignetting_colour=(1.4, 1.0, 0.6),
                             n_dust=0, n_hot_pixels=0, read_noise=3.0, gain=1.5,
                             pattern_seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        biases = [bias_frame(camera, seed=i).to_ccddata() for i in range(5)]
        flats = [flat_frame(camera, level=30000, seed=100 + i).to_ccddata()
                 for i in range(6)]
        light = flat_frame(camera, level=25000, seed=999).to_ccddata()
    raw = _relative_levels(light)
    # the raw light is vignetted, more in red than in blue
    assert np.all(raw["R"] < raw["G1"]) and np.all(raw["G1"] < raw["B"])
    assert np.all(raw["R"] < 0.8)

    master_bias = calframe.make_master_bias(biases)
    master_flat = calframe.make_master_flat(flats, bias=master_bias)
    out = calframe.calibrate(light, bias=master_bias, flat=master_flat)
    assert bayer.effective_pattern(out) == pattern
    rel = _relative_levels(out)
    for chan in bayer.CHANNELS:
        assert_allclose(rel[chan], 1.0, atol=0.005, err_msg=chan)
        # colour: each channel against green, relative to the centre
        assert_allclose(rel[chan] / rel["G1"], 1.0, atol=0.005, err_msg=chan)
