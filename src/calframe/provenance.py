"""What every calframe output says about how it was made.

A :class:`Provenance` holds one :class:`InputRecord` per input file and one
:class:`StepRecord` per processing step.  It travels with a frame in memory
(see :func:`get_provenance` / :func:`set_provenance`), is extended by every
calframe step, and is written as the ``PROVENANCE`` table of every output.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "InputRecord",
    "Provenance",
    "StepRecord",
    "get_provenance",
    "set_provenance",
    "sha256_file",
    "software_versions",
]

_ATTRIBUTE = "_calframe_provenance"


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 22) -> str:
    """Return the hexadecimal SHA-256 of the bytes of a file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions of calframe and the libraries whose behaviour shapes an output."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {}
    for name in ("calframe", "astropy", "numpy", "scipy", "photutils", "ccdproc", "rawpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    try:
        import rawpy

        versions["LibRaw"] = ".".join(str(v) for v in rawpy.libraw_version)
    except ImportError:
        pass
    return versions


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class InputRecord:
    """One input file of an output.

    ``path`` is as given or relative to the output; never an absolute machine
    path unless the user asks for one.
    """

    path: str
    sha256: str
    role: str = ""
    frametype: str = ""
    exptime: float | None = None
    date_obs: str = ""
    shape: tuple[int, ...] = ()

    @classmethod
    def from_file(cls, path, *, role: str = "", frametype: str = "",
                  exptime: float | None = None, date_obs: str = "",
                  shape: tuple[int, ...] = ()) -> InputRecord:
        """Describe ``path``, hashing its bytes."""
        return cls(path=str(path), sha256=sha256_file(path), role=role,
                   frametype=frametype, exptime=exptime, date_obs=date_obs,
                   shape=tuple(int(n) for n in shape))


@dataclass
class StepRecord:
    """One processing step: its name, its parameters and the software used."""

    step: str
    parameters: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=software_versions)
    time: str = field(default_factory=_utc_now)

    def parameters_json(self) -> str:
        """The parameters as compact, sorted JSON (non-JSON values as text)."""
        return json.dumps(self.parameters, sort_keys=True, default=_json_default,
                          separators=(",", ":"))


def _json_default(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    return str(value)


@dataclass
class Provenance:
    """The inputs and steps behind one frame.

    Examples
    --------
    >>> prov = Provenance()
    >>> prov.add_step("combine", method="median", nframes=3)
    >>> prov.steps[0].step
    'combine'
    """

    inputs: list[InputRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)

    def add_input(self, record: InputRecord) -> None:
        """Add an input file, once (the same path and hash is not repeated)."""
        for existing in self.inputs:
            if existing.sha256 == record.sha256 and existing.path == record.path \
                    and existing.role == record.role:
                return
        self.inputs.append(record)

    def add_step(self, step: str, **parameters) -> None:
        """Record a processing step with its parameters."""
        self.steps.append(StepRecord(step=step, parameters=parameters))

    def extend(self, other: Provenance) -> None:
        """Add the inputs and steps of ``other`` (e.g. of each combined frame)."""
        for record in other.inputs:
            self.add_input(record)
        for step in other.steps:
            if not any(s.step == step.step and s.time == step.time
                       and s.parameters == step.parameters for s in self.steps):
                self.steps.append(step)

    def copy(self) -> Provenance:
        """A deep copy."""
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """Plain-Python form (for JSON)."""
        return {"inputs": [asdict(r) for r in self.inputs],
                "steps": [asdict(s) for s in self.steps]}


def get_provenance(ccd) -> Provenance:
    """The provenance attached to a frame (a new, empty one if none).

    The returned object is the one attached: modifying it modifies the frame's.
    """
    prov = getattr(ccd, _ATTRIBUTE, None)
    if prov is None:
        prov = Provenance()
        try:
            setattr(ccd, _ATTRIBUTE, prov)
        except AttributeError:  # pragma: no cover - objects without __dict__
            pass
    return prov


def set_provenance(ccd, prov: Provenance) -> None:
    """Attach ``prov`` to a frame (replacing any it had)."""
    setattr(ccd, _ATTRIBUTE, prov)
