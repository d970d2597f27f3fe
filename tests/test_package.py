"""The package namespace: every public name resolves, lazily and to the right object."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import calframe


def _stub_names():
    """name -> module of every import in calframe/__init__.pyi, the list of public names."""
    stub = Path(calframe.__file__).with_suffix(".pyi")
    return {alias.name: f"calframe.{node.module}"
            for node in ast.parse(stub.read_text()).body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def test_public_names_are_the_stub():
    names = _stub_names()
    assert len(names) > 60
    assert calframe.__all__ == sorted(names)
    assert isinstance(calframe.__version__, str)


@pytest.mark.parametrize("name", calframe.__all__)
def test_every_public_name_resolves(name):
    value = getattr(calframe, name)
    assert value is not None
    assert getattr(value, "__module__", "").startswith("calframe")
    # the public module the stub names has it (its API page documents it)
    assert value is getattr(importlib.import_module(_stub_names()[name]), name)


def test_no_public_name_is_also_a_module():
    # ``import calframe.<name> as m`` gives a module and ``calframe.<name>`` the
    # function: no public name is also the name of a module of the package
    package = Path(calframe.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} | {
        p.parent.name for p in package.glob("*/__init__.py")}
    assert not set(calframe.__all__) & modules
    assert {"combining", "calibration", "demosaicing"} <= modules


def test_functions_and_their_modules():
    # a fresh interpreter, so that the modules are imported here for the first time
    code = ("import calframe.combining as a, calframe.calibration as b, "
            "calframe.demosaicing as c\n"
            "import calframe\n"
            "print(' '.join(type(m).__name__ for m in (a, b, c)))\n"
            "print(' '.join(type(getattr(calframe, n)).__name__ "
            "for n in ('combine', 'calibrate', 'demosaic')))\n"
            "print(type(calframe).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.splitlines() == ["module module module", "function function function",
                                       "module"]
    for name, module in [("combine", "combining"), ("calibrate", "calibration"),
                         ("demosaic", "demosaicing")]:
        assert getattr(calframe, name) is getattr(importlib.import_module(
            f"calframe.{module}"), name)
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"calframe.{name}")


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="nonexistent"):
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


def test_combine_starts_before_its_engine_is_imported(tmp_path):
    # ``from calframe import combine`` loads neither numba nor astropy.nddata: combine()
    # starts hashing its inputs first, then imports them (astropy.nddata on a thread
    # of its own while the kernels run).  A fresh interpreter, so that path is taken.
    from astropy.io import fits

    rng = np.random.default_rng(1)
    frames = rng.integers(100, 200, (5, 64, 40)).astype(np.uint16)
    for i, frame in enumerate(frames):
        fits.PrimaryHDU(frame).writeto(tmp_path / f"f{i}.fits")
    code = ("import sys\nfrom calframe import combine\n"
            "print(' '.join(m for m in ('numba', 'astropy.nddata', 'astropy.io.fits') "
            "if m in sys.modules))\n"
            f"paths = sorted(__import__('glob').glob({str(tmp_path / 'f*.fits')!r}))\n"
            "for workers in (1, 2):\n"
            "    out = combine(paths, method='median', workers=workers,\n"
            "                  memory_limit=40 * 5 * 4 * 12 + 64 * 40 * 12)\n"
            "    print(type(out).__name__, out.meta['NCOMBINE'], len(out.meta['HISTORY']))\n"
            "__import__('numpy').save(sys.argv[1], out.data)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.npy")],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == ""
    assert lines[1:] == ["CCDData 5 1", "CCDData 5 1"]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.median(frames, axis=0))
