"""The ``PROVENANCE`` binary table of a FITS file: writing and reading it."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from ._cells import _decode_text, _encode_text, _pieces
from ._json import _to_json
from ._paths import _portable, path_for_output, path_from_file
from ._records import InputRecord, StepRecord
from ._versions import _versions_from_json

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io import fits

    from ._provenance import Provenance

__all__ = ["PARAMS_CHUNK", "TABLE_VERSION"]


#: Layout version of the ``PROVENANCE`` table (keyword ``PROVVERS``).
TABLE_VERSION = 1

#: Longest piece of ``PARAMS`` text in one table cell (CFITSIO reads text
#: cells of at most 2879 characters); longer parameters continue on rows of
#: ``KIND='more'``.
PARAMS_CHUNK = 2000


_COLUMNS = (
    # name, kind ('text': fixed width, 'long': variable length, 'float'), comment
    ("KIND", "text", "input (a file read) or step (processing)"),
    ("PATH", "text", "input file, relative to this file's folder"),
    ("SHA256", "text", "SHA-256 of the input file's bytes"),
    ("ROLE", "text", "use: bias, dark, flat, light, master..."),
    ("FRAMETYP", "text", "frame type of the input"),
    ("EXPTIME", "float", "exposure time of the input [s]"),
    ("DATE_OBS", "text", "DATE-OBS of the input"),
    ("SHAPE", "text", "input array shape, numpy order, JSON"),
    ("STEP", "text", "name of the processing step"),
    ("PARAMS", "long", "parameters of the step, JSON"),
    ("VERSIONS", "text", "software versions used by the step, JSON"),
    ("TIME", "text", "UTC time of the step"),
    ("ORIGIN", "text", "file that first recorded the row (empty: this)"),
)


def _heap_texts(data, names: list[str], name: str) -> list[str] | None:
    """The cells of a variable-length text column of a table read from a file.

    Read from the heap directly: astropy converts each cell through a
    ``count x count`` character array, tens of MiB for the cells of a few
    thousand characters that list the frames of a big combine.  None when
    the table is not backed by file bytes (the caller reads cell by cell).
    """
    if name not in names:
        return None
    try:
        descriptors = np.recarray.field(data, names.index(name))
        heap = data._get_heap_data()
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if descriptors.ndim != 2 or descriptors.shape[1] != 2 or heap is None:
        return None
    heap = np.asarray(heap).view(np.uint8)
    return [heap[int(offset):int(offset) + int(count)].tobytes()
            .decode("ascii", "replace").rstrip("\x00").rstrip()
            for count, offset in descriptors]


def table_hdu(prov: Provenance, *, out_dir: str | os.PathLike = ".",
              absolute_paths: bool = False) -> fits.BinTableHDU:
    """The ``PROVENANCE`` table HDU of ``prov`` (see :meth:`Provenance.to_fits_table`)."""
    # Deferred: astropy.io.fits takes about 50 ms to import, and ``from calframe
    # import combine`` (which needs this package for its records) starts hashing
    # its inputs without it.
    from astropy.io import fits

    rows: list[dict[str, Any]] = []
    for r in prov.inputs:
        rows.append({
            "KIND": "input",
            "PATH": path_for_output(r.path, out_dir, absolute_paths=absolute_paths),
            "SHA256": r.sha256, "ROLE": r.role, "FRAMETYP": r.frametype,
            "EXPTIME": np.nan if r.exptime is None else float(r.exptime),
            "DATE_OBS": r.date_obs, "SHAPE": _to_json(list(r.shape)),
            "ORIGIN": path_for_output(r.origin, out_dir,
                                      absolute_paths=absolute_paths),
        })
    for s in prov.steps:
        # Spaces too are encoded here: astropy drops them when a
        # variable-length cell is iterated character by character.
        params = _encode_text(s.parameters_json()).replace(" ", "%20")
        pieces = _pieces(params, PARAMS_CHUNK)
        rows.append({
            "KIND": "step", "STEP": s.step, "PARAMS": pieces[0],
            "VERSIONS": _to_json(s.versions), "TIME": s.time, "EXPTIME": np.nan,
            "ORIGIN": path_for_output(s.origin, out_dir,
                                      absolute_paths=absolute_paths),
        })
        # CFITSIO (and so fitsverify) cannot read text cells longer than
        # 2879 characters: long parameters continue on 'more' rows.
        rows.extend({"KIND": "more", "PARAMS": piece, "EXPTIME": np.nan}
                    for piece in pieces[1:])
    columns = []
    for name, kind, _comment in _COLUMNS:
        if kind == "float":
            values = np.array([row.get(name, np.nan) for row in rows], dtype=">f8")
            columns.append(fits.Column(name=name, format="D", unit="s", array=values))
        elif kind == "long":
            # Variable length (already encoded): one long value, the list
            # of frames of a big combine, must not widen every row.
            texts = [row.get(name, "").encode("ascii") for row in rows]
            width = max([1, *(len(t) for t in texts)])
            values = np.empty(len(texts), dtype=object)
            values[:] = texts
            columns.append(fits.Column(name=name, format=f"PA({width})", array=values))
        else:
            texts = [_encode_text(row.get(name, "")) for row in rows]
            width = max([1, *(len(t) for t in texts)])
            values = np.array(texts, dtype=f"S{width}")
            columns.append(fits.Column(name=name, format=f"{width}A", array=values))
    hdu = fits.BinTableHDU.from_columns(columns, name="PROVENANCE")
    for i, (_name, _kind, comment) in enumerate(_COLUMNS, start=1):
        hdu.header.comments[f"TTYPE{i}"] = comment[:47]
    hdu.header["PROVVERS"] = (TABLE_VERSION, "layout version of this table")
    hdu.header["NINPUTS"] = (len(prov.inputs), "number of input rows")
    hdu.header["NSTEPS"] = (len(prov.steps), "number of step rows")
    return hdu


def read_table(cls: type[Provenance], hdu: fits.BinTableHDU, *,
               file_path: str | os.PathLike | None = None) -> Provenance:
    """A ``cls`` read from a ``PROVENANCE`` table (see :meth:`Provenance.from_fits_table`)."""
    data = hdu.data
    prov = cls()
    if data is None or len(data) == 0:
        return prov
    cells = _Cells(data)
    file_dir = os.path.dirname(os.fspath(file_path)) if file_path else ""
    this = _portable(os.fspath(file_path)) if file_path else ""
    step_params: list[str] = []
    for number, row in enumerate(data):
        kind = cells.text(row, "KIND")
        if kind == "more":
            if step_params:
                step_params[-1] += cells.params(number, row)
            continue
        origin = path_from_file(cells.text(row, "ORIGIN"), file_dir) or this
        if kind == "input":
            prov.inputs.append(_input_record(cells, row, file_dir, origin))
        elif kind == "step":
            step_params.append(cells.params(number, row))
            prov.steps.append(StepRecord(
                step=cells.text(row, "STEP"), parameters={},
                versions=_versions_from_json(cells.text(row, "VERSIONS") or "{}"),
                time=cells.text(row, "TIME"), origin=origin))
    known = {os.path.normpath(r.path) for r in prov.inputs if r.path}
    for step, text in zip(prov.steps, step_params, strict=True):
        step.parameters = _seen_from_here(json.loads(unquote(text) or "{}"), file_dir, known)
    return prov


class _Cells:
    """The cells of a ``PROVENANCE`` table, by column name (absent columns: empty)."""

    def __init__(self, data):
        self.names = [n.upper() for n in data.columns.names]
        self._params = _heap_texts(data, self.names, "PARAMS")

    def text(self, row, name: str) -> str:
        """The decoded text of a cell."""
        return _decode_text(row[name]) if name in self.names else ""

    def params(self, number: int, row) -> str:
        """The ``PARAMS`` cell of row ``number``, undecoded: a percent-escape may
        straddle two pieces."""
        if self._params is not None:
            return self._params[number]
        if "PARAMS" not in self.names:
            return ""
        value = row["PARAMS"]
        if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
            value = "".join(c.decode("ascii", "replace") if isinstance(c, bytes)
                            else str(c) for c in value.tolist())
        elif isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return str(value).rstrip()


def _input_record(cells: _Cells, row, file_dir: str, origin: str) -> InputRecord:
    """The input record of a row of ``KIND='input'``."""
    exptime = float(row["EXPTIME"]) if "EXPTIME" in cells.names else math.nan
    shape_text = cells.text(row, "SHAPE") or "[]"
    return InputRecord(
        path=path_from_file(cells.text(row, "PATH"), file_dir),
        sha256=cells.text(row, "SHA256"), role=cells.text(row, "ROLE"),
        frametype=cells.text(row, "FRAMETYP"),
        exptime=None if math.isnan(exptime) else exptime,
        date_obs=cells.text(row, "DATE_OBS"),
        shape=tuple(int(n) for n in json.loads(shape_text)),
        origin=origin)


def _seen_from_here(value, file_dir: str, known: set[str]):
    """Files named in step parameters as seen from here, as the inputs are (``known``:
    their normalised paths); other values as they are."""
    if isinstance(value, str) and value and not os.path.isabs(value):
        seen = path_from_file(value, file_dir)
        return seen if os.path.normpath(seen) in known else value
    if isinstance(value, list):
        return [_seen_from_here(v, file_dir, known) for v in value]
    if isinstance(value, dict):
        return {k: _seen_from_here(v, file_dir, known) for k, v in value.items()}
    return value
