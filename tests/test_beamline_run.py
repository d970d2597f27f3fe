"""``calframe run`` on a beamline folder: the exposure-normalised transmission.

A detector with an offset and no bias frames: raw darks at the lights' and at
the flats' exposure, open-beam flats at 1 s, projections at 2 s.  With
``flat_normalize = 'exposure'`` (``--flat-normalize exposure``) each calibrated
light is ``((data - dark_2s)/2 s) / ((flat - dark_1s)/1 s)``: the sample's
transmission, whatever the two exposures.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from calframe import read_frame
from calframe.cli import main
from calframe.pipeline import MasterSettings, PipelineConfig, run_pipeline

SHAPE = (48, 64)
OFFSET = 100.0      # detector offset, adu
CURRENT = 5.0       # dark current, adu/s
BEAM = 1500.0       # open beam, adu/s at the centre
READ_NOISE = 2.0    # e- (gain 1)


def _truth() -> tuple[np.ndarray, np.ndarray]:
    """The beam profile (uneven) and the sample's transmission (a half-opaque disk)."""
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    profile = 1.0 - 0.4 * ((x - 30) ** 2 + (y - 20) ** 2) / 40.0**2
    trans = np.where((x - 40) ** 2 + (y - 24) ** 2 < 12**2, 0.5, 1.0)
    return profile, trans


def _write(path, mean, exptime, frametype, rng) -> None:
    counts = rng.poisson(np.maximum(mean - OFFSET, 0)) + OFFSET
    counts = counts + rng.normal(0.0, READ_NOISE, SHAPE)
    header = fits.Header({"IMAGETYP": frametype, "EXPTIME": exptime, "EGAIN": 1.0,
                          "RDNOISE": READ_NOISE})
    fits.PrimaryHDU(np.round(counts).astype(np.uint16), header=header).writeto(path)


@pytest.fixture(scope="module")
def beamline(tmp_path_factory):
    """A folder as a beamline user lays it out: darks of two exposures, flats, data."""
    root = tmp_path_factory.mktemp("beamline")
    rng = np.random.default_rng(19)
    profile, trans = _truth()
    for sub in ("dark", "flat", "data"):
        (root / sub).mkdir()
    for t in (1.0, 2.0):
        for i in range(8):
            _write(root / "dark" / f"dark_{t:.0f}s_{i}.fits",
                   np.full(SHAPE, OFFSET + CURRENT * t), t, "dark", rng)
    for i in range(8):
        _write(root / "flat" / f"flat_{i}.fits", OFFSET + CURRENT + BEAM * profile, 1.0,
               "flat", rng)
    for i in range(2):
        _write(root / "data" / f"proj_{i}.fits",
               OFFSET + 2 * CURRENT + 2 * BEAM * profile * trans, 2.0, "light", rng)
    return root, trans


def test_run_gives_the_exposure_normalised_transmission(beamline, tmp_path):
    root, trans = beamline
    config = PipelineConfig(inputs=[str(root)], output=str(tmp_path / "out"), report=False,
                            master=MasterSettings(flat_normalize="exposure"))
    result = run_pipeline(config)
    assert result.ok, result.summary()
    lights = sorted((tmp_path / "out" / "lights").glob("*.fits"))
    assert len(lights) == 2
    out = read_frame(lights[0])
    assert out.unit.physical_type == "dimensionless"
    # the formula, from the masters the run made: each dark of its own exposure
    masters = {p.stem: read_frame(p) for p in (tmp_path / "out" / "masters").glob("*.fits")}
    flat = next(m for m in masters.values() if m.meta.get("FRAMETYP") == "flat")
    assert str(flat.unit) == "adu / s"
    dark2 = next(m for m in masters.values()
                 if m.meta.get("FRAMETYP") == "dark" and m.meta["EXPTIME"] == 2.0)
    data = np.asarray(fits.getdata(root / "data" / lights[0].name.replace(".fits", ".fits")),
                      np.float64)
    expected = (data - dark2.data) / 2.0 / flat.data
    assert_allclose(out.data, expected, rtol=2e-6)
    # and it is the sample's transmission: right level, honest error bars
    good = ~out.mask
    pull = (out.data - trans)[good] / out.uncertainty.array[good]
    assert abs(np.mean(pull)) < 0.1
    assert 0.85 < np.std(pull) < 1.15


def test_median_normalised_flats_give_another_level(beamline, tmp_path):
    """The default keeps dimensionless flats: a light in adu/s per unit flat,
    not the transmission (what the exposure normalisation exists for)."""
    root, trans = beamline
    config = PipelineConfig(inputs=[str(root)], output=str(tmp_path / "out"), report=False)
    assert run_pipeline(config).ok
    out = read_frame(next((tmp_path / "out" / "lights").glob("*.fits")))
    assert not np.allclose(np.median(out.data[~out.mask]), np.median(trans), rtol=0.1)


def test_flat_normalize_on_the_command_line(beamline, tmp_path, capsys):
    root, _ = beamline
    out = tmp_path / "out"
    assert main(["-q", "run", str(root), "-o", str(out), "--no-report",
                 "--flat-normalize", "exposure"]) == 0
    flat = next(p for p in (out / "masters").glob("*.fits")
                if fits.getheader(p).get("FRAMETYP") == "flat")
    assert fits.getheader(flat)["FLATNORM"] == "exposure"
    code = main(["run", str(root), "-o", str(tmp_path / "x"), "--flat-normalize", "max"])
    assert code == 2
    assert "Invalid value for '--flat-normalize'" in capsys.readouterr().err


def test_flat_normalize_in_the_config_file(tmp_path):
    from calframe.pipeline import load_config

    path = tmp_path / "run.toml"
    path.write_text('inputs = ["night"]\noutput = "out"\n[master]\nflat_normalize = "exposure"\n')
    assert load_config(path).master.flat_normalize == "exposure"
    path.write_text('inputs = ["night"]\n[master]\nflat_normalize = "max"\n')
    with pytest.raises(ValueError, match="flat_normalize='max' is not known"):
        load_config(path)
