"""Sphinx configuration for the calframe documentation."""

from importlib.metadata import version as _version

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
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
nitpicky = False

intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_title = "calframe"
exclude_patterns = ["_build"]
