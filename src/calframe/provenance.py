"""What every calframe output says about how it was made.

A :class:`Provenance` holds one :class:`InputRecord` per input file and one
:class:`StepRecord` per processing step.  It travels with a frame in memory
(see :func:`get_provenance` / :func:`set_provenance`), is extended by every
calframe step, and is written as the ``PROVENANCE`` table of every output
(see :func:`calframe.write_frame` and the file-layout page of the
documentation).

Every step that makes a new frame follows the same pattern::

    prov = Provenance()
    for frame in inputs:
        prov.extend(get_provenance(frame))
    prov.add_input(InputRecord.from_file(path, role="dark", frametype="dark"))
    prov.add_step("combine", method="median", nframes=len(inputs))
    set_provenance(output, prov)

Records read back from a calframe file carry ``origin``: the file in whose
table they first appeared.  This is how a calibrated light tells its own
steps from the steps that made its masters (``CALSTAT`` counts only the
former), and how ``calframe provenance`` draws the tree.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io.fits import BinTableHDU
    from prov.model import ProvDocument

__all__ = [
    "CALSTAT_LETTERS",
    "PARAMS_CHUNK",
    "PROBLEM_KINDS",
    "InputCheck",
    "InputRecord",
    "Provenance",
    "ProvenanceNode",
    "StepRecord",
    "VerifyReport",
    "get_provenance",
    "path_for_output",
    "path_from_file",
    "provenance_tree",
    "set_provenance",
    "sha256_file",
    "software_versions",
    "verify_inputs",
    "verify_output",
]

_ATTRIBUTE = "_calframe_provenance"

#: Layout version of the ``PROVENANCE`` table (keyword ``PROVVERS``).
TABLE_VERSION = 1

#: Longest piece of ``PARAMS`` text in one table cell (CFITSIO reads text
#: cells of at most 2879 characters); longer parameters continue on rows of
#: ``KIND='more'``.
PARAMS_CHUNK = 2000


#: digests computed in this process, by the identity and state of the file
#: (device, inode, size, modification and change times in ns), newest last
_DIGESTS: collections.OrderedDict[tuple, str] = collections.OrderedDict()
_DIGESTS_LOCK = threading.Lock()
_DIGESTS_MAX = 8192


def _file_state(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 22,
                reuse: bool = True) -> str:
    """Return the hexadecimal SHA-256 of the bytes of a file.

    A whole-folder run hashes its inputs for its resume keys and again for
    each output's provenance; the second time costs nothing: the digest is
    kept, for the rest of the process, with the file's device, inode, size
    and modification and change times (to the nanosecond), and reused while
    all of them are unchanged.  Any write to the file changes its change
    time, which no program can set back.

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk_size : int
        Bytes read at a time.
    reuse : bool
        False reads the file again whatever is known of it (to verify it).

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        from .errors import FrameReadError

        raise FrameReadError(path, "is not a regular file (a folder, FIFO or device)",
                             "give the file itself")
    if reuse:
        state = _file_state(info)
        with _DIGESTS_LOCK:
            known = _DIGESTS.get(state)
            if known is not None:
                _DIGESTS.move_to_end(state)
                return known
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        before = _file_state(os.fstat(handle.fileno()))
        while size := handle.readinto(buffer):
            digest.update(view[:size])  # large updates release the GIL
        after = _file_state(os.fstat(handle.fileno()))
    value = digest.hexdigest()
    if before == after:  # (not written to while it was read)
        with _DIGESTS_LOCK:
            _DIGESTS[after] = value
            _DIGESTS.move_to_end(after)
            while len(_DIGESTS) > _DIGESTS_MAX:
                _DIGESTS.popitem(last=False)
    return value


_VERSIONS_CACHE: dict[str, str] | None = None


