"""Tests of calframe.report: figures, tables and the HTML page (rendered in Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe.datasets import SyntheticCamera, make_night
from calframe.pipeline import PipelineConfig, run_pipeline
from calframe.report import flat_channel_table, stretch, write_report

CAMERA = SyntheticCamera(shape=(40, 56), cfa="RGGB", n_hot_pixels=4, n_dust=1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    night = make_night(base / "night", camera=CAMERA, n_bias=3, n_dark=5, n_flat=3,
                       n_light=2, dark_exptimes=(60.0,), light_exptime=60.0, seed=7)
    leak = sorted(str(p) for p in night.files_of("dark"))[1]
    with fits.open(leak, mode="update") as hdul:  # a dark with a light leak
        hdul[0].data += np.uint16(500)
    (base / "night" / "lights" / "empty.fits").write_bytes(b"")
    config = PipelineConfig(inputs=[str(night.path)], output=str(base / "out"))
    result = run_pipeline(config)
    return base / "out" / "report.html", result, leak


def test_report_sections_and_figures(report):
    path, result, leak = report
    assert result.report == str(path)
    text = path.read_text()
    for heading in ("Problems", "Plan", "Groups", "Masters", "Frame quality",
                    "Calibrated lights"):
        assert f"<h2>{heading}</h2>" in text or f"<h3>{heading}</h3>" in text
    assert "empty.fits" in text and "the file is empty" in text
    images = re.findall(r"<img src='([^']+)'", text)
    # three masters, the flat's profiles, the quality plot
    assert len(images) == 5
    for src in images:
        png = (path.parent / src).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the leaking dark is flagged in the quality table
    row = re.search(r"<tr class='flag'>(.*?)</tr>", text)
    assert row is not None and leak in row.group(1)
    assert text.count("<tr class='flag'>") == 1
    # the camera has 4 hot pixels, all found in the master dark
    assert "hot pixels beyond 5 robust sigma 4," in text
    # per-channel centre/corner table of the CFA flat
    for channel in ("R", "G1", "G2", "B"):
        assert f"<td>{channel}</td>" in text


def test_report_is_rewritten_atomically(report, tmp_path):
    _, result, _ = report
    again = write_report(result, tmp_path / "copy.html")
    assert again == tmp_path / "copy.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.html", "report"]


def test_flat_channel_table_known_vignetting():
    """Each CFA channel's corner/centre ratio is that channel's own truth."""
    ny, nx = 80, 120
    truth = {"R": (1.10, 0.70), "G1": (1.00, 0.80), "G2": (1.02, 0.82), "B": (0.90, 0.60)}
    data = np.empty((ny, nx), np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    centre = (abs(yy - ny / 2) < ny / 4) & (abs(xx - nx / 2) < nx / 4)
    offsets = {"R": (0, 0), "G1": (0, 1), "G2": (1, 0), "B": (1, 1)}
    for chan, (dy, dx) in offsets.items():
        sel = (yy % 2 == dy) & (xx % 2 == dx)
        data[sel & centre] = truth[chan][0]
        data[sel & ~centre] = truth[chan][1]
    flat = CCDData(data, unit="", meta={"BAYERPAT": "RGGB"})
    table = flat_channel_table(flat)
    assert len(table) == 5 * 4
    for row in table:
        c, k = truth[row["channel"]]
        expected = 1.0 if row["region"] == "centre" else k / c
        assert_allclose(row["relative"], expected, rtol=1e-6)
    mono = flat_channel_table(CCDData(data, unit=""))
    assert set(mono["channel"]) == {"L"}


def test_stretch():
    image = np.linspace(0, 100, 400).reshape(20, 20)
    mask = np.zeros(image.shape, bool)
    mask[0, 0] = True
    out = stretch(image, mask=mask)
    assert np.isnan(out[0, 0])
    values = out[~mask]
    assert np.all(np.diff(values) >= 0) and values.min() == 0.0 and values.max() == 1.0
    assert np.all(np.isnan(stretch(np.full((3, 3), np.nan))))


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed "
                    "(Debian package 'chromium')")
def test_report_renders_in_chromium(report, tmp_path):
    path, _, _ = report
    shot = tmp_path / "shot.png"
    done = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--window-size=1200,2400",
                           f"--screenshot={shot}", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1200)
    grey = pixels[..., :3].mean(axis=2)
    # not a blank page: dark text and figure pixels over a good part of the page
    assert (grey < 0.5).mean() > 0.01
    assert grey.std() > 0.1


def test_run_with_distortion_model(tmp_path):
    """Lights corrected with a fitted grid model; the report draws the field."""
    from calframe.datasets._grid import GridDistortion, make_grid_image
    from calframe.distortion import DistortionModel

    image, _ = make_grid_image((96, 96), pitch=16, spot_radius=3.0,
                               distortion=GridDistortion((96, 96), radial=1.5, smooth=0.5),
                               seed=2)
    model = DistortionModel.fit(image, pitch=16)
    assert model
    model_path = tmp_path / "model.fits"
    model.to_fits(model_path)
    night = make_night(tmp_path / "night", camera=SyntheticCamera(shape=(96, 96), n_dust=0),
                       n_bias=3, n_dark=3, n_flat=3, n_light=1, dark_exptimes=(60.0,),
                       light_exptime=60.0, seed=3)
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out"))
    result = run_pipeline(config.replace(calibrate__distortion=str(model_path)))
    assert result.ok, result.problems
    text = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Distortion</h2>" in text and "report/distortion.png" in text
    light = tmp_path / "out" / "lights" / "light_0001.fits"
    plain = run_pipeline(config.replace(output=str(tmp_path / "plain"), report=False))
    assert plain.ok
    corrected, reference = fits.getdata(light), fits.getdata(
        tmp_path / "plain" / "lights" / "light_0001.fits")
    assert corrected.shape == reference.shape
    assert not np.allclose(corrected, reference, equal_nan=True)


def test_block_means_of_the_displayed_images():
    """The compiled block means are numpy's nanmean of the masked blocks."""
    from calframe._binning import block_nanmean

    rng = np.random.default_rng(0)
    for shape, f in [((10, 13), 2), ((37, 41), 4), ((100, 90), 6)]:
        a = rng.normal(5, 2, shape).astype(np.float32)
        a[:f, :f] = np.nan  # a block without a usable pixel
        a[f, f + 1] = np.inf  # counted, as nanmean does
        m = rng.random(shape) < 0.2
        ny, nx = shape[0] // f * f, shape[1] // f * f
        blocks = np.where(m, np.nan, a.astype(np.float64))[:ny, :nx]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmean(blocks.reshape(ny // f, f, nx // f, f), axis=(1, 3))
        got = block_nanmean(a, m, f)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert np.isnan(got[0, 0])
