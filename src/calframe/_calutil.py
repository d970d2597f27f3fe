"""Shared helpers of masters, calibrate and cosmetic (private).

One parser for the frame-like arguments (path or CCDData), FITS section
strings, exposure/temperature look-ups and CFA channel slices.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ._arith import Plane
from .errors import IncompatibleFramesError, InvalidSettingsError, MissingMetadataError
from .provenance import InputRecord, Provenance, get_provenance

__all__ = [
    "as_frame",
    "cfa_groups",
    "data_id",
    "exposure_of",
    "header_of",
    "parse_section",
    "plane_to_ccd",
    "std_of",
    "temperature_of",
]

FrameLike = CCDData | str | os.PathLike


def _read(path) -> CCDData:
    try:
        from .io import read_frame  # deferred: 0.13 s on ``import calframe._calutil``
    except ImportError:  # the reader module is not available in this tree
        return CCDData.read(path, unit="adu")
    return read_frame(path)


def as_frame(value, *, role: str, prov: Provenance | None = None) -> CCDData:
    """Return ``value`` as a CCDData, reading it if it is a path.

    When ``prov`` is given, the frame's own provenance is merged into it and,
    for a path, an input row (path as given) is added with ``role``.
    """
    if isinstance(value, CCDData):
        ccd = value
        path = None
    elif isinstance(value, str | os.PathLike):
        path = value
        ccd = _read(path)
    else:
        raise TypeError(
            f"{role}: expected a CCDData or a path to a frame, got "
            f"{type(value).__name__}; read arrays into CCDData(data, unit='adu') first")
    if prov is not None:
        prov.extend(get_provenance(ccd))
        if path is not None:
            meta = ccd.meta
            prov.add_input(InputRecord.from_file(
                path, role=role, frametype=str(meta.get("FRAMETYP", "")),
                exptime=_float_or_none(meta.get("EXPTIME")),
                date_obs=str(meta.get("DATE-OBS", "")), shape=ccd.shape))
    return ccd


def _float_or_none(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def exposure_of(ccd: CCDData, *, name: str, required: bool = True,
                fix: str = "or use dark_scale=None") -> float | None:
    """EXPTIME (seconds) of a frame; ``fix`` ends the message when it is missing."""
    value = _float_or_none(ccd.meta.get("EXPTIME"))
    if value is None and required:
        raise MissingMetadataError(
            f"{name}: no exposure time (EXPTIME) in its header; set "
            f"{name}.meta['EXPTIME'] in seconds, {fix}")
    return value


def temperature_of(ccd: CCDData) -> float | None:
    """CCD-TEMP (deg C) of a frame, or None."""
    return _float_or_none(ccd.meta.get("CCD-TEMP"))


_SECTION = re.compile(r"^\s*\[\s*([^,\]]+)\s*,\s*([^,\]]+)\s*\]\s*$")


def _axis_slice(text: str, n: int, what: str) -> slice:
    text = text.strip()
    if text == "*":
        return slice(0, n)
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
        else:
            lo = hi = int(text)
    except ValueError as err:
        raise InvalidSettingsError(
            f"{what}: cannot read '{text}' as 'start:stop' (1-based)") from err
    if lo > hi:
        raise InvalidSettingsError(f"{what}: reversed range '{text}' is not supported; "
                         "write it as low:high")
    if lo < 1 or hi > n:
        raise InvalidSettingsError(f"{what}: range '{text}' is outside the frame (1..{n})")
    return slice(lo - 1, hi)


def parse_section(section, shape: tuple[int, int], *, what: str) -> tuple[slice, slice]:
    """A FITS section ``'[x1:x2,y1:y2]'`` (1-based, inclusive, x first) or a
    pair of numpy slices ``(rows, cols)`` as numpy ``(rows, cols)`` slices.

    Examples
    --------
    >>> parse_section("[1:10,5:8]", (100, 50), what="trim")
    (slice(4, 8, None), slice(0, 10, None))
    >>> parse_section((slice(0, 4), slice(None)), (100, 50), what="trim")
    (slice(0, 4, None), slice(0, 50, None))
    """
    if isinstance(section, str):
        match = _SECTION.match(section)
        if match is None:
            raise InvalidSettingsError(f"{what}: '{section}' is not a FITS section like "
                             "'[x1:x2,y1:y2]' (1-based, x first)")
        cols = _axis_slice(match.group(1), shape[1], what)
        rows = _axis_slice(match.group(2), shape[0], what)
        return rows, cols
    if (isinstance(section, Sequence) and len(section) == 2
            and all(isinstance(s, slice) for s in section)):
        rows = slice(*section[0].indices(shape[0])[:2])
        cols = slice(*section[1].indices(shape[1])[:2])
        return rows, cols
    raise TypeError(f"{what}: expected a FITS section string '[x1:x2,y1:y2]' or a "
                    f"(rows, cols) pair of slices, got {section!r}")


def cfa_pattern(meta) -> str | None:
    """The BAYERPAT of a header, upper case, or None for a mono frame."""
    pat = meta.get("BAYERPAT")
    if pat is None:
        return None
    pat = str(pat).strip().upper()
    if len(pat) != 4 or set(pat) - set("RGB"):
        raise IncompatibleFramesError(
            f"BAYERPAT '{pat}' is not a 2x2 CFA pattern such as 'RGGB'; "
            "fix the header keyword or remove it for a mono frame")
    return pat


def cfa_groups(meta, shape: tuple[int, int], *, by_colour: bool = True
               ) -> list[list[tuple[slice, slice]]]:
    """Pixel groups of a CFA mosaic: one list of 2x2-strided slices per colour.

    A mono frame (no BAYERPAT) gives one group covering the whole frame.
    With ``by_colour`` the two green sites form one group (R, G, B); without,
    each of the four sites of the 2x2 cell is its own group.

    Examples
    --------
    >>> from astropy.io import fits
    >>> groups = cfa_groups(fits.Header({"BAYERPAT": "RGGB"}), (4, 4))
    >>> [len(g) for g in groups]
    [1, 2, 1]
    >>> groups[0]
    [(slice(0, None, 2), slice(0, None, 2))]
    """
    pat = cfa_pattern(meta)
    if pat is None:
        return [[(slice(None), slice(None))]]
    # deferred: only CFA frames need calframe.bayer (8 ms on ``import calframe._calutil``)
    from .bayer import channel_slices, effective_pattern

    slices = channel_slices(effective_pattern(meta, shape=shape))
    if by_colour:
        return [[slices["R"]], [slices["G1"], slices["G2"]], [slices["B"]]]
    return [[slices[name]] for name in ("R", "G1", "G2", "B")]


def data_id(ccd: CCDData) -> str:
    """A short fingerprint of a frame's data (SHA-256 of its float32 bytes).

    Lets a master dark remember which master bias was subtracted from it, so
    that :func:`calframe.calibrate` can account for the bias's error being in
    both.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> data_id(CCDData(np.zeros((2, 2)), unit="adu"))
    '374708fff7719dd5'
    """
    data = np.ascontiguousarray(np.asarray(ccd.data, dtype=np.float32))
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


def std_of(ccd: CCDData) -> np.ndarray | None:
    """The standard deviation array of a frame's uncertainty (any kind), or None."""
    unc = ccd.uncertainty
    if unc is None:
        return None
    if not isinstance(unc, StdDevUncertainty):
        unc = unc.represent_as(StdDevUncertainty)
    return np.asarray(unc.array)


def header_of(meta) -> fits.Header:
    """A copy of ``meta`` as a FITS header (dicts are converted key by key)."""
    if isinstance(meta, fits.Header):
        return meta.copy()
    header = fits.Header()
    for key, value in (meta or {}).items():
        header[key] = value
    return header


def plane_to_ccd(plane: Plane, *, unit, meta, dtype=np.float32) -> CCDData:
    """A CCDData from a :class:`Plane` (std uncertainty, bool mask)."""
    unc = None
    if plane.var is not None:
        unc = StdDevUncertainty(np.sqrt(np.maximum(plane.var, 0)).astype(np.float32))
    header = header_of(meta)
    return CCDData(np.array(plane.data, dtype=dtype, copy=True), unit=u.Unit(unit),
                   uncertainty=unc, mask=plane.mask.copy(), meta=header)
