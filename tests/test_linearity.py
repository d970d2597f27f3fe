"""The gamma failure mode: reproduced numerically, then detected and refused."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe import bayer
from calframe.errors import NonLinearDataError, NonLinearDataWarning
from calframe.linearity import check_linear_pair, encode_gamma, linearity, response_exponent

SHAPE = (480, 720)
# vignetting at the extreme corner pixel per channel (about 0.23 of the centre
# over the 10 % corner boxes for green)
CORNER = {"R": 0.03, "G1": 0.05, "G2": 0.05, "B": 0.08}


def _vignetting(shape, corner):
    """Radial vignetting, 1 at the centre and ``corner`` at the array corners."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2) / (((ny - 1) / 2) ** 2
                                                                  + ((nx - 1) / 2) ** 2)
    return 1 - (1 - corner) * r2


def _night(pattern, seed):
    """A uniformly lit (grey) light and a flat through colour-dependent vignetting.

    Levels give a centre/corner ratio known to about 0.001 (1 sigma) per channel.
    """
    rng = np.random.default_rng(seed)
    corner = CORNER  # colour-dependent vignetting
    sky = {"R": 12000.0, "G1": 20000.0, "G2": 20000.0, "B": 8000.0}
    lamp = {"R": 25000.0, "G1": 40000.0, "G2": 39000.0, "B": 20000.0}
    light = np.empty(SHAPE)
    flat = np.empty(SHAPE)
    for chan, sl in bayer.channel_slices(pattern).items():
        vig = _vignetting(SHAPE, corner[chan])[sl]
        light[sl] = sky[chan] * vig
        flat[sl] = lamp[chan] * vig
    light = rng.poisson(light).astype(np.float32)   # bias already removed
    flat = rng.poisson(flat).astype(np.float32)
    header = fits.Header({"BAYERPAT": pattern})
    return (CCDData(light, unit="adu", meta=header.copy()),
            CCDData(flat, unit="adu", meta=header.copy()))


def _centre_over_corners(frame, pattern):
    table = bayer.channel_statistics(frame, pattern=pattern)
    out = {}
    for chan in bayer.CHANNELS:
        rows = table[table["channel"] == chan]
        centre = rows[rows["region"] == "centre"]["median"][0]
        corners = rows[rows["region"] != "centre"]["median"]
        out[chan] = centre / np.array(corners)
    return out


@pytest.mark.parametrize("pattern", bayer.PATTERNS)
def test_linear_path_flattens_and_gamma_path_over_corrects(pattern):
    light, flat = _night(pattern, seed=1)
    # normalised at the centre, where the vignetting is 1 in every colour
    norm = bayer.normalise_channels(flat, region="centre")
    check_linear_pair(light, norm)  # both linear: accepted
    corrected = CCDData(light.data / norm.data, unit="adu", meta=light.meta)
    for chan, ratios in _centre_over_corners(corrected, pattern).items():
        assert_allclose(ratios, 1.0, atol=0.005, err_msg=chan)
    # per-channel normalisation keeps the sky's colour (the lamp's is gone)
    levels = bayer.channel_scales(corrected, region="centre")
    assert_allclose(levels["R"] / levels["G1"], 12000 / 20000, rtol=0.005)
    assert_allclose(levels["B"] / levels["G1"], 8000 / 20000, rtol=0.005)

    # the seed's failure: the light developed with a gamma of 2.2, the flat linear
    developed = encode_gamma(light, gamma=2.2, white=65535.0)
    bad = CCDData(developed.data / norm.data, unit="adu", meta=light.meta)
    ratios = _centre_over_corners(bad, pattern)
    # truth: the light is ~V**(1/2.2) and the flat ~V, so the centre/corner ratio is
    # (V_centre / V_corner) ** (1/2.2 - 1) with V's medians over the same boxes
    for chan in bayer.CHANNELS:
        vig = bayer.channel_statistics(_vignetting(SHAPE, CORNER[chan]), pattern=pattern)
        vig = vig[vig["channel"] == chan]
        v_centre = vig[vig["region"] == "centre"]["median"][0]
        v_corners = np.array(vig[vig["region"] != "centre"]["median"])
        expected = (v_centre / v_corners) ** (1 / 2.2 - 1)
        assert_allclose(ratios[chan], expected, rtol=0.01, err_msg=chan)
        assert np.all(ratios[chan] < 0.55)
    # the seed's number: centre/corner 0.45 for a green corner at ~23 % of the centre
    assert_allclose(np.mean(ratios["G1"]), 0.45, atol=0.01)
    # ... and calframe refuses the pair, or warns when asked to
    with pytest.raises(NonLinearDataError, match=r"light is not linear \(GAMMA = 2\.2\)"):
        check_linear_pair(developed, norm)
    with pytest.warns(NonLinearDataWarning, match="over-corrects the vignetting"):
        check_linear_pair(developed, norm, on_mismatch="warn")
    check_linear_pair(developed, norm, on_mismatch="ignore")


