"""The demonstration run and the ``calframe demo`` command."""

import json

import numpy as np
import pytest

from calframe.cli import main
from calframe.demo import (
    DEFAULT_STEPS,
    DemoCheck,
    DemoSettings,
    run_demo,
)
from calframe.errors import OutputExistsError

SMALL = DemoSettings(shape=(64, 64), n_bias=8, n_dark=4, n_flat=6, n_light=2)


MEASURE = [step for step in DEFAULT_STEPS
           if step[0] not in ("read outputs back", "whole-folder run")]


def test_run_demo_small_passes_and_measures_the_truth(tmp_path):
    result = run_demo(tmp_path / "d", seed=3, settings=SMALL, steps=MEASURE)
    assert result.passed, result.checks_table()
    assert sorted(result.nights) == ["colour", "mono"]
    assert [name for name, _ in MEASURE] == list(result.timings)
    # every frame written was summarised
    for name, night in result.nights.items():
        counted = sum(s.count for s in result.summaries if s.camera == name)
        assert counted == len(night.frames) == 8 + 2 * 4 + 6 + 2
    # the gain measured by photon transfer is a real measurement, not the truth copied
    gains = [c for c in result.checks if c.name.startswith("gain")]
    assert len(gains) == 2
    assert all(c.measured != c.expected and c.passed for c in gains)
    assert {c.camera: c.expected for c in gains} == {"mono": 1.5, "colour": 0.8}
    # the bias summary agrees with the truth to a fraction of an ADU
    bias = [s for s in result.summaries if s.frametype == "bias"]
    assert all(abs(s.mean_adu - s.truth_mean_adu) < 0.1 for s in bias)
    record = json.loads((tmp_path / "d" / "calframe-demo.json").read_text())
    assert record["passed"] is True and record["seed"] == 3
    assert len(record["checks"]) == len(result.checks)


def test_demo_outputs_and_whole_folder_run(tmp_path):
    """Masters and calibrated lights written by the demo read back unchanged (unit
    included: a normalised flat must stay dimensionless), and the whole-folder run
    makes every output, in ADU, with honest uncertainties."""
    names = {"make night", "read back", "bias, read noise, gain", "dark current", "masters",
             "calibrate lights", "read outputs back", "whole-folder run"}
    steps = [step for step in DEFAULT_STEPS if step[0] in names]
    result = run_demo(tmp_path, seed=2, settings=SMALL, steps=steps)
    checks = [c for c in result.checks if c.name.startswith(("outputs read back",
                                                              "calframe run"))]
    assert len(checks) == 2 * 7
    assert all(c.passed for c in checks), "\n".join(c.line() for c in checks)


def test_demo_detects_a_wrong_result(tmp_path):
    """A step that measures something wrong makes the run fail."""
    def broken(ctx):
        for name in ctx.nights:
            bias = ctx.stack(name, "bias").mean()
            ctx.check(name, "bias level off by 1 ADU", bias + 1.0,
                      ctx.nights[name].truth.bias.mean(), 0.1, "ADU")

    steps = [*DEFAULT_STEPS[:2], ("broken", broken)]
    result = run_demo(tmp_path, seed=0, settings=SMALL, steps=steps)
    assert not result.passed
    failed = [c for c in result.checks if not c.passed]
    assert [c.name for c in failed] == ["bias level off by 1 ADU"] * 2
    assert "FAIL" in failed[0].line()
    assert "checks passed" in result.checks_table()


def test_demo_check_logic():
    assert DemoCheck("mono", "x", 1.05, 1.0, 0.1).passed
    assert not DemoCheck("mono", "x", 1.2, 1.0, 0.1).passed
    assert not DemoCheck("mono", "x", np.nan, 1.0, 0.1).passed
    assert DemoCheck("mono", "x", 0, 0, 0).passed


def test_demo_refuses_a_foreign_folder_and_reuses_its_own(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="is not empty and was not written by "
                                                "calframe demo"):
        run_demo(tmp_path, settings=SMALL)
    afile = tmp_path / "mine.txt"
    with pytest.raises(OutputExistsError, match="exists and is not a folder"):
        run_demo(afile, settings=SMALL)
    out = tmp_path / "demo"
    steps = DEFAULT_STEPS[:3]
    first = run_demo(out, seed=1, settings=SMALL, steps=steps)
    second = run_demo(out, seed=1, settings=SMALL, steps=steps)
    assert first.checks and first.passed
    assert [c.measured for c in first.checks] == [c.measured for c in second.checks]


def test_cli_demo_default_run(tmp_path, capsys, monkeypatch):
    """The README's main job: ``calframe demo`` with its defaults."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "calframe-demo" / "mono" / "bias" / "bias_0001.fits").is_file()
    assert (tmp_path / "calframe-demo" / "colour" / "lights" / "light_0005.fits").is_file()
    assert "mono    bias" in out and "colour  light" in out
    assert "FAIL" not in out
    assert "demo PASSED" in out
    # masters and calibrated lights are calframe MEF files with provenance
    from astropy.io import fits

    written = tmp_path / "calframe-demo" / "colour" / "calibrated" / "light_0001.fits"
    with fits.open(written) as hdul:
        names = [h.name for h in hdul]
    assert "UNCERT" in names and "MASK" in names and "PROVENANCE" in names
    assert (tmp_path / "calframe-demo" / "mono" / "masters" / "master_flat.fits").is_file()


def test_cli_demo_exit_code_on_failure(tmp_path, capsys, monkeypatch):
    import calframe.demo as demo

    original = demo.run_demo

    def failing(outdir, *, seed=0):
        result = original(outdir, seed=seed, settings=SMALL, steps=DEFAULT_STEPS[:1])
        result.checks.append(DemoCheck("mono", "forced failure", 2.0, 1.0, 0.5))
        return result

    monkeypatch.setattr(demo, "run_demo", failing)
    assert main(["-q", "demo", "-o", str(tmp_path / "x"), "--seed", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL mono   forced failure" in out
    assert "demo FAILED: 0/1 checks" in out
    assert main(["demo", "-o", str(tmp_path / "x"), "--seed", "nope"]) == 2


def test_demo_rerun_after_a_step_raised(tmp_path):
    def boom(ctx):
        raise RuntimeError("stopped half-way")

    with pytest.raises(RuntimeError, match="stopped half-way"):
        run_demo(tmp_path, settings=SMALL, steps=[DEFAULT_STEPS[0], ("boom", boom)])
    result = run_demo(tmp_path, settings=SMALL, steps=DEFAULT_STEPS[:3])
    assert result.passed
