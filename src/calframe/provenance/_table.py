"""The ``PROVENANCE`` binary table of a FITS file: writing and reading it."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np
from astropy.io import fits

from ._cells import _decode_text, _encode_text, _pieces
from ._json import _to_json
from ._paths import _portable, path_for_output, path_from_file
from ._records import InputRecord, StepRecord
from ._versions import _versions_from_json

if TYPE_CHECKING:  # pragma: no cover
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
    names = [] if data is None else [n.upper() for n in data.columns.names]
    file_dir = os.path.dirname(os.fspath(file_path)) if file_path else ""
    this = _portable(os.fspath(file_path)) if file_path else ""
    prov = cls()
    if data is None or len(data) == 0:
        return prov

    def cell(row, name, default=""):
        return _decode_text(row[name]) if name in names else default

    def raw(row, name):
        # Undecoded text: a percent-escape may straddle two pieces.
        if name not in names:
            return ""
        value = row[name]
        if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
            value = "".join(c.decode("ascii", "replace") if isinstance(c, bytes)
                            else str(c) for c in value.tolist())
        elif isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return str(value).rstrip()

    params = _heap_texts(data, names, "PARAMS")
    step_params: list[str] = []
    for number, row in enumerate(data):
        kind = cell(row, "KIND")
        text = (params[number] if params is not None else raw(row, "PARAMS")) \
            if kind in ("more", "step") else ""
        if kind == "more":
            if step_params:
                step_params[-1] += text
            continue
        origin = path_from_file(cell(row, "ORIGIN"), file_dir) or this
        if kind == "input":
            exptime = float(row["EXPTIME"]) if "EXPTIME" in names else math.nan
            shape_text = cell(row, "SHAPE") or "[]"
            prov.inputs.append(InputRecord(
                path=path_from_file(cell(row, "PATH"), file_dir),
                sha256=cell(row, "SHA256"), role=cell(row, "ROLE"),
                frametype=cell(row, "FRAMETYP"),
                exptime=None if math.isnan(exptime) else exptime,
                date_obs=cell(row, "DATE_OBS"),
                shape=tuple(int(n) for n in json.loads(shape_text)),
                origin=origin))
        elif kind == "step":
            step_params.append(text)
            prov.steps.append(StepRecord(
                step=cell(row, "STEP"), parameters={},
                versions=_versions_from_json(cell(row, "VERSIONS") or "{}"),
                time=cell(row, "TIME"), origin=origin))
    known = {os.path.normpath(r.path) for r in prov.inputs if r.path}

    def here(value):
        """A file named in the parameters as seen from here (as the inputs are)."""
        if isinstance(value, str) and value and not os.path.isabs(value):
            seen = path_from_file(value, file_dir)
            return seen if os.path.normpath(seen) in known else value
        if isinstance(value, list):
            return [here(v) for v in value]
        if isinstance(value, dict):
            return {k: here(v) for k, v in value.items()}
        return value

    for step, text in zip(prov.steps, step_params, strict=True):
        step.parameters = here(json.loads(unquote(text) or "{}"))
    return prov
