"""Model stiffness chosen by held-out spots; compact model files; the fast pyFAI export."""

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calframe.cli import main
from calframe.datasets._grid import GridDistortion, make_grid_image
from calframe.distortion import DistortionModel, FitSettings, field_error
from calframe.errors import InvalidSettingsError, OutputExistsError


class Ripple:
    """A 30 px barrel plus a 0.4 px ripple of 5 pitches: finer than the default knots."""

    def __init__(self, shape, amp=0.4, wavelength=90.0):
        self.base = GridDistortion(shape, radial=30.0, smooth=1.0, seed=4)
        self.amp, self.k = amp, 2 * np.pi / wavelength

    def __call__(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        dx, dy = self.base(x, y)
        return dx + self.amp * np.sin(self.k * y), dy + self.amp * np.sin(self.k * x + 1.0)

    def observed(self, xi, yi, iterations=30):
        x, y = np.array(xi, float), np.array(yi, float)
        for _ in range(iterations):
            dx, dy = self(x, y)
            x, y = xi - dx, yi - dy
        return x, y


CANDIDATES = ((3, 2.0), (5, 2.0), (5, 1.5))


@pytest.fixture(scope="module")
def ripple():
    shape = (480, 480)
    field = Ripple(shape)
    img, _ = make_grid_image(shape, pitch=18, spot_radius=4, distortion=field, seed=1)
    return img, field


def test_held_out_spots_choose_a_flexible_model(ripple):
    img, field = ripple
    stiff = DistortionModel.fit(img)
    auto = DistortionModel.fit(img, settings=FitSettings(
        select_stiffness=True, stiffness_candidates=CANDIDATES))
    info = auto.meta["stiffness"]
    assert [(c["radial_order"], c["knot_spacing"]) for c in info["candidates"]] == list(CANDIDATES)
    assert info["chosen"] == [5, 1.5]
    assert auto.meta["settings"]["knot_spacing"] == 1.5
    # against the truth: the chosen model is three times closer to the field
    e_stiff, _ = field_error(stiff, field)
    e_auto, _ = field_error(auto, field)
    assert e_stiff > 0.04 and e_auto < 0.025


def test_smooth_30px_barrel_keeps_the_stiff_model():
    shape = (480, 640)
    field = GridDistortion(shape, radial=30.0, smooth=1.0, seed=4)
    img, _ = make_grid_image(shape, pitch=24, spot_radius=5, distortion=field, seed=1)
    auto = DistortionModel.fit(img, settings=FitSettings(
        select_stiffness=True, stiffness_candidates=CANDIDATES))
    scores = [c["holdout_rms"] for c in auto.meta["stiffness"]["candidates"]]
    # no flexible model beats the stiff one by more than 2 %: the stiffest is kept
    assert auto.meta["stiffness"]["chosen"] == [3, 2.0]
    assert min(scores) > scores[0] / 1.02
    assert field_error(auto, field)[0] < 0.01


def test_time_budget_skips_costly_candidates(ripple):
    img, _ = ripple
    model = DistortionModel.fit(img, settings=FitSettings(
        select_stiffness=True, stiffness_candidates=CANDIDATES, time_budget=0.0))
    info = model.meta["stiffness"]
    assert len(info["candidates"]) == 1 and info["skipped"] == [[5, 2.0], [5, 1.5]]
    assert info["chosen"] == [3, 2.0]


def test_settings_checks():
    assert FitSettings.flexibility("flexible").knot_spacing == 1.5
    assert FitSettings.flexibility("auto", time_budget=5).time_budget == 5
    with pytest.raises(InvalidSettingsError, match="flexibility"):
        FitSettings.flexibility("rubber")
    with pytest.raises(InvalidSettingsError, match="radial_order"):
        FitSettings(radial_order=0)
    with pytest.raises(InvalidSettingsError, match="knot_spacing"):
        FitSettings(knot_spacing=0)
    with pytest.raises(InvalidSettingsError, match="holdout"):
        FitSettings(holdout=1.5)
    with pytest.raises(InvalidSettingsError, match="time_budget"):
        FitSettings(time_budget=-1)


def test_real_clean_grid_is_not_overfitted(real_data):
    from calframe.io import read_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ccd = read_frame(real_data / "dot-grids" / "dot_pattern_05.jpg")
    model = DistortionModel.fit(ccd, settings=FitSettings.flexibility("auto", time_budget=20))
    info = model.meta["stiffness"]
    first = info["candidates"][0]["holdout_rms"]
    chosen = next(c for c in info["candidates"]
                  if [c["radial_order"], c["knot_spacing"]] == info["chosen"])
    # a clean grid: held-out residuals as the default's (0.026 px), no flexible model chosen
    assert chosen["holdout_rms"] <= first and first < 0.03
    assert info["chosen"][1] >= 1.5


def _run(capsys, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["distortion", *map(str, args)])
    return (code, *capsys.readouterr())


def test_cli_stiffness_options(tmp_path, capsys):
    from PIL import Image

    img, _ = make_grid_image((200, 240), pitch=18, spot_radius=4, polarity="dark",
                             amplitude=180, background=40, read_noise=1, poisson=False, seed=2)
    path = tmp_path / "grid.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    out_model = tmp_path / "m.fits"
    code, out, err = _run(capsys, "fit", path, "-o", out_model, "--radial-order", "5",
                          "--knot-spacing", "1.5")
    assert code == 0, err
    settings = DistortionModel.from_fits(out_model).meta["settings"]
    assert settings["radial_order"] == 5 and settings["knot_spacing"] == 1.5
    code, out, err = _run(capsys, "fit", path, "-o", out_model, "--overwrite",
                          "--flexibility", "auto", "--time-budget", "30")
    assert code == 0, err
    assert "held-out spots" in out and "chose radial order" in out
    assert DistortionModel.from_fits(out_model).meta["stiffness"]["chosen"]
    for bad in (["--flexibility", "auto", "--radial-order", "5"], ["--time-budget", "3"],
                ["--flexibility", "stiff", "--time-budget", "3"]):
        code, out, err = _run(capsys, "fit", path, "-o", tmp_path / "x.fits", *bad)
        assert code == 2 and "Traceback" not in err and "--" in err


def _big_model(shape, pitch=26.0):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from bench_distortion_export import model_for
    finally:
        sys.path.pop(0)
    return model_for(shape, pitch)[0]


@pytest.fixture(scope="module")
def big_model():
    return _big_model((2160, 2560))


def test_compact_model_file(tmp_path, big_model):
    path = tmp_path / "m.fits"
    big_model.to_fits(path)
    # 5.5 MP: the parameters and spots, not 45 MB of maps
    assert os.path.getsize(path) < 2.5e6
    back = DistortionModel.from_fits(path)
    x = np.array([3.0, 1000.5, 2550.0])
    y = np.array([7.0, 1500.2, 2100.0])
    assert_allclose(back(x, y), big_model(x, y), atol=1e-10)
    assert_allclose(back.maps()[1][::97, ::89], big_model.maps()[1][::97, ::89], atol=1e-6)


def test_pyfai_export_corners(tmp_path, big_model):
    pytest.importorskip("pyFAI")
    from pyFAI.detectors import NexusDetector

    path = tmp_path / "det.h5"
    big_model.to_pyfai(path, pixel_size=(5e-5, 6e-5))
    assert [p.name for p in tmp_path.iterdir()] == ["det.h5"]  # no temporary left
    det = NexusDetector(str(path))
    assert det.shape == big_model.shape and det.mask.shape == big_model.shape
    assert (det.mask.astype(bool) == ~big_model.valid_mask).all()
    corners = det.get_pixel_corners()
    rows, cols = np.r_[0, 700, 2159], np.r_[0, 1300, 2559]
    for n, (a, b) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
        yy, xx = np.meshgrid(rows + a - 0.5, cols + b - 0.5, indexing="ij")
        dx, dy = big_model(xx, yy)
        got = corners[rows][:, cols][:, :, n]
        assert_allclose(got[..., 2] / 5e-5 - 0.5, xx + dx, atol=1e-3)
        assert_allclose(got[..., 1] / 6e-5 - 0.5, yy + dy, atol=1e-3)
        assert (got[..., 0] == 0).all()
    with pytest.raises(OutputExistsError, match="exists"):
        big_model.to_pyfai(path)
    before = path.stat().st_mtime_ns
    big_model.to_pyfai(path, overwrite=True)
    assert path.stat().st_mtime_ns >= before

