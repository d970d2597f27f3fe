"""The input contract: what calframe refuses to combine, and why.

A master made from frames that do not belong together is wrong in a way no
later step can see: darks of 60 s and 300 s averaged into a "300 s" dark, a
light in a bias, a JPEG as a flat.  Every master
(:func:`~calframe.masters.make_master_bias`, :func:`~calframe.masters.make_master_dark`,
:func:`~calframe.masters.make_master_flat`, and so the ``calframe
master`` and ``calframe run`` commands) checks its frames here first, from
their headers (through :func:`calframe.io.read_header` for files, so no pixel
is decoded twice), and refuses with a :class:`~calframe.CalframeError` that
names the files and the fix:

- frame type: a frame's type contradicts the master (a light or a flat among
  biases...), or types are mixed (darks with dark-flats);
- calframe outputs: a master or a calibrated frame offered as a raw frame;
- display-encoded data: 8-bit samples, PNG/JPEG, RGB images, a gamma curve
  (see :mod:`calframe.linearity`);
- exposure (darks): exposures that differ beyond the tolerance;
- binning, CFA pattern, ISO / gain setting, offset: values that differ
  between frames;
- shape: shapes that differ (nothing can combine them, and nothing overrides
  this one).

A spread of sensor temperatures beyond the tolerance is a warning.
``allow_mixed=True`` (``--allow-mixed`` on the command line) combines frames
anyway; each problem it overrides is logged as a warning and recorded in the
master's provenance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import (
    IncompatibleFramesError,
    MixedFramesError,
    TemperatureMismatchWarning,
    WrongFrameTypeError,
)

__all__ = ["CheckedFrames", "FrameFacts", "calframe_output", "check_master_frames",
           "check_role", "frame_facts"]

log = logging.getLogger(__name__)

#: Frame types each master accepts.
ACCEPTED_TYPES = {"bias": ("bias",), "dark": ("dark", "darkflat"), "flat": ("flat",)}


def calframe_output(header) -> str | None:
    """What a calframe output is ('master bias', 'calibrated light'...), or None.

    Files that calframe wrote say so (``CREATOR``, ``CALFVERS``).  They are
    never taken as raw frames.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The file's header.

    Returns
    -------
    str or None
        'master bias', 'master dark', 'master darkflat', 'master flat',
        'calibrated <type>', 'stacked light' or 'calframe output'; None for a
        file calframe did not write.

    Examples
    --------
    >>> from astropy.io import fits
    >>> calframe_output(fits.Header({"CREATOR": "calframe 0.1.0", "FRAMETYP": "bias",
    ...                              "NCOMBINE": 20}))
    'master bias'
    >>> calframe_output(fits.Header({"CREATOR": "MaxIm DL"})) is None
    True
    """
    creator = str(header.get("CREATOR", "") or "")
    if not (creator.startswith("calframe") or "CALFVERS" in header):
        return None
    kind = str(header.get("FRAMETYP", "") or "frame")
    combined = "NCOMBINE" in header
    if kind in ("bias", "dark", "darkflat", "flat"):
        return f"master {kind}" if combined else f"calibrated {kind}"
    if kind == "light":
        return "stacked light" if combined else "calibrated light"
    return "calframe output"


@dataclass(frozen=True)
class FrameFacts:
    """What the contract looks at in one frame (from its header and shape).

    Attributes
    ----------
    label : str
        The path as given, or ``frame <k>`` for an in-memory frame.
    frametype, ftsource : str
        Normalised frame type and where it came from (see
        :mod:`calframe.metadata`).
    exptime, temperature, iso : float or None
        Exposure (s), sensor temperature (deg C), ISO speed.
    shape : tuple of int
    binning, cfa, gain_setting, offset : str
        ``'2x2'``, ``'RGGB'`` (with offsets), the camera's gain setting and
        offset as written ('' when the header does not say).
    bits : int or None
        Bits per stored integer sample (None: floating point or unknown).
    format : str or None
        The file format (``'fits'``, ``'raw'``...; None for an in-memory frame).
    output : str or None
        What calframe output the frame is (None: not one).
    linear : bool or None
        :func:`calframe.linearity.header_linearity`'s verdict.
    why : str
        The reason for that verdict, in words.
    nframes : int
        Frames in the file (1 for an in-memory frame): a master takes the
        first frame of each file.
    """

    label: str
    frametype: str
    ftsource: str
    exptime: float | None
    temperature: float | None
    iso: float | None
    shape: tuple[int, ...]
    binning: str
    cfa: str
    gain_setting: str
    offset: str
    bits: int | None
    format: str | None
    output: str | None
    linear: bool | None
    why: str
    nframes: int = 1


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _text(header, *keys) -> str:
    for key in keys:
        value = header.get(key)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return ""


def frame_facts(frame, index: int = 0) -> FrameFacts:
    """The facts the contract checks, for a path, a CCDData or an array.

    Files are described from their header (:func:`calframe.io.read_header`),
    never decoded.

    Parameters
    ----------
    frame : path, CCDData or numpy.ndarray
        The frame: a file, a frame in memory (its header normalised as
        :func:`calframe.metadata.normalize_header` does) or a bare array.
    index : int
        Its position in the list, to name a frame that is not a file.

    Returns
    -------
    FrameFacts

    Raises
    ------
    FileNotFoundError, FrameReadError, UnsupportedFormatError
        As :func:`calframe.io.read_header`, for a file that cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> facts = frame_facts(CCDData(np.zeros((4, 6)), unit="adu",
    ...                             meta={"IMAGETYP": "Dark Frame", "EXPTIME": 60.0}))
    >>> facts.label, facts.frametype, facts.exptime, facts.shape
    ('frame 0', 'dark', 60.0, (4, 6))
    """
    # Deferred: importing calframe.linearity and calframe.metadata (and
    # astropy.nddata with them) at the top adds about 0.9 s to
    # ``import calframe.contract`` and 0.5 s to ``import calframe.inventory``.
    from .linearity import header_linearity
    from .metadata import normalize_header

    fmt = None
    bits = None
    nframes = 1
    if isinstance(frame, str | os.PathLike):
        from .io import read_header  # deferred: calframe.io._read imports this module

        info = read_header(frame)
        header, shape, label, fmt = info.header, info.shape, os.fsdecode(frame), info.format
        nframes = int(info.nframes)
        if info.dtype.kind in "iu":
            bits = info.bits
    elif isinstance(frame, np.ndarray):
        header, shape, label = {}, frame.shape, f"frame {index}"
        if frame.dtype.kind in "iu":
            bits = frame.dtype.itemsize * 8
    else:  # CCDData / NDData
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = normalize_header(getattr(frame, "meta", {}) or {})
        shape = tuple(np.shape(frame.data))
        label = file_of(frame) or f"frame {index}"
    linear, why = header_linearity(header, tuple(shape))
    xbin, ybin = _text(header, "XBINNING"), _text(header, "YBINNING")
    cfa = _text(header, "BAYERPAT").upper()
    if cfa:
        cfa += f" (offset {_text(header, 'XBAYROFF') or 0},{_text(header, 'YBAYROFF') or 0})"
    return FrameFacts(
        label=label,
        frametype=str(header.get("FRAMETYP", "unknown") or "unknown"),
        ftsource=str(header.get("FTSOURCE", "none") or "none"),
        exptime=_float(header.get("EXPTIME")),
        temperature=_float(header.get("CCD-TEMP")),
        iso=_float(header.get("ISOSPEED")),
        shape=tuple(int(n) for n in shape),
        binning=f"{xbin or 1}x{ybin or 1}" if (xbin or ybin) else "",
        cfa=cfa,
        gain_setting=_text(header, "GAIN"),
        offset=_text(header, "OFFSET", "BLKLEVEL"),
        bits=bits,
        format=fmt,
        output=calframe_output(header),
        linear=linear,
        why=why,
        nframes=nframes,
    )


def file_of(frame) -> str | None:
    """The file an in-memory frame was read from (its provenance's only input), or None."""
    # Deferred: calframe.provenance adds about 50 ms to ``import calframe.inventory``.
    from .provenance import get_provenance

    inputs = get_provenance(frame).inputs
    return inputs[0].path if len(inputs) == 1 else None


def _common_folder(facts: Sequence[FrameFacts]) -> str | None:
    """The folder all frames are files of, when there are several; else None."""
    folders = {os.path.dirname(f.label) for f in facts if not f.label.startswith("frame ")}
    if len(facts) < 2 or len(folders) != 1 or any(f.label.startswith("frame ")
                                                    for f in facts):
        return None
    folder = folders.pop()
    return folder or None


def _are(n: int) -> str:
    return f"{n} of the frames {'is' if n == 1 else 'are'}"


def _names(labels: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _groups(facts: Sequence[FrameFacts], value) -> dict:
    out: dict = {}
    for f in facts:
        out.setdefault(value(f), []).append(f.label)
    return out


def _listing(groups: dict, describe) -> str:
    return "; ".join(f"{describe(v)}: {_names(labels)}" for v, labels in groups.items())


def _exposure_groups(facts, tolerances) -> dict:
    """Exposures clustered within the tolerance (None for unknown), each with its frames."""
    groups: dict = {}
    for f in sorted(facts, key=lambda f: (f.exptime is None, f.exptime or 0.0)):
        key = None
        if f.exptime is not None:
            key = next((k for k in groups if k is not None and
                        tolerances.same_exposure(k, f.exptime)), f.exptime)
        groups.setdefault(key, []).append(f.label)
    return groups


@dataclass(frozen=True)
class CheckedFrames:
    """What :func:`check_master_frames` found.

    Attributes
    ----------
    facts : list of FrameFacts
        One per frame, in order.
    overridden : list of str
        The problems ``allow_mixed=True`` let through (recorded in the
        master's provenance).
    """

    facts: list[FrameFacts]
    overridden: list[str]

    @property
    def exptime(self) -> float | None:
        """The median exposure of the frames that have one (None: none has)."""
        values = [f.exptime for f in self.facts if f.exptime is not None]
        return float(np.median(values)) if values else None

    @property
    def temperature(self) -> float | None:
        """The mean sensor temperature of the frames that have one."""
        values = [f.temperature for f in self.facts if f.temperature is not None]
        return float(np.mean(values)) if values else None


def check_master_frames(frames: Sequence, kind: str, *, allow_mixed: bool = False,
                        tolerances=None) -> CheckedFrames:
    """Check that ``frames`` can make one master ``kind``; refuse otherwise.

    Parameters
    ----------
    frames : sequence of paths, CCDData or arrays
        The frames offered.
    kind : {'bias', 'dark', 'flat'}
        The master to make.
    allow_mixed : bool
        Combine frames that do not belong together anyway (each problem is
        logged as a warning and listed in ``overridden``).  Shapes must match
        whatever this says.
    tolerances : calframe.Tolerances, optional
        Exposure and temperature tolerances (those of the inventory by
        default: 1% + 0.01 s, 2 deg C).

    Returns
    -------
    CheckedFrames

    Raises
    ------
    WrongFrameTypeError
        A frame whose type contradicts ``kind``, a calframe output, or an
        8-bit or display-encoded image.
    MixedFramesError
        Frame types, exposures (darks), binning, CFA pattern, ISO / gain
        setting or offset differ between frames.
    IncompatibleFramesError
        Shapes differ.

    Warns
    -----
    TemperatureMismatchWarning
        The sensor temperatures spread beyond the tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> darks = [CCDData(np.zeros((4, 4)), unit="adu",
    ...                  meta={"IMAGETYP": "Dark Frame", "EXPTIME": t}) for t in (60, 300)]
    >>> check_master_frames(darks, "dark")
    Traceback (most recent call last):
    ...
    calframe.errors.MixedFramesError: master dark: the darks have 2 different exposures \
(60 s: frame 0; 300 s: frame 1); make one master dark per exposure, or pass \
allow_mixed=True to combine them anyway
    >>> checked = check_master_frames(darks, "dark", allow_mixed=True)
    >>> checked.overridden
    ['the darks have 2 different exposures (60 s: frame 0; 300 s: frame 1)']
    """
    if kind not in ACCEPTED_TYPES:
        raise ValueError(f"kind={kind!r}: use 'bias', 'dark' or 'flat'")
    if tolerances is None:
        from .inventory import Tolerances  # deferred: calframe.inventory imports this module

        tolerances = Tolerances()
    facts = [frame_facts(f, i) for i, f in enumerate(frames)]
    where = f"master {kind}"
    folder = _common_folder(facts)
    if folder is not None:  # name the folder once, the files by their names
        facts = [dataclasses.replace(f, label=os.path.basename(f.label)) for f in facts]
        where += f" (files in {folder})"
    problems = _type_problems(facts, kind)
    _check_shapes(facts, where)
    problems += _setting_problems(facts, kind, tolerances)
    _check_temperatures(facts, where, tolerances)
    overridden = []
    for error, what, fix in problems:
        if not allow_mixed:
            raise error(f"{where}: {what}; {fix}")
        log.warning("%s: %s (combined anyway: allow_mixed)", where, what)
        overridden.append(what)
    return CheckedFrames(facts=facts, overridden=overridden)


#: How a refusal that ``allow_mixed`` can override ends.
_OVERRIDE = "or pass allow_mixed=True to combine them anyway"

_PLURAL = {"bias": "biases", "dark": "darks", "flat": "flats"}


def _type_problems(facts: list[FrameFacts], kind: str) -> list[tuple[type, str, str]]:
    """Frames that are not raw frames of ``kind``: calframe outputs, display-encoded
    images, other frame types, mixed accepted types.  Each is (error, what, fix)."""
    plural = _PLURAL[kind]
    problems: list[tuple[type, str, str]] = []
    outputs = [f for f in facts if f.output is not None]
    if outputs:
        what = _listing(_groups(outputs, lambda f: f.output), str)
        problems.append((WrongFrameTypeError,
                         f"{_are(len(outputs))} "
                         f"{'a calframe output' if len(outputs) == 1 else 'calframe outputs'}"
                         f", not raw {plural} ({what})",
                         f"pass the raw {plural}; a master is used as {kind}=, not "
                         "combined again"))
    display = [f for f in facts if (f.bits is not None and f.bits <= 8)
               or f.format == "image" or f.linear is False]
    if display:
        why = _listing(_groups(display, lambda f: "8-bit samples" if f.bits == 8
                               else f.why), str)
        problems.append((WrongFrameTypeError,
                         f"{_are(len(display))} display-encoded, not linear sensor "
                         f"data ({why})",
                         f"use the camera's RAW or FITS {plural}; a developed or 8-bit image "
                         "cannot calibrate linear data"))
    accepted = ACCEPTED_TYPES[kind]
    wrong = [f for f in facts if f.frametype not in (*accepted, "unknown")]
    if wrong:
        what = _listing(_groups(wrong, lambda f: (f.frametype, f.ftsource)),
                        lambda v: f"{v[0]} (from the {_source(v[1])})")
        problems.append((WrongFrameTypeError,
                         f"{_are(len(wrong))} not {'a ' + kind if len(wrong) == 1 else plural}"
                         f": {what}",
                         f"leave {'it' if len(wrong) == 1 else 'them'} out, or pass "
                         "allow_mixed=True if the "
                         f"{_source(wrong[0].ftsource)} is wrong"))
    types = {f.frametype for f in facts if f.frametype in accepted}
    if len(types) > 1:
        what = _listing(_groups([f for f in facts if f.frametype in accepted],
                                lambda f: f.frametype), str)
        problems.append((MixedFramesError, f"frame types are mixed ({what})",
                         f"make one master per type, {_OVERRIDE}"))
    return problems


def _check_shapes(facts: list[FrameFacts], where: str) -> None:
    """Refuse frames of different shapes (nothing overrides this)."""
    shapes = _groups(facts, lambda f: f.shape)
    if len(shapes) > 1:
        raise IncompatibleFramesError(
            f"{where}: the frames have {len(shapes)} different shapes "
            f"({_listing(shapes, lambda s: 'x'.join(map(str, s)))}); combine frames "
            "of one detector readout mode (same size, binning and region) only")


def _series_problems(facts: list[FrameFacts], kind: str) -> list[tuple[type, str, str]]:
    """Files that hold several frames (an HDF5 or EDF series, a multi-page TIFF, a
    FITS cube): a master reads the first frame of each file, not the series."""
    series = [f for f in facts if f.nframes > 1]
    if not series:
        return []
    what = _listing(_groups(series, lambda f: f.nframes), lambda n: f"{n} frames")
    return [(MixedFramesError,
             f"{_are(len(series))} {'a file' if len(series) == 1 else 'files'} of several "
             f"frames ({what}), of which a master would take only the first",
             f"pass the frames themselves (in Python: list(calframe.iter_frames(path))), "
             f"one file per frame, {_OVERRIDE} (the first frame of each file)")]


def _setting_problems(facts: list[FrameFacts], kind: str,
                      tolerances) -> list[tuple[type, str, str]]:
    """Camera settings that differ: exposure (darks), binning, CFA pattern, ISO, gain
    setting, offset.  Each is (error, what, fix)."""
    problems = _series_problems(facts, kind)
    if kind == "dark":
        exposures = _exposure_groups(facts, tolerances)
        if len(exposures) > 1:
            what = _listing(exposures, lambda t: "unknown" if t is None else f"{t:g} s")
            problems.append((MixedFramesError,
                             f"the darks have {len(exposures)} different exposures ({what})",
                             f"make one master dark per exposure, {_OVERRIDE}"))
    for name, value in (("binning", lambda f: f.binning), ("CFA pattern", lambda f: f.cfa),
                        ("ISO", lambda f: f.iso), ("gain setting",
                                                   lambda f: f.gain_setting),
                        ("offset", lambda f: f.offset)):
        groups = _groups(facts, value)
        if len(groups) > 1:
            what = _listing(groups, lambda v: "none" if v in ("", None) else
                            (f"{v:g}" if isinstance(v, float) else str(v)))
            problems.append((MixedFramesError, f"the {name} differs between frames ({what})",
                             f"make one master per camera setting, {_OVERRIDE}"))
    return problems


def _check_temperatures(facts: list[FrameFacts], where: str, tolerances) -> None:
    """Warn when the sensor temperatures spread beyond the tolerance."""
    temps = [f.temperature for f in facts if f.temperature is not None]
    if temps and max(temps) - min(temps) > tolerances.temperature:
        # stacklevel: warn, this function, check_master_frames, the master, its caller
        warnings.warn(f"{where}: sensor temperatures spread from {min(temps):g} to "
                      f"{max(temps):g} C (more than {tolerances.temperature:g} C); dark "
                      "current changes with temperature", TemperatureMismatchWarning,
                      stacklevel=4)


def _source(ftsource: str) -> str:
    return {"header": "header", "exif": "EXIF", "folder": "folder name",
            "filename": "file name", "user": "type given"}.get(ftsource, ftsource)


def _role_type(meta) -> tuple[str | None, str]:
    """The frame type a master's header gives, and the keyword that says so."""
    from .metadata import parse_frame_type  # deferred, as in frame_facts

    for key in ("FRAMETYP", "IMAGETYP"):
        ftype = parse_frame_type(meta.get(key))
        if ftype is not None:
            return ftype, key
    return None, ""


def check_role(frame, role: str, *, label: str) -> None:
    """Refuse a master whose own header says it is something else.

    A master bias given as the flat, a flat as the bias, a light as a dark:
    the frame type (FRAMETYP, IMAGETYP) and, for a calframe master, its unit
    and normalisation decide.  A frame whose header says nothing passes.

    Parameters
    ----------
    frame : CCDData
        The master as read.
    role : {'bias', 'dark', 'flat'}
        The role it is offered in.
    label : str
        How to name it in the message (its path, or "the bias").

    Raises
    ------
    WrongFrameTypeError
        The frame's header contradicts ``role``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> flat = CCDData(np.ones((2, 2)), unit="", meta={"FRAMETYP": "flat",
    ...                                                 "FLATNORM": "median"})
    >>> check_role(flat, "bias", label="masters/flat.fits")
    Traceback (most recent call last):
    ...
    calframe.errors.WrongFrameTypeError: masters/flat.fits: given as the bias, but it is \
a flat (FRAMETYP = 'flat', normalised by its median); pass the master bias as bias= \
and this file as flat=
    """
    meta = frame.meta
    ftype, key = _role_type(meta)
    if ftype is None or ftype in ACCEPTED_TYPES[role] or ftype == "unknown":
        return
    detail = f"{key} = {meta.get(key)!r}"
    if str(meta.get("FLATNORM", "")).strip() in ("median", "mean"):
        detail += f", normalised by its {str(meta['FLATNORM']).strip()}"
    if ftype == "light":
        fix = f"pass a master {role} as {role}=, not a light"
    else:
        as_role = "dark" if ftype == "darkflat" else ftype
        fix = f"pass the master {role} as {role}= and this file as {as_role}="
    raise WrongFrameTypeError(f"{label}: given as the {role}, but it is a {ftype} "
                              f"({detail}); {fix}")
