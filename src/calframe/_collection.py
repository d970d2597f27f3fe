"""ccdproc's :class:`~ccdproc.ImageFileCollection` where calframe takes a list of paths.

:func:`calframe.combine`, the ``make_master_*`` functions,
:func:`calframe.take_inventory`, :func:`calframe.align`,
:func:`calframe.stack` and the pipeline's ``inputs`` accept a collection and
use the files it holds now: those of its summary table (a collection made by
``ImageFileCollection.filter`` holds only the files that matched), each
joined to the collection's location.  To use a selection without making a
new collection, pass ``collection.files_filtered(..., include_path=True)``,
which is a list of paths.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .errors import InvalidSettingsError, NoFramesError

__all__ = ["collection_paths"]


def _is_collection(obj) -> bool:
    # ccdproc is imported by whoever made the collection: an object of another
    # type needs no import of ccdproc (about a second) to be told apart
    ccdproc = sys.modules.get("ccdproc")
    return ccdproc is not None and isinstance(obj, ccdproc.ImageFileCollection)


def collection_paths(frames, what: str):
    """The paths of the files of an ImageFileCollection; anything else unchanged.

    Parameters
    ----------
    frames : ccdproc.ImageFileCollection or object
        What the caller was given as its frames or paths.
    what : str
        The function or setting that was given it, for the messages.

    Returns
    -------
    list of str or object
        For a collection, the path of each file of its summary table (masked
        rows left out), in the table's order, joined to its location;
        ``frames`` itself otherwise.

    Raises
    ------
    NoFramesError
        The collection holds no files (an empty folder, or a filter that
        matched none).
    InvalidSettingsError
        The collection summarises an HDU other than the primary one
        (``ext``): calframe reads each file as :func:`calframe.read_frame`
        does, which is not necessarily the HDU whose header the collection
        was filtered on.
    """
    if not _is_collection(frames):
        return frames
    location = frames.location or ""
    described = f"{what}: the ImageFileCollection of {location or 'listed files'!r}"
    if frames.ext not in (0, "PRIMARY"):
        raise InvalidSettingsError(
            f"{described} reads the headers of HDU ext={frames.ext!r}, but calframe reads "
            "each file's first image HDU; make the collection with ext=0, or read the "
            "frames with calframe.read_frame(path, hdu=...) and pass them")
    summary = frames.summary
    names = []
    if summary is not None and len(summary):
        column = summary["file"]
        names = [str(name) for name, masked in zip(column, np.ma.getmaskarray(column),
                                                   strict=True) if not masked]
    if not names:
        raise NoFramesError(
            f"{described} holds no files; check its location and the keywords it was "
            "filtered on")
    return [os.path.join(location, name) for name in names]