def software_versions() -> dict[str, str]:
    """Versions of calframe and the libraries whose behaviour shapes an output.

    Returns
    -------
    dict of str to str
        ``{package: version}``.

    Examples
    --------
    >>> sorted(k for k in software_versions() if k in ("calframe", "numpy"))
    ['calframe', 'numpy']
    """
    global _VERSIONS_CACHE
    if _VERSIONS_CACHE is None:
        from importlib.metadata import PackageNotFoundError, version

        versions: dict[str, str] = {}
        for name in ("calframe", "astropy", "numpy", "scipy", "photutils", "ccdproc",
                     "rawpy"):
            try:
                versions[name] = version(name)
            except PackageNotFoundError:
                continue
        try:
            import rawpy

            versions["LibRaw"] = ".".join(str(v) for v in rawpy.libraw_version)
        except ImportError:  # pragma: no cover - rawpy is a dependency
            pass
        _VERSIONS_CACHE = versions
    return dict(_VERSIONS_CACHE)


def _shared_versions() -> dict[str, str]:
    # One dict per process, shared by every step made here: a run records
    # a step per frame read and must not hold a copy of the versions per step.
    software_versions()
    return _VERSIONS_CACHE


_VERSIONS_READ: dict[str, dict[str, str]] = {}


def _versions_from_json(text: str) -> dict[str, str]:
    """The versions of a step read from a file, one dict per distinct text."""
    if text not in _VERSIONS_READ:
        if len(_VERSIONS_READ) > 64:  # bounded: files of many software versions
            _VERSIONS_READ.clear()
        _VERSIONS_READ[text] = json.loads(text)
    return _VERSIONS_READ[text]


