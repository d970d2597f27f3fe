"""``calframe distortion`` on bad or unusual input: colour images, line grids,
blank and noise images, models of another shape, corrupt model files, and
where ``apply`` writes.  Every refusal is one ``error: <file>: <what>; <fix>``
line with exit code 1 (2 for usage errors), never a traceback."""

import json
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table

from calframe.cli import main
from calframe.datasets._grid import GridDistortion, make_grid_image
from calframe.distortion import DistortionModel, correct_distortion, detect_grid_spots
from calframe.errors import (
    CalframeError,
    FrameReadError,
    IncompatibleFramesError,
    InvalidSettingsError,
)

SHAPE = (96, 128)


def _grid(shape=SHAPE, *, pitch=14.0, radius=3.0, seed=1):
    """An 8-bit dark-dots-on-bright grid image (as a printed target photographed)."""
    field = GridDistortion(shape, radial=1.0, smooth=0.3, seed=seed)
    img, _ = make_grid_image(shape, pitch=pitch, spot_radius=radius, polarity="dark",
                             amplitude=160.0, background=50.0, distortion=field,
                             read_noise=1.0, poisson=False, supersample=2, seed=seed)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rgb(grey):
    """A colour version: three planes of different gains."""
    g = grey.astype(float)
    planes = [g, 0.8 * g + 10, 0.6 * g + 30]
    return np.stack([np.clip(p, 0, 255).astype(np.uint8) for p in planes], axis=-1)


def _save(path, array):
    from PIL import Image

    Image.fromarray(array).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def _run(capsys, *args):
    """Run the command line; return (exit code, stdout, stderr)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["distortion", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err, name):
    """The stderr of a refusal: one line, ``error: <name>: <what>; <fix>``."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"error: {name}: "), line
    assert "; " in line, line
    return line


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory):
    """A grey PNG grid, the model fitted on it, and the RGB PNG and JPEG of the same grid."""
    d = tmp_path_factory.mktemp("grid")
    grey = _grid()
    gpath = _save(d / "grid.png", grey)
    model = d / "model.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNG: no noise model
        assert main(["distortion", "fit", str(gpath), "-o", str(model)]) == 0
    return {"grey": gpath, "model": model, "rgb_png": _save(d / "rgb.png", _rgb(grey)),
            "rgb_jpg": _save(d / "rgb.jpg", _rgb(grey)), "dir": d}


# ------------------------------------------------------------------ colour input
def test_fit_rgb_jpeg(tmp_path, capsys, grey_model):
    model = tmp_path / "m.fits"
    code, out, err = _run(capsys, "fit", grey_model["rgb_jpg"], "-o", model)
    assert code == 0, err
    assert "(luminance)" in out and model.exists()
    fitted = DistortionModel.from_fits(model)
    assert fitted.shape == SHAPE and fitted.rms < 0.1
    code, out, err = _run(capsys, "fit", grey_model["rgb_png"], "-o", tmp_path / "r.fits",
                          "--channel", "r")
    assert code == 0, err
    assert "(r)" in out


def test_fit_grey_refuses_colour_plane(tmp_path, capsys, grey_model):
    code, _, err = _run(capsys, "fit", grey_model["grey"], "-o", tmp_path / "m.fits",
                        "--channel", "g")
    assert code == 1
    assert "--channel" in _one_error_line(err, grey_model["grey"])


def test_library_cube_needs_channel():
    cube = np.moveaxis(_rgb(_grid()), -1, 0).astype(float)
    with pytest.raises(InvalidSettingsError, match="channel='luminance'"):
        detect_grid_spots(cube)
    with pytest.raises(InvalidSettingsError, match="channel"):
        DistortionModel.fit(cube)
    with pytest.raises(InvalidSettingsError, match="channel must be one of"):
        detect_grid_spots(cube, channel="red")
    with pytest.raises(InvalidSettingsError, match="grey"):
        detect_grid_spots(cube[0], channel="r")
    lum = detect_grid_spots(cube, channel="luminance")
    green = detect_grid_spots(cube, channel="g")
    assert len(lum) == len(green) == len(detect_grid_spots(cube[0])) > 20
    model = DistortionModel.fit(cube, channel="b")
    assert model and model.shape == SHAPE


