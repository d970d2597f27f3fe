"""Tests of calframe.distortion against synthetic grids with a known field."""

import warnings

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table
from numpy.testing import assert_allclose
from scipy import ndimage
from scipy.spatial import cKDTree

from calframe.datasets._grid import GridDistortion, make_grid_image
from calframe.distortion import (
    DistortionModel,
    FailedDistortionFit,
    correct_distortion,
    detect_grid_spots,
    index_lattice,
)

SHAPE = (512, 512)


def _match(spots, truth, *, max_dist=2.0):
    t = truth.spots
    d, k = cKDTree(np.column_stack([t["x"], t["y"]])).query(
        np.column_stack([spots["x"], spots["y"]]))
    return d < max_dist, k


def _expected(truth, shape, *, radius=5.0):
    """Spots whose disk plus a 2 px margin is on the detector (the ones that can be used)."""
    t = truth.spots
    m = radius + 2.0
    ny, nx = shape
    return ((t["x"] - m >= -0.5) & (t["x"] + m <= nx - 0.5) & (t["y"] - m >= -0.5)
            & (t["y"] + m <= ny - 0.5) & t["present"])


def _field_error(model, field, *, step=5):
    """Recovered vs true field inside the hull minus one pitch, affine gauge removed."""
    inner = ndimage.binary_erosion(model.valid_mask, iterations=int(model.meta["pitch_px"]))
    yy, xx = np.nonzero(inner[::step, ::step])
    xx, yy = xx * step.__float__(), yy * float(step)
    dx, dy = model(xx, yy)
    gx, gy = field(xx, yy)
    A = np.column_stack([np.ones(xx.size), xx + dx, yy + dy])
    target = np.column_stack([xx + gx, yy + gy])
    coef = np.linalg.lstsq(A, target, rcond=None)[0]
    e = np.hypot(*(A @ coef - target).T)
    return float(np.sqrt(np.mean(e ** 2))), float(e.max())


@pytest.fixture(scope="module")
def barrel():
    field = GridDistortion(SHAPE, radial=3.0, smooth=2.0, seed=3)
    img, truth = make_grid_image(SHAPE, pitch=24, distortion=field, angle=3.0, seed=2)
    return img, truth, DistortionModel.fit(img)


@pytest.mark.parametrize("polarity", ["bright", "dark"])
def test_detection_accuracy_both_polarities(polarity):
    img, truth = make_grid_image((256, 256), pitch=24, polarity=polarity, seed=5)
    spots = detect_grid_spots(img)
    assert spots.meta["polarity"] == polarity
    good, k = _match(spots, truth)
    assert good.all()
    assert len(spots) == int(_expected(truth, (256, 256)).sum())
    ex = np.asarray(spots["x"]) - np.asarray(truth.spots["x"][k])
    ey = np.asarray(spots["y"]) - np.asarray(truth.spots["y"][k])
    # per-axis rms at amplitude 1000 on background 100, radius 5, Poisson noise
    assert np.sqrt(np.mean(ex ** 2)) <= 0.015
    assert np.sqrt(np.mean(ey ** 2)) <= 0.015
    assert np.abs(np.r_[ex, ey]).max() < 0.06


def test_detection_noise_free_is_unbiased():
    # without noise the only error is the model/pixel-integration mismatch
    img, truth = make_grid_image((200, 200), pitch=24, poisson=False, read_noise=0.0,
                                 offset=(0.23, 0.61), seed=1)
    spots = detect_grid_spots(img)
    _good, k = _match(spots, truth)
    e = np.hypot(spots["x"] - truth.spots["x"][k], spots["y"] - truth.spots["y"][k])
    assert e.max() < 0.003


def test_field_recovered_barrel_plus_random(barrel):
    _img, truth, model = barrel
    assert model
    rms, worst = _field_error(model, truth.field)
    assert rms <= 0.015
    assert worst <= 0.15


def test_indices_correct_up_to_offset(barrel):
    _, truth, model = barrel
    good, k = _match(model.spots, truth)
    assert good.all()
    di = np.asarray(truth.spots["i"][k]) - np.asarray(model.spots["i"])
    dj = np.asarray(truth.spots["j"][k]) - np.asarray(model.spots["j"])
    assert np.unique(di).size == 1 and np.unique(dj).size == 1
    assert len(model.spots) == int(_expected(truth, SHAPE).sum())


