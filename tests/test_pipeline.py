"""Tests of calframe.pipeline: config, plan, run, resume by provenance hash."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from calframe.combining import MinMaxClip, SigmaClip
from calframe.datasets import SyntheticCamera, make_night
from calframe.pipeline import (
    HASH_KEYWORD,
    MasterSettings,
    PipelineConfig,
    PipelineProblemError,
    load_config,
    make_plan,
    run_pipeline,
)
from calframe.provenance import get_provenance, sha256_file

CAMERA = SyntheticCamera(shape=(24, 32), n_hot_pixels=3, n_dust=1)


def _night(path, **kw):
    options = dict(camera=CAMERA, n_bias=3, n_dark=3, n_flat=3, n_light=2,
                   dark_exptimes=(60.0, 300.0), light_exptime=60.0, seed=3)
    options.update(kw)
    return make_night(path, **options)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One clean run on a tiny night (shared by the read-only tests)."""
    base = tmp_path_factory.mktemp("pipe")
    night = _night(base / "night")
    config = PipelineConfig(inputs=[str(night.path)], output=str(base / "out"),
                            report=False)
    result = run_pipeline(config)
    return night, config, result


def _read(path):
    with fits.open(path) as hdul:
        return hdul[0].data.copy(), hdul[0].header.copy()


# -------------------------------------------------------------------- config


def test_config_from_toml(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "calframe.toml"
    path.write_text(
        'inputs = ["night"]\noutput = "out"\nmemory_limit = "256MiB"\n'
        '[master]\nmethod = "mean"\nrejection = "minmax"\nlow = 1\nhigh = 1\n'
        '[calibrate]\ngain = 1.5\ndark_scale = "optimize"\ncosmetic = true\n'
        '[tolerances]\ntemperature = 0.5\n[frame_types]\n"*/data.edf" = "light"\n')
    cfg = load_config(path)
    assert cfg.inputs == [os.path.join(str(tmp_path / "cfg"), "night")]
    assert cfg.output == os.path.join(str(tmp_path / "cfg"), "out")
    assert (cfg.master.method, cfg.master.rejection) == ("mean", MinMaxClip(nlow=1, nhigh=1))
    assert (cfg.calibrate.gain, cfg.calibrate.dark_scale, cfg.calibrate.cosmetic) == (
        1.5, "optimize", True)
    assert cfg.tolerances.temperature == 0.5
    assert cfg.memory_limit == "256MiB"
    assert cfg.frame_types == {"*/data.edf": "light"}
    # every field of the config round-trips through its plain form
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown setting 'outptu'"):
        PipelineConfig.from_dict({"outptu": "x"})
    with pytest.raises(ValueError, match=r"unknown setting master.methd"):
        PipelineConfig.from_dict({"master": {"methd": "mean"}})
    with pytest.raises(ValueError, match="master method='average' is not known"):
        PipelineConfig.from_dict({"master": {"method": "average"}})
    with pytest.raises(ValueError, match="dark_scale='time' is not known"):
        PipelineConfig.from_dict({"calibrate": {"dark_scale": "time"}})
    with pytest.raises(ValueError, match="gain=-1 must be positive"):
        PipelineConfig.from_dict({"calibrate": {"gain": -1}})
    bad = tmp_path / "bad.toml"
    bad.write_text("inputs = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ValueError, match="no inputs"):
        make_plan(PipelineConfig())


def test_replace_nested():
    cfg = PipelineConfig().replace(output="o", master__method="mean", calibrate__gain=2.0)
    assert (cfg.output, cfg.master.method, cfg.calibrate.gain) == ("o", "mean", 2.0)
    assert cfg.master.rejection == SigmaClip(low=3.0, high=3.0)


# ---------------------------------------------------------------------- plan


def test_plan(tmp_path):
    night = _night(tmp_path / "night")
    plan = make_plan(PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "o")))
    kinds = [t.kind for t in plan.tasks]
    assert kinds == ["bias", "dark", "flat", "light", "light"]
    bias, dark, flat = plan.tasks[:3]
    assert dark.uses == {"bias": bias.name}
    assert flat.uses == {"bias": bias.name, "dark": dark.name}
    assert all(t.uses == {"bias": bias.name, "dark": dark.name, "flat": flat.name}
               for t in plan.tasks[3:])
    assert all("dark_60s" in p for p in dark.inputs) and len(dark.inputs) == 3
    assert [t.output for t in plan.tasks[3:]] == ["lights/light_0001.fits",
                                                   "lights/light_0002.fits"]
    text = plan.describe()
    assert "3 masters, 2 calibrated lights" in text
    assert "light_0001.fits -> lights/light_0001.fits" in text
    assert not os.path.exists(tmp_path / "o")  # planning writes nothing


