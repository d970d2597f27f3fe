"""Every public function and class documents its parameters and what it returns.

The public callables are the names of ``calframe`` and the ``__all__`` of every
public module (no part of its name starts with ``_``).  Their numpydoc
docstrings, read with numpydoc's docscrape, must name every parameter in a
Parameters section (a class may name its fields under Attributes instead), and
a function that returns a value must have a Returns section (Yields for a
generator).  Each public module also has its page in docs/api/.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
import warnings
from pathlib import Path

import pytest
from numpydoc.docscrape import NumpyDocString

import calframe

DOCS_API = Path(__file__).resolve().parents[1] / "docs" / "api"


def _public_modules() -> list[str]:
    names = ["calframe"]
    for info in pkgutil.walk_packages(calframe.__path__, "calframe."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _public_callables() -> dict[str, object]:
    found: dict[str, object] = {}
    seen: set[int] = set()
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or id(obj) in seen:
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue  # the errors take a message; docs/api/errors.rst lists them
            seen.add(id(obj))
            found[f"{module_name}.{name}"] = obj
    return found


PUBLIC = _public_callables()
MODULES = _public_modules()


def _names(section) -> set[str]:
    """The parameter names of a docscrape section (``x, y : float`` names two)."""
    return {name.strip().lstrip("*") for param in section for name in param.name.split(",")}


def _returns_value(func) -> bool:
    annotation = inspect.signature(func).return_annotation
    if annotation is not inspect.Signature.empty:
        return annotation not in (None, "None")
    tree = ast.parse(textwrap.dedent(inspect.getsource(func))).body[0]
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue  # a nested function's return is not this one's
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def docstring_problems(obj) -> list[str]:
    """What the numpydoc docstring of a public function or class lacks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # docscrape warns of sections it does not know
        doc = NumpyDocString(inspect.getdoc(obj) or "")
    params = [p.name for p in inspect.signature(obj).parameters.values()
              if not p.name.startswith("_")]
    problems = []
    if inspect.isclass(obj):
        documented = _names(doc["Parameters"]) | _names(doc["Attributes"])
        where = "Parameters or Attributes"
    else:
        documented = _names(doc["Parameters"])
        where = "Parameters"
    missing = [p for p in params if p not in documented]
    if missing:
        problems.append(f"{', '.join(missing)} not in {where}")
    if inspect.isfunction(obj):
        if inspect.isgeneratorfunction(obj):
            if not doc["Yields"]:
                problems.append("no Yields section")
        elif _returns_value(obj) and not doc["Returns"]:
            problems.append("no Returns section")
    return problems


def test_the_check_finds_what_is_missing():
    def documented(a, *, b=1) -> int:
        """Add.

        Parameters
        ----------
        a, b : int
            Terms.

        Returns
        -------
        int
        """
        return a + b

    def undocumented(a, b=1):
        """Add a and b."""
        if a:
            return a + b
        return None

    def half(a, b):
        """Half.

        Parameters
        ----------
        a : int
            A.
        """
        print(a, b)

    def frames(n):
        """Frames.

        Parameters
        ----------
        n : int
            How many.
        """
        yield from range(n)

    class Settings:
        """Settings.

        Attributes
        ----------
        low : float
            Low.
        """

        def __init__(self, low, high):
            self.low, self.high = low, high

    assert docstring_problems(documented) == []
    assert docstring_problems(undocumented) == ["a, b not in Parameters",
                                                "no Returns section"]
    assert docstring_problems(half) == ["b not in Parameters"]
    assert docstring_problems(frames) == ["no Yields section"]
    assert docstring_problems(Settings) == ["high not in Parameters or Attributes"]


def test_the_public_callables_are_found():
    # each object once, under the first name it has (calframe.combine, not
    # calframe.combining.combine)
    assert {"calframe.combine", "calframe.read_frame", "calframe.SigmaClip",
            "calframe.calibration.dark_includes_bias", "calframe.io.detect_format",
            "calframe.inventory.scan_paths", "calframe.cli.main"} <= set(PUBLIC)
    assert PUBLIC["calframe.calibrate"] is calframe.calibration.calibrate
    assert len(PUBLIC) > 150


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_callable_documents_parameters_and_returns(name):
    assert docstring_problems(PUBLIC[name]) == []


@pytest.mark.parametrize("module", MODULES[1:])
def test_every_public_module_has_an_api_page(module):
    page = DOCS_API / f"{module.removeprefix('calframe.')}.rst"
    assert page.is_file()
    assert f".. automodule:: {module}\n" in page.read_text()


def test_the_errors_page_lists_every_error_and_warning():
    import calframe.errors as errors

    listed = set((DOCS_API / "errors.rst").read_text().split())
    classes = {name for name, obj in vars(errors).items()
               if isinstance(obj, type) and issubclass(obj, Exception | Warning)
               and obj.__module__ == errors.__name__}
    assert classes
    assert classes <= listed
    assert set(errors.__all__) == classes
