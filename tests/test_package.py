"""The package namespace: every public name resolves, lazily and to the right object."""

import importlib
import subprocess
import sys

import pytest

import calframe


@pytest.mark.parametrize("name", calframe.__all__)
def test_every_public_name_resolves(name):
    value = getattr(calframe, name)
    assert value is not None
    if name != "__version__":
        assert getattr(value, "__module__", "").startswith("calframe")


def test_functions_named_like_their_module_stay_functions():
    # a fresh interpreter, so that the submodules are imported here for the first time
    code = ("import calframe.combine._kernels, calframe.calibrate, calframe.demosaic\n"
            "import calframe\n"
            "print(' '.join(type(getattr(calframe, n)).__name__ "
            "for n in ('combine', 'calibrate', 'demosaic')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["function"] * 3
    for name in ("combine", "calibrate", "demosaic"):
        importlib.import_module(f"calframe.{name}")
        assert getattr(calframe, name).__name__ == name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        calframe.nonexistent  # noqa: B018
    assert set(calframe.__all__) <= set(dir(calframe))


def test_combine_does_not_import_the_heavy_modules():
    code = ("import sys\nfrom calframe import combine, SigmaClip\n"
            "heavy = ['photutils', 'matplotlib', 'skimage', 'calframe.distortion', "
            "'calframe.register', 'calframe.report', 'calframe.pipeline']\n"
            "print(' '.join(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
