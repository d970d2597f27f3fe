"""The versions of the software whose behaviour shapes an output."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import rawpy

__all__ = ["software_versions"]


_VERSIONS_CACHE: dict[str, str] | None = None


def software_versions() -> dict[str, str]:
    """Versions of calframe and the libraries whose behaviour shapes an output.

    Returns
    -------
    dict of str to str
        ``{package: version}``.

    Examples
    --------
    >>> sorted(k for k in software_versions() if k in ("calframe", "numpy"))
    ['calframe', 'numpy']
    """
    global _VERSIONS_CACHE
    if _VERSIONS_CACHE is None:
        versions: dict[str, str] = {}
        for name in ("calframe", "astropy", "numpy", "scipy", "photutils", "ccdproc",
                     "rawpy"):
            try:
                versions[name] = version(name)
            except PackageNotFoundError:
                continue
        versions["LibRaw"] = ".".join(str(v) for v in rawpy.libraw_version)
        _VERSIONS_CACHE = versions
    return dict(_VERSIONS_CACHE)


def _shared_versions() -> dict[str, str]:
    # One dict per process, shared by every step made here: a run records
    # a step per frame read and must not hold a copy of the versions per step.
    software_versions()
    return _VERSIONS_CACHE


_VERSIONS_READ: dict[str, dict[str, str]] = {}


def _versions_from_json(text: str) -> dict[str, str]:
    """The versions of a step read from a file, one dict per distinct text."""
    if text not in _VERSIONS_READ:
        if len(_VERSIONS_READ) > 64:  # bounded: files of many software versions
            _VERSIONS_READ.clear()
        _VERSIONS_READ[text] = json.loads(text)
    return _VERSIONS_READ[text]