def test_user_frame_types(tmp_path):
    night = _night(tmp_path / "night")
    # a light whose header does not say what it is
    unknown = tmp_path / "night" / "misc" / "frame.fits"
    unknown.parent.mkdir()
    with fits.open(night.files_of("light")[0]) as hdul:
        hdul[0].header["IMAGETYP"] = "whatever"
        hdul.writeto(unknown)
    cfg = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "o"))
    plan = make_plan(cfg)
    assert any("frame type unknown" in p.what for p in plan.problems)
    plan = make_plan(cfg.replace(frame_types={"*/misc/*.fits": "light"}))
    assert not plan.problems
    assert str(unknown) in [t.inputs[0] for t in plan.tasks if t.kind == "light"]
    with pytest.raises(ValueError, match=r"'sky' .* is not a frame type"):
        make_plan(cfg.replace(frame_types={"*/misc/*.fits": "sky"}))


def test_strict_plan_stops_at_first_problem(tmp_path):
    night = _night(tmp_path / "night")
    open(os.path.join(night.path, "lights", "empty.fits"), "wb").close()
    cfg = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "o"), strict=True)
    with pytest.raises(PipelineProblemError, match=r"empty.fits: the file is empty.*strict"):
        make_plan(cfg)


# ----------------------------------------------------------------------- run


def test_run_outputs_match_the_library(finished, tmp_path):
    """The pipeline's light equals calibrate() with masters built by hand."""
    from calframe.calibration import calibrate
    from calframe.io import write_frame
    from calframe.masters import make_master_bias, make_master_dark, make_master_flat

    night, config, result = finished
    assert result.ok and len(result.made) == 5 and not result.problems
    opts = {"method": "median", "rejection": SigmaClip(low=3.0, high=3.0)}
    files = {k: sorted(map(str, night.files_of(k))) for k in ("bias", "dark", "flat", "light")}
    bias = tmp_path / "b.fits"
    dark = tmp_path / "d.fits"
    flat = tmp_path / "f.fits"
    write_frame(make_master_bias(files["bias"], **opts), bias)
    write_frame(make_master_dark([f for f in files["dark"] if "60s" in f], bias=str(bias),
                                 **opts), dark)
    write_frame(make_master_flat(files["flat"], bias=str(bias), dark=str(dark), **opts),
                flat)
    by_hand = calibrate(files["light"][0], bias=str(bias), dark=str(dark), flat=str(flat))
    data, header = _read(os.path.join(config.output, "lights", "light_0001.fits"))
    assert_allclose(data, by_hand.data, rtol=1e-6, atol=1e-6)
    assert len(header[HASH_KEYWORD]) == 64
    # raw frames in adu divided by a normalised (dimensionless) flat stay in adu
    assert header["BUNIT"] == "adu"


def test_light_provenance_names_masters_and_inputs(finished):
    from calframe.io import read_provenance

    night, config, _ = finished
    light = os.path.join(config.output, "lights", "light_0002.fits")
    prov = read_provenance(light)
    hashes = {r.sha256 for r in prov.inputs}
    masters = os.path.join(config.output, "masters")
    for name in os.listdir(masters):
        assert sha256_file(os.path.join(masters, name)) in hashes
    assert sha256_file(sorted(map(str, night.files_of("light")))[1]) in hashes


