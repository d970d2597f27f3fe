"""The provenance of one frame: its inputs and steps, and attaching it to a frame."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import _table, _w3c
from ._calstat import CALSTAT_LETTERS, _step_letters
from ._json import _short
from ._paths import _norm, path_for_output
from ._records import InputRecord, StepRecord, _same_step

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io.fits import BinTableHDU
    from prov.model import ProvDocument

__all__ = ["Provenance", "get_provenance", "set_provenance"]


_ATTRIBUTE = "_calframe_provenance"


@dataclass
class Provenance:
    """The inputs and steps behind one frame.

    Parameters
    ----------
    inputs : list of InputRecord
        The input files.
    steps : list of StepRecord
        The processing steps, in order.

    Examples
    --------
    >>> prov = Provenance()
    >>> prov.add_step("combine", method="median", nframes=3)
    >>> prov.steps[0].step
    'combine'
    >>> prov.add_step("subtract_bias")
    >>> prov.calstat()
    'B'
    """

    inputs: list[InputRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)

    def add_input(self, record: InputRecord) -> None:
        """Add an input file, once (the same path and hash is not repeated)."""
        for existing in self.inputs:
            # one file, whatever form its path was given in (relative, absolute...)
            if existing.sha256 == record.sha256 and existing.role == record.role and (
                    existing.path == record.path or _norm(existing.path) == _norm(record.path)):
                return
        self.inputs.append(record)

    def add_step(self, step: str, **parameters) -> None:
        """Record a processing step with its parameters (plain JSON values)."""
        self.steps.append(StepRecord(step=step, parameters=parameters))

    def extend(self, other: Provenance) -> None:
        """Add the inputs and steps of ``other`` (e.g. of each combined frame)."""
        for record in other.inputs:
            self.add_input(record)
        for step in other.steps:
            if not any(_same_step(s, step) for s in self.steps):
                self.steps.append(step)

    def copy(self) -> Provenance:
        """A deep copy."""
        return copy.deepcopy(self)

    def for_output(self, out_dir: str | os.PathLike, *,
                   absolute_paths: bool = False) -> Provenance:
        """A copy whose step parameters name files as the input table does.

        A file named in a step's parameters (the frames of a combine, a mask,
        a model) is written relative to ``out_dir`` like the paths of the
        input table, never as an absolute machine path unless
        ``absolute_paths``.  A parameter is taken for a path when it is one of
        the inputs' paths or an absolute path.

        Examples
        --------
        >>> import os
        >>> prov = Provenance()
        >>> prov.add_step("combine", frames=[os.path.abspath("night/b1.fits")], method="median")
        >>> prov.for_output("night/masters").steps[0].parameters["frames"]
        ['../b1.fits']
        """
        known = {os.path.normpath(r.path) for r in self.inputs if r.path}

        def portable(value):
            if isinstance(value, str):
                is_path = (os.path.isabs(value) and len(value) > 1) or (
                    value and os.path.normpath(value) in known)
                return path_for_output(value, out_dir, absolute_paths=absolute_paths) \
                    if is_path else value
            if isinstance(value, list | tuple):
                return [portable(v) for v in value]
            if isinstance(value, dict):
                return {k: portable(v) for k, v in value.items()}
            return value

        out = self.copy()
        out.steps = [dataclasses.replace(s, parameters=portable(s.parameters))
                     for s in out.steps]
        return out

    # -- plain forms ---------------------------------------------------------
    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """Plain-Python form (for JSON)."""
        return {"inputs": [asdict(r) for r in self.inputs],
                "steps": [asdict(s) for s in self.steps]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Provenance:
        """Inverse of :meth:`to_dict`.

        Examples
        --------
        >>> prov = Provenance()
        >>> prov.add_step("read", path="a.fits")
        >>> Provenance.from_dict(prov.to_dict()) == prov
        True
        """
        return cls(inputs=[InputRecord.from_dict(r) for r in values.get("inputs", [])],
                   steps=[StepRecord.from_dict(s) for s in values.get("steps", [])])

    # -- summaries -----------------------------------------------------------
    def own_steps(self, frametype: str | None = None) -> list[StepRecord]:
        """Steps applied to this frame or to the frames it was combined from.

        Steps that came with a master are left out: those whose ``origin`` is
        an input used with role ``'master'``, or, when ``frametype`` (the
        frame's own type) is given, an input of another calibration type
        (a master dark used on a light, a master bias used on a flat...).
        """
        calibration = {"bias", "dark", "flat", "darkflat"}
        masters = set()
        for r in self.inputs:
            kind = (r.frametype or r.role).lower()
            if r.role == "master" or (frametype and kind in calibration
                                      and kind != frametype.lower()):
                masters.add(_norm(r.path))
        return [s for s in self.steps if not s.origin or _norm(s.origin) not in masters]

    def calstat(self, frametype: str | None = None, *, current: str | None = None) -> str:
        """Letters of the corrections applied (``CALSTAT``), e.g. ``'BDF'``.

        A step of :meth:`own_steps` sets a letter when its name matches the
        pattern of :data:`CALSTAT_LETTERS`, when it is a ``calibrate...`` or
        ``make_master...`` step whose ``bias`` / ``dark`` / ``flat`` (or
        ``master_*``, ``bias_subtracted``, ``dark_subtracted``,
        ``flat_corrected``) parameter is set, or when it passes
        ``calstat="..."`` among its parameters.

        ``current`` is the ``CALSTAT`` the frame already carries (set by the
        calibration step, which knows exactly what it applied): it is kept,
        and only steps recorded after the last ``calibrate...`` step add to it.

        Examples
        --------
        >>> prov = Provenance()
        >>> prov.add_step("calibrate", bias="b.fits", flat="f.fits")
        >>> prov.add_step("demosaic", method="bilinear")
        >>> prov.calstat(), prov.calstat(current="BF")
        ('BFM', 'BFM')
        """
        own = self.own_steps(frametype)
        letters: list[str] = []
        if current:
            letters = [c for c in str(current).upper() if c.isalpha()]
            last = max((i for i, s in enumerate(self.steps)
                        if re.match(r"calibrat", s.step, flags=re.IGNORECASE)), default=-1)
            later = {id(s) for s in self.steps[last + 1:]}
            own = [s for s in own if id(s) in later]
        for step in own:
            letters.extend(_step_letters(step))
        known = [c for c in CALSTAT_LETTERS if c in letters]
        other = [c for c in dict.fromkeys(letters) if c not in CALSTAT_LETTERS]
        return "".join(known + other)

    def history_lines(self, *, width: int = 72) -> list[str]:
        """One plain-words line per step, for the FITS ``HISTORY`` cards.

        A run of three or more steps of the same name (the ``read`` of each
        frame of a stack) takes one line, ``read x40``, with the parameters
        when they are all the same; the table has every step.

        Examples
        --------
        >>> prov = Provenance()
        >>> prov.add_step("combine", method="median", nframes=3)
        >>> prov.history_lines()[0].split(" ", 2)[2]
        'combine: method=median, nframes=3'
        >>> for _ in range(40):
        ...     prov.add_step("read", format="fits")
        >>> prov.history_lines()[1].split(" ", 2)[2]
        'read x40: format=fits'
        """
        runs: list[list[StepRecord]] = []
        for step in self.steps:
            if runs and runs[-1][0].step == step.step and runs[-1][0].origin == step.origin:
                runs[-1].append(step)
            else:
                runs.append([step])
        groups: list[list[StepRecord]] = []
        for run in runs:
            groups.extend([run] if len(run) >= 3 else [[s] for s in run])
        lines = []
        for group in groups:
            first = group[0]
            text = f"calframe {first.time[:19]} {first.step}"
            if len(group) > 1:
                text += f" x{len(group)}"
            if all(s.parameters == first.parameters for s in group) and first.parameters:
                text += ": " + ", ".join(f"{k}={_short(v)}"
                                         for k, v in first.parameters.items())
            if first.origin:
                text += f" (in {os.path.basename(first.origin)})"
            text = text.encode("ascii", "replace").decode("ascii")
            if len(text) > width:
                text = text[:width - 3] + "..."
            lines.append(text)
        return lines

    # -- FITS table ----------------------------------------------------------
    def to_fits_table(self, *, out_dir: str | os.PathLike = ".",
                      absolute_paths: bool = False) -> BinTableHDU:
        """The ``PROVENANCE`` binary table HDU of a file written in ``out_dir``.

        One row per input (``KIND='input'``) then one per step
        (``KIND='step'``); unused cells are empty (``EXPTIME`` NaN).  Text is
        ASCII: other characters (and ``%``) are percent-encoded as UTF-8.
        Trailing spaces, which FITS readers drop, are written ``%20``, and so
        are all spaces of ``PARAMS``.
        ``PARAMS`` is a variable-length column, the others fixed-width;
        parameters longer than :data:`PARAMS_CHUNK` characters continue on
        the following rows, of ``KIND='more'``.

        Examples
        --------
        >>> prov = Provenance()
        >>> prov.add_step("combine", method="median")
        >>> hdu = prov.to_fits_table()
        >>> hdu.name, len(hdu.data), hdu.data["KIND"][0]
        ('PROVENANCE', 1, 'step')
        """
        return _table.table_hdu(self, out_dir=out_dir, absolute_paths=absolute_paths)

    @classmethod
    def from_fits_table(cls, hdu: BinTableHDU, *,
                        file_path: str | os.PathLike | None = None) -> Provenance:
        """Read a ``PROVENANCE`` table written by :meth:`to_fits_table`.

        ``file_path`` is the file the table was read from: stored relative
        paths are rewritten relative to the current directory, and records
        of the file itself get it as their ``origin``.
        """
        return _table.read_table(cls, hdu, file_path=file_path)

    # -- W3C PROV --------------------------------------------------------------
    def to_prov_document(self, *, output: str | None = None,
                         output_sha256: str | None = None) -> ProvDocument:
        """The record as a W3C PROV document (:class:`prov.model.ProvDocument`).

        Inputs are entities identified by their SHA-256, steps are
        activities that used the inputs, and ``output`` (a file name) is an
        entity generated by the last step and derived from every input.
        Serialise with ``doc.serialize(format="json")``.

        Examples
        --------
        >>> prov = Provenance()
        >>> prov.inputs.append(InputRecord("b1.fits", "ab" * 32, role="bias"))
        >>> prov.add_step("combine", method="median")
        >>> doc = prov.to_prov_document(output="master_bias.fits")
        >>> import json
        >>> [e[:22] for e in sorted(json.loads(doc.serialize(format="json"))["entity"])]
        ['calframe:output-master', 'sha256:abababababababa']
        """
        return _w3c.prov_document(self, output=output, output_sha256=output_sha256)

    def to_prov_json(self, **kwargs) -> str:
        """:meth:`to_prov_document` serialised as PROV-JSON text."""
        return self.to_prov_document(**kwargs).serialize(format="json", indent=1)


def get_provenance(ccd) -> Provenance:
    """The provenance attached to a frame (a new, empty one if none).

    The returned object is the one attached: modifying it modifies the frame's.

    Parameters
    ----------
    ccd : CCDData
        The frame.

    Returns
    -------
    Provenance
        Its provenance (attached to it when it had none).
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
    """Attach ``prov`` to a frame (replacing any it had).

    Parameters
    ----------
    ccd : CCDData
        The frame.
    prov : Provenance
        Its new provenance.
    """
    setattr(ccd, _ATTRIBUTE, prov)