def test_apply_rgb_frame_with_grey_model(tmp_path, capsys, grey_model):
    out = tmp_path / "rgb-corrected.fits"
    code, _, err = _run(capsys, "apply", "--model", grey_model["model"], grey_model["rgb_png"],
                        "-o", out)
    assert code == 0, err
    cube = CCDData.read(out)
    assert cube.shape == (3, *SHAPE)
    # each plane gets the same correction as the plane alone
    model = DistortionModel.from_fits(grey_model["model"])
    raw = np.moveaxis(_rgb(_grid()), -1, 0).astype(np.float32)
    for k in range(3):
        alone = correct_distortion(raw[k], model)
        np.testing.assert_array_equal(cube.mask[k], alone.mask)
        np.testing.assert_allclose(cube.data[k][~alone.mask], alone.data[~alone.mask],
                                   rtol=1e-6)
    code, _, err = _run(capsys, "apply", "--model", grey_model["model"],
                        grey_model["rgb_png"], "-o", tmp_path / "g.fits", "--channel", "g")
    assert code == 0, err
    assert CCDData.read(tmp_path / "g.fits").shape == SHAPE


def test_correct_distortion_cube_library(grey_model):
    model = DistortionModel.from_fits(grey_model["model"])
    raw = np.moveaxis(_rgb(_grid()), -1, 0).astype(np.float32)
    out = correct_distortion(raw, model)
    assert out.shape == raw.shape and out.mask.shape == raw.shape
    lum = correct_distortion(raw, model, channel="luminance")
    assert lum.shape == SHAPE
    with pytest.raises(IncompatibleFramesError, match="shape"):
        correct_distortion(raw[:, :50], model)


# ------------------------------------------------------------- not a dot grid
def test_line_grid_is_fitted_and_stripes_refused(tmp_path, capsys):
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    rng = np.random.default_rng(0)
    lines = np.where((x % 16 < 2) | (y % 16 < 2), 40.0, 210.0) + rng.normal(0, 2, SHAPE)
    # an undistorted square grid of lines: fitted on its crossings, a field of ~0
    for name, img in (("lines.png", lines), ("lines-bright.png", 250 - lines)):
        path = _save(tmp_path / name, np.clip(img, 0, 255).astype(np.uint8))
        code, out, err = _run(capsys, "fit", path, "-o", tmp_path / "m.fits", "--overwrite")
        assert code == 0, err
        assert "line crossings" in out
        model = DistortionModel.from_fits(tmp_path / "m.fits")
        assert model.meta["nindexed"] >= 30 and model.rms < 0.05
        xx, yy = np.meshgrid([40.0, 64.0, 88.0], [30.0, 48.0, 66.0])
        dx, dy = model(xx, yy)
        assert np.abs(dx - dx.mean()).max() < 0.05 and np.abs(dy - dy.mean()).max() < 0.05
    # lines in one direction only: no crossings, refused with what was found
    stripes = np.where(x % 16 < 2, 40.0, 210.0) + rng.normal(0, 2, SHAPE)
    path = _save(tmp_path / "stripes.png", np.clip(stripes, 0, 255).astype(np.uint8))
    code, _, err = _run(capsys, "fit", path, "-o", tmp_path / "s.fits")
    assert code == 1
    line = _one_error_line(err, path)
    assert "line pattern, not a dot grid" in line and "line crossings" in line
    assert "candidate spot" in line and "fitted" in line and "indexed" in line
    assert not (tmp_path / "s.fits").exists()