def test_linearity_rules():
    mono = np.ones((4, 4), np.float32)

    def frame(data=mono, **meta):
        return CCDData(data, unit="adu", meta=fits.Header(meta))

    assert linearity(frame(CFLINEAR=True)) == (True, "CFLINEAR = T")
    assert linearity(frame(CFLINEAR=False, BAYERPAT="RGGB"))[0] is False
    assert linearity(frame(GAMMA=1.0))[0] is True
    assert linearity(frame(GAMMA=2.4)) == (False, "GAMMA = 2.4")
    assert linearity(frame(TRANSFER="sRGB"))[0] is False
    assert linearity(frame(COLORSP="RGB"))[0] is False
    assert linearity(frame(np.ones((3, 4, 4))))[0] is False
    assert linearity(frame(np.ones((3, 4, 4)), DEMOSAIC="bilinear"))[0] is True
    assert linearity(frame(BITPIX=8))[0] is False
    assert linearity(frame(IMGFMT="JPEG")) == (False, "a JPEG image (display-encoded, gamma)")
    assert linearity(frame(IMGFMT="PNG", IMGMODE="L"))[0] is False
    assert linearity(frame(IMGFMT="PNG", IMGMODE="I;16"))[0] is None
    assert linearity(frame(BAYERPAT="GBRG"))[0] is True
    assert linearity(frame()) == (None, "nothing in the header says")
    flat = frame(BAYERPAT="RGGB")
    with pytest.raises(NonLinearDataError, match=r"flat is not linear \(COLORSP"):
        check_linear_pair(frame(BAYERPAT="RGGB"), frame(COLORSP="RGB"))
    with pytest.raises(ValueError, match="on_mismatch='maybe' is not recognised"):
        check_linear_pair(flat, flat, on_mismatch="maybe")
    with pytest.raises(NonLinearDataError, match=r"m31\.jpg is not linear"):
        check_linear_pair(frame(BITPIX=8), flat, light_name="m31.jpg")


def test_encode_gamma_errors_and_values():
    ccd = CCDData(np.array([[0.0, 0.25, 1.0, -1.0]]), unit="adu")
    out = encode_gamma(ccd, gamma=2.0, white=1.0)
    assert_allclose(out.data, [[0.0, 0.5, 1.0, 0.0]])
    assert out.meta["GAMMA"] == 2.0 and out.meta["CFLINEAR"] is False
    with pytest.raises(ValueError, match="gamma=0 must be positive"):
        encode_gamma(ccd, gamma=0)
    with pytest.raises(ValueError, match=r"white=0\.0 must be positive"):
        encode_gamma(ccd, white=0.0)


@pytest.mark.parametrize("gamma", [1.0, 1.8, 2.2])
def test_response_exponent_measures_the_tone_curve(gamma):
    # a bias-subtracted starry sky through colour vignetting, with no header that
    # says whether it was developed: the data tell
    light, flat = _night("GRBG", seed=3)
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    stars = np.zeros(SHAPE)
    for _ in range(150):
        y0, x0 = rng.uniform(0, SHAPE[0]), rng.uniform(0, SHAPE[1])
        stars += rng.uniform(1e3, 3e4) * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / 4.0)
    sky = CCDData((light.data + stars).astype(np.float32), unit="adu", meta=fits.Header())
    if gamma != 1.0:
        sky = encode_gamma(sky, gamma=gamma, white=65535.0)
        sky.meta = fits.Header()  # the developed file says nothing about it
    assert linearity(sky)[0] is None
    flat = bayer.normalise_channels(flat, region="centre")
    exponent = _response(sky, flat)
    assert_allclose(exponent, 1 / gamma, atol=0.03)
    if gamma == 1.0:
        check_linear_pair(sky, flat, check_data=True)
    else:
        with pytest.raises(NonLinearDataError, match=r"looks gamma-encoded .* not flat \*\* 1"):
            check_linear_pair(sky, flat, check_data=True)
        check_linear_pair(sky, flat)  # without check_data the silent header passes


def _response(light, flat):
    return response_exponent(light, flat)


def test_response_exponent_cannot_tell():
    flat = CCDData(np.ones((64, 64)), unit="")            # no vignetting
    light = CCDData(np.full((64, 64), 100.0), unit="adu")
    assert np.isnan(response_exponent(light, flat))
    assert np.isnan(response_exponent(light, CCDData(np.ones((32, 64)), unit="")))
    assert np.isnan(response_exponent(CCDData(np.ones((20, 20)), unit="adu"),
                                      CCDData(np.ones((20, 20)), unit="")))