def test_independent_shifted_exposure_is_corrected(barrel):
    _, truth, model = barrel
    img2, _truth2 = make_grid_image(SHAPE, pitch=24, distortion=truth.field, angle=3.0,
                                   offset=(9.3, -5.7), seed=11)

    def lattice_rms(x, y):
        # fit an affine lattice to the indexed positions; rms of the residual vectors
        i, j, _ = index_lattice(x, y)
        ok = i > -1000
        A = np.column_stack([np.ones(ok.sum()), i[ok], j[ok]])
        xy = np.column_stack([np.asarray(x)[ok], np.asarray(y)[ok]])
        res = A @ np.linalg.lstsq(A, xy, rcond=None)[0] - xy
        return np.sqrt(np.mean(np.sum(res ** 2, axis=1))), int(ok.sum())

    # spots of the independent exposure moved by the model lie on a regular lattice
    raw = detect_grid_spots(img2)
    inner = ndimage.binary_erosion(model.valid_mask, iterations=int(model.meta["pitch_px"]))
    raw = raw[inner[np.round(raw["y"]).astype(int), np.round(raw["x"]).astype(int)]]
    dx, dy = model(raw["x"], raw["y"])
    rms, n = lattice_rms(raw["x"] + dx, raw["y"] + dy)
    assert n > 250
    assert rms <= 0.02
    # the same through the resampled image (adds the interpolation's blur)
    corrected = correct_distortion(img2, model, method="interpolate")
    spots = detect_grid_spots(CCDData(corrected.data, unit="adu", mask=corrected.mask))
    rms_img, n = lattice_rms(spots["x"], spots["y"])
    assert n > 250
    assert rms_img <= 0.03
    # and the uncorrected exposure is far from a lattice
    assert lattice_rms(raw["x"], raw["y"])[0] > 0.5


def test_sign_convention_and_inverse(barrel):
    _, _truth, model = barrel
    x, y = np.array([100.0, 300.0, 420.0]), np.array([120.0, 250.0, 400.0])
    dx, dy = model(x, y)
    ix, iy = model.inverse(x + dx, y + dy)
    assert_allclose(x + dx + ix, x, atol=1e-4)
    assert_allclose(y + dy + iy, y, atol=1e-4)
    # the model moves observed spots onto their lattice positions
    r = model.residuals
    assert model.rms == pytest.approx(np.sqrt(np.mean(r["dx"][r["used"]] ** 2
                                                      + r["dy"][r["used"]] ** 2)))
    assert model.rms < 0.03


def test_edge_cut_vignetting_missing_spurious():
    field = GridDistortion((384, 448), radial=-2.5, smooth=1.0, seed=8)
    img, truth = make_grid_image((384, 448), pitch=22, distortion=field, polarity="dark",
                                 vignetting=0.6, gradient=0.3, missing=0.05, spurious=12,
                                 offset=(5.5, 3.2), angle=-4, seed=4)
    model = DistortionModel.fit(img)
    assert model
    good, k = _match(model.spots, truth, max_dist=1.0)
    assert good.all()  # no spurious blob was indexed
    di = np.asarray(truth.spots["i"][k]) - np.asarray(model.spots["i"])
    dj = np.asarray(truth.spots["j"][k]) - np.asarray(model.spots["j"])
    assert np.unique(di).size == 1 and np.unique(dj).size == 1
    assert len(model.spots) == int(_expected(truth, (384, 448)).sum())
    rms, worst = _field_error(model, field)
    assert rms <= 0.02
    assert worst <= 0.15


def test_flux_conserved_and_uncertainty():
    field = GridDistortion((256, 256), radial=3.0, smooth=1.0, seed=1)
    img, _ = make_grid_image((256, 256), pitch=20, distortion=field, seed=3)
    model = DistortionModel.fit(img)
    yy, xx = np.mgrid[0:256, 0:256]
    rng = np.random.default_rng(0)
    frame = np.zeros((256, 256))
    centres = rng.uniform(60, 196, size=(20, 2))
    for cx, cy in centres:
        frame += 500 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0 ** 2))
    ccd = CCDData(frame.astype(np.float32), unit="adu",
                  uncertainty=StdDevUncertainty(np.full(frame.shape, 2.0, np.float32)))
    out = correct_distortion(ccd, model)
    assert not out.mask[60:196, 60:196].any()
    assert out.data[~out.mask].sum() == pytest.approx(frame.sum(), rel=1e-3)
    interp = correct_distortion(ccd, model, method="interpolate")
    assert abs(interp.data.sum() / frame.sum() - 1) > abs(out.data.sum() / frame.sum() - 1)
    # bilinear weights: sigma_out between 2/2 and 2 (times the Jacobian, ~1)
    s = out.uncertainty.array[~out.mask]
    assert s.min() > 0.95 and s.max() < 2.1
    assert out.mask[0, 0] and out.mask[-1, -1]


