"""``calframe run --stack``: calibrated lights of a group aligned and stacked."""

import numpy as np

from calframe import read_frame
from calframe.cli import main
from calframe.datasets import StarField, SyntheticCamera, make_night
from calframe.pipeline import PipelineConfig, make_plan, run_pipeline


def _night(tmp_path):
    camera = SyntheticCamera(shape=(160, 160), n_hot_pixels=5, n_dust=0)
    field = StarField(n_stars=60, flux=(2000.0, 40000.0), fwhm=2.5, sky=20.0)
    return make_night(tmp_path / "night", camera=camera, n_bias=6, n_dark=4, n_flat=6,
                      n_light=4, dark_exptimes=(60.0,), light_exptime=60.0, field=field,
                      dither=3.0, cosmic_rate=0.5, seed=4)


def test_run_stacks_each_light_group_on_its_first_light(tmp_path):
    night = _night(tmp_path)
    out = tmp_path / "out"
    config = PipelineConfig(inputs=[str(night.path)], output=str(out), report=False)
    config = config.replace(stack__enabled=True, stack__align="stars")
    plan = make_plan(config)
    assert "stack 4 calibrated light(s)" in plan.describe()
    result = run_pipeline(plan)
    stacks = [p for p in result.made if "/stacks/" in p.replace("\\", "/")]
    assert result.ok and len(stacks) == 1, result.summary()
    stacked = read_frame(stacks[0])
    assert int(stacked.ncombine.max()) == 4
    # Stars sit where they are in the reference (the group's first light).
    lights = sorted(night.files_of("light"))
    dy, dx = next(r.shift for r in night.frames if r.path == lights[0])
    assert len({next(r.shift for r in night.frames if r.path == p) for p in lights}) == 4
    stars = night.truth.stars
    bright = stars[(stars["flux"] > 10000)]
    x = np.asarray(bright["x"]) + dx
    y = np.asarray(bright["y"]) + dy
    inside = (x > 12) & (x < 148) & (y > 12) & (y < 148)
    from photutils.centroids import centroid_sources

    sky = np.median(stacked.data)
    cx, cy = centroid_sources(stacked.data - sky, x[inside], y[inside], box_size=7)
    assert inside.sum() >= 5
    assert np.median(np.hypot(cx - x[inside], cy - y[inside])) < 0.1
    # A rerun finds the stack up to date; its noise is below a single light's.
    again = run_pipeline(make_plan(config))
    assert stacks[0] in again.skipped
    single = read_frame(out / "lights" / (lights[0].stem + ".fits"))
    core = (slice(20, -20), slice(20, -20))
    assert np.median(stacked.uncertainty.array[core]) < \
        0.6 * np.median(single.uncertainty.array[core])


def test_run_command_stack_option(tmp_path, capsys):
    night = _night(tmp_path)
    code = main(["-q", "run", str(night.path), "-o", str(tmp_path / "o"), "--stack",
                 "--stack-align", "stars", "--dry-run"])
    assert code == 0
    assert "stack 4 calibrated light(s)" in capsys.readouterr().out
    assert not (tmp_path / "o" / "stacks").exists()