def source_date() -> datetime | None:
    """The time fixed by ``SOURCE_DATE_EPOCH`` (seconds since 1970), or None.

    The reproducible-builds convention: with it set, every time calframe
    records (step times, the ``DATE`` card) is that time, so that two runs of
    the same inputs and settings give byte-identical files.

    Raises
    ------
    InvalidSettingsError
        ``SOURCE_DATE_EPOCH`` is set but is not a whole number of seconds.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError) as err:
        from .errors import InvalidSettingsError

        raise InvalidSettingsError(
            f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds since "
            "1970-01-01; set it to e.g. the output of 'date +%s', or unset it") from err


def utc_now() -> datetime:
    """Now, in UTC, or the time ``SOURCE_DATE_EPOCH`` fixes (see :func:`source_date`)."""
    return source_date() or datetime.now(UTC)


#: Steps made since the clock was restarted: with SOURCE_DATE_EPOCH, the n-th step
#: is stamped n microseconds after that time, so that steps stay distinct (two steps
#: with the same name, parameters and time are one, see Provenance.extend) and the
#: stamps are the same in every run that makes the same steps.
_STEP_CLOCK = itertools.count()


def restart_step_clock() -> None:
    """Restart the step stamps of ``SOURCE_DATE_EPOCH`` (at the start of each output).

    A run calls it before each output it makes, so that an output's step times
    do not depend on which other outputs were made (or found up to date) first.
    """
    global _STEP_CLOCK
    _STEP_CLOCK = itertools.count()


def _utc_now() -> str:
    """The current UTC time as ISO 8601 with microseconds (no time-zone suffix).

    Microseconds: two steps with the same parameters stay two steps.  With
    ``SOURCE_DATE_EPOCH``, the fixed time plus one microsecond per step.
    """
    fixed = source_date()
    if fixed is not None:
        fixed = fixed + timedelta(microseconds=next(_STEP_CLOCK))
    return (fixed or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")


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
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _clean_json(value):
    """Non-finite floats are not JSON: store them as strings ('nan', 'inf')."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _to_json(value) -> str:
    plain = json.loads(json.dumps(value, default=_json_default))
    return json.dumps(_clean_json(plain), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


# --- CALSTAT -----------------------------------------------------------------

#: Letters of the ``CALSTAT`` keyword, in the order written, with the pattern
#: of step names (searched, case-insensitive) that set each letter.
CALSTAT_LETTERS: dict[str, str] = {
    "O": r"overscan",
    "T": r"trim",
    "B": r"(subtract|remove|apply)_?(master_?)?bias|bias_?(subtract|correct|remov)",
    "D": r"(subtract|remove|apply)_?(master_?)?dark|dark_?(subtract|correct|remov)",
    "F": r"flat_?(correct|field|divi)|divide_?(by_?)?(master_?)?flat"
         r"|apply_?(master_?)?flat",
    "G": r"gain_?correct|apply_?gain|to_?electron",
    "C": r"cosmetic|bad_?pixel",
    "R": r"cosmic",
    "M": r"demosaic|debayer",
    "W": r"distortion|undistort",
    "A": r"register|align",
}

_CALSTAT_PARAMETERS = {
    "B": ("bias", "master_bias", "bias_subtracted"),
    "D": ("dark", "master_dark", "dark_subtracted"),
    "F": ("flat", "master_flat", "flat_corrected"),
}


def _step_letters(step: StepRecord) -> set[str]:
    letters = {letter for letter, pattern in CALSTAT_LETTERS.items()
               if re.search(pattern, step.step, flags=re.IGNORECASE)}
    if re.match(r"calibrat|make_master", step.step, flags=re.IGNORECASE):
        for letter, keys in _CALSTAT_PARAMETERS.items():
            if any(step.parameters.get(k) not in (None, False, "", 0) for k in keys):
                letters.add(letter)
    explicit = step.parameters.get("calstat")
    if isinstance(explicit, str):
        letters.update(c for c in explicit.upper() if c in CALSTAT_LETTERS)
    return letters


# --- text encoding of table cells --------------------------------------------

_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a file name that is not UTF-8 gets its own bytes back.

    :func:`os.fsdecode` turns each byte of a name that is not valid UTF-8 into
    a lone surrogate ("surrogateescape"); encoding reverses that, so that the
    table holds the name's bytes (percent-encoded) and reading it back gives
    the name again.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates: kept visible, escaped
        return text.encode("utf-8", "backslashreplace")


def _printable(text) -> str:
    """``text`` with the bytes of a name that is not UTF-8 written ``\\xff``.

    For text shown to people (messages, HTML, HISTORY): a lone surrogate
    cannot be printed or written as UTF-8.

    Examples
    --------
    >>> import os
    >>> _printable(os.fsdecode(b"bias_\\xff.fits"))
    'bias_\\\\xff.fits'
    """
    text = str(text)
    return _utf8(text).decode("utf-8", "backslashreplace")


def _encode_text(text: str) -> str:
    """FITS table strings are ASCII: percent-encode anything else (and '%')."""
    return _keep_trailing_spaces(quote(_utf8(str(text)), safe=_SAFE))


def _pieces(text: str, size: int) -> list[str]:
    """Cut encoded text into cells of at most ``size`` characters.

    A cut never leaves a trailing space (FITS drops it); a run of spaces
    longer than a cell is written ``%20``.
    """
    pieces = []
    i = 0
    while i < len(text):
        piece = text[i:i + size]
        stripped = piece.rstrip(" ")
        piece = stripped if stripped else text[i:i + max(1, size // 3)]
        pieces.append(piece)
        i += len(piece)
    return [_keep_trailing_spaces(p) for p in pieces] or [""]


def _keep_trailing_spaces(text: str) -> str:
    # FITS readers drop trailing spaces of a string cell: encode them.
    stripped = text.rstrip(" ")
    return stripped + "%20" * (len(text) - len(stripped))


def _decode_text(text) -> str:
    if hasattr(text, "tolist") and not isinstance(text, (str, bytes)):
        # A variable-length column comes back as an array of characters.
        text = "".join(c.decode("ascii", "replace") if isinstance(c, bytes) else str(c)
                       for c in text.tolist())
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    return unquote(str(text).rstrip(), errors="surrogateescape")


# --- paths ---------------------------------------------------------------------

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


# --- the record ------------------------------------------------------------------

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


def _same_step(a: StepRecord, b: StepRecord) -> bool:
    """Whether two records are one step: same name, parameters and time, or the
    reading of one file (``file``: its digest) with the same parameters, which a
    frame's history may hold twice when the file was read again elsewhere."""
    if a.step != b.step or a.parameters != b.parameters:
        return False
    return a.time == b.time or (a.step == "read" and "file" in a.parameters)


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
        import numpy as np
        from astropy.io import fits

        rows: list[dict[str, Any]] = []
        for r in self.inputs:
            rows.append({
                "KIND": "input",
                "PATH": path_for_output(r.path, out_dir, absolute_paths=absolute_paths),
                "SHA256": r.sha256, "ROLE": r.role, "FRAMETYP": r.frametype,
                "EXPTIME": np.nan if r.exptime is None else float(r.exptime),
                "DATE_OBS": r.date_obs, "SHAPE": _to_json(list(r.shape)),
                "ORIGIN": path_for_output(r.origin, out_dir,
                                          absolute_paths=absolute_paths),
            })
        for s in self.steps:
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
        hdu.header["NINPUTS"] = (len(self.inputs), "number of input rows")
        hdu.header["NSTEPS"] = (len(self.steps), "number of step rows")
        return hdu

    @classmethod
    def from_fits_table(cls, hdu: BinTableHDU, *,
                        file_path: str | os.PathLike | None = None) -> Provenance:
        """Read a ``PROVENANCE`` table written by :meth:`to_fits_table`.

        ``file_path`` is the file the table was read from: stored relative
        paths are rewritten relative to the current directory, and records
        of the file itself get it as their ``origin``.
        """
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
        from prov.model import ProvDocument

        doc = ProvDocument()
        doc.add_namespace("calframe", "urn:calframe:")
        doc.add_namespace("sha256", "urn:sha256:")
        agent = doc.agent("calframe:software",
                          {"prov:type": "prov:SoftwareAgent",
                           "calframe:version": software_versions().get("calframe", "")})
        entities = {}
        by_origin: dict[str, list] = {}
        for r in self.inputs:
            key = f"sha256:{r.sha256 or 'unknown'}"
            if key in entities:
                by_origin.setdefault(r.origin, []).append(entities[key])
                continue
            attrs = {"prov:label": _printable(r.path), "calframe:role": r.role,
                     "calframe:frametype": r.frametype,
                     "calframe:date_obs": r.date_obs,
                     "calframe:shape": _to_json(list(r.shape))}
            if r.exptime is not None:
                attrs["calframe:exptime"] = float(r.exptime)
            entities[key] = doc.entity(key, attrs)
            by_origin.setdefault(r.origin, []).append(entities[key])
        activities = []
        for i, s in enumerate(self.steps, start=1):
            act = doc.activity(f"calframe:step{i}-{s.step}", s.time or None, None,
                               {"prov:label": s.step,
                                "calframe:parameters": s.parameters_json(),
                                "calframe:versions": _to_json(s.versions)})
            doc.wasAssociatedWith(act, agent)
            activities.append(act)
        for act, step in zip(activities, self.steps, strict=True):
            # A step used the inputs recorded with it (same origin file).
            for ent in by_origin.get(step.origin, []):
                doc.used(act, ent)
        if output is not None:
            key = (f"sha256:{output_sha256}" if output_sha256
                   else f"calframe:output-{_prov_name(output)}")
            out = doc.entity(key, {"prov:label": _printable(
                os.path.basename(os.fsdecode(output)))})
            if activities:
                doc.wasGeneratedBy(out, activities[-1])
            for ent in entities.values():
                doc.wasDerivedFrom(out, ent)
        return doc

    def to_prov_json(self, **kwargs) -> str:
        """:meth:`to_prov_document` serialised as PROV-JSON text."""
        return self.to_prov_document(**kwargs).serialize(format="json", indent=1)


def _heap_texts(data, names: list[str], name: str) -> list[str] | None:
    """The cells of a variable-length text column of a table read from a file.

    Read from the heap directly: astropy converts each cell through a
    ``count x count`` character array, tens of MiB for the cells of a few
    thousand characters that list the frames of a big combine.  None when
    the table is not backed by file bytes (the caller reads cell by cell).
    """
    import numpy as np

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


def _prov_name(text) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.fspath(text)))


def _short(value, limit: int = 24) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(json.loads(_to_json(value)), ensure_ascii=False,
                          separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path)) if path else ""


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


