"""Colour and camera RAW (CFA) grid targets: channel choice, green sites, mosaic correction."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe.cli import main
from calframe.datasets._grid import GridDistortion, make_grid_image
from calframe.distortion import DistortionModel, correct_distortion, field_error
from calframe.errors import InvalidSettingsError

SHAPE = (400, 600)
# white-balance-like gains of the R, G, B sites of an RGGB mosaic
GAINS = {"R": 0.45, "G": 1.0, "B": 0.3}


def _gain_image(shape, pattern="RGGB"):
    g = np.empty(shape)
    for k, letter in enumerate(pattern):
        g[k // 2::2, k % 2::2] = GAINS[letter]
    return g


@pytest.fixture(scope="module")
def cfa_grid():
    field = GridDistortion(SHAPE, radial=6.0, smooth=1.0, seed=2)
    img, _ = make_grid_image(SHAPE, pitch=26, spot_radius=6, polarity="dark",
                             distortion=field, amplitude=3000, background=200, seed=3)
    mosaic = CCDData(img * _gain_image(SHAPE), unit="adu", meta={"BAYERPAT": "RGGB"})
    return mosaic, field


@pytest.mark.parametrize(("channel", "limit"), [(None, 0.025), ("G", 0.025), ("luma", 0.025),
                                                ("r", 0.06), ("b", 0.06)])
def test_cfa_target_fits_on_its_sites(cfa_grid, channel, limit):
    mosaic, field = cfa_grid
    model = DistortionModel.fit(mosaic, channel=channel)
    assert model, getattr(model, "reason", "")
    rms, _ = field_error(model, field)
    assert rms < limit


def test_cfa_mosaic_as_grey_is_not_a_grid(cfa_grid):
    # the same pixels without BAYERPAT: the checkerboard of gains spoils every spot
    mosaic, _ = cfa_grid
    assert not DistortionModel.fit(np.asarray(mosaic.data))


def test_cfa_correction_keeps_the_mosaic(cfa_grid):
    mosaic, _ = cfa_grid
    model = DistortionModel.fit(mosaic)
    ny, nx = SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    ramp = 100.0 + 0.3 * xx + 0.2 * yy
    frame = CCDData(ramp * _gain_image(SHAPE), unit="adu", meta={"BAYERPAT": "RGGB"})
    out = correct_distortion(frame, model, method="interpolate")
    assert out.shape == SHAPE and out.meta["BAYERPAT"] == "RGGB"
    ix, iy = model.inverse_maps()
    # bilinear interpolation within one colour's sites is exact for a linear ramp
    expect = (100.0 + 0.3 * (xx + ix) + 0.2 * (yy + iy)) * _gain_image(SHAPE)
    good = ~out.mask
    assert good.mean() > 0.5
    assert_allclose(out.data[good], expect[good], rtol=2e-6, atol=2e-3)
    # a grey resampling of the same mosaic mixes the colours
    grey = correct_distortion(CCDData(frame.data, unit="adu"), model, method="interpolate")
    g2 = good & ~grey.mask
    assert np.max(np.abs(grey.data[g2] - expect[g2])) > 10.0
    # flux-conserving: the same values times the Jacobian of each site
    flux = correct_distortion(frame, model)
    jac = model._jac
    assert_allclose(flux.data[good], (expect * jac)[good], rtol=2e-6, atol=2e-3)


def test_channel_spellings():
    cube = np.stack([np.full((20, 20), v) for v in (1.0, 2.0, 3.0)])
    from calframe.distortion._channel import select_channel

    assert float(select_channel(cube, "G").data[0, 0]) == 2.0
    assert_allclose(select_channel(cube, "luma").data, select_channel(cube, "luminance").data)
    with pytest.raises(InvalidSettingsError, match="channel must be one of"):
        select_channel(cube, "infrared")


def _run(capsys, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8-bit and header-less files: no noise model
        code = main(["distortion", *map(str, args)])
    return (code, *capsys.readouterr())


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff"])
@pytest.mark.parametrize("channel", [None, "R", "G", "B", "luma"])
def test_cli_rgb_targets(tmp_path, capsys, suffix, channel):
    from PIL import Image

    shape = (240, 320)
    field = GridDistortion(shape, radial=4.0, smooth=0.5, seed=2)
    img, _ = make_grid_image(shape, pitch=20, spot_radius=4, polarity="dark",
                             distortion=field, amplitude=180, background=40, read_noise=1,
                             poisson=False, seed=3)
    g = np.clip(img, 0, 255)
    rgb = np.stack([0.8 * g + 10, g, 0.6 * g + 30], -1).clip(0, 255).astype(np.uint8)
    path = tmp_path / f"grid{suffix}"
    Image.fromarray(rgb).save(path)
    opts = [] if channel is None else ["--channel", channel]
    code, out, err = _run(capsys, "fit", path, "-o", tmp_path / "m.fits", *opts)
    assert code == 0, err
    used = {None: "luminance", "luma": "luminance"}.get(channel, str(channel).lower())
    assert f"({used})" in out
    model = DistortionModel.from_fits(tmp_path / "m.fits")
    assert field_error(model, field)[0] < 0.05
    code, out, err = _run(capsys, "apply", "--model", tmp_path / "m.fits", path,
                          "-o", tmp_path / "c.fits")
    assert code == 0, err
    assert fits.getdata(tmp_path / "c.fits").shape == (3, *shape)


def test_cli_cfa_fits_target(tmp_path, capsys, cfa_grid):
    mosaic, field = cfa_grid
    path = tmp_path / "raw.fits"
    hdr = fits.Header({"BAYERPAT": "RGGB", "XBAYROFF": 0, "YBAYROFF": 0})
    fits.PrimaryHDU(mosaic.data.astype(np.float32), header=hdr).writeto(path)
    code, out, err = _run(capsys, "fit", path, "-o", tmp_path / "m.fits")
    assert code == 0, err
    assert "(g)" in out
    assert field_error(DistortionModel.from_fits(tmp_path / "m.fits"), field)[0] < 0.025
    code, out, err = _run(capsys, "apply", "--model", tmp_path / "m.fits", path,
                          "-o", tmp_path / "c.fits")
    assert code == 0, err
    with fits.open(tmp_path / "c.fits") as hdul:
        assert hdul[0].data.shape == SHAPE and hdul[0].header["BAYERPAT"] == "RGGB"


def test_cli_truncated_rgb_jpeg(tmp_path, capsys):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    full = tmp_path / "full.jpg"
    Image.fromarray(rgb).save(full)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:3000])
    code, _, err = _run(capsys, "fit", cut, "-o", tmp_path / "m.fits")
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"error: {cut}: ") and len(err.strip().splitlines()) == 1