def test_failed_fit_reports_what_was_found(tmp_path, capsys):
    rng = np.random.default_rng(3)
    path = _save(tmp_path / "noise.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    code, _, err = _run(capsys, "fit", path, "-o", tmp_path / "m.fits")
    assert code == 1
    line = _one_error_line(err, path)
    assert "candidate spot" in line and "fitted" in line and "indexed" in line
    # no polarity found a lattice: both are reported, and the fix is not a polarity
    assert "both polarities tried" in line and "with polarity bright" in line
    assert "with polarity dark" in line and "--spot-radius" in line
    code, _, err = _run(capsys, "fit", path, "-o", tmp_path / "m.fits", "--polarity", "bright")
    line = _one_error_line(err, path)
    assert code == 1 and "polarity bright, as requested" in line
    # the library: a falsy result that says the same
    result = DistortionModel.fit(rng.normal(100, 1, (64, 64)))
    assert not result and result.ncandidates is not None and result.nindexed == 0
    assert "candidate spot" in result.reason and result.polarity in ("bright", "dark")
    assert result.auto_polarity and "both polarities" in result.suggestion()
    assert [t["polarity"] for t in result.tried] == [
        {"bright": "dark", "dark": "bright"}[result.polarity]]


@pytest.mark.parametrize("case", ["blank", "noise", "tiny", "allnan", "fewnan"])
def test_fit_bad_images(tmp_path, capsys, case):
    rng = np.random.default_rng(5)
    if case == "blank":
        path = _save(tmp_path / "blank.png", np.full((64, 64), 128, np.uint8))
        expect = "same value"
    elif case == "noise":
        path = tmp_path / "noise.fits"
        fits.PrimaryHDU(rng.normal(100, 5, (64, 64)).astype(np.float32)).writeto(path)
        expect = "fewer than 4 spots"
    elif case == "tiny":
        path = _save(tmp_path / "tiny.png", np.full((5, 5), 9, np.uint8))
        expect = "too small"
    elif case == "allnan":
        path = tmp_path / "nan.fits"
        fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(path)
        expect = "NaN"
    else:  # a grid with a block of NaN still fits
        img = _grid().astype(np.float32)
        img[30:45, 40:70] = np.nan
        path = tmp_path / "fewnan.fits"
        fits.PrimaryHDU(img).writeto(path)
        expect = None
    code, out, err = _run(capsys, "fit", path, "-o", tmp_path / "m.fits")
    if expect is None:
        assert code == 0 and "indexed" in out, err
        return
    assert code == 1
    assert expect in _one_error_line(err, path)


def test_fit_bad_options(tmp_path, capsys, grey_model):
    code, _, err = _run(capsys, "fit", grey_model["grey"], "-o", tmp_path / "m.fits",
                        "--spot-radius", "-2")
    assert code == 2 and "Traceback" not in err
    code, _, err = _run(capsys, "fit", grey_model["grey"], "-o", grey_model["grey"],
                        "--overwrite")
    assert code == 1 and "grid image" in _one_error_line(err, grey_model["grey"])
    code, _, err = _run(capsys, "fit", tmp_path / "missing.png", "-o", tmp_path / "m.fits")
    assert code == 2 and "does not exist" in err and "Traceback" not in err


# ------------------------------------------------------------------------ apply
def test_model_of_another_shape(tmp_path, capsys):
    img, _ = make_grid_image((800, 1000), pitch=50, spot_radius=6, supersample=2, seed=1)
    grid = tmp_path / "grid1000.fits"
    fits.PrimaryHDU(img.astype(np.float32)).writeto(grid)
    model = tmp_path / "model1000.fits"
    assert _run(capsys, "fit", grid, "-o", model)[0] == 0
    frame = tmp_path / "frame640.fits"
    fits.PrimaryHDU(np.ones((540, 640), np.float32)).writeto(frame)
    code, _, err = _run(capsys, "apply", "--model", model, frame, "-o", tmp_path / "c.fits")
    assert code == 1
    line = _one_error_line(err, frame)
    assert str(model) in line
    assert "640 x 540" in line and "1000 x 800" in line
    assert "calframe distortion fit" in line
    assert not (tmp_path / "c.fits").exists()


def _corrupt_models(d, good):
    raw = good.read_bytes()
    out = {}
    (d / "truncated.fits").write_bytes(raw[:len(raw) // 3])
    out["truncated"] = (d / "truncated.fits", "truncated")
    frame = d / "frame.fits"
    fits.PrimaryHDU(np.zeros((8, 8), np.float32)).writeto(frame)
    out["frame"] = (frame, "not a calframe distortion model")
    png = d / "picture.fits"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    out["png"] = (png, "not a readable calframe distortion model")
    with fits.open(good) as hdul:
        params = json.loads(hdul["DISTPAR"].data["json"][0])
        params["format"] = 99
        hdul["DISTPAR"] = fits.BinTableHDU(Table({"json": [json.dumps(params)]}),
                                           name="DISTPAR")
        hdul.writeto(d / "future.fits")
    out["version"] = (d / "future.fits", "format 99")
    with fits.open(good) as hdul:
        del hdul["SPLCOEF"]
        hdul.writeto(d / "partial.fits")
    out["partial"] = (d / "partial.fits", "SPLCOEF")
    return out


@pytest.mark.parametrize("case", ["truncated", "frame", "png", "version", "partial"])
def test_corrupt_model_file(tmp_path, capsys, grey_model, case):
    path, expect = _corrupt_models(tmp_path, grey_model["model"])[case]
    code, _, err = _run(capsys, "apply", "--model", path, grey_model["grey"],
                        "-o", tmp_path / "c.fits")
    assert code == 1
    line = _one_error_line(err, path)
    assert expect in line
    with pytest.raises(FrameReadError):
        DistortionModel.from_fits(path)


def test_missing_model_file(tmp_path, capsys, grey_model):
    code, _, err = _run(capsys, "apply", "--model", tmp_path / "nope.fits",
                        grey_model["grey"], "-o", tmp_path / "c.fits")
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    with pytest.raises(FrameReadError, match="no such file"):
        DistortionModel.from_fits(tmp_path / "nope.fits")


@pytest.mark.parametrize("case", ["blank", "tiny", "nan", "truncated", "cube"])
def test_apply_bad_frames(tmp_path, capsys, grey_model, case):
    if case == "cube":
        path = tmp_path / "cube.fits"
        fits.PrimaryHDU(np.zeros((5, *SHAPE), np.float32)).writeto(path)
    elif case == "blank":
        path = _save(tmp_path / "blank.png", np.full(SHAPE, 7, np.uint8))
    elif case == "tiny":
        path = _save(tmp_path / "tiny.png", np.full((5, 5), 7, np.uint8))
    elif case == "nan":
        path = tmp_path / "nan.fits"
        fits.PrimaryHDU(np.full(SHAPE, np.nan, np.float32)).writeto(path)
    else:
        path = tmp_path / "cut.png"
        path.write_bytes(grey_model["rgb_png"].read_bytes()[:400])
    code, _, err = _run(capsys, "apply", "--model", grey_model["model"], path,
                        "-o", tmp_path / "c.fits")
    if case in ("blank", "nan"):  # the right shape: corrected (the NaN masked)
        assert code == 0, err
        if case == "nan":
            assert CCDData.read(tmp_path / "c.fits").mask.all()
        return
    assert code == 1
    _one_error_line(err, path)


# ------------------------------------------------------------------ where to write
def test_apply_output_file_and_folder(tmp_path, capsys, grey_model):
    model, grey, rgb = grey_model["model"], grey_model["grey"], grey_model["rgb_png"]
    # one input: -o is the file
    code, out, _ = _run(capsys, "apply", "--model", model, grey, "-o", tmp_path / "one.fits")
    assert "one.fits" in out
    assert code == 0 and (tmp_path / "one.fits").is_file()
    # an existing output needs --overwrite
    code, _, err = _run(capsys, "apply", "--model", model, grey, "-o", tmp_path / "one.fits")
    assert code == 1 and "--overwrite" in _one_error_line(err, tmp_path / "one.fits")
    # several inputs: -d is the folder
    code, _, err = _run(capsys, "apply", "--model", model, grey, rgb, "-d", tmp_path / "many")
    assert code == 0, err
    assert {p.name for p in (tmp_path / "many").iterdir()} == {"grid.fits", "rgb.fits"}
    # old behaviour: -o a folder with several inputs
    code, _, err = _run(capsys, "apply", "--model", model, grey, rgb, "-o", tmp_path / "old")
    assert code == 0, err
    assert (tmp_path / "old" / "rgb.fits").is_file()
    # a file name with several inputs is a usage error
    code, _, err = _run(capsys, "apply", "--model", model, grey, rgb, "-o", tmp_path / "x.fits")
    assert code == 2 and "--output-dir" in err
    # two inputs that would land on the same name
    code, _, err = _run(capsys, "apply", "--model", model, rgb, grey_model["rgb_jpg"],
                        "-d", tmp_path / "dup")
    assert code == 2 and "both" in err
    code, _, err = _run(capsys, "apply", "--model", model, grey)
    assert code == 2 and "--output-dir" in err


def test_apply_help_documents_outputs(capsys):
    assert main(["distortion", "apply", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--output-dir" in out and "--channel" in out and "-o FILE" in out


def test_errors_are_calframe_errors(grey_model):
    model = DistortionModel.from_fits(grey_model["model"])
    for call in (lambda: correct_distortion(np.zeros((10, 10)), model),
                 lambda: correct_distortion(np.zeros(SHAPE), model, method="nearest"),
                 lambda: correct_distortion(np.zeros((2, *SHAPE)), model),
                 lambda: detect_grid_spots(np.zeros((4, 5, 6))),
                 lambda: DistortionModel.fit(np.zeros((64, 64)), pitch=-1.0)):
        with pytest.raises(CalframeError):
            call()