# --- checking the inputs of a file ---------------------------------------------

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


# --- the tree of files behind an output ------------------------------------------

def _is_fits_name(path: str) -> bool:
    from .io._formats import format_from_name

    return format_from_name(path) == "fits"


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
        lines = [f"{self.path}  sha256 {self.sha256[:16]}  CALSTAT {self.calstat or '-'}"]
        if not (self.steps or self.inputs or self.inherited):
            lines.append("└── no provenance recorded (not written by calframe?)")
        self._render_body(lines, "", full)
        return _printable("\n".join(lines))

    def _render_body(self, lines: list[str], indent: str, full: bool) -> None:
        sections: list[tuple[str, list[str] | list[InputRecord]]] = []
        if self.steps:
            sections.append(("steps", _step_rows(self.steps, full)))
        if self.inputs:
            sections.append(("inputs", self.inputs))
        for origin, prov in self.inherited.items():
            rows = _step_rows(prov.steps, full) + [_input_line(r, None) for r in prov.inputs]
            where = " (not found)" if self.followed else ""
            sections.append((f"recorded from {origin}{where}", rows))
        for k, (title, items) in enumerate(sections):
            last = k == len(sections) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{title}")
            sub = indent + ("    " if last else "│   ")
            for i, item in enumerate(items):
                end = i == len(items) - 1
                branch = "└── " if end else "├── "
                if isinstance(item, str):
                    lines.append(f"{sub}{branch}{item}")
                    continue
                lines.append(f"{sub}{branch}{_input_line(item, self.checks.get(i))}")
                child = self.children.get(i)
                if child is not None:
                    child_indent = sub + ("    " if end else "│   ")
                    lines.append(f"{child_indent}└── {child.path}  CALSTAT "
                                 f"{child.calstat or '-'}")
                    child._render_body(lines, child_indent + "    ", full)


