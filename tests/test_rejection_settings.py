"""One vocabulary for rejection settings: ``to_dict``/``from_dict``, astropy's SigmaClip,
the TOML configuration, the command line and the pipeline."""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib

import numpy as np
import pytest
from astropy.stats import SigmaClip as AstropySigmaClip
from astropy.stats import mad_std
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from calframe import combine, make_master_bias
from calframe.cli._options import rejection_name, rejection_override
from calframe.combining import (
    GESD,
    REJECTIONS,
    LinearFitClip,
    MinMaxClip,
    PercentileClip,
    Rejection,
    SigmaClip,
    WinsorizedSigmaClip,
    rejection_from_name,
)
from calframe.combining._rejection import as_rejection
from calframe.errors import InvalidSettingsError
from calframe.pipeline import MasterSettings, PipelineConfig, StackSettings, load_config

# ---------------------------------------------------------------- to_dict / from_dict

_positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)
_maxiters = st.one_of(st.none(), st.integers(1, 50))
_fraction = st.floats(min_value=1e-4, max_value=0.999, allow_nan=False)

#: Every rejection class with a strategy over every one of its parameters.
STRATEGIES = {
    SigmaClip: st.builds(SigmaClip, low=_positive, high=_positive,
                         center=st.sampled_from(["median", "mean"]),
                         scale=st.sampled_from(["std", "mad"]), maxiters=_maxiters),
    WinsorizedSigmaClip: st.builds(WinsorizedSigmaClip, low=_positive, high=_positive,
                                   maxiters=_maxiters, cutoff=_positive),
    LinearFitClip: st.builds(LinearFitClip, low=_positive, high=_positive,
                             maxiters=_maxiters),
    PercentileClip: st.builds(PercentileClip, low=_positive, high=_positive),
    MinMaxClip: st.builds(MinMaxClip, nlow=st.integers(0, 20), nhigh=st.integers(1, 20)),
    GESD: st.builds(GESD, outliers_fraction=_fraction, significance=_fraction),
}

#: One value other than the default for every parameter of every class.
OTHER_VALUES = {
    SigmaClip: {"low": 2.5, "high": 4.0, "center": "mean", "scale": "mad", "maxiters": None},
    WinsorizedSigmaClip: {"low": 2.0, "high": 5.0, "maxiters": 3, "cutoff": 2.0},
    LinearFitClip: {"low": 4.0, "high": 2.0, "maxiters": None},
    PercentileClip: {"low": 0.3, "high": 0.05},
    MinMaxClip: {"nlow": 0, "nhigh": 4},
    GESD: {"outliers_fraction": 0.1, "significance": 0.01},
}


def test_every_class_and_parameter_is_covered():
    subclasses = set(Rejection.__subclasses__())
    assert set(STRATEGIES) == subclasses == set(OTHER_VALUES)
    for cls, values in OTHER_VALUES.items():
        assert set(values) == {f.name for f in dataclasses.fields(cls)}, cls


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_from_dict_inverts_to_dict(cls, data):
    rejection = data.draw(STRATEGIES[cls])
    plain = rejection.to_dict()
    assert plain["algorithm"] == cls.__name__
    back = Rejection.from_dict(plain)
    assert back == rejection and type(back) is cls
    assert cls.from_dict(plain) == rejection
    # through JSON (as in the provenance) and without the name, on the class
    assert Rejection.from_dict(json.loads(json.dumps(plain))) == rejection
    assert cls.from_dict({k: v for k, v in plain.items() if k != "algorithm"}) == rejection
    assert plain == rejection.to_dict()  # from_dict did not change its argument


@pytest.mark.parametrize("cls", list(OTHER_VALUES), ids=lambda c: c.__name__)
def test_every_parameter_survives_alone(cls):
    default = cls()
    for name, value in OTHER_VALUES[cls].items():
        changed = dataclasses.replace(default, **{name: value})
        assert getattr(changed, name) != getattr(default, name)
        back = Rejection.from_dict(changed.to_dict())
        assert getattr(back, name) == value and back == changed


@pytest.mark.parametrize("cls", list(OTHER_VALUES), ids=lambda c: c.__name__)
def test_from_dict_through_toml(cls):
    rejection = dataclasses.replace(
        cls(), **{k: v for k, v in OTHER_VALUES[cls].items() if v is not None})
    items = ", ".join(f"{k} = {json.dumps(v)}" for k, v in rejection.to_dict().items())
    parsed = tomllib.loads(f"rejection = {{ {items} }}")["rejection"]
    assert Rejection.from_dict(parsed) == rejection


