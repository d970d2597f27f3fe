"""The tree of calframe files behind an output, followed through their records."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from ..errors import CalframeWarning, FrameReadError
from ._cells import _printable
from ._check_inputs import InputCheck, verify_inputs
from ._paths import _norm, _portable
from ._provenance import Provenance, get_provenance  # noqa: F401 (the doctest uses it)
from ._reading import _has_provenance, _is_fits_name, _read_record
from ._records import InputRecord, StepRecord
from ._render import render_tree

__all__ = ["ProvenanceNode", "provenance_tree"]


@dataclass
class ProvenanceNode:
    """One calframe file in the tree of :func:`provenance_tree`.

    ``inputs`` and ``steps`` are the file's own records; ``inherited`` maps
    the file each other record came from to those records (kept for files
    that are not found); ``children`` maps the index of an input to the
    node of that input when it is itself a calframe file found on disk;
    ``checks`` maps the index of an input to its check when verifying.

    Parameters
    ----------
    path : str
        The file.
    sha256 : str
        Its SHA-256.
    calstat : str
        Its CALSTAT (the steps it went through, one letter each).
    inputs : list of InputRecord
        Its own input records.
    steps : list of StepRecord
        Its own step records.
    inherited : dict of str to Provenance
        Records read from other files, by file.
    children : dict of int to ProvenanceNode
        The nodes of inputs that are calframe files found on disk, by input index.
    checks : dict of int to InputCheck
        The checks of the inputs, by input index (when verifying).
    followed : bool
        False when the inputs that are calframe files were not followed.
    """

    path: str
    sha256: str
    calstat: str
    inputs: list[InputRecord]
    steps: list[StepRecord]
    inherited: dict[str, Provenance] = field(default_factory=dict)
    children: dict[int, ProvenanceNode] = field(default_factory=dict)
    checks: dict[int, InputCheck] = field(default_factory=dict)
    followed: bool = True

    def iter_checks(self):
        """Every check of this node and of the nodes below it."""
        yield from self.checks.values()
        for child in self.children.values():
            yield from child.iter_checks()

    def render(self, *, full: bool = False) -> str:
        """The tree as text, one record per line.

        Three or more consecutive steps of the same name take one line
        (``read x40``) unless ``full`` is true.
        """
        return render_tree(self, full=full)


def provenance_tree(path: str | os.PathLike, *, verify: bool = False,
                    follow: bool = True) -> ProvenanceNode:
    """How a calframe file was made, following the calframe files it used.

    Inputs that are calframe files (masters...) are opened where the record
    says they are, or beside ``path`` when they are not there, and their own
    records are shown below them, recursively.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`calframe.write_frame`.
    verify : bool, optional
        Re-hash every input that is present (see :func:`verify_inputs`).
    follow : bool, optional
        Follow inputs that are calframe files.

    Returns
    -------
    ProvenanceNode
        The node of ``path``, with the nodes of its calframe inputs below it.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from astropy.nddata import CCDData
    >>> from calframe import write_frame
    >>> ccd = CCDData(np.zeros((2, 2), np.float32), unit="adu")
    >>> get_provenance(ccd).add_step("combine", method="median")
    >>> out = write_frame(ccd, pathlib.Path(tempfile.mkdtemp()) / "m.fits")
    >>> print(provenance_tree(out).render().splitlines()[-1][-22:])
    combine  method=median
    """
    return _tree(os.fspath(path), verify=verify, follow=follow, seen=set())


def _tree(path: str, *, verify: bool, follow: bool, seen: set[str]) -> ProvenanceNode:
    seen = seen | {_norm(path)}
    prov, digest, calstat = _read_record(path, checksum_warning=not verify)
    this = _norm(path)
    own_inputs = [r for r in prov.inputs if not r.origin or _norm(r.origin) == this]
    own_steps = [s for s in prov.steps if not s.origin or _norm(s.origin) == this]
    inherited: dict[str, Provenance] = {}
    for r in prov.inputs:
        if r not in own_inputs:
            inherited.setdefault(r.origin, Provenance()).inputs.append(r)
    for s in prov.steps:
        if s not in own_steps:
            inherited.setdefault(s.origin, Provenance()).steps.append(s)
    node = ProvenanceNode(path=path, sha256=digest, calstat=calstat,
                          inputs=own_inputs, steps=own_steps, followed=follow)
    for i, record in enumerate(own_inputs):
        located = _locate(record, path, exclude=seen)
        if verify:
            check = verify_inputs([InputRecord(**{**asdict(record), "path": located})])[0]
            check.record = record
            if located and located != record.path:
                check.found = located
                if check.status == "changed":
                    # a file of the same name elsewhere, with other bytes: not the input
                    check.status = "missing"
                    located = ""
            node.checks[i] = check
        if follow and located and _norm(located) not in seen \
                and _is_fits_name(located) and _has_provenance(located, warn=True):
            try:
                child = _tree(located, verify=verify, follow=follow, seen=seen)
            except FrameReadError as err:
                # an input that cannot be read is listed, not followed
                warnings.warn(f"{_printable(err)}; not followed", CalframeWarning,
                              stacklevel=2)
                continue
            node.children[i] = child
            inherited.pop(record.path, None)
            for origin in list(inherited):
                if _norm(origin) == _norm(record.path) or _norm(origin) == _norm(located):
                    del inherited[origin]
    node.inherited = inherited
    return node


def _locate(record: InputRecord, owner: str, *, exclude: Iterable[str] = ()) -> str:
    """Where an input is: at its recorded path, else beside ``owner`` (a folder moved
    as a whole); '' when not found.

    Never ``owner`` itself, nor one of the files of ``exclude`` (normalised
    paths: the files above it in the tree): a raw light deleted beside a
    calibrated light of the same name is not found, rather than found as
    the output that lists it.
    """
    if not record.path:
        return ""
    barred = {_norm(owner), *exclude}
    beside = os.path.join(os.path.dirname(owner), os.path.basename(record.path))
    for candidate in (record.path, beside):
        if not os.path.isfile(candidate) or _norm(candidate) in barred:
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(candidate, owner):  # (a link to it)
                continue
        return record.path if candidate == record.path else _portable(candidate)
    return ""