def _copy_run(finished, tmp_path):
    night, config, _ = finished
    shutil.copytree(night.path, tmp_path / "night")
    shutil.copytree(config.output, tmp_path / "out")
    return PipelineConfig(inputs=[str(tmp_path / "night")], output=str(tmp_path / "out"),
                          report=False)


def _mtimes(folder):
    """Modification times of the outputs (not of the run's lock, in .calframe/)."""
    return {os.path.relpath(os.path.join(r, f), folder): os.stat(os.path.join(r, f)).st_mtime_ns
            for r, _, fs in os.walk(folder) for f in fs
            if ".calframe" not in os.path.relpath(r, folder).split(os.sep)}


def test_rerun_skips_unchanged(finished, tmp_path):
    config = _copy_run(finished, tmp_path)
    # the copied outputs were made from other paths but the same bytes: up to date
    before = _mtimes(config.output)
    result = run_pipeline(config)
    assert result.made == [] and len(result.skipped) == 5
    assert _mtimes(config.output) == before


def test_rerun_redoes_what_changed(finished, tmp_path):
    config = _copy_run(finished, tmp_path)
    # a changed setting of the lights redoes the lights only
    result = run_pipeline(config.replace(calibrate__gain=1.5))
    assert sorted(os.path.basename(p) for p in result.made) == ["light_0001.fits",
                                                                 "light_0002.fits"]
    _data, header = _read(os.path.join(config.output, "lights", "light_0001.fits"))
    assert header["BUNIT"].strip().lower().startswith("electron")
    # a changed flat redoes the master flat and every light, not the bias or dark
    flat = sorted(p for p in _mtimes(tmp_path / "night") if p.startswith("flats"))[0]
    with fits.open(tmp_path / "night" / flat, mode="update") as hdul:
        hdul[0].data[0, 0] += 7
    result = run_pipeline(config.replace(calibrate__gain=1.5))
    made = sorted(os.path.relpath(p, config.output) for p in result.made)
    assert made[:2] == [os.path.join("lights", "light_0001.fits"),
                        os.path.join("lights", "light_0002.fits")]
    assert len(made) == 3 and made[2].startswith(os.path.join("masters", "flat"))
    assert len(result.skipped) == 2


def test_stale_temporary_files_are_removed(finished, tmp_path):
    """Only what the journal of a run that is gone lists, in calframe's naming."""
    config = _copy_run(finished, tmp_path)
    dead = 2 ** 22 + 17  # above the usual pid_max: no such process
    stale = os.path.join(config.output, "lights",
                         f".calframe-{dead}-0a1b2c3d4e5f-light_0001.fits.tmp")
    users = os.path.join(config.output, "lights", ".light_0001.fits.0a1b2c.tmp")
    for path in (stale, users):
        with open(path, "wb") as handle:
            handle.write(b"SIMPLE  =  half a file")
    state = os.path.join(config.output, ".calframe")
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, f"journal-{dead}"), "w") as handle:
        handle.write(json.dumps({"pid": dead, "host": "h", "started": "t"}) + "\n")
        handle.write(json.dumps(os.path.relpath(stale, config.output)) + "\n")
    run_pipeline(config)
    assert not os.path.exists(stale)
    assert os.path.exists(users)  # not calframe's: never touched
    assert os.listdir(state) == ["lock"]


