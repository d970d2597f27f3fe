"""calibrate() refuses a display-encoded light meeting a linear flat."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose

from calframe import calibrate, write_frame
from calframe.cli import main
from calframe.errors import NonLinearDataError, NonLinearDataWarning, UncertaintyUnknownWarning
from calframe.linearity import encode_gamma
from calframe.provenance import get_provenance


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


def _mosaic_night(tmp_path, gamma=None):
    """A vignetted RGGB flat and light as FITS files; the light gamma-encoded on request,
    with no keyword saying so (a converter's 16-bit mosaic)."""
    rng = np.random.default_rng(11)
    shape = (256, 384)
    y, x = np.indices(shape, dtype=float)
    vig = 1 - 0.55 * (((y - 128) / 128) ** 2 + ((x - 192) / 192) ** 2) / 2
    header = fits.Header({"BAYERPAT": "RGGB", "EGAIN": 1.0, "RDNOISE": 3.0, "EXPTIME": 1.0})
    flat_path = tmp_path / "flat.fits"
    flat = CCDData((vig / np.median(vig)).astype(np.float32), unit="",
                   meta={**header, "FRAMETYP": "flat", "FLATNORM": "median"},
                   uncertainty=StdDevUncertainty(np.full(shape, 1e-3, np.float32)))
    write_frame(flat, flat_path)
    light = rng.poisson(20000 * vig).astype(float)
    if gamma is not None:
        light = 65535.0 * (light / 65535.0) ** (1 / gamma)
    light_path = tmp_path / "light.fits"
    header["IMAGETYP"] = "Light Frame"
    fits.PrimaryHDU(light.astype(np.uint16), header=header).writeto(light_path)
    return str(light_path), str(flat_path)


def test_gamma_mosaic_without_keyword_is_refused_from_its_pixels(tmp_path, capsys):
    light, flat = _mosaic_night(tmp_path, gamma=2.2)
    with pytest.raises(NonLinearDataError, match=r"looks gamma-encoded \(response exponent "
                       r"0\.4\d"):
        calibrate(light, flat=flat)
    code = main(["calibrate", light, "--flat", flat, "-o", str(tmp_path / "cal")])
    err = capsys.readouterr().err
    assert code == 1 and "looks gamma-encoded" in err and "--assume-linear" in err
    # the override goes ahead and is recorded
    out = calibrate(light, flat=flat, assume_linear=True)
    step = get_provenance(out).steps[-1].parameters
    assert step["assume_linear"] is True and step["linearity"]["verdict"] is False
    assert main(["-q", "calibrate", light, "--flat", flat, "-o", str(tmp_path / "cal"),
                 "--assume-linear"]) == 0


def test_linear_mosaic_passes_and_the_measurement_is_recorded(tmp_path):
    light, flat = _mosaic_night(tmp_path)
    out = calibrate(light, flat=flat)
    check = get_provenance(out).steps[-1].parameters["linearity"]
    assert check["verdict"] is True and abs(check["exponent"] - 1) < 0.02


def test_gamma_encoded_flats_are_refused_by_make_master_flat():
    from calframe.masters import make_master_flat

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:256, 0:256]
    vig = 1 - 0.5 * ((xx - 128) ** 2 + (yy - 128) ** 2) / (2 * 128 ** 2)
    linear = [CCDData(rng.poisson(k * 20000 * vig).astype(np.float32), unit="adu")
              for k in (1.0, 1.2, 1.4)]
    master = make_master_flat(linear)
    step = get_provenance(master).steps[-1].parameters
    assert step["linearity"]["verdict"] is not False and "assume_linear" not in step
    developed = []
    for frame in linear:
        encoded = encode_gamma(frame, gamma=2.2, white=65535.0)
        for key in ("GAMMA", "CFLINEAR"):             # a converter that says nothing
            encoded.meta.pop(key, None)
        developed.append(encoded)
    with pytest.raises(NonLinearDataError, match="the flats look gamma-encoded"):
        make_master_flat(developed)
    forced = make_master_flat(developed, assume_linear=True)
    step = get_provenance(forced).steps[-1].parameters
    assert step["assume_linear"] is True and step["linearity"]["verdict"] is False


def test_an_rgb_picture_on_a_mosaic_flat_is_refused_for_its_gamma(tmp_path):
    from PIL import Image

    path = tmp_path / "light.jpg"
    Image.fromarray(np.full((64, 96, 3), 120, np.uint8)).save(path)
    flat = CCDData(np.ones((64, 96), np.float32), unit="",
                   meta={"FRAMETYP": "flat", "FLATNORM": "median", "BAYERPAT": "RGGB"},
                   uncertainty=StdDevUncertainty(np.full((64, 96), 1e-3, np.float32)))
    with pytest.warns(UncertaintyUnknownWarning), pytest.raises(NonLinearDataError,
                                              match=r"light.jpg is not linear.*over-corrects"):
        calibrate(str(path), flat=flat)
