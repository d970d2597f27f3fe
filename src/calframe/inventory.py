"""Scan folders of frames into a table, group them and match calibration to lights.

:func:`take_inventory` reads the header of every frame it finds (FITS headers
only, no pixel data; RAW, EDF and TIFF through :func:`calframe.read_frame`'s
metadata) and returns an :class:`Inventory`: one row per frame with its type
and where that type came from, exposure, ISO / gain, temperature, filter,
binning, shape and CFA pattern; the groups of frames that can be combined
together; for every group of lights, the bias, dark and flat groups that
calibrate it; and the problems found (unreadable files, frames nothing
matches), each with the file, what is wrong and how to fix it.

Grouping follows what a calibration frame must share with the frames it is
applied to:

- bias: shape, binning, ISO / gain and temperature;
- dark and dark-flat: the same, plus exposure (within a tolerance);
- flat: shape, binning and filter (exposures may differ, flats are scaled);
- light: shape, binning, filter, ISO / gain, exposure and temperature.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from ._collection import collection_paths
from .contract import calframe_output
from .errors import CalframeError
from .io._formats import FRAME_SUFFIXES, format_from_name
from .metadata import parse_frame_type

__all__ = [
    "CALIBRATION_TYPES",
    "Inventory",
    "Problem",
    "Tolerances",
    "group_frames",
    "match_calibration",
    "scan_paths",
    "take_inventory",
]

log = logging.getLogger(__name__)

#: Frame types that calibrate lights.
CALIBRATION_TYPES = ("bias", "dark", "darkflat", "flat")


@dataclass(frozen=True)
class Problem:
    """Something wrong with an input, found while taking inventory or running.

    Attributes
    ----------
    path : str
        The file (or group) concerned, as the user gave it.
    what : str
        What was found.
    fix : str
        How to fix it.
    """

    path: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.what}"
        return f"{text}; {self.fix}" if self.fix else text


@dataclass(frozen=True)
class Tolerances:
    """How close two frames must be to belong to one group or to match.

    Parameters
    ----------
    exptime_rel : float
        Relative exposure difference allowed within a dark group and between a
        dark and the lights it calibrates without scaling.
    exptime_abs : float
        Absolute exposure difference (seconds) always allowed.
    temperature : float
        Temperature difference (deg C) allowed within a group and between a
        calibration group and lights.
    gain_rel : float
        Relative difference of ISO or gain allowed.

    Examples
    --------
    >>> Tolerances().same_exposure(60.0, 60.3)
    True
    >>> Tolerances(temperature=1.0).same_temperature(-10.0, -12.0)
    False
    """

    exptime_rel: float = 0.01
    exptime_abs: float = 0.01
    temperature: float = 2.0
    gain_rel: float = 0.01

    def same_exposure(self, a: float, b: float) -> bool:
        """Whether exposures ``a`` and ``b`` match (two unknowns match)."""
        return _close(a, b, self.exptime_abs, self.exptime_rel)

    def same_temperature(self, a: float, b: float) -> bool:
        """Whether temperatures match (an unknown matches anything)."""
        if not (math.isfinite(a) and math.isfinite(b)):
            return True
        return abs(a - b) <= self.temperature

    def same_gain(self, a: float, b: float) -> bool:
        """Whether ISO or gain values match (two unknowns match)."""
        return _close(a, b, 0.0, self.gain_rel)

    def to_dict(self) -> dict[str, float]:
        """Plain-Python form."""
        return {"exptime_rel": self.exptime_rel, "exptime_abs": self.exptime_abs,
                "temperature": self.temperature, "gain_rel": self.gain_rel}


def _close(a: float, b: float, atol: float, rtol: float) -> bool:
    fa, fb = math.isfinite(a), math.isfinite(b)
    if not fa and not fb:
        return True
    if fa != fb:
        return False
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


# --------------------------------------------------------------------------
# scanning


def scan_paths(paths: Iterable[str | os.PathLike], *, recursive: bool = True,
               exclude: Sequence[str | os.PathLike] = (),
               skipped: list[Problem] | None = None) -> list[str]:
    """List the frame files under ``paths`` (folders or files), sorted.

    Folders are walked (recursively by default); hidden files and folders are
    skipped, and so are files whose names end in none of the frame formats of
    :data:`calframe.io.FRAME_SUFFIXES` (PNG and JPEG display images, text...),
    each of which is added to ``skipped`` with the reason.  Files named
    explicitly are kept, except PNG and JPEG images.  Paths keep the form the user gave (relative
    stays relative).

    Parameters
    ----------
    paths : iterable of paths
        Folders and files.
    recursive : bool
        Walk sub-folders.
    exclude : sequence of paths
        Folders not to walk (e.g. an output folder inside an input folder).
    skipped : list of Problem, optional
        Where to add the files left out, with the reason.

    Returns
    -------
    list of str
        The frame files, sorted.

    Raises
    ------
    FileNotFoundError
        When a path does not exist.
    """
    excluded = {Path(p).resolve() for p in exclude}
    found: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{os.fsdecode(given)}: no such file or folder; "
                                    "check the path")
        if not path.is_dir():
            if format_from_name(path) == "image":  # named, but never a calibration frame
                if skipped is not None:
                    skipped.append(Problem(str(path), *_why_not_a_frame(path.name)))
                continue
            found.append(str(path))
            continue
        walker = os.walk(path) if recursive else [(str(path), [], os.listdir(path))]
        for root, dirs, files in walker:
            root_path = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and (root_path / d).resolve() not in excluded)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = root_path / name
                if format_from_name(name) not in _SCANNED:
                    if skipped is not None:
                        skipped.append(Problem(str(full), *_why_not_a_frame(name)))
                    continue
                found.append(str(full))
    return sorted(dict.fromkeys(found))


#: Formats a folder scan takes as frames (not PNG/JPEG display images).
_SCANNED = frozenset(format_from_name("x" + s) for s in FRAME_SUFFIXES)


def _why_not_a_frame(name: str) -> tuple[str, str]:
    """Why a folder scan does not take a file, and what to do about it."""
    if format_from_name(name) == "image":
        return ("a PNG/JPEG display image (8-bit, gamma-encoded), not a calibration "
                "frame", "calibrate the camera's RAW or FITS files")
    suffix = "".join(Path(name).suffixes[-2:]) or "none"
    return (f"not a frame format (name ending {suffix!r})",
            "calframe takes FITS, camera RAW, EDF and TIFF files from folders")


_COLUMNS: list[tuple[str, type, object]] = [
    ("path", str, ""), ("format", str, ""), ("frametype", str, "unknown"),
    ("ftsource", str, ""), ("exptime", float, np.nan), ("expsrc", str, ""),
    ("iso", float, np.nan), ("gain", float, np.nan), ("temperature", float, np.nan),
    ("filter", str, ""), ("binning", str, ""), ("shape", str, ""), ("ny", int, 0),
    ("nx", int, 0), ("bayerpat", str, ""), ("date_obs", str, ""), ("group", int, -1),
    ("problem", str, ""),
]


def _empty_row() -> dict:
    return {name: default for name, _, default in _COLUMNS}


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _header_row(path: str) -> tuple[dict, Problem | None, str | None]:
    """Describe one file from its header; a problem instead of raising.

    The third value says what calframe output the file is (None: not one).
    """
    from .io import read_header  # deferred: 0.3 s on ``import calframe.inventory``

    row = _empty_row()
    row["path"] = path
    row["format"] = format_from_name(path) or "other"
    try:
        info = read_header(path)
    except (CalframeError, OSError, ValueError) as err:
        problem = getattr(err, "problem", None)
        what = problem if problem else f"cannot be read as a frame ({_oneline(err)})"
        return row, Problem(path, what, getattr(err, "fix", None)
                            or "copy the file again or remove it from the folder"), None
    row["format"] = info.format
    shape = info.shape if info.nframes == 1 else (info.nframes, *info.shape)
    _fill_from_header(row, info.header, shape, path)
    return row, None, calframe_output(info.header)


def _oneline(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _fill_from_header(row: dict, header, shape: tuple[int, ...], path: str) -> None:
    row["frametype"] = str(header.get("FRAMETYP", "unknown") or "unknown").lower()
    row["ftsource"] = str(header.get("FTSOURCE", "") or "")
    row["exptime"] = _float(header.get("EXPTIME"))
    row["expsrc"] = str(header.get("EXPSRC", "") or "")
    row["iso"] = _float(header.get("ISOSPEED"))
    gain = header.get("EGAIN", header.get("GAIN"))
    row["gain"] = _float(gain)
    row["temperature"] = _float(header.get("CCD-TEMP"))
    row["filter"] = str(header.get("FILTER", "") or "").strip()
    xb, yb = header.get("XBINNING", 1), header.get("YBINNING", 1)
    row["binning"] = f"{int(_float(xb) if math.isfinite(_float(xb)) else 1)}x" \
                     f"{int(_float(yb) if math.isfinite(_float(yb)) else 1)}"
    row["shape"] = "x".join(str(n) for n in shape)
    row["ny"], row["nx"] = (int(shape[-2]), int(shape[-1])) if len(shape) >= 2 else (0, 0)
    row["bayerpat"] = str(header.get("BAYERPAT", "") or "").strip().upper()
    row["date_obs"] = str(header.get("DATE-OBS", "") or "")


# --------------------------------------------------------------------------
# grouping and matching


def _cluster(values: list[float], same) -> list[int]:
    """Cluster sorted-by-value floats: a new cluster when ``same`` fails."""
    order = sorted(range(len(values)),
                   key=lambda i: (not math.isfinite(values[i]),
                                  values[i] if math.isfinite(values[i]) else 0.0))
    labels = [0] * len(values)
    label, anchor = -1, None
    for i in order:
        if anchor is None or not same(anchor, values[i]):
            label += 1
            anchor = values[i]
        labels[i] = label
    return labels


def _group_key(row, kind: str) -> tuple:
    key: tuple = (kind, row["shape"], row["binning"], row["bayerpat"])
    if kind in ("flat", "light"):
        key += (row["filter"],)
    return key


def group_frames(frames: Table, *, tolerances: Tolerances | None = None) -> Table:
    """Give every readable frame a group number; return the table of groups.

    Frames whose ``problem`` column is set, and frames of unknown type, are
    left out (group -1).  The ``group`` column of ``frames`` is filled in
    place.

    Parameters
    ----------
    frames : `~astropy.table.Table`
        A frame table as made by :func:`take_inventory`.
    tolerances : Tolerances, optional
        Exposure, temperature and gain tolerances.

    Returns
    -------
    `~astropy.table.Table`
        One row per group: ``group``, ``frametype``, ``nframes``, ``exptime``
        (median), ``iso``, ``gain``, ``temperature`` (median), ``filter``,
        ``binning``, ``shape``, ``bayerpat``, ``name`` (a short label).
    """
    tol = tolerances or Tolerances()
    frames["group"] = -1
    buckets: dict[tuple, list[int]] = {}
    for i, row in enumerate(frames):
        kind = str(row["frametype"])
        if row["problem"] or kind not in (*CALIBRATION_TYPES, "light"):
            continue
        buckets.setdefault(_group_key(row, kind), []).append(i)

    members: list[list[int]] = []
    for key in sorted(buckets, key=lambda k: tuple(str(v) for v in k)):
        kind = key[0]
        current = [buckets[key]]
        # split by ISO / gain, exposure, temperature, each with its tolerance
        splits = [("iso", tol.same_gain), ("gain", tol.same_gain)]
        if kind in ("dark", "darkflat", "light"):
            splits.append(("exptime", tol.same_exposure))
        if kind != "flat":
            splits.append(("temperature", _strict_temperature(tol)))
        for column, same in splits:
            refined = []
            for idx in current:
                labels = _cluster([float(frames[column][i]) for i in idx], same)
                for lab in sorted(set(labels)):
                    refined.append([i for i, lb in zip(idx, labels, strict=True)
                                    if lb == lab])
            current = refined
        members.extend(current)

    rows = []
    for number, idx in enumerate(members):
        frames["group"][idx] = number
        sub = frames[idx]
        rows.append({
            "group": number,
            "frametype": str(sub["frametype"][0]),
            "nframes": len(idx),
            "exptime": _nanmedian(sub["exptime"]),
            "iso": _nanmedian(sub["iso"]),
            "gain": _nanmedian(sub["gain"]),
            "temperature": _nanmedian(sub["temperature"]),
            "filter": str(sub["filter"][0]),
            "binning": str(sub["binning"][0]),
            "shape": str(sub["shape"][0]),
            "bayerpat": str(sub["bayerpat"][0]),
        })
    groups = Table(rows=rows, names=["group", "frametype", "nframes", "exptime", "iso",
                                     "gain", "temperature", "filter", "binning", "shape",
                                     "bayerpat"],
                   dtype=[int, "U12", int, float, float, float, float, "U32", "U8",
                          "U32", "U4"])
    groups["name"] = [_group_name(r) for r in groups]
    return groups


def _strict_temperature(tol: Tolerances):
    def same(a: float, b: float) -> bool:
        if not (math.isfinite(a) or math.isfinite(b)):
            return True
        if math.isfinite(a) != math.isfinite(b):
            return False
        return abs(a - b) <= tol.temperature
    return same


def _nanmedian(values) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else float("nan")


def _group_name(row) -> str:
    parts = [str(row["frametype"])]
    if row["frametype"] in ("dark", "darkflat", "light") and math.isfinite(row["exptime"]):
        parts.append(f"{row['exptime']:g}s")
    if row["filter"]:
        parts.append(str(row["filter"]))
    if math.isfinite(row["iso"]):
        parts.append(f"iso{row['iso']:g}")
    if math.isfinite(row["temperature"]):
        parts.append(f"{row['temperature']:+.0f}C")
    if row["binning"] and row["binning"] != "1x1":
        parts.append(f"bin{row['binning']}")
    parts.append(f"g{row['group']}")
    return "_".join(p.replace(" ", "") for p in parts)


def _compatible(cal, target, tol: Tolerances, *, temperature: bool = True) -> bool:
    if (cal["shape"], cal["binning"]) != (target["shape"], target["binning"]):
        return False
    if cal["bayerpat"] != target["bayerpat"]:
        return False
    if not (tol.same_gain(cal["iso"], target["iso"])
            and tol.same_gain(cal["gain"], target["gain"])):
        return False
    return not temperature or tol.same_temperature(cal["temperature"], target["temperature"])


def _best(candidates, key):
    return min(candidates, key=key) if candidates else None


def match_calibration(groups: Table, *, tolerances: Tolerances | None = None) -> Table:
    """Choose the bias, dark and flat group for every light and flat group.

    Darks: a dark group of the same exposure (within tolerance) is used
    directly; otherwise, when a bias group exists, the dark closest in
    exposure is scaled (``dark_scaled`` True).  Flats: same filter, shape,
    binning and CFA pattern.  Flats themselves get a bias and a dark-flat (or
    dark) of their exposure.

    Parameters
    ----------
    groups : `~astropy.table.Table`
        The groups (see :func:`group_frames`).
    tolerances : Tolerances, optional
        How close exposures and temperatures must be (default: :class:`Tolerances`).

    Returns
    -------
    `~astropy.table.Table`
        One row per light or flat group: ``group``, ``frametype``, ``bias``,
        ``dark``, ``flat`` (group numbers, -1 when none), ``dark_scaled`` and
        ``note`` (what is missing, in words).
    """
    tol = tolerances or Tolerances()
    by_type: dict[str, list] = {}
    for row in groups:
        by_type.setdefault(str(row["frametype"]), []).append(row)

    rows = []
    for target in groups:
        kind = str(target["frametype"])
        if kind not in ("light", "flat"):
            continue
        notes = []
        biases = [b for b in by_type.get("bias", []) if _compatible(b, target, tol)]
        bias = _best(biases, lambda b: -b["nframes"])
        dark_pool = by_type.get("darkflat", []) if kind == "flat" else []
        dark_pool = dark_pool + by_type.get("dark", [])
        darks = [d for d in dark_pool if _compatible(d, target, tol)]
        same_exp = [d for d in darks if tol.same_exposure(d["exptime"], target["exptime"])]
        scaled = False
        if same_exp:
            prefer_darkflat = kind == "flat"
            dark = _best(same_exp, lambda d, p=prefer_darkflat: (
                d["frametype"] != "darkflat" if p else 0, -d["nframes"]))
        elif darks and bias is not None and math.isfinite(target["exptime"]):
            t = float(target["exptime"])
            dark = _best([d for d in darks if math.isfinite(d["exptime"])],
                         lambda d, t=t: abs(math.log(max(d["exptime"], 1e-6)
                                                     / max(t, 1e-6))))
            scaled = dark is not None
            if scaled:
                notes.append(f"dark scaled from {dark['exptime']:g} s to "
                             f"{target['exptime']:g} s")
        else:
            dark = None
        if bias is None and dark is None:
            notes.append("no matching bias or dark")
        elif dark is None and kind == "light":
            notes.append("no matching dark")
        flat = None
        if kind == "light":
            flats = [f for f in by_type.get("flat", [])
                     if _compatible(f, target, tol, temperature=False)
                     and f["filter"] == target["filter"]]
            flat = _best(flats, lambda f: -f["nframes"])
            if flat is None:
                notes.append("no matching flat")
        rows.append({"group": int(target["group"]), "frametype": kind,
                     "bias": -1 if bias is None else int(bias["group"]),
                     "dark": -1 if dark is None else int(dark["group"]),
                     "flat": -1 if flat is None else int(flat["group"]),
                     "dark_scaled": scaled, "note": "; ".join(notes)})
    return Table(rows=rows, names=["group", "frametype", "bias", "dark", "flat",
                                   "dark_scaled", "note"],
                 dtype=[int, "U12", int, int, int, bool, "U200"])


# --------------------------------------------------------------------------
# the inventory


@dataclass
class Inventory:
    """The frames found, their groups, the calibration matches and the problems.

    Attributes
    ----------
    frames : `~astropy.table.Table`
        One row per file (see :func:`take_inventory`).
    groups : `~astropy.table.Table`
        One row per group (see :func:`group_frames`).
    matches : `~astropy.table.Table`
        One row per light or flat group (see :func:`match_calibration`).
    problems : list of Problem
        Unreadable files, frames of unknown type, unmatched groups...
    skipped : list of Problem
        Files under the folders that were not taken, with the reason: calframe's
        own outputs (masters, calibrated lights), display images (PNG, JPEG) and
        files of other formats.
    named : frozenset of str
        The paths of the skipped files that were named one by one (not found
        in a folder); :meth:`summary` always lists them.
    """

    frames: Table
    groups: Table
    matches: Table
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    #: the skipped files that the user named one by one (always listed)
    named: frozenset[str] = frozenset()

    @property
    def outputs_skipped(self) -> int:
        """How many of the skipped files are calframe outputs."""
        return sum(p.what.startswith(_OUTPUT_PREFIX) for p in self.skipped)

    def members(self, group: int) -> list[str]:
        """The paths of the frames of one group."""
        return [str(p) for p, g in zip(self.frames["path"], self.frames["group"],
                                       strict=True) if g == group]

    def group_row(self, group: int):
        """The row of ``groups`` for one group number."""
        return self.groups[list(self.groups["group"]).index(group)]

    def skipped_line(self) -> str:
        """One line on the files not taken ('' when none were skipped)."""
        if not self.skipped:
            return ""
        outputs = self.outputs_skipped
        others = len(self.skipped) - outputs
        parts = []
        if outputs:
            parts.append(f"{outputs} calframe output{'s' * (outputs != 1)}")
        if others:
            parts.append(f"{others} file{'s' * (others != 1)} of other formats")
        return f"skipped {' and '.join(parts)}"

    def summary(self, *, verbose: bool = False) -> str:
        """A plain-text description: frames, groups, matches and problems.

        With ``verbose``, every skipped file is listed with its reason;
        otherwise only their count.
        """
        lines = [f"{len(self.frames)} files, {len(self.groups)} groups, "
                 f"{len(self.problems)} problems"]
        if self.skipped:
            hidden = not verbose and any(p.path not in self.named for p in self.skipped)
            lines[0] += f"; {self.skipped_line()}" + (" (-v lists them)" if hidden else "")
        lines.append("")
        cols = ["path", "frametype", "ftsource", "exptime", "iso", "gain",
                "temperature", "filter", "binning", "shape", "bayerpat", "group"]
        lines.extend(_format_table(self.frames, cols))
        lines.append("")
        lines.append("groups:")
        lines.extend(_format_table(self.groups, ["group", "name", "nframes", "exptime",
                                                 "temperature", "filter", "shape"]))
        if len(self.matches):
            lines.append("")
            lines.append("calibration of each light and flat group:")
            names = {int(g): str(n) for g, n in zip(self.groups["group"],
                                                    self.groups["name"], strict=True)}
            for m in self.matches:
                parts = [f"bias={names.get(int(m['bias']), '-')}",
                         f"dark={names.get(int(m['dark']), '-')}"]
                if m["frametype"] == "light":
                    parts.append(f"flat={names.get(int(m['flat']), '-')}")
                note = f"  ({m['note']})" if m["note"] else ""
                lines.append(f"  {names[int(m['group'])]}: {' '.join(parts)}{note}")
        if self.problems:
            lines.append("")
            lines.append("problems:")
            lines.extend(f"  {p}" for p in self.problems)
        listed = [p for p in self.skipped if verbose or p.path in self.named]
        if listed:
            lines.append("")
            lines.append("not taken:")
            lines.extend(f"  {p}" for p in listed)
        return "\n".join(lines)


def _format_table(table: Table, columns: list[str]) -> list[str]:
    cells = [[c for c in columns]]
    for row in table:
        out = []
        for c in columns:
            v = row[c]
            if isinstance(v, float | np.floating):
                out.append("-" if not np.isfinite(v) else f"{v:g}")
            else:
                out.append(str(v) if str(v) != "" else "-")
        cells.append(out)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]


def take_inventory(paths: Iterable[str | os.PathLike] | str | os.PathLike, *,
                   recursive: bool = True, tolerances: Tolerances | None = None,
                   exclude: Sequence[str | os.PathLike] = (),
                   frame_types: Mapping[str, str] | None = None,
                   progress=None) -> Inventory:
    """Scan folders and files of frames, group them and match calibration to lights.

    Parameters
    ----------
    paths : path, iterable of paths, or ImageFileCollection
        Folders (walked) and files.
    recursive : bool
        Walk sub-folders.
    tolerances : Tolerances, optional
        Grouping and matching tolerances.
    exclude : sequence of paths
        Folders not to walk (e.g. an output folder inside an input folder).
    frame_types : mapping, optional
        ``{glob: type}``: the frame type of files whose path (or file name)
        matches ``glob``, for files whose headers do not say (recorded with
        FTSOURCE 'user').
    progress : callable, optional
        ``progress(iterable, desc=..., total=...)`` wrapping the scan (see
        the progress-bar helper of the command line).

    Returns
    -------
    Inventory

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from astropy.io import fits
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(2):
    ...     h = fits.Header({"IMAGETYP": "Bias Frame", "EXPTIME": 0.0})
    ...     fits.writeto(f"{folder}/b{i}.fits", np.zeros((4, 6), "u2"), h)
    >>> inv = take_inventory(folder)
    >>> inv.frames["frametype"].tolist(), inv.frames["shape"].tolist(), len(inv.groups)
    (['bias', 'bias'], ['4x6', '4x6'], 1)
    """
    paths = collection_paths(paths, "take_inventory")
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    tol = tolerances or Tolerances()
    skipped: list[Problem] = []
    files = scan_paths(paths, recursive=recursive, exclude=exclude, skipped=skipped)
    rows, problems = [], []
    iterator = progress(files, desc="reading headers", total=len(files)) if progress \
        else files
    overrides = _parse_frame_types(frame_types or {})
    for path in iterator:
        row, problem, output = _header_row(path)
        if output is not None:
            skipped.append(Problem(path, f"{_OUTPUT_PREFIX} ({output})",
                                   "calframe does not take its own outputs as raw frames; "
                                   "write outputs outside the input folders"))
            continue
        for pattern, ftype in overrides:
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(os.path.basename(path),
                                                                 pattern):
                row["frametype"], row["ftsource"] = ftype, "user"
                break
        if problem is not None:
            row["problem"] = problem.what
            problems.append(problem)
        elif row["frametype"] not in (*CALIBRATION_TYPES, "light"):
            row["problem"] = "frame type unknown"
            problems.append(Problem(path, "frame type unknown (no IMAGETYP/FRAMETYP, "
                                    "folder or file name says it)",
                                    "set IMAGETYP, or put it in a folder named lights, "
                                    "darks, flats or biases"))
        rows.append(row)
    names = [c for c, _, _ in _COLUMNS]
    # text columns as wide as their longest value: a fixed width costs every row
    # its full width (12 columns of U256 were 12 KB per frame) and cuts long paths
    dtypes = [t if t is not str else "U" + str(max([1, *(len(r[c]) for r in rows)]))
              for c, t, _ in _COLUMNS]
    frames = Table(rows=[[r[c] for c in names] for r in rows] if rows else None,
                   names=names, dtype=[_dtype(t) for t in dtypes])
    groups = group_frames(frames, tolerances=tol)
    matches = match_calibration(groups, tolerances=tol)
    raw_groups = frozenset(int(g) for g, f in zip(frames["group"], frames["format"],
                                                  strict=True) if f == "raw")
    problems.extend(_match_problems(groups, matches, tol, raw_groups))
    log.info("inventory: %d files, %d groups, %d problems", len(frames), len(groups),
             len(problems))
    if skipped:
        log.info("inventory: %s", Inventory(frames, groups, matches, problems,
                                            skipped).skipped_line())
    named = frozenset(str(Path(p)) for p in paths if not Path(p).is_dir())
    return Inventory(frames=frames, groups=groups, matches=matches, problems=problems,
                     skipped=skipped, named=named)


_OUTPUT_PREFIX = "a calframe output"


def _parse_frame_types(frame_types: Mapping[str, str]) -> list[tuple[str, str]]:
    out = []
    for pattern, ftype in frame_types.items():
        parsed = parse_frame_type(ftype)
        if parsed is None:
            raise ValueError(f"frame_types: {ftype!r} (for {pattern!r}) is not a frame type; "
                             "use bias, dark, flat, darkflat or light")
        out.append((str(pattern), parsed))
    return out


def _dtype(t):
    return {float: np.float64, int: np.int64}.get(t, t)


def _match_problems(groups: Table, matches: Table, tol: Tolerances,
                    raw_groups: frozenset[int] = frozenset()) -> list[Problem]:
    problems = []
    used = set()
    for m in matches:
        used.update(int(m[c]) for c in ("bias", "dark", "flat") if m[c] >= 0)
        if m["frametype"] == "light" and m["note"]:
            g = groups[list(groups["group"]).index(m["group"])]
            missing = [n for n in str(m["note"]).split("; ") if n.startswith("no ")]
            if missing:
                nothing = all(m[c] < 0 for c in ("bias", "dark", "flat"))
                what = f"{g['nframes']} light(s) of shape {g['shape']} have " \
                    f"{', '.join(missing)}"
                if nothing:
                    what += ", so they are not calibrated"
                elif m["bias"] < 0 and m["dark"] < 0 and int(m["group"]) in raw_groups:
                    what += (" (the camera black level is subtracted instead; dark current "
                             "and hot pixels stay in)")
                problems.append(Problem(str(g["name"]), what,
                                        "add calibration frames taken with the same "
                                        "shape, binning, ISO/gain and temperature"))
    lights = [g for g in groups if g["frametype"] == "light"]
    for g in groups:
        if g["frametype"] in CALIBRATION_TYPES and int(g["group"]) not in used and lights:
            reason, serious = _why_unused(g, lights, tol)
            if not serious:  # e.g. a dark library with more exposures than needed
                log.info("%s: not used (%s)", g["name"], reason)
                continue
            problems.append(Problem(str(g["name"]),
                                    f"{g['nframes']} {g['frametype']} frame(s) of shape "
                                    f"{g['shape']} match no "
                                    f"lights ({reason})",
                                    "check that they were taken with the lights' camera "
                                    "settings, or remove them"))
    return problems


def _why_unused(g, lights, tol: Tolerances) -> tuple[str, bool]:
    """Why a calibration group calibrates nothing, and whether that looks like a mistake."""
    shapes = sorted({str(lt["shape"]) for lt in lights})
    if str(g["shape"]) not in shapes:
        return f"shape {g['shape']}, lights are {', '.join(shapes)}", True
    binnings = sorted({str(lt["binning"]) for lt in lights})
    if str(g["binning"]) not in binnings:
        return f"binning {g['binning']}, lights are {', '.join(binnings)}", True
    temps = sorted({float(lt["temperature"]) for lt in lights
                    if math.isfinite(lt["temperature"])})
    if math.isfinite(g["temperature"]) and temps and all(
            abs(g["temperature"] - t) > tol.temperature for t in temps):
        return (f"temperature {g['temperature']:g} C, lights at "
                f"{', '.join(f'{t:g}' for t in temps)} C"), True
    if g["frametype"] == "flat":
        filters = sorted({str(lt["filter"]) for lt in lights})
        return f"filter {g['filter'] or '-'}, lights use {', '.join(filters) or '-'}", True
    if g["frametype"] in ("dark", "darkflat"):
        exps = sorted({float(lt["exptime"]) for lt in lights})
        return (f"exposure {g['exptime']:g} s, lights at "
                f"{', '.join(f'{t:g}' for t in exps)} s"), False
    return "another ISO or gain", True