def test_bad_frames_are_left_out(tmp_path):
    night = _night(tmp_path / "night")
    # an all-NaN bias and a flat without EXPTIME
    with fits.open(night.files_of("bias")[0]) as hdul:
        header = hdul[0].header.copy()
    fits.writeto(tmp_path / "night" / "bias" / "nan_bias.fits",
                 np.full(CAMERA.shape, np.nan, np.float32), header)
    with fits.open(night.files_of("flat")[0]) as hdul:
        del hdul[0].header["EXPTIME"]
        hdul.writeto(tmp_path / "night" / "flats" / "noexp_flat.fits")
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out"),
                            report=False)
    seen = []
    result = run_pipeline(config, on_problem=seen.append)
    assert result.ok
    what = {os.path.basename(p.path): p.what for p in result.problems}
    assert "all pixels are NaN" in what["nan_bias.fits"]
    assert "without an exposure time" in what["noexp_flat.fits"]
    assert seen == result.problems
    excluded = {os.path.basename(r["path"]) for r in result.quality if r["excluded"]}
    assert excluded == {"nan_bias.fits", "noexp_flat.fits"}
    bias = next(p for p in result.made if "bias" in os.path.basename(p))
    _, header = _read(bias)
    assert header["NCOMBINE"] == 3


def test_outlier_frames_are_flagged(tmp_path):
    night = _night(tmp_path / "night", n_dark=6, n_flat=6, dark_exptimes=(60.0,))
    # a dark with a light leak, and a flat with a star on it
    leak = sorted(map(str, night.files_of("dark")))[2]
    with fits.open(leak, mode="update") as hdul:
        hdul[0].data += np.uint16(400)
    star = sorted(map(str, night.files_of("flat")))[4]
    with fits.open(star, mode="update") as hdul:
        yy, xx = np.mgrid[0:24, 0:32]
        blob = 30000 * np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / (2 * 2.0 ** 2))
        hdul[0].data = np.minimum(hdul[0].data + blob, 65000).astype(np.uint16)
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out"),
                            report=False)
    result = run_pipeline(config)
    flagged = {r["path"]: r["outlier"] for r in result.quality if r["outlier"]}
    assert sorted(flagged) == sorted([leak, star])
    assert flagged[leak].startswith("median")
    assert "tail" in flagged[star]


def test_cfa_night_demosaiced(tmp_path):
    """A one-shot-colour night: per-channel flat, lights demosaiced to RGB cubes."""
    camera = SyntheticCamera(shape=(24, 32), cfa="GRBG", n_hot_pixels=2, n_dust=0,
                             bias_level=(1000.0, 1010.0, 990.0, 1005.0))
    night = make_night(tmp_path / "night", camera=camera, n_bias=3, n_dark=3, n_flat=3,
                       n_light=1, dark_exptimes=(60.0,), light_exptime=60.0, seed=4)
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out"),
                            report=False).replace(calibrate__demosaic="bilinear")
    result = run_pipeline(config)
    assert result.ok and not result.problems
    flat = next(p for p in result.made if "flat" in os.path.basename(p))
    data, header = _read(flat)
    assert header["BAYERPAT"] == "GRBG"
    for dy in (0, 1):  # every CFA channel normalised to 1 on its own
        for dx in (0, 1):
            assert abs(np.median(data[dy::2, dx::2]) - 1.0) < 0.02
    light, _ = _read(os.path.join(config.output, "lights", "light_0001.fits"))
    assert light.shape == (3, 24, 32)


def test_output_inside_the_input_folder_is_not_scanned(finished, tmp_path):
    night, _, _ = finished
    shutil.copytree(night.path, tmp_path / "night")
    config = PipelineConfig(inputs=[str(tmp_path / "night")],
                            output=str(tmp_path / "night" / "calibrated"), report=False)
    first = run_pipeline(config)
    again = run_pipeline(config)
    assert len(first.made) == 5 and not first.problems
    assert again.made == [] and len(again.skipped) == 5 and not again.problems
    assert len(again.plan.inventory.frames) == 14


@pytest.mark.skipif(shutil.which("fitsverify") is None,
                    reason="fitsverify is not installed (Debian package 'fitsverify')")
def test_outputs_pass_fitsverify(finished):
    import subprocess

    _, _, result = finished
    for path in result.made:
        done = subprocess.run(["fitsverify", "-q", path], capture_output=True, text=True,
                              timeout=60)
        assert done.stdout.startswith("verification OK"), done.stdout + done.stderr