def _step_rows(steps: list[StepRecord], full: bool) -> list[str]:
    if full:
        return [_step_line(s) for s in steps]
    rows: list[str] = []
    i = 0
    while i < len(steps):
        j = i
        while j < len(steps) and steps[j].step == steps[i].step:
            j += 1
        if j - i >= 3:
            same = all(s.parameters == steps[i].parameters for s in steps[i:j])
            row = f"{steps[i].time[:19]}  {steps[i].step} x{j - i}"
            if same and steps[i].parameters:
                row += "  " + _step_line(steps[i]).split(f"{steps[i].step}  ", 1)[-1]
            rows.append(row + f"  (until {steps[j - 1].time[:19]}; --full lists them)")
        else:
            rows.extend(_step_line(s) for s in steps[i:j])
        i = j
    return rows


def _step_line(step: StepRecord) -> str:
    words = ", ".join(f"{k}={_short(v, 40)}" for k, v in step.parameters.items())
    return f"{step.time[:19]}  {step.step}" + (f"  {words}" if words else "")


def _input_line(record: InputRecord, check: InputCheck | None) -> str:
    parts = [record.path or "?", f"[{record.role or '-'}]"]
    if record.frametype and record.frametype != record.role:
        parts.append(record.frametype)
    if record.exptime is not None:
        parts.append(f"EXPTIME {record.exptime:g} s")
    if record.date_obs:
        parts.append(record.date_obs)
    if record.shape:
        parts.append("x".join(str(n) for n in record.shape))
    parts.append(f"sha256 {record.sha256[:16]}")
    if check is not None:
        parts.append({"ok": "ok", "changed": "CHANGED", "missing": "missing"}[check.status])
    return "  ".join(parts)


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


