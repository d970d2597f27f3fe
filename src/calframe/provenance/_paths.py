"""Input paths as written in a file (relative to it) and as seen from here."""

from __future__ import annotations

import contextlib
import os

__all__ = ["path_for_output", "path_from_file"]


def _portable(path: str) -> str:
    return path.replace(os.sep, "/") if os.sep != "/" else path


def path_for_output(path: str, out_dir: str | os.PathLike, *,
                    absolute_paths: bool = False) -> str:
    """How an input path is written in the table of a file in ``out_dir``.

    Relative paths are taken relative to the current directory (as the user
    gave them) and rewritten relative to ``out_dir``; absolute paths only
    when ``absolute_paths`` is true.

    Parameters
    ----------
    path : str
        The input's path, as the user gave it.
    out_dir : str or path-like
        The folder of the output whose table records it.
    absolute_paths : bool
        Write the absolute path instead.

    Returns
    -------
    str
        The path to store.

    Examples
    --------
    >>> path_for_output("night1/bias/b1.fits", "night1/masters")
    '../bias/b1.fits'
    """
    if not path:
        return path
    full = os.path.abspath(path)
    if absolute_paths:
        return full
    try:
        rel = os.path.relpath(full, os.path.abspath(out_dir))
    except ValueError:  # different drives (Windows)
        rel = path if not os.path.isabs(path) else os.path.basename(path)
    return _portable(rel)


def path_from_file(stored: str, file_dir: str | os.PathLike) -> str:
    """Inverse of :func:`path_for_output`: a stored path as seen from here.

    Parameters
    ----------
    stored : str
        A path as stored in a file's table.
    file_dir : str or path-like
        The folder of that file.

    Returns
    -------
    str
        The path relative to the current folder (absolute paths unchanged).

    Examples
    --------
    >>> path_from_file("../bias/b1.fits", "night1/masters")
    'night1/bias/b1.fits'
    """
    if not stored or os.path.isabs(stored):
        return stored
    joined = os.path.normpath(os.path.join(os.fspath(file_dir), stored))
    if os.path.isabs(joined):
        # Given relative to the current folder when it lies below it.
        with contextlib.suppress(ValueError):
            rel = os.path.relpath(joined)
            if not rel.startswith(os.pardir):
                joined = rel
    return _portable(joined)


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path)) if path else ""