def test_from_dict_refuses_what_it_cannot_build():
    with pytest.raises(InvalidSettingsError, match="name no algorithm; add 'algorithm', one "
                                                   "of SigmaClip, WinsorizedSigmaClip"):
        Rejection.from_dict({"low": 3})
    with pytest.raises(InvalidSettingsError, match="algorithm 'Sigma' is not known; use one "
                                                   "of SigmaClip"):
        Rejection.from_dict({"algorithm": "Sigma"})
    with pytest.raises(InvalidSettingsError, match="SigmaClip has no setting 'lo', 'sigma'; "
                                                   "its settings are low, high, center"):
        Rejection.from_dict({"algorithm": "SigmaClip", "lo": 3, "sigma": 2})
    with pytest.raises(InvalidSettingsError, match=r"MinMaxClip\.from_dict: the settings are "
                                                   "of GESD"):
        MinMaxClip.from_dict(GESD().to_dict())
    with pytest.raises(InvalidSettingsError, match="expected a table of settings"):
        Rejection.from_dict("sigma")
    with pytest.raises(InvalidSettingsError, match=r"SigmaClip\(scale='rms'\)"):
        Rejection.from_dict({"algorithm": "SigmaClip", "scale": "rms"})
    with pytest.raises(InvalidSettingsError, match=r"MinMaxClip\(nlow=1.5\)"):
        Rejection.from_dict({"algorithm": "MinMaxClip", "nlow": 1.5})


# ---------------------------------------------------------------- astropy's SigmaClip

def _stack(seed=3):
    rng = np.random.default_rng(seed)
    stack = (1000 + 10 * rng.standard_normal((12, 24, 24))).astype(np.float32)
    hits = rng.random(stack.shape) < 0.05
    stack[hits] += (rng.choice([-1, 1], hits.sum()) * rng.uniform(20, 300, hits.sum())
                    ).astype(np.float32)
    return stack.astype(np.float64)


_STD1 = functools.partial(np.nanstd, ddof=1)
_MAD = functools.partial(mad_std, ignore_nan=True)

ASTROPY_FORMS = [  # (cenfunc, stdfunc, calframe's center and scale)
    (np.nanmedian, _STD1, "median", "std"),
    ("median", _STD1, "median", "std"),
    (np.nanmean, _STD1, "mean", "std"),
    ("mean", _STD1, "mean", "std"),
    (np.nanmedian, "mad_std", "median", "mad"),
    (np.nanmedian, _MAD, "median", "mad"),
    ("median", _MAD, "median", "mad"),
]


@pytest.mark.parametrize(("cenfunc", "stdfunc", "center", "scale"), ASTROPY_FORMS)
@pytest.mark.parametrize("maxiters", [1, 3, None])
def test_astropy_sigma_clip_gives_astropy_s_result(cenfunc, stdfunc, center, scale, maxiters):
    clip = AstropySigmaClip(sigma=3.0, sigma_upper=2.5, cenfunc=cenfunc, stdfunc=stdfunc,
                            maxiters=maxiters)
    converted = SigmaClip.from_astropy(clip)
    assert converted == SigmaClip(low=3.0, high=2.5, center=center, scale=scale,
                                  maxiters=maxiters)
    stack = _stack()
    reference = clip(stack, axis=0)
    assert reference.mask.any()
    out = combine(list(stack), method="mean", rejection=clip)
    assert_array_equal(out.ncombine, (~reference.mask).sum(axis=0))
    assert_allclose(out.data, reference.mean(axis=0).filled(np.nan), rtol=1e-6)


def test_astropy_strings_with_one_iteration_are_taken():
    clip = AstropySigmaClip(sigma=3, cenfunc="median", stdfunc="mad_std", maxiters=1)
    assert as_rejection(clip) == SigmaClip(low=3, high=3, scale="mad", maxiters=1)
    stack = _stack(seed=8)
    out = combine(list(stack), method="mean", rejection=clip)
    assert_array_equal(out.ncombine, (~clip(stack, axis=0).mask).sum(axis=0))


