"""Tests of calframe.flatquality: per-channel regions, subset comparison, figure."""

import numpy as np
import pytest
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from calframe import bayer
from calframe.flatquality import FlatQuality, flat_quality

SHAPE = (160, 240)
LAMP = {"R": 8000.0, "G1": 20000.0, "G2": 19500.0, "B": 6000.0}


def _coords(shape):
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    return (xx - (nx - 1) / 2) / ((nx - 1) / 2), (yy - (ny - 1) / 2) / ((ny - 1) / 2)


def _flats(pattern, n, *, angle_deg=0.0, gradient=0.0, corner=None, seed=0):
    """n Poisson flats: lamp colour x vignetting x a tilted panel at ``angle_deg``."""
    rng = np.random.default_rng(seed)
    u, v = _coords(SHAPE)
    theta = np.deg2rad(angle_deg)
    panel = 1 + gradient * (np.cos(theta) * u + np.sin(theta) * v)
    truth = np.empty(SHAPE)
    for chan, sl in bayer.channel_slices(pattern).items():
        vig = 1.0 if corner is None else 1 - (1 - corner[chan]) * (u ** 2 + v ** 2) / 2
        truth[sl] = (LAMP[chan] * panel * vig)[sl]
    return [CCDData(rng.poisson(truth).astype(np.float32), unit="adu",
                    meta={"BAYERPAT": pattern}) for _ in range(n)], truth


def test_regions_relative_levels_follow_colour_vignetting():
    corner = {"R": 0.5, "G1": 0.6, "G2": 0.6, "B": 0.7}
    frames, truth = _flats("GRBG", 8, corner=corner, seed=1)
    q = flat_quality(subsets={"a": frames[:4], "b": frames[4:]}, statistic="mean")
    assert isinstance(q, FlatQuality) and q.pattern == "GRBG"
    expected = bayer.channel_statistics(truth, pattern="GRBG")
    centre = {r["channel"]: r["median"] for r in expected if r["region"] == "centre"}
    for row, exp in zip(q.regions, expected, strict=True):
        assert (row["region"], row["channel"]) == (exp["region"], exp["channel"])
        assert_allclose(row["relative"], exp["median"] / centre[exp["channel"]], rtol=0.003)
    # corners are darker in red than in blue, as made
    rel = {r["channel"]: r["relative"] for r in q.regions if r["region"] == "row0-col0"}
    assert rel["R"] < rel["G1"] < rel["B"]
    assert "corner/centre" in q.summary()


def test_snr_of_a_uniform_flat():
    rng = np.random.default_rng(2)
    flat = CCDData(rng.normal(1000, 10, SHAPE).astype(np.float32), unit="adu",
                   meta={"BAYERPAT": "BGGR"})
    q = flat_quality(flat)
    assert q.subsets is None
    # 96 pixels per channel per box: S/N 100 known to ~ 100 / sqrt(2 * 96) = 7 %
    assert_allclose(q.regions["snr"], 100, rtol=0.25)
    assert_allclose(np.mean(q.regions["snr"]), 100, rtol=0.03)


def test_subsets_rotating_panel_tilt_and_noise():
    # three rotations of a panel with a 3 % gradient: each subset against the mean
    # of the two others tilts by 1.5 x 3 % in the subset's direction
    g, n = 0.03, 6
    groups = {}
    for k, angle in enumerate((0, 120, 240)):
        groups[f"{angle} deg"], _ = _flats("RGGB", n, angle_deg=angle, gradient=g, seed=10 + k)
    q = flat_quality(subsets=groups, statistic="mean")
    assert len(q.subsets) == 12
    for row in q.subsets:
        angle = np.deg2rad(float(row["subset"].split()[0]))
        assert row["nframes"] == n
        assert_allclose(row["tilt"], 1.5 * g, rtol=0.05)
        assert_allclose([row["tilt_x"], row["tilt_y"]],
                        [1.5 * g * np.cos(angle), 1.5 * g * np.sin(angle)], atol=0.05 * g)
        # pixel noise about the plane: Poisson of n frames vs 2n frames
        level = LAMP[row["channel"]]
        assert_allclose(row["pix_rms"], np.sqrt(1 / (n * level) + 1 / (2 * n * level)),
                        rtol=0.08)
        assert row["block_ptp"] > 2 * g  # the tilt shows up in the block map

    # no rotation: no tilt beyond the noise
    same = {name: _flats("RGGB", n, gradient=g, seed=20 + k)[0]
            for k, name in enumerate("abc")}
    q = flat_quality(subsets=same, statistic="median")
    assert np.all(q.subsets["tilt"] < 0.001)
    assert "subset a (6 flats)" in q.summary()


def test_plot_writes_png(tmp_path):
    frames, _ = _flats("GBRG", 4, gradient=0.02, seed=3)
    q = flat_quality(subsets={"first": frames[:2], "second": frames[2:]})
    path = q.plot(tmp_path / "flat.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[0] == 360 and image.shape[1] == 4 * 420
    assert image[..., :3].std() > 0.05  # not blank
    q2 = flat_quality(frames[0])
    assert imread(q2.plot(tmp_path / "one.png")).shape[1] == 2 * 420


def test_errors():
    frames, _ = _flats("RGGB", 2)
    with pytest.raises(ValueError, match="needs a flat, or subsets"):
        flat_quality()
    with pytest.raises(ValueError, match="at least two non-empty groups"):
        flat_quality(subsets={"a": frames})
    small = CCDData(np.ones((20, 20), np.float32), unit="adu", meta={"BAYERPAT": "RGGB"})
    with pytest.raises(ValueError, match="different shapes"):
        flat_quality(subsets={"a": frames, "b": [small]})
    with pytest.raises(ValueError, match="statistic='mode' is not recognised"):
        flat_quality(frames[0], statistic="mode")