def test_fits_round_trip(tmp_path, barrel):
    _, _, model = barrel
    path = tmp_path / "model.fits"
    model.to_fits(path)
    back = DistortionModel.from_fits(path)
    x, y = np.array([50.0, 256.0, 480.0]), np.array([60.0, 256.0, 470.0])
    assert_allclose(back(x, y), model(x, y), atol=1e-10)
    assert back.rms == pytest.approx(model.rms)
    assert_allclose(back.maps()[0], model.maps()[0])
    # the compact file: a preview of the field every DISTSTEP pixels, the valid area as mask
    ccd = CCDData.read(path)
    step = ccd.meta["DISTSTEP"]
    assert step == 2 and ccd.shape == (256, 256)
    assert_allclose(ccd.data, model.maps()[0][::step, ::step], atol=1e-5)
    assert (ccd.mask == ~model.valid_mask[::step, ::step]).all()
    # full-size maps on request
    full = tmp_path / "full.fits"
    model.to_fits(full, maps=True)
    ccd = CCDData.read(full)
    assert ccd.meta["DISTSTEP"] == 1
    assert_allclose(ccd.data, model.maps()[0])
    assert (ccd.mask == ~model.valid_mask).all()
    assert_allclose(DistortionModel.from_fits(full)(x, y), model(x, y), atol=1e-10)
    from calframe.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="exists"):
        model.to_fits(path)


def test_pyfai_round_trip(tmp_path):
    pyfai_distortion = pytest.importorskip("pyFAI.distortion")
    from pyFAI.detectors import NexusDetector

    field = GridDistortion((192, 224), radial=3.0, smooth=1.5, seed=6)
    img, _ = make_grid_image((192, 224), pitch=20, distortion=field, seed=7)
    model = DistortionModel.fit(img)
    path = tmp_path / "detector.h5"
    model.to_pyfai(path, pixel_size=(5e-5, 5e-5))
    det = NexusDetector(str(path))
    yy, xx = np.mgrid[0:192, 0:224]
    x0, y0 = 150.3, 60.7
    spot = (1000 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8.0)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = pyfai_distortion.Distortion(det).correct(spot)
    b = correct_distortion(spot, model).data

    def centroid(im):
        im = np.nan_to_num(np.asarray(im, float))
        return (im * xx).sum() / im.sum(), (im * yy).sum() / im.sum()

    dx, dy = model(x0, y0)
    assert_allclose(centroid(a), (x0 + dx, y0 + dy), atol=0.01)  # pyFAI moves by +d
    assert_allclose(centroid(b), centroid(a), atol=0.005)
    assert np.nansum(a) == pytest.approx(np.nansum(b), rel=3e-3)
    box = (slice(40, 150), slice(40, 180))
    assert_allclose(b[box], np.nan_to_num(a[box]), atol=0.05 * spot.max())


def test_pixel_size_and_table_input():
    img, _truth = make_grid_image((192, 192), pitch=20, angle=10, seed=1)
    spots = detect_grid_spots(img)
    model = DistortionModel.fit(spots, shape=img.shape)
    sx, sy = model.pixel_size(2.0)
    assert_allclose([sx, sy], [0.1, 0.1], rtol=2e-3)
    with pytest.raises(ValueError, match="shape"):
        DistortionModel.fit(spots)
    with pytest.raises(ValueError, match="'x' and 'y'"):
        DistortionModel.fit(Table({"a": [1.0]}), shape=(10, 10))
    with pytest.raises(ValueError, match="pitch_mm"):
        model.pixel_size(0)


def test_failed_fit_is_falsy():
    spots = Table({"x": [10.0, 30.0, 10.0, 30.0, 50.0], "y": [10.0, 10.0, 30.0, 30.0, 10.0]})
    result = DistortionModel.fit(spots, shape=(64, 64))
    assert isinstance(result, FailedDistortionFit)
    assert not result
    assert "spots indexed" in result.reason


