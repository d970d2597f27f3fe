"""Whether an output is still what calframe wrote, from inputs still as they were."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

from astropy.io import fits

from ..io._mef import check_digest
from ._cells import _printable
from ._paths import _norm, _portable
from ._provenance import get_provenance  # noqa: F401 (the doctest uses it)
from ._reading import _has_provenance
from ._records import InputRecord
from ._tree import ProvenanceNode, _tree

__all__ = ["PROBLEM_KINDS", "VerifyReport", "verify_output"]


# --- verifying an output -------------------------------------------------------------

#: The kinds of problem :func:`verify_output` reports.
PROBLEM_KINDS = ("TAMPERED", "UNVERIFIABLE", "NO PROVENANCE", "CHANGED", "MISSING")


@dataclass
class VerifyReport:
    """What :func:`verify_output` found; :attr:`~VerifyReport.ok` only when nothing is wrong.

    ``problems`` holds ``(kind, path, detail)``, one per problem, with
    ``kind`` one of :data:`PROBLEM_KINDS`; ``allowed`` the raw inputs not
    found that ``allow_missing`` accepts, as ``(path, detail)``; ``digest``
    what ``calframe.io._mef.check_digest`` said of the file (``'ok'``,
    ``'tampered'``, ``'absent'``, ``'unknown'``); ``ninputs`` the number of
    distinct input files checked (through the whole tree); ``tree`` the
    :class:`ProvenanceNode` of the file, with the check of every input.

    Parameters
    ----------
    path : str
        The file verified.
    tree : ProvenanceNode
        Its provenance tree, with the check of every input.
    problems : list of tuple of str
        ``(kind, path, detail)`` of each problem.
    allowed : list of tuple of str
        ``(path, detail)`` of the raw inputs not found that were allowed missing.
    digest : str
        The file's own check: 'ok', 'tampered', 'absent' or 'unknown'.
    ninputs : int
        Number of distinct input files checked.
    followed : bool
        False when the inputs that are calframe files were not followed.
    """

    path: str
    tree: ProvenanceNode
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    allowed: list[tuple[str, str]] = field(default_factory=list)
    digest: str = ""
    ninputs: int = 0
    followed: bool = True

    @property
    def ok(self) -> bool:
        """True when the file is what calframe wrote, from inputs still as they were."""
        return not self.problems

    def lines(self) -> list[str]:
        """One line per problem, ``KIND  path: detail``, then each allowed missing input."""
        lines = [f"{kind}  {path}: {detail}" for kind, path, detail in self.problems]
        lines += [f"missing (allowed)  {path}: {detail}" for path, detail in self.allowed]
        return [_printable(line) for line in lines]

    def summary(self) -> str:
        """One line: verified, or how many problems of each kind."""
        if self.ok:
            text = (f"verified {self.path}: calframe's digest and the checksums match; "
                    f"{self.ninputs - len(self.allowed)} input files present and unchanged")
            if self.allowed:
                text += f", {len(self.allowed)} raw input files not found (allowed)"
            if not self.followed:
                text += " (the inputs of its masters were not checked: not followed)"
        else:
            counts = collections.Counter(kind for kind, _path, _detail in self.problems)
            kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
            number = len(self.problems)
            text = (f"NOT verified {self.path}: {number} problem{'s' if number > 1 else ''} "
                    f"({kinds})")
        return _printable(text)

    def __str__(self) -> str:
        return "\n".join([*self.lines(), self.summary()])


def verify_output(path: str | os.PathLike, *, allow_missing: bool = False,
                  follow: bool = True) -> VerifyReport:
    """Whether a file is still what calframe wrote, from inputs that are still what they were.

    The file's own HDUs are compared with the digest calframe stored when it
    wrote them (``CFDIGEST``: header cards and stored data of every HDU) and
    with their ``CHECKSUM`` / ``DATASUM``; its ``PROVENANCE`` table must list
    its inputs; every input must be found (at its recorded path, or beside the
    file that lists it, never the file itself) with its recorded SHA-256,
    and the inputs that are calframe files (masters) are followed to their
    own inputs.

    The digest is not a signature: it proves that the file was not edited
    by accident or by a tool that knows nothing of it (even one that
    recomputes the checksums), not that nobody recomputed it with calframe's
    own code.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`calframe.write_frame`.
    allow_missing : bool, optional
        Accept raw inputs that are not found (archives that do not keep
        them); inputs that are calframe files must still be there.
    follow : bool, optional
        Follow the inputs that are calframe files to their own inputs.

    Returns
    -------
    VerifyReport
        ``ok`` only when nothing is wrong; ``problems`` says what is.

    Raises
    ------
    FrameReadError
        The file is not FITS, or is truncated or damaged.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from astropy.nddata import CCDData
    >>> from calframe import write_frame
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> raw = folder / "bias_1.fits"
    >>> _ = raw.write_bytes(b"raw bytes")
    >>> ccd = CCDData(np.zeros((2, 2), np.float32), unit="adu")
    >>> get_provenance(ccd).add_input(InputRecord.from_file(raw, role="bias"))
    >>> out = write_frame(ccd, folder / "master_bias.fits")
    >>> verify_output(out).ok
    True
    >>> raw.unlink()
    >>> report = verify_output(out)
    >>> report.ok, [kind for kind, _path, _detail in report.problems]
    (False, ['MISSING'])
    >>> verify_output(out, allow_missing=True).ok
    True
    """

    path = os.fspath(path)
    tree = _tree(path, verify=True, follow=follow, seen=set())
    report = VerifyReport(path=_portable(path), tree=tree, followed=follow)
    problems: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    def add(kind: str, where: str, detail: str) -> None:
        # an input seen through several masters is one problem; the file's own are each one
        key = (kind, _norm(where) or where, "" if kind in ("CHANGED", "MISSING") else detail)
        problems.setdefault(key, (kind, where, detail))

    status, findings = check_digest(path)
    report.digest = status
    if status in ("absent", "unknown"):
        if status == "unknown":
            detail = findings.pop(0)
        elif str(fits.getheader(path).get("CREATOR", "")).startswith("calframe"):
            detail = ("written before calframe stored a digest of its output: whether its "
                      "data and header are what calframe wrote cannot be checked")
        else:
            detail = ("no digest of calframe in its header (not written by calframe?): "
                      "whether its data and header are as written cannot be checked")
        add("UNVERIFIABLE", report.path, detail)
    for finding in findings:
        add("TAMPERED", report.path, finding)
    if not _has_provenance(path):
        add("NO PROVENANCE", report.path, "no PROVENANCE table: nothing says what the file "
            "was made from (not written by calframe, or the table was removed)")
    elif not tree.inputs:
        add("NO PROVENANCE", report.path, "its PROVENANCE table lists no input files: what "
            "the file was made from cannot be checked")

    files = set()
    for node, check in _iter_checks(tree):
        record = check.record
        files.add(_norm(record.path) or record.path)
        owner = f"input of {node.path}"
        if check.status == "changed":
            add("CHANGED", record.path, f"sha256 now {check.sha256[:16]}..., recorded "
                f"{record.sha256[:16]}... ({owner})")
        elif check.status == "missing":
            if check.found:
                detail = (f"not at its recorded place; {check.found} has its name but other "
                          f"bytes ({owner})")
            else:
                detail = f"not found, at its recorded place or beside that file ({owner})"
            if allow_missing and not _is_calframe_file(record, node):
                if not any(_norm(p) == _norm(record.path) for p, _d in report.allowed):
                    report.allowed.append((record.path, f"raw input {detail}; accepted, "
                                                        "as raw inputs may be missing"))
                continue
            if allow_missing:
                detail += "; made by calframe, so allowing missing raw inputs does not cover it"
            add("MISSING", record.path, detail)
    report.ninputs = len(files)
    report.problems = list(problems.values())
    return report


def _iter_checks(node: ProvenanceNode):
    """(node, check) for every input check of a tree, parents first."""
    for index in sorted(node.checks):
        yield node, node.checks[index]
    for index in sorted(node.children):
        yield from _iter_checks(node.children[index])


def _is_calframe_file(record: InputRecord, node: ProvenanceNode) -> bool:
    """Whether an input not found was made by calframe (its records were copied)."""
    target = _norm(record.path)
    if target and any(_norm(origin) == target for origin in node.inherited):
        return True
    return "master" in f"{record.role} {record.frametype}".lower()
