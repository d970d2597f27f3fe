"""Sphinx configuration for the calframe documentation."""

import ast
from importlib.metadata import version as _version
from pathlib import Path

import calframe
import calframe.errors as _errors

project = "calframe"
author = "the calframe developers"
copyright = "2026, the calframe developers"
release = _version("calframe")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

autosummary_generate = True
autodoc_typehints = "none"
# The generated page of a class lists its methods and attributes in tables;
# documenting the members on that page gives the table entries (and
# references such as :meth:`DistortionModel.fit`) something to link to.  The
# module pages in api/ say :no-members: and :no-inherited-members: on their
# automodule: the members of a module have pages of their own.
#
# Inherited members are documented too (the rejection settings of
# calframe.combining inherit describe() and to_dict()), except those of the
# Python, NumPy and astropy base classes: an exception's page does not repeat
# with_traceback() and add_note().
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "inherited-members": ",".join(
        [
            "object",
            "BaseException",
            "Exception",
            "ValueError",
            "OSError",
            "FileExistsError",
            "BlockingIOError",
            "Warning",
            "UserWarning",
            "UnitsError",
            "AstropyWarning",
            "AstropyUserWarning",
            "tuple",
            "dict",
        ]
    ),
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Types in the Parameters, Returns, Raises, ... sections of the numpydoc
# docstrings become links.  The aliases give the full name of the types that
# docstrings write short; numpydoc adds its own for the Python builtins
# (str, float, list, dict, callable, sequence, iterable, ...) and NumPy's
# ndarray and array_like / array-like.
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    # astropy
    "CCDData": "astropy.nddata.CCDData",
    "Quantity": "astropy.units.Quantity",
    "Table": "astropy.table.Table",
    "Header": "astropy.io.fits.Header",
    "header": "astropy.io.fits.Header",
    # numpy
    "dtype": "numpy.dtype",
    "float64": "numpy.float64",
    "arrays": "numpy.ndarray",
    # Python's glossary: a path is a str or an os.PathLike
    "path": ":term:`path <python:path-like object>`",
    "paths": ":term:`paths <python:path-like object>`",
    "path-like": ":term:`path-like <python:path-like object>`",
    "mapping": ":term:`python:mapping`",
    "sequences": ":term:`sequences <python:sequence>`",
    "iterator": ":term:`python:iterator`",
    "floats": ":class:`floats <python:float>`",
    "datetime": "datetime.datetime",
    # ccdproc (no inventory kept: see nitpick_ignore_regex)
    "ImageFileCollection": "ccdproc.ImageFileCollection",
    # dask.distributed documents its client as distributed.Client
    "dask.distributed.Client": "distributed.Client",
    # calframe names used in the docstrings of other calframe modules
    "Cosmetic": "calframe.cosmetic.Cosmetic",
    "Inventory": "calframe.inventory.Inventory",
    "Provenance": "calframe.provenance.Provenance",
    "Tolerances": "calframe.inventory.Tolerances",
    "DemoStep": "calframe.demo.DemoStep",
    "Night": "calframe.datasets.Night",
    "Problem": "calframe.inventory.Problem",
}
# The exceptions and warnings of calframe.errors, by their short name (as the
# Raises and Warns sections name them).
numpydoc_xref_aliases.update(
    {
        _name: f"calframe.errors.{_name}"
        for _name, _obj in vars(_errors).items()
        if isinstance(_obj, type)
        and issubclass(_obj, Warning | Exception)
        and _obj.__module__ == _errors.__name__
    }
)
# Words of the type descriptions that are English, not names of types:
# "float, optional", "tuple of int", "mapping of str to float", "ndarray,
# shape (n, 12)", "(y0, y1, x0, x1)", "FITS section", "tuple of (keyword,
# value, comment)", "sequence of (ref_xy, frame_xy) pairs", "settings
# object", "skimage transform".
numpydoc_xref_ignore = {
    "optional",
    "or",
    "of",
    "to",
    "default",
    "shape",
    "n",
    "y0",
    "y1",
    "x0",
    "x1",
    "FITS",
    "section",
    "keyword",
    "value",
    "comment",
    "pairs",
    "ref_xy",
    "frame_xy",
    "settings",
    "object",
    "transform",
}

# Every cross-reference must resolve: a broken one fails the -W build.
nitpicky = True
# Targets that no inventory here documents, so a reference to them cannot
# resolve: matplotlib, prov, fabio and ccdproc (not among the inventories kept
# in _intersphinx/).
nitpick_ignore_regex = [
    (r"py:.*", r"ccdproc(\..*)?"),
    (r"py:.*", r"matplotlib(\..*)?"),
    (r"py:.*", r"prov(\..*)?"),
    (r"py:.*", r"fabio(\..*)?"),
]

# Inventories of the projects calframe links to.  They are kept in
# _intersphinx/ so that building the documentation never needs the network.
# Each is the objects.inv of one release of that project's documentation:
# Python 3.14, NumPy 2.4, SciPy 1.17, astropy 8.0, scikit-image 0.26, dask and
# dask.distributed 2024.12, pyFAI 2026.02.  Replace a file by a newer
# release's objects.inv when a dependency's documentation moves.  photutils'
# inventory (3.0) is written from the installed package's public API by
# scripts/photutils_inventory.py, with the page layout of its documentation.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.14/", "_intersphinx/python.inv"),
    "numpy": ("https://numpy.org/doc/stable/", "_intersphinx/numpy.inv"),
    "scipy": ("https://docs.scipy.org/doc/scipy/", "_intersphinx/scipy.inv"),
    "astropy": ("https://docs.astropy.org/en/stable/", "_intersphinx/astropy.inv"),
    "skimage": ("https://scikit-image.org/docs/stable/", "_intersphinx/skimage.inv"),
    "dask": ("https://docs.dask.org/en/stable/", "_intersphinx/dask.inv"),
    "distributed": (
        "https://distributed.dask.org/en/stable/",
        "_intersphinx/distributed.inv",
    ),
    "pyfai": ("https://pyfai.readthedocs.io/en/stable/", "_intersphinx/pyfai.inv"),
    "photutils": ("https://photutils.readthedocs.io/en/stable/", "_intersphinx/photutils.inv"),
}

html_theme = "pydata_sphinx_theme"
html_title = "calframe"
exclude_patterns = ["_build"]


# The public names of the top-level namespace (calframe.read_frame is
# calframe.io.read_frame) are documented once, on the page of the module that
# defines them.  A reference to the short name resolves to that page.  The
# names and their modules are read from calframe/__init__.pyi, the list that
# calframe's lazy loader reads too.
_TOP_LEVEL = {
    _alias.name: _node.module
    for _node in ast.parse(Path(calframe.__file__).with_suffix(".pyi").read_text()).body
    if isinstance(_node, ast.ImportFrom)
    for _alias in _node.names
}


def _resolve_top_level(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if node.get("py:module") == "calframe" and not target.startswith("calframe."):
        # a short name in the summary of the namespace page (api/calframe)
        target = f"calframe.{target}"
    if not target.startswith("calframe."):
        return None
    name, dot, rest = target.removeprefix("calframe.").partition(".")
    module = _TOP_LEVEL.get(name)
    if module is None:
        return None
    return env.get_domain("py").resolve_xref(
        env,
        node["refdoc"],
        app.builder,
        node["reftype"],
        f"calframe.{module}.{name}{dot}{rest}",
        node,
        contnode,
    )


def setup(app):
    app.connect("missing-reference", _resolve_top_level)

