"""Tests of the report's previews and per-channel tables, and of hot-pixel counts on
quantised darks (calframe.report, calframe.cosmetic.find_bad_pixels)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose
from scipy import ndimage

from calframe.cosmetic import find_bad_pixels
from calframe.datasets import SyntheticCamera, make_night
from calframe.io import write_frame
from calframe.pipeline import PipelineConfig, run_pipeline
from calframe.report import _channel_table, _light_preview, _master_section, _sample_rows

PNG = b"\x89PNG\r\n\x1a\n"


def _run(base: Path, camera: SyntheticCamera, seed: int) -> Path:
    night = make_night(base / "night", camera=camera, n_bias=3, n_dark=3, n_flat=3,
                       n_light=2, dark_exptimes=(60.0,), light_exptime=60.0, seed=seed)
    result = run_pipeline(PipelineConfig(inputs=[str(night.path)], output=str(base / "out")))
    assert result.ok, result.problems
    return Path(result.report)


@pytest.fixture(scope="module")
def colour_report(tmp_path_factory):
    camera = SyntheticCamera(shape=(40, 56), cfa="RGGB", n_hot_pixels=4, n_dust=1)
    return _run(tmp_path_factory.mktemp("colour"), camera, seed=3)


@pytest.fixture(scope="module")
def mono_report(tmp_path_factory):
    camera = SyntheticCamera(shape=(48, 64), n_hot_pixels=4, n_dust=1)
    return _run(tmp_path_factory.mktemp("mono"), camera, seed=4)


def _previews(text: str) -> list[str]:
    return re.findall(r"<img class='preview' src='([^']+)'", text)


def _png_size(data: bytes) -> tuple[int, int, int]:
    """Width, height and colour type of a PNG (from its IHDR chunk)."""
    assert data[:8] == PNG
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width, height, data[25]


@pytest.mark.parametrize(("which", "channels", "colour_type", "size"), [
    ("colour_report", ("R", "G1", "G2", "B"), 2, (28, 20)),  # RGB of 2x2 superpixels
    ("mono_report", ("L",), 0, (64, 48)),  # grey, one pixel per pixel
])
def test_previews_and_channel_tables_in_the_html(request, which, channels, colour_type,
                                                 size):
    path = request.getfixturevalue(which)
    text = path.read_text()
    sources = _previews(text)
    # bias, dark, flat and two lights
    assert len(sources) == 5
    assert sum("/light-" in s for s in sources) == 2
    for src in sources:
        assert (_png_size((path.parent / src).read_bytes())) == (*size, colour_type)
    tables = re.findall(r"<div class='card[^']*'>.*?</table>", text, flags=re.S)
    assert len(tables) == 5
    for table in tables:
        heading = "median" if "/light-" in table else "centre"
        assert f"<th>corners/{heading}</th>" in table and "<th>S/N</th>" in table
        assert re.findall(r"<tr class='[a-z]*'><td>([A-Z0-9]+)</td>", table) == list(
            channels)
    # the figures drawn before are still there, apart from the previews
    assert len(re.findall(r"<img src='([^']+)'", text)) == 5


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


_CHECK = """<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'check';
  out.textContent = JSON.stringify({
    previews: Array.from(document.querySelectorAll('img.preview'),
                         i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
    tables: Array.from(document.querySelectorAll('div.card table'),
                       t => [t.rows[0].textContent, t.rows.length])});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed "
                    "(Debian package 'chromium')")
@pytest.mark.parametrize(("which", "channels"), [("colour_report", 4), ("mono_report", 1)])
def test_previews_load_in_chromium(request, which, channels):
    path = request.getfixturevalue(which)
    page = path.parent / "check.html"  # beside the report, so its image paths hold
    page.write_text(path.read_text().replace("</body>", _CHECK + "</body>"))
    start = time.perf_counter()
    done = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-extensions",
                           "--no-first-run", "--virtual-time-budget=3000", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    found = re.search(r"<pre id=\"check\">(.*?)</pre>", done.stdout, flags=re.S)
    assert found is not None, done.stderr[-2000:]
    check = json.loads(html.unescape(found.group(1)))
    assert len(check["previews"]) == 5
    for src, complete, width in check["previews"]:
        assert complete and width > 0, src
    assert len(check["tables"]) == 5
    for heading, nrows in check["tables"]:
        assert "corners/" in heading and nrows == 1 + channels
    assert elapsed < 30, f"Chromium took {elapsed:.1f} s"


def _light(path: Path, data: np.ndarray, pattern: str | None) -> Path:
    meta = {"EXPTIME": 60.0}
    if pattern:
        meta["BAYERPAT"] = pattern
    mask = np.zeros(data.shape, bool)
    mask[3, 5] = True
    data = data.copy()
    data[3, 5] = 1e9  # masked: not in the statistics
    return write_frame(CCDData(data.astype(np.float32), unit="adu", mask=mask, meta=meta),
                       path)


