"""Tests of the cfa-stats, flat-quality and demosaic commands."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from calframe import bayer
from calframe.cli import main

LEVELS = {"R": 1000.0, "G1": 2000.0, "G2": 2000.0, "B": 1500.0}


def _write(path, pattern="GRBG", seed=0, shape=(40, 60), gradient=0.0, **keywords):
    rng = np.random.default_rng(seed)
    data = np.empty(shape)
    xx = np.linspace(-1, 1, shape[1])[None, :]
    for chan, sl in bayer.channel_slices(pattern).items():
        data[sl] = (LEVELS[chan] * (1 + gradient * xx) * np.ones(shape))[sl]
    data = rng.poisson(data).astype(np.uint16)
    header = fits.Header({"BAYERPAT": pattern, "IMAGETYP": "FLAT", "EXPTIME": 1.0,
                          **keywords})
    fits.PrimaryHDU(data, header=header).writeto(path)
    return str(path)


def test_cfa_stats(tmp_path, capsys):
    path = _write(tmp_path / "flat.fits")
    assert main(["cfa-stats", path]) == 0
    out = capsys.readouterr().out
    assert "pattern GRBG at pixel [0, 0], shape (40, 60)" in out
    lines = [line.split() for line in out.splitlines() if line.split()[:1] == ["centre"]]
    medians = {cols[1]: float(cols[8]) for cols in lines}
    for chan, level in LEVELS.items():
        assert abs(medians[chan] - level) < 5 * np.sqrt(level)
    assert main(["cfa-stats", path, "--box", "1", "11", "3", "23"]) == 0
    assert "box1" in capsys.readouterr().out
    assert main(["cfa-stats", path, "--subtract-black"]) == 2
    assert "needs BLKLEV0..3" in capsys.readouterr().err


def test_flat_quality_subsets_and_png(tmp_path, capsys):
    for k in range(3):
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "b").mkdir(exist_ok=True)
        _write(tmp_path / "a" / f"f{k}.fits", seed=k)
        _write(tmp_path / "b" / f"f{k}.fits", seed=10 + k, gradient=0.05)
    png = tmp_path / "q.png"
    assert main(["flat-quality", "--subset", f"a={tmp_path / 'a' / '*.fits'}",
                 "--subset", f"b={tmp_path / 'b' / '*.fits'}", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "subset a (3 flats)" in out and "subset b (3 flats)" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    tilts = [float(line.split("tilt ")[1].split(" %")[0]) for line in out.splitlines()
             if "tilt" in line]
    assert all(abs(t - 5.0) < 1.0 for t in tilts)  # the 5 % gradient of b against a
    assert main(["flat-quality", "--subset", "nothing"]) == 2
    assert main(["flat-quality"]) == 2


def test_demosaic_command(tmp_path, capsys):
    path = _write(tmp_path / "light.fits", EGAIN=1.0, RDNOISE=3.0)
    out = tmp_path / "rgb.fits"
    assert main(["demosaic", path, "-o", str(out), "--method", "malvar2004", "--split"]) == 0
    cube = CCDData.read(out)
    assert cube.shape == (3, 40, 60)
    assert cube.header["DEMOSAIC"] == "malvar2004"
    r = CCDData.read(tmp_path / "rgb_R.fits")
    assert r.shape == (40, 60)
    assert abs(np.median(r.data) - LEVELS["R"]) < 10
    assert cube.uncertainty is not None
    capsys.readouterr()
    assert main(["demosaic", path, "-o", str(out)]) == 1  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err


def test_cfa_stats_prints_corners_over_centre_per_channel(tmp_path, capsys):
    shape = (200, 300)
    yy, xx = np.indices(shape)
    vig = 1 - 0.4 * (((yy - 100) / 100) ** 2 + ((xx - 150) / 150) ** 2) / 2
    data = np.empty(shape)
    for chan, sl in bayer.channel_slices("RGGB").items():
        data[sl] = (LEVELS[chan] * 10 * vig)[sl]
    path = tmp_path / "flat.fits"
    fits.PrimaryHDU(data.astype(np.float32), header=fits.Header({"BAYERPAT": "RGGB"})
                    ).writeto(path)
    assert main(["cfa-stats", str(path)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("corners/centre (median of the corner boxes over the centre's): ")
    ratios = dict(zip(last.split(": ", 1)[1].split()[::2],
                      map(float, last.split(": ", 1)[1].split()[1::2]), strict=True))
    assert set(ratios) == {"R", "G1", "G2", "B"}
    truth = np.mean([vig[:20, :30].mean(), vig[-20:, -30:].mean()]) / vig[90:110, 135:165].mean()
    for ratio in ratios.values():
        assert abs(ratio - truth) < 0.02
