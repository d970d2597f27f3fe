"""Straightness of grid rows and columns (``grid_straightness``, ``calframe distortion check``)."""

import warnings

import numpy as np
import pytest
from astropy.nddata import CCDData
from scipy.spatial import cKDTree

from calframe.cli import main
from calframe.datasets import GridDistortion, make_grid_image
from calframe.distortion import DistortionModel, Straightness, grid_straightness
from calframe.distortion._check import _line_residuals
from calframe.errors import InvalidSettingsError

SHAPE = (240, 320)


@pytest.fixture(scope="module")
def barrel():
    """A grid seen through a 20 px barrel (at the corners), its truth and its model."""
    field = GridDistortion(SHAPE, radial=20.0, smooth=0.0, seed=1)
    img, truth = make_grid_image(SHAPE, pitch=20, distortion=field, seed=1)
    model = DistortionModel.fit(img)
    assert model and model.rms < 0.03
    return img, truth, model


def test_line_residuals_known_points():
    # points on y = 0.5 x + 3 with known perpendicular offsets
    t = np.arange(6.0)
    off = np.array([0.1, -0.1, 0.0, 0.0, -0.1, 0.1])  # no mean, no trend
    n = np.array([-0.5, 1.0]) / np.hypot(0.5, 1.0)
    x = 10 * t + off * n[0]
    y = 0.5 * (10 * t) + 3 + off * n[1]
    res, normal, nlines = _line_residuals(x, y, np.zeros(6, int))
    assert nlines == 1
    sign = np.sign(normal[0] @ n)
    np.testing.assert_allclose(sign * res, off, atol=1e-12)
    # a line of 3 spots is not measured
    res, _, nlines = _line_residuals(x[:3], y[:3], np.zeros(3, int))
    assert nlines == 0 and np.isnan(res).all()


def test_distorted_grid_is_not_straight_and_matches_truth(barrel):
    img, truth, _ = barrel
    raw = grid_straightness(img)
    assert isinstance(raw, Straightness)
    assert raw.max > 2.0 and raw.p99 > 1.5 and raw.mean > 0.4
    assert raw.nlines >= 20 and raw.nspots >= 150
    # the same measure on the true spot centres gives the same residuals
    ts = truth.spots[truth.spots["inside"] & truth.spots["present"]]
    d, k = cKDTree(np.c_[ts["x"], ts["y"]]).query(np.c_[raw.spots["x"], raw.spots["y"]])
    assert d.max() < 0.1
    tx, ty = np.asarray(ts["x"])[k], np.asarray(ts["y"])[k]
    for key, col in (("j", "row_residual"), ("i", "column_residual")):
        expected, _, _ = _line_residuals(tx, ty, np.asarray(raw.spots[key]))
        got = np.asarray(raw.spots[col])
        assert np.array_equal(np.isnan(expected), np.isnan(got))
        assert np.nanmax(np.abs(expected - got)) < 0.06


def test_correction_makes_the_grid_straight(barrel):
    img, _, model = barrel
    raw = grid_straightness(img)
    fixed = grid_straightness(img, model)
    assert fixed.nlines >= 20
    assert fixed.mean < 0.05 and fixed.p99 < 0.1
    assert fixed.p99 < raw.p99 / 20


def test_undistorted_grid_is_straight():
    img, _ = make_grid_image(SHAPE, pitch=20, seed=2, read_noise=1.0, poisson=False)
    res = grid_straightness(img)
    assert res.nlines >= 20
    assert res.max < 0.05