def test_astropy_settings_that_differ_are_named():
    stack = _stack()
    # astropy's default: ddof=0
    with pytest.raises(InvalidSettingsError, match=r"stdfunc='std'\) cannot be converted: it "
                       r"is the population standard deviation \(ddof=0\).*functools.partial"
                       r"\(numpy.nanstd, ddof=1\), or calframe.combining.SigmaClip\(low=3.0, "
                       r"high=3.0, center='median', scale='std', maxiters=5\)"):
        combine(list(stack), rejection=AstropySigmaClip())
    with pytest.raises(InvalidSettingsError, match="ddof=0"):
        SigmaClip.from_astropy(AstropySigmaClip(cenfunc=np.nanmedian, stdfunc=np.nanstd))
    # the compiled path of two strings re-admits values: it does differ from its own
    # function path on these data, which is what calframe does
    strings = AstropySigmaClip(sigma=3, cenfunc="median", stdfunc="mad_std", maxiters=3)
    functions = AstropySigmaClip(sigma=3, cenfunc=np.nanmedian, stdfunc="mad_std", maxiters=3)
    assert (strings(stack, axis=0).mask != functions(stack, axis=0).mask).any()
    with pytest.raises(InvalidSettingsError, match=r"tests every value afresh.*pass "
                       r"cenfunc=numpy.nanmedian to astropy"):
        as_rejection(strings)
    with pytest.raises(InvalidSettingsError, match="astropy's MAD is about the median"):
        as_rejection(AstropySigmaClip(cenfunc=np.nanmean, stdfunc="mad_std"))
    with pytest.raises(InvalidSettingsError, match=r"cenfunc=<function median.*use "
                       "numpy.nanmedian or numpy.nanmean"):
        as_rejection(AstropySigmaClip(cenfunc=np.median, stdfunc=_STD1))
    with pytest.raises(InvalidSettingsError, match=r"stdfunc=<function iqr.*calframe's "
                       "SigmaClip scales by"):
        from scipy.stats import iqr

        as_rejection(AstropySigmaClip(cenfunc=np.nanmedian, stdfunc=iqr))
    with pytest.raises(InvalidSettingsError, match=r"grow=1.5\) cannot be converted"):
        as_rejection(AstropySigmaClip(cenfunc=np.nanmedian, stdfunc=_STD1, grow=1.5))
    with pytest.raises(InvalidSettingsError, match="pass a settings object such as SigmaClip"
                                                   r".*an astropy.stats.SigmaClip, or None"):
        combine(list(stack), rejection="sigma")


def test_astropy_sigma_clip_in_masters_and_settings():
    clip = AstropySigmaClip(sigma=2.5, cenfunc=np.nanmedian, stdfunc=_STD1, maxiters=None)
    ours = SigmaClip(low=2.5, high=2.5, maxiters=None)
    stack = _stack(seed=4).astype(np.float32)
    a, b = make_master_bias(list(stack), rejection=clip), make_master_bias(list(stack),
                                                                            rejection=ours)
    assert_array_equal(a.data, b.data)
    assert_array_equal(a.ncombine, b.ncombine)
    assert MasterSettings(rejection=clip).rejection == ours
    assert StackSettings(rejection=clip).rejection == ours


# ---------------------------------------------------------------- configuration

def test_every_form_of_the_rejection_setting():
    expected = WinsorizedSigmaClip(low=4.0, high=3.0)
    for value in ("winsorized", "w", expected, expected.to_dict(),
                  {"algorithm": "WinsorizedSigmaClip", "low": 4}):
        low = 4 if isinstance(value, str) else None
        assert MasterSettings(rejection=value, low=low).rejection == expected, value
    assert MasterSettings(rejection="none").rejection is None
    assert MasterSettings(rejection=None).to_dict() == {"method": "median", "rejection": "none",
                                                        "flat_normalize": "median"}
    assert MasterSettings().rejection == SigmaClip()
    with pytest.raises(InvalidSettingsError, match="low and high go with a rejection name"):
        MasterSettings(rejection=expected, low=2)
    with pytest.raises(InvalidSettingsError, match="rejection 'median' is not known"):
        StackSettings(rejection="median")
    with pytest.raises(ValueError, match="stack method='sum' is not known"):
        StackSettings(method="sum")


