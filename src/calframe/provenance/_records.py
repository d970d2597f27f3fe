"""The two kinds of record: an input file and a processing step."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from ._clock import _utc_now
from ._hashing import sha256_file
from ._json import _to_json
from ._versions import _shared_versions

__all__ = ["InputRecord", "StepRecord"]


@dataclass
class InputRecord:
    """One input file of an output.

    ``path`` is as given or relative to the output; never an absolute machine
    path unless the user asks for one.  ``origin`` is empty for the frame's
    own inputs and names the calframe file whose table the record was read
    from otherwise (e.g. the raw biases behind a master bias).

    Parameters
    ----------
    path : str
        The file, as given or relative to the output.
    sha256 : str
        Hexadecimal SHA-256 of its bytes.
    role : str
        What it was used as (``'bias'``, ``'light'``...).
    frametype : str
        Its normalised frame type.
    exptime : float or None
        Its exposure in seconds.
    date_obs : str
        Its DATE-OBS.
    shape : tuple of int
        Its shape.
    origin : str
        The calframe file whose table the record was read from ('' for the
        frame's own inputs).
    """

    path: str
    sha256: str
    role: str = ""
    frametype: str = ""
    exptime: float | None = None
    date_obs: str = ""
    shape: tuple[int, ...] = ()
    origin: str = ""

    @classmethod
    def from_file(cls, path, *, role: str = "", frametype: str = "",
                  exptime: float | None = None, date_obs: str = "",
                  shape: tuple[int, ...] = (), sha256: str | None = None) -> InputRecord:
        """Describe ``path``, hashing its bytes (unless ``sha256`` is already known).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "bias_001.fits"
        >>> _ = p.write_bytes(b"abc")
        >>> rec = InputRecord.from_file(p, role="bias", frametype="bias", shape=(4, 5))
        >>> rec.sha256[:8], rec.shape
        ('ba7816bf', (4, 5))
        """
        return cls(path=os.fspath(path), sha256=sha256 or sha256_file(path), role=role,
                   frametype=frametype,
                   exptime=None if exptime is None else float(exptime),
                   date_obs=str(date_obs or ""),
                   shape=tuple(int(n) for n in shape))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InputRecord:
        """Inverse of :func:`dataclasses.asdict` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs["shape"] = tuple(int(n) for n in kwargs.get("shape", ()))
        return cls(**kwargs)


@dataclass
class StepRecord:
    """One processing step: its name, its parameters and the software used.

    ``origin`` is empty for steps made on this frame and names the calframe
    file whose table the record was read from otherwise.

    Parameters
    ----------
    step : str
        The step's name (``'combine'``, ``'subtract_bias'``...).
    parameters : dict
        Its parameters (JSON-serialisable).
    versions : dict of str to str
        Versions of the software used (default: :func:`software_versions`).
    time : str
        UTC time of the step, ISO 8601 (default: now).
    origin : str
        The calframe file whose table the record was read from ('' for steps
        made on this frame).
    """

    step: str
    parameters: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=_shared_versions)
    time: str = field(default_factory=_utc_now)
    origin: str = ""

    def parameters_json(self) -> str:
        """The parameters as compact, sorted JSON (non-JSON values as text)."""
        return _to_json(self.parameters)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StepRecord:
        """Inverse of :func:`dataclasses.asdict` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _same_step(a: StepRecord, b: StepRecord) -> bool:
    """Whether two records are one step: same name, parameters and time, or the
    reading of one file (``file``: its digest) with the same parameters, which a
    frame's history may hold twice when the file was read again elsewhere."""
    if a.step != b.step or a.parameters != b.parameters:
        return False
    return a.time == b.time or (a.step == "read" and "file" in a.parameters)