#: What reading a damaged file may raise besides calframe's own errors
#: (truncated or corrupt compressed data, malformed header values...).
_READ_FAILURES = (OSError, ValueError, EOFError, KeyError, IndexError, TypeError,
                  zlib.error, struct.error)


def _read_record(path: str, *, checksum_warning: bool = True
                 ) -> tuple[Provenance, str, str]:
    """The provenance, SHA-256 and CALSTAT of a file; FrameReadError if unreadable.

    ``checksum_warning`` false: a checksum that fails is not warned about
    (verification reports it as a problem instead).
    """
    from .errors import CalframeError, FrameReadError
    from .io._mef import read_provenance

    fix = "copy the file again, or make it again"
    try:
        digest = sha256_file(path)  # first: it refuses a FIFO, which would block
        damage = _check_complete(path)
        if damage:
            raise FrameReadError(path, f"is truncated or damaged ({damage})", fix)
        prov = read_provenance(path, verify_checksum=checksum_warning)
        return prov, digest, _calstat_of(path)
    except FrameReadError:
        raise
    except (CalframeError, *_READ_FAILURES) as err:
        lines = str(err).strip().splitlines()
        detail = lines[0] if lines else type(err).__name__
        if not isinstance(err, CalframeError) and not detail.startswith(type(err).__name__):
            detail = f"{type(err).__name__}: {detail}"
        raise FrameReadError(path, f"cannot be read as FITS ({detail})", fix) from err


def _check_complete(path: str) -> str:
    """Open every HDU of a FITS file; what astropy says if it is cut short or damaged.

    Uncompressed data are memory-mapped, not read; compressed files are
    decompressed to their end, so that a corrupt stream raises here.
    """
    import bz2
    import gzip

    from astropy.io import fits

    with open(path, "rb") as handle:
        magic = handle.read(3)
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic == b"BZh" else None
    if opener is not None:
        # astropy stops where the last HDU ends: the checksum at the end of the
        # stream is only checked by reading it all
        with opener(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path) as hdulist:
                for hdu in hdulist:
                    _ = hdu.data
        except _READ_FAILURES:
            if not _damage(caught):
                raise
    return _damage(caught)


def _damage(caught) -> str:
    """The first warning of astropy that says a FITS file is cut short or damaged."""
    for item in caught:
        text = " ".join(str(item.message).split())
        if re.search(r"truncated|corrupt|extra bytes after the last HDU", text, re.I):
            return text
    return ""


def _tree(path: str, *, verify: bool, follow: bool, seen: set[str]) -> ProvenanceNode:
    from .errors import CalframeWarning, FrameReadError

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


def _calstat_of(path: str) -> str:
    from astropy.io import fits

    value = fits.getheader(path).get("CALSTAT", "")
    return value if isinstance(value, str) else ""


def _has_provenance(path: str, *, warn: bool = False) -> bool:
    """Whether a FITS file has a PROVENANCE table (False if it cannot be read).

    With ``warn``, a file that is cut short or damaged is said so in one
    :class:`~calframe.errors.CalframeWarning` (instead of astropy's warnings).
    """
    from astropy.io import fits

    from .errors import CalframeWarning

    found = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path) as hdulist:
                found = "PROVENANCE" in hdulist
        except _READ_FAILURES as err:
            caught.append(warnings.WarningMessage(err, type(err), path, 0))
    damage = _damage(caught)
    if warn and damage:
        warnings.warn(f"{_printable(path)}: is truncated or damaged ({damage}); not followed",
                      CalframeWarning, stacklevel=3)
    return found and not damage


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
    from astropy.io import fits

    from .io._mef import check_digest

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