@pytest.mark.realdata
def test_real_st7_dark_subtraction(real_data, tmp_path):
    """The ST-7 light is calibrated with the median of its three 120 s darks."""
    from calframe.io import read_frame

    folder = real_data / "ast325-st7"
    config = PipelineConfig(inputs=[str(folder)], output=str(tmp_path / "out"),
                            report=False)
    result = run_pipeline(config)
    assert result.ok
    assert [os.path.basename(p) for p in result.made] == ["dark_120s_-17C_g0.fits",
                                                           "Vega.fits"]
    assert any("no matching flat" in p.what for p in result.problems)
    darks = np.stack([fits.getdata(folder / f"DarkBefore-00{i}D120s.fit").astype(float)
                      for i in (1, 2, 3)])
    light = fits.getdata(folder / "Vega.fit").astype(float)
    calibrated = read_frame(result.made[1])
    good = ~np.asarray(calibrated.mask) if calibrated.mask is not None else slice(None)
    expected = light - np.median(darks, axis=0)
    assert_allclose(np.asarray(calibrated.data)[good], expected[good], rtol=0, atol=0.01)
    assert calibrated.unit == "adu"


@pytest.mark.realdata
def test_real_esrf_flat_field_normalisation(real_data, tmp_path):
    """ESRF ID16B: (data - dark) / (flat - dark), the flat scaled to a median of 1."""
    import fabio

    from calframe.io import read_frame

    folder = real_data / "esrf-id16b"
    config = PipelineConfig(inputs=[str(folder / n) for n in ("dark.edf", "flat.edf",
                                                              "data.edf")],
                            output=str(tmp_path / "out"), report=False,
                            frame_types={"data.edf": "light"})
    result = run_pipeline(config)
    assert result.ok and not result.problems
    dark, flat, data = (fabio.open(str(folder / n)).data.astype(float)
                        for n in ("dark.edf", "flat.edf", "data.edf"))
    calibrated = read_frame(next(p for p in result.made if p.endswith("data.fits")))
    good = ~np.asarray(calibrated.mask)
    assert good.mean() > 0.99
    norm = flat - dark
    expected = (data - dark) / (norm / np.median(norm[good]))
    assert_allclose(np.asarray(calibrated.data)[good], expected[good], rtol=1e-5)


def test_run_takes_every_rejection_and_the_read_noise(tmp_path):
    """--reject with Siril's names and --read-noise reach the masters and the lights."""
    from calframe.cli import main
    from calframe.combining import GESD, WinsorizedSigmaClip
    from calframe.errors import InvalidSettingsError

    assert isinstance(MasterSettings(rejection="winsorized").rejection_object(),
                      WinsorizedSigmaClip)
    assert isinstance(MasterSettings(rejection="g").rejection_object(), GESD)
    assert MasterSettings(rejection="minmax").rejection_object().nlow == 1  # not 3 frames
    with pytest.raises(InvalidSettingsError, match="'median' is not known"):
        MasterSettings(rejection="median")
    night = _night(tmp_path / "night", n_light=1)
    for header in night.files_of("light"):
        with fits.open(header, mode="update") as hdul:
            del hdul[0].header["RDNOISE"]   # the lights do not say their read noise
    out = tmp_path / "out"
    assert main(["-q", "run", str(night.path), "-o", str(out), "--no-report", "--reject",
                 "winsorized", "--read-noise", "5"]) == 0
    from calframe.io import read_frame

    ccd = read_frame(next((out / "lights").glob("*.fits")))
    assert ccd.uncertainty is not None and np.all(np.isfinite(ccd.uncertainty.array))
    read = [s for s in get_provenance(ccd).steps if s.step == "read"]
    assert any(s.parameters.get("read_noise") == 5.0 for s in read)
    flat = read_frame(next((out / "masters").glob("flat*.fits")))
    combine = next(s for s in get_provenance(flat).steps if s.step == "combine")
    assert "Winsorized" in str(combine.parameters)
