"""Re-hashing the inputs of a file: are they still what was recorded?"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ._hashing import sha256_file
from ._records import InputRecord

__all__ = ["InputCheck", "verify_inputs"]


@dataclass
class InputCheck:
    """Result of re-hashing one input: ``status`` is 'ok', 'changed' or 'missing'.

    ``found`` is where the input was found when not at its recorded path
    (beside the file that lists it); an input found there with other bytes is
    'missing', not 'changed': that file only has its name.

    Parameters
    ----------
    record : InputRecord
        The record checked.
    status : str
        'ok', 'changed' or 'missing'.
    sha256 : str
        The SHA-256 found ('' when missing).
    found : str
        Where it was found, when not at its recorded path.
    """

    record: InputRecord
    status: str
    sha256: str = ""
    found: str = ""


def verify_inputs(records: Iterable[InputRecord]) -> list[InputCheck]:
    """Re-hash every input file that is present and compare with its record.

    Paths are taken as they are in memory (as read back by
    :func:`calframe.io.attach_extras`, i.e. relative to the current folder).

    Parameters
    ----------
    records : iterable of InputRecord
        The inputs to check.

    Returns
    -------
    list of InputCheck
        One check per record, in order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "flat.fits"
    >>> _ = p.write_bytes(b"abc")
    >>> rec = InputRecord.from_file(p)
    >>> _ = p.write_bytes(b"abd")
    >>> [c.status for c in verify_inputs([rec])]
    ['changed']
    """
    checks = []
    for record in records:
        if not record.path or not os.path.isfile(record.path):
            checks.append(InputCheck(record, "missing"))
            continue
        digest = sha256_file(record.path, reuse=False)
        checks.append(InputCheck(record, "ok" if digest == record.sha256 else "changed",
                                 digest))
    return checks