def test_colour_and_mask_inputs(barrel):
    img, _, model = barrel
    cube = CCDData(np.stack([img, 0.5 * img, 0.2 * img]), unit="adu")
    grey = grid_straightness(img, model)
    colour = grid_straightness(cube, model, channel="r")
    assert colour.nlines == grey.nlines
    assert abs(colour.p99 - grey.p99) < 0.01
    mask = np.zeros(SHAPE, bool)
    mask[:, :160] = True
    half = grid_straightness(img, mask=mask)
    assert half.nspots < grid_straightness(img).nspots
    assert np.all(np.asarray(half.spots["x"]) > 155)
    # with a model the mask is in the raw frame, applied before the correction
    half = grid_straightness(img, model, mask=mask)
    assert half.nspots < grid_straightness(img, model).nspots
    assert np.all(np.asarray(half.spots["x"]) > 150) and half.p99 < 0.1
    with pytest.raises(InvalidSettingsError, match="mask"):
        grid_straightness(img, model, mask=mask[:10])


def test_no_grid_raises():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidSettingsError, match="no grid measured"):
        grid_straightness(rng.normal(100, 3, SHAPE))
    with pytest.raises(InvalidSettingsError, match="polarity"):
        grid_straightness(np.ones(SHAPE), polarity="up")


@pytest.mark.realdata
def test_real_grid_straighter_after_correction(real_data):
    from calframe.io import read_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ccd = read_frame(real_data / "dot-grids" / "dot_pattern_05.jpg")
    model = DistortionModel.fit(ccd)
    assert model
    raw = grid_straightness(ccd)
    fixed = grid_straightness(ccd, model)
    assert fixed.nlines > 0.8 * raw.nlines
    assert fixed.mean < raw.mean / 2
    assert fixed.p99 < raw.p99 / 2


# --------------------------------------------------------------------------- CLI

def _grid_files(tmp_path, barrel):
    img, _, model = barrel
    grid = tmp_path / "grid.fits"
    CCDData(img, unit="adu").write(grid)
    mfile = tmp_path / "model.fits"
    model.to_fits(mfile)
    return grid, mfile


def _numbers(out):
    vals = {}
    for line in out.splitlines():
        key, _, val = line.partition(":")
        if key in ("lines", "spots", "mean", "p99", "max"):
            vals[key] = float(val.split()[0])
    return vals


def test_cli_check(tmp_path, barrel, capsys):
    grid, mfile = _grid_files(tmp_path, barrel)
    assert main(["distortion", "check", str(grid)]) == 0
    raw = _numbers(capsys.readouterr().out)
    assert set(raw) == {"lines", "spots", "mean", "p99", "max"}
    png = tmp_path / "res.png"
    assert main(["distortion", "check", str(grid), "--model", str(mfile), "-o", str(png)]) == 0
    out = capsys.readouterr().out
    fixed = _numbers(out)
    assert fixed["p99"] < raw["p99"] / 20 and raw["max"] > 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.fits", "model.fits", "res.png"]
    # an existing output is kept unless --overwrite
    before = png.read_bytes()
    assert main(["distortion", "check", str(grid), "-o", str(png)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--overwrite" in err and "Traceback" not in err
    assert png.read_bytes() == before
    assert main(["distortion", "check", str(grid), "-o", str(png), "--overwrite"]) == 0
    assert png.read_bytes() != before


def test_cli_check_errors(tmp_path, barrel, capsys):
    grid, _ = _grid_files(tmp_path, barrel)
    blank = tmp_path / "noise.fits"
    CCDData(np.random.default_rng(0).normal(100, 3, SHAPE), unit="adu").write(blank)
    assert main(["distortion", "check", str(blank)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(blank) in err and "no grid" in err
    assert len(err.splitlines()) == 1
    # a file that is not a model
    assert main(["distortion", "check", str(grid), "--model", str(blank)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(blank) in err and len(err.splitlines()) == 1
    # a model of another detector size
    small, _ = make_grid_image((160, 160), pitch=20, seed=3)
    other = tmp_path / "other.fits"
    DistortionModel.fit(small).to_fits(other)
    assert main(["distortion", "check", str(grid), "--model", str(other)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(grid) in err and len(err.splitlines()) == 1
    # an unreadable image
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file")
    assert main(["distortion", "check", str(junk)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(junk) in err and len(err.splitlines()) == 1