def test_an_over_corrected_corner_is_flagged(tmp_path):
    ny, nx = 600, 800
    rng = np.random.default_rng(5)
    data = rng.normal(1000.0, 10.0, (ny, nx))
    data[: ny // 10, -nx // 10:] *= 1.2  # row 0, last column: 20% too bright
    path = _light(tmp_path / "light.fits", data, "RGGB")
    card, flagged = _light_preview(path, "light", tmp_path / "previews", "light.png")
    assert flagged and "flagcard" in card
    assert card.count("<tr class='flag'>") == 4
    # the binning is 2 (400 cells on the long side), and one row of cells in 2 is read
    assert "binned 2x2" in card and "one row of cells in 2 read" in card
    for row in re.findall(r"<tr class='flag'>(.*?)</tr>", card):
        ratios = re.findall(r"<td>([0-9.]+)-([0-9.]+)</td>", row)[0]
        assert_allclose([float(r) for r in ratios], [1.0, 1.2], atol=0.01)
    plain = _light(tmp_path / "flat_sky.fits", rng.normal(1000.0, 10.0, (ny, nx)), None)
    card, flagged = _light_preview(plain, "flat sky", tmp_path / "previews", "sky.png")
    assert not flagged and "<tr class='flag'>" not in card and "mono" in card


def test_light_statistics_from_a_sample_of_rows_agree_with_the_whole_frame(tmp_path):
    rng = np.random.default_rng(6)
    cell = np.array([[3000.0, 2000.0], [1900.0, 1000.0]])
    data = np.tile(cell, (300, 400)) + rng.normal(0.0, 30.0, (600, 800))
    path = _light(tmp_path / "light.fits", data, "GRBG")
    sampled = _sample_rows(fits.getdata(path), None, True, 4)
    assert sampled.shape == (2 * 75, 800)
    full = _channel_table(data.astype(np.float32), "GRBG")
    part = _channel_table(sampled, "GRBG")
    assert full["channel"].tolist() == part["channel"].tolist() == ["R", "G1", "G2", "B"]
    # GRBG: R is the second pixel of the first row
    assert_allclose(full["median"], [2000.0, 3000.0, 1000.0, 1900.0], atol=1.0)
    assert_allclose(part["median"], full["median"], atol=1.0)
    assert_allclose(part["std"], 30.0, rtol=0.05)


class _RowCounter:
    """An array that records which rows are read from it."""

    def __init__(self, array):
        self.array, self.rows = array, set()
        self.shape, self.ndim = array.shape, array.ndim

    def __getitem__(self, key):
        rows = key[-2]
        self.rows.update(np.arange(self.shape[0])[rows].tolist())
        return self.array[key]


@pytest.mark.parametrize(("cfa", "step", "expected"), [(True, 8, 2 * 32), (False, 8, 64)])
def test_only_the_sampled_rows_are_read(cfa, step, expected):
    counter = _RowCounter(np.zeros((512, 300), np.float32))
    sample = _sample_rows(counter, None, cfa, step)
    assert len(counter.rows) == expected == sample.shape[0]
    if cfa:  # whole 2x2 cells: each row read is paired with the next one
        assert all((r + 1 if r % 2 == 0 else r - 1) in counter.rows for r in counter.rows)


# --- hot pixels of quantised darks ----------------------------------------------------

def _quantised_dark(seed: int, *, noise: float, n_hot: int, shape=(256, 256)):
    """An integer-valued dark of level 100 whose MAD is 0, with n_hot hot pixels."""
    rng = np.random.default_rng(seed)
    dark = np.rint(100.0 + rng.normal(0.0, noise, shape))
    where = rng.choice(dark.size, n_hot, replace=False)
    dark.ravel()[where] += rng.integers(20, 2000, n_hot)
    truth = np.zeros(shape, bool)
    truth.ravel()[where] = True
    return dark.astype(np.float32), truth


@pytest.mark.parametrize("noise", [0.1, 0.3, 0.45])
def test_hot_pixels_of_an_integer_dark_whose_mad_is_zero(noise):
    for seed in range(8):
        dark, truth = _quantised_dark(seed, noise=noise, n_hot=37)
        dev = dark - ndimage.median_filter(dark, 5, mode="reflect")
        assert np.median(np.abs(dev - np.median(dev))) == 0
        bad = find_bad_pixels(CCDData(dark, unit="adu"), hot_sigma=5.0)
        assert_allclose(bad, truth)


def test_the_report_counts_the_hot_pixels_of_a_quantised_master_dark(tmp_path):
    dark, _ = _quantised_dark(11, noise=0.3, n_hot=25)
    path = write_frame(CCDData(dark, unit="adu", meta={"EXPTIME": 60.0}),
                       tmp_path / "dark.fits")
    text = _master_section(path, "dark_60s", "dark", tmp_path / "report")
    assert "hot pixels beyond 5 robust sigma 25," in text
    assert (tmp_path / "report" / "previews" / "dark-dark_60s.png").read_bytes()[:8] == PNG


@pytest.mark.realdata
def test_hot_pixels_of_the_real_st7_dark_also_when_requantised(real_data):
    """The ST-7 900 s dark (MAD 15 adu), and the same dark requantised by 40 adu (MAD 0).

    On the dark as read the count is that of 5 sigma from its own MAD; on the
    requantised dark, whose MAD is 0, the count stays within a few percent of
    it, where the plain MAD would flag every pixel above its neighbours' median.
    """
    path = real_data / "ast325-st7" / "DarkBefore-001D900s.fit"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the real data folder")
    dark = fits.getdata(path).astype(np.float32)
    dev = dark - ndimage.median_filter(dark, 5, mode="reflect")
    sigma = 1.482602218505602 * np.median(np.abs(dev - np.median(dev)))
    expected = int(np.sum(dev > 5 * sigma))
    found = int(find_bad_pixels(CCDData(dark, unit="adu")).sum())
    assert abs(found - expected) <= 0.01 * expected
    coarse = np.rint(dark / 40.0).astype(np.float32)
    cdev = coarse - ndimage.median_filter(coarse, 5, mode="reflect")
    assert np.median(np.abs(cdev - np.median(cdev))) == 0
    assert np.sum(cdev > 0) > 5 * expected  # what a MAD of 0 used to flag
    requantised = int(find_bad_pixels(CCDData(coarse, unit="adu")).sum())
    assert abs(requantised - found) <= 0.05 * found