def test_bad_arguments():
    img, _ = make_grid_image((128, 128), pitch=20, seed=0)
    with pytest.raises(ValueError, match="polarity"):
        detect_grid_spots(img, polarity="grey")
    with pytest.raises(ValueError, match="spot_radius"):
        detect_grid_spots(img, spot_radius=-1)
    with pytest.raises(ValueError, match="2-D"):
        detect_grid_spots(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="mask"):
        detect_grid_spots(img, mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="fewer than 4"):
        detect_grid_spots(np.random.default_rng(0).normal(100, 1, (64, 64)))
    model = DistortionModel.fit(img)
    with pytest.raises(ValueError, match="method"):
        correct_distortion(img, model, method="nearest")
    with pytest.raises(ValueError, match="shape"):
        correct_distortion(np.zeros((10, 10)), model)
    with pytest.raises(ValueError, match="polarity"):
        make_grid_image((64, 64), polarity="grey")


def test_lattice_indexing_strong_distortion():
    # distortion of ~ half a pitch over the field: local growth still indexes all
    field = GridDistortion((400, 400), radial=10.0, smooth=3.0, seed=2)
    _, truth = make_grid_image((400, 400), pitch=20, distortion=field, seed=0)
    t = truth.spots[truth.spots["inside"]]
    i, j, nconflict = index_lattice(t["x"], t["y"])
    assert (i > -1000).all()
    assert np.unique(np.asarray(t["i"]) - i).size == 1
    assert np.unique(np.asarray(t["j"]) - j).size == 1
    assert nconflict == 0


def test_plot(barrel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from calframe.distortion import plot_distortion

    img, _, model = barrel
    fig = plot_distortion(model, img)
    assert len(fig.axes) == 5
    plt.close(fig)


def test_cli_fit_and_apply(tmp_path):
    from astropy.io import fits

    from calframe.cli import main

    field = GridDistortion((192, 224), radial=2.0, smooth=1.0, seed=6)
    img, _ = make_grid_image((192, 224), pitch=20, polarity="dark", distortion=field, seed=7)
    grid = tmp_path / "grid.fits"
    fits.PrimaryHDU(img.astype(np.float32)).writeto(grid)
    model = tmp_path / "model.fits"
    det = tmp_path / "det.h5"
    assert main(["distortion", "fit", str(grid), "-o", str(model), "--pyfai", str(det),
                 "--polarity", "dark"]) == 0
    assert model.exists() and det.exists()
    outdir = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no gain in the synthetic header
        assert main(["distortion", "apply", "--model", str(model), str(grid),
                     "-o", str(outdir)]) == 0
    out = CCDData.read(outdir / "grid.fits")
    assert out.shape == (192, 224) and out.mask.any()
    assert main(["distortion", "fit", str(grid), "-o", str(model)]) == 1  # exists


@pytest.mark.realdata
@pytest.mark.slow
def test_real_dot_grid_05(real_data):
    from calframe.io import read_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JPEG: no gain, no noise model
        ccd = read_frame(real_data / "dot-grids" / "dot_pattern_05.jpg")
    model = DistortionModel.fit(ccd)
    assert model
    assert model.meta["nspots"] > 4300
    assert model.meta["nindexed"] == model.meta["nspots"]
    assert model.rms < 0.05
    assert model.spots.meta["polarity"] == "dark"
    # the field agrees with discorpy's independent radial model to a fraction of a pixel
    coef = {}
    for line in (real_data / "dot-grids" / "coef_dot_05.txt").read_text().splitlines():
        key, _, value = line.partition(":")
        coef[key.strip()] = float(value)
    k = [coef[f"factor{i}"] for i in range(5)]
    yy, xx = np.nonzero(model.valid_mask[::8, ::8])
    x, y = xx * 8.0, yy * 8.0
    rd = np.hypot(x - coef["xcenter"], y - coef["ycenter"])
    ru = rd.copy()
    for _ in range(50):  # discorpy backward model: rd = ru * sum(k_i ru**i)
        ru = rd / sum(ki * ru ** i for i, ki in enumerate(k))
    ux = coef["xcenter"] + ru / rd * (x - coef["xcenter"])
    uy = coef["ycenter"] + ru / rd * (y - coef["ycenter"])
    dx, dy = model(x, y)
    A = np.column_stack([np.ones(x.size), x + dx, y + dy])
    target = np.column_stack([ux, uy])
    e = np.hypot(*(A @ np.linalg.lstsq(A, target, rcond=None)[0] - target).T)
    assert np.sqrt(np.mean(e ** 2)) < 0.25