def test_existing_toml_configurations_still_load(tmp_path):
    """The name-and-limits form of earlier configuration files."""
    path = tmp_path / "calframe.toml"
    path.write_text('inputs = ["night"]\n'
                    '[master]\nmethod = "median"\nrejection = "sigma"\nlow = 3.0\nhigh = 3.0\n'
                    '[stack]\nenabled = true\nrejection = "linear"\nhigh = 2.0\n')
    cfg = load_config(path)
    assert cfg.master.rejection == SigmaClip(low=3.0, high=3.0)
    assert cfg.stack.rejection == LinearFitClip(low=5.0, high=2.0)
    for name, choice in REJECTIONS.items():   # every name, with and without limits
        path.write_text(f'[master]\nrejection = "{name}"\n')
        assert load_config(path).master.rejection == rejection_from_name(name)
        if choice.build is not None:
            path.write_text(f'[master]\nrejection = "{name}"\nlow = {choice.low}\n'
                            f'high = {choice.high}\n')
            assert load_config(path).master.rejection == rejection_from_name(name)


def test_toml_takes_the_settings_tables(tmp_path):
    path = tmp_path / "calframe.toml"
    path.write_text('[master]\nmethod = "mean"\n'
                    '[master.rejection]\nalgorithm = "SigmaClip"\nlow = 4.0\nscale = "mad"\n'
                    '[stack]\nrejection = { algorithm = "GESD", significance = 0.01 }\n')
    cfg = load_config(path)
    assert cfg.master.rejection == SigmaClip(low=4.0, scale="mad")
    assert cfg.stack.rejection == GESD(significance=0.01)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    assert PipelineConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    path.write_text('[master]\nrejection = { algorithm = "SigmaClip", sigma = 3 }\n')
    with pytest.raises(InvalidSettingsError, match=r"calframe.toml: \[master\] SigmaClip has "
                                                   "no setting 'sigma'"):
        load_config(path)
    path.write_text('[master]\nlow = 2\nrejection = { algorithm = "SigmaClip" }\n')
    with pytest.raises(InvalidSettingsError, match=r"calframe.toml: \[master\] master: low "
                                                   "and high go with a rejection name"):
        load_config(path)


def test_plan_records_the_settings_object(tmp_path):
    from calframe.datasets import SyntheticCamera, make_night
    from calframe.pipeline import make_plan

    night = make_night(tmp_path / "night", camera=SyntheticCamera(shape=(16, 16)), n_bias=3,
                       n_dark=0, n_flat=0, n_light=1, seed=1)
    config = PipelineConfig(inputs=[str(night.path)], output=str(tmp_path / "out"),
                            master=MasterSettings(rejection=MinMaxClip(nlow=0, nhigh=2)))
    plan = make_plan(config)
    bias = next(t for t in plan.tasks if t.kind == "bias")
    assert bias.parameters["rejection"] == {"algorithm": "MinMaxClip", "nlow": 0, "nhigh": 2}
    assert "MinMaxClip(nlow=0, nhigh=2)" in plan.describe()


# ---------------------------------------------------------------- command line

def test_rejection_names_of_the_settings_objects():
    for name, choice in REJECTIONS.items():
        built = None if choice.build is None else choice.build(choice.low, choice.high)
        assert rejection_name(built) == name


def test_command_line_changes_the_configured_rejection():
    configured = SigmaClip(low=4.0, high=4.0, maxiters=3)
    # --high alone: the configured algorithm and its other settings stay
    assert rejection_override(configured, None, None, 2.0) == SigmaClip(low=4.0, high=2.0,
                                                                        maxiters=3)
    # --reject of the same algorithm keeps them too
    assert rejection_override(configured, "sigma", 2.0, None) == SigmaClip(
        low=2.0, high=4.0, maxiters=3)
    # another algorithm: its own defaults where no limit is given
    assert rejection_override(configured, "linear", None, None) == LinearFitClip()
    assert rejection_override(configured, "minmax", 2.0, None) == MinMaxClip(nlow=2, nhigh=1)
    assert rejection_override(configured, "none", None, None) is None
    assert rejection_override(MinMaxClip(), None, 0.0, 3.0) == MinMaxClip(nlow=0, nhigh=3)
    assert rejection_override(GESD(), None, None, 0.01) == GESD(significance=0.01)
    assert rejection_override(None, "mad", 2.0, None) == SigmaClip(low=2.0, scale="mad")
    import click

    with pytest.raises(click.BadParameter, match="not a whole number of values"):
        rejection_override(MinMaxClip(), None, 1.5, None)
