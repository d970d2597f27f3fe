"""Keyword normalisation: what a frame is, how long it was exposed, and how.

Cameras and acquisition programs spell the same facts in many ways
(``IMAGETYP = 'Dark Frame'``, ``OBSTYPE = 'zero'``, ``EXPOINUS``, EDF's
``count_time``, EXIF ``ExposureTime``...).  This module reads them all and
writes one set of normalised keywords that the rest of calframe uses:

========== ==============================================================
keyword    meaning
========== ==============================================================
FRAMETYP   'bias', 'dark', 'flat', 'light', 'darkflat' or 'unknown'
FTSOURCE   where the type came from: 'header', 'exif', 'folder',
           'filename', 'user' or 'none'
EXPTIME    exposure in seconds (absent when unknown)
EXPSRC     the keyword it came from (e.g. 'EXPOINUS', 'count_time')
CCD-TEMP   sensor temperature in deg C
EGAIN      gain in e-/ADU
RDNOISE    read noise in e-
ISOSPEED   ISO setting of a camera
BAYERPAT   CFA pattern at pixel (0, 0): RGGB, BGGR, GRBG or GBRG
XBAYROFF   CFA x offset (as written by the camera)
YBAYROFF   CFA y offset
ROWORDER   'TOP-DOWN' or 'BOTTOM-UP'
DATE-OBS   start of the exposure (ISO 8601)
========== ==============================================================

Nothing is guessed silently: the type and exposure always say where they came
from (``FTSOURCE``, ``EXPSRC``), and a value that cannot be interpreted is left
out rather than invented.

The gain rule: ``EGAIN`` is always e-/ADU.  ``GAIN`` is ambiguous: many CMOS cameras write
their gain *setting* there (``GAIN = 120``).  calframe takes ``GAIN`` (and
``CCDGAIN``, ``DETGAIN``) as e-/ADU when its comment says e-/ADU, as ADU/e-
(and inverts it) when its comment says ADU/e-, and otherwise only when it is
a positive non-integer value below 100 (an integer without a unit is read as a
camera setting and ignored).  A value passed by the user always wins.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any

from astropy.io import fits

from .errors import MissingMetadataError

__all__ = [
    "BAYER_PATTERNS",
    "FRAME_TYPES",
    "bayer_pattern",
    "date_obs",
    "exposure_time",
    "frame_type",
    "gain",
    "iso_speed",
    "mapping_to_header",
    "normalize_header",
    "parse_frame_type",
    "read_noise",
    "require_exposure",
    "row_order",
    "temperature",
]

log = logging.getLogger(__name__)

#: The normalised frame types.
FRAME_TYPES = ("bias", "dark", "flat", "light", "darkflat", "unknown")

#: The 2x2 Bayer patterns, named from pixel (0, 0) along the first row.
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

# Header spellings of each frame type (compared after lower-casing and
# collapsing separators to one space).
_TYPE_WORDS: dict[str, tuple[str, ...]] = {
    "darkflat": ("darkflat", "dark flat", "flatdark", "flat dark", "dark flat frame",
                 "flat dark frame", "masterdarkflat"),
    "bias": ("bias", "bias frame", "zero", "offset", "offset frame", "master bias",
             "masterbias", "bias image"),
    "dark": ("dark", "dark frame", "dark current", "thermal", "master dark", "masterdark",
             "dark image"),
    "flat": ("flat", "flat field", "flatfield", "flat frame", "sky flat", "skyflat",
             "dome flat", "domeflat", "twilight flat", "twiflat", "lamp flat", "lampflat",
             "master flat", "masterflat", "flat image"),
    "light": ("light", "light frame", "object", "science", "sci", "light image"),
}
_WORD_TO_TYPE = {w: t for t, words in _TYPE_WORDS.items() for w in words}

# Words recognised in folder and file names ('darkflat'/'flatdark', also split
# as 'Flat_Darks', are checked first).
_NAME_WORDS: tuple[tuple[str, str], ...] = (
    ("bias", "bias"), ("offset", "bias"), ("zero", "bias"),
    ("dark", "dark"), ("flat", "flat"), ("light", "light"),
)

_TYPE_KEYS = ("IMAGETYP", "FRAMETYP", "OBSTYPE", "FRAME", "IMAGETYPE", "EXPTYPE")
_EXPOSURE_KEYS: tuple[tuple[str, float], ...] = (
    ("EXPTIME", 1.0), ("EXPOSURE", 1.0), ("EXPOINUS", 1e-6), ("EXP_TIME", 1.0),
    ("count_time", 1.0), ("exposure_time", 1.0), ("acq_expo_time", 1.0),
    ("EXIF ExposureTime", 1.0),
)
_TEMPERATURE_KEYS = ("CCD-TEMP", "CCD_TEMP", "CCDTEMP", "DET-TEMP", "DETTEMP", "SENSTEMP",
                     "SENSOR-T", "CAMTEMP", "TEMPERAT",
                     "MakerNote CameraTemperature", "MakerNote SensorTemperature",
                     "MakerNote AmbientTemperature")
_GAIN_KEYS = ("GAIN", "CCDGAIN", "DETGAIN", "GAIN_E")
_NOISE_KEYS = ("RDNOISE", "READNOIS", "RDNOISE1", "RON", "READNOISE", "RNOISE")
_ISO_KEYS = ("ISOSPEED", "ISO", "EXIF ISOSpeedRatings", "EXIF PhotographicSensitivity")
_BAYER_KEYS = ("BAYERPAT", "COLORTYP", "CFA-PAT", "CFATYPE", "BAYER")
_XOFF_KEYS = ("XBAYROFF", "BAYOFFX", "XBAYOFF")
_YOFF_KEYS = ("YBAYROFF", "BAYOFFY", "YBAYOFF")
_DATE_KEYS = ("DATE-OBS", "DATE_OBS", "DATEOBS", "EXIF DateTimeOriginal",
              "Image DateTime")


def _get(header: Mapping, key: str) -> Any:
    """A header value by key (case-insensitive), or None when absent or blank."""
    try:
        value = header[key]
    except (KeyError, IndexError, ValueError):
        value = None
    if value is None and not isinstance(header, fits.Header):
        lower = key.lower()
        for k in header:
            if str(k).lower() == lower:
                value = header[k]
                break
    if value is None or isinstance(value, fits.card.Undefined):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _comment(header: Mapping, key: str) -> str:
    if isinstance(header, fits.Header):
        try:
            return header.comments[key] or ""
        except (KeyError, IndexError, ValueError):
            return ""
    return ""


def _as_float(value: Any) -> float | None:
    """A number from a header value ('1/125' and '0.5 s' included), else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        match = re.fullmatch(r"([-+]?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)", text)
        if match:
            denominator = float(match.group(2))
            if denominator == 0:
                return None
            number = float(match.group(1)) / denominator
        else:
            match = re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", text)
            if not match:
                return None
            number = float(match.group(1))
    return number if math.isfinite(number) else None


def parse_frame_type(value: Any) -> str | None:
    """Map one header spelling of a frame type to a normalised type.

    Parameters
    ----------
    value : str or None
        A header value (IMAGETYP, FRAMETYP...), in any case, with spaces,
        ``_`` or ``-`` between words.

    Returns
    -------
    str or None
        One of :data:`FRAME_TYPES` other than 'unknown', or None when the
        value is not recognised.

    Examples
    --------
    >>> parse_frame_type("Bias Frame"), parse_frame_type("zero")
    ('bias', 'bias')
    >>> parse_frame_type("DARKFLAT"), parse_frame_type("Flat Field")
    ('darkflat', 'flat')
    >>> parse_frame_type("object"), parse_frame_type("focus") is None
    ('light', True)
    """
    if value is None:
        return None
    text = re.sub(r"[\s_\-]+", " ", str(value).strip().lower()).strip()
    if text in FRAME_TYPES and text != "unknown":
        return text
    return _WORD_TO_TYPE.get(text)


def _type_from_name(name: str, *, prefix: bool) -> str | None:
    """Frame type from a folder or file name.

    Words must match whole (``Darks``, ``flat_001``); with ``prefix`` a word may
    also start a longer token (``DarkBefore-001``), which is allowed for file
    names only (a folder called ``Lightroom`` says nothing).
    """
    tokens = [t for t in re.split(r"[^a-z]+", name.lower()) if t]
    joined = "".join(tokens)
    if "darkflat" in joined or "flatdark" in joined:
        return "darkflat"
    for token in tokens:
        for word, ftype in _NAME_WORDS:
            if token in (word, word + "s", word + "es") \
                    or (prefix and token.startswith(word) and len(word) >= 4):
                return ftype
    return None


def frame_type(header: Mapping, *, path: str | os.PathLike | None = None
               ) -> tuple[str, str]:
    """The frame type and where it came from.

    A FRAMETYP that a user gave (FTSOURCE = 'user', e.g. in a file calframe
    wrote) is kept.  Otherwise the header is searched (IMAGETYP, FRAMETYP,
    OBSTYPE and a few aliases; IRAF, MaxIm and NINA spellings), then the
    folders of ``path``
    (nearest first, e.g. ``Darks/``, ``bias/``, ``offset/``, ``flats/``,
    ``lights/``), then the file name (``flat_001.fits``).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).
    path : str or path-like, optional
        The file the header came from; its folders and name are the last
        resort.

    Returns
    -------
    frametype : str
        One of :data:`FRAME_TYPES`.
    source : str
        'user', 'header', 'exif', 'folder', 'filename' or 'none'.

    Examples
    --------
    >>> from astropy.io import fits
    >>> frame_type(fits.Header({"IMAGETYP": "Dark Frame"}))
    ('dark', 'header')
    >>> frame_type(fits.Header(), path="night1/Darks/img_0001.fits")
    ('dark', 'folder')
    >>> frame_type(fits.Header(), path="flat_001.fits")
    ('flat', 'filename')
    >>> frame_type(fits.Header(), path="img_0001.fits")
    ('unknown', 'none')
    """
    if str(_get(header, "FTSOURCE") or "").strip().lower() == "user":
        # A type the user gave when the frame was read stays the user's.
        parsed = parse_frame_type(_get(header, "FRAMETYP"))
        if parsed is not None:
            return parsed, "user"
    for key in _TYPE_KEYS:
        parsed = parse_frame_type(_get(header, key))
        if parsed is not None:
            return parsed, "header"
    for key in ("EXIF ImageDescription", "EXIF UserComment", "Image ImageDescription"):
        parsed = parse_frame_type(_get(header, key))
        if parsed is not None:
            return parsed, "exif"
    if path is not None:
        pure = PurePath(os.fsdecode(path))
        for folder in list(pure.parent.parts)[::-1][:3]:
            parsed = _type_from_name(folder, prefix=False)
            if parsed is not None:
                return parsed, "folder"
        parsed = _type_from_name(pure.stem, prefix=True)
        if parsed is not None:
            return parsed, "filename"
    return "unknown", "none"


def exposure_time(header: Mapping) -> tuple[float | None, str]:
    """The exposure in seconds and the keyword it came from.

    EXPTIME, EXPOSURE, EXPOINUS (microseconds), EXP_TIME, EDF ``count_time``
    / ``exposure_time``, EXIF ExposureTime (``'1/125'``).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    exptime : float or None
        The exposure in seconds; None when no keyword gives a number of
        seconds (a negative value is not one).
    source : str
        The keyword it came from, or 'none'.

    Examples
    --------
    >>> from astropy.io import fits
    >>> exposure_time(fits.Header({"EXPOINUS": 2500000}))
    (2.5, 'EXPOINUS')
    >>> exposure_time({"EXIF ExposureTime": "1/125"})
    (0.008, 'EXIF ExposureTime')
    >>> exposure_time(fits.Header())
    (None, 'none')
    """
    for key, factor in _EXPOSURE_KEYS:
        value = _as_float(_get(header, key))
        if value is not None and value >= 0:
            return value * factor, key
    return None, "none"


def require_exposure(header: Mapping, *, path: str | os.PathLike | None = None) -> float:
    """The exposure in seconds; raise :class:`~calframe.errors.MissingMetadataError` if unknown.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).
    path : str or path-like, optional
        The file the header came from, named in the message.

    Returns
    -------
    float
        The exposure in seconds (see :func:`exposure_time`).

    Raises
    ------
    MissingMetadataError
        No keyword gives the exposure.

    Examples
    --------
    >>> from astropy.io import fits
    >>> require_exposure(fits.Header({"EXPTIME": 30.0}))
    30.0
    """
    value, _ = exposure_time(header)
    if value is None:
        where = f"{os.fsdecode(path)}: " if path is not None else ""
        raise MissingMetadataError(
            f"{where}no exposure time found (looked for "
            f"{', '.join(k for k, _ in _EXPOSURE_KEYS)}); write EXPTIME in seconds "
            "in the header or give the exposure explicitly")
    return value


def temperature(header: Mapping) -> tuple[float | None, str]:
    """The sensor temperature in deg C and the keyword it came from.

    A value above 150 is taken as kelvin (no sensor is operated above 150 C;
    e.g. the SAAO STE3 headers give the cold block at 180.2 K) and converted.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    temperature : float or None
        Degrees Celsius, or None when the header gives none.
    source : str
        The keyword it came from (with `` (K)`` when converted from kelvin),
        or 'none'.

    Examples
    --------
    >>> from astropy.io import fits
    >>> temperature(fits.Header({"CCD-TEMP": -17.5}))
    (-17.5, 'CCD-TEMP')
    >>> temperature(fits.Header({"CCD-TEMP": 180.2}))
    (-92.95, 'CCD-TEMP (K)')
    """
    for key in _TEMPERATURE_KEYS:
        value = _as_float(_get(header, key))
        if value is None:
            continue
        if value > 150.0:
            return round(value - 273.15, 6), f"{key} (K)"
        return value, key
    return None, "none"


def gain(header: Mapping) -> tuple[float | None, str]:
    """The gain in e-/ADU and the keyword it came from (see the module's rule).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    gain : float or None
        The gain in e-/ADU, or None when no keyword gives one that can be
        trusted.
    source : str
        The keyword it came from (with `` (inverted)`` when its comment says
        ADU/e-), or 'none'.

    Examples
    --------
    >>> from astropy.io import fits
    >>> gain(fits.Header({"EGAIN": 2.55}))
    (2.55, 'EGAIN')
    >>> gain(fits.Header([("GAIN", 1.9, "e-/ADU")]))
    (1.9, 'GAIN')
    >>> gain(fits.Header([("GAIN", 0.5, "ADU/e-")]))
    (2.0, 'GAIN (inverted)')
    >>> gain(fits.Header({"GAIN": 120}))
    (None, 'none')
    """
    value = _as_float(_get(header, "EGAIN"))
    if value is not None and value > 0:
        return value, "EGAIN"
    for key in _GAIN_KEYS:
        raw = _get(header, key)
        value = _as_float(raw)
        if value is None or value <= 0:
            continue
        comment = _comment(header, key).lower().replace(" ", "")
        if re.search(r"adu/e|adu/electron|adu\s*per\s*e|dn/e", comment):
            return 1.0 / value, f"{key} (inverted)"
        if re.search(r"e-?/adu|e-?/dn|electrons?/adu|electrons?perad", comment):
            return value, key
        is_integer = isinstance(raw, int) or float(value).is_integer()
        if not is_integer and value < 100:
            return value, key
        log.debug("ignoring %s = %r: no unit and an integer looks like a camera setting",
                  key, raw)
    return None, "none"


def read_noise(header: Mapping, *, gain_e_per_adu: float | None = None
               ) -> tuple[float | None, str]:
    """The read noise in electrons and the keyword it came from.

    A value whose comment says ADU is converted with ``gain_e_per_adu`` (and
    ignored when no gain is known).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).
    gain_e_per_adu : float, optional
        The gain in e-/ADU, to convert a read noise given in ADU.

    Returns
    -------
    read_noise : float or None
        The read noise in electrons, or None when unknown.
    source : str
        The keyword it came from (with `` (ADU)`` when converted), or 'none'.

    Examples
    --------
    >>> from astropy.io import fits
    >>> read_noise(fits.Header({"RDNOISE": 5.0}))
    (5.0, 'RDNOISE')
    >>> read_noise(fits.Header([("RDNOISE", 2.0, "read noise in ADU")]), gain_e_per_adu=2.5)
    (5.0, 'RDNOISE (ADU)')
    """
    for key in _NOISE_KEYS:
        value = _as_float(_get(header, key))
        if value is None or value < 0:
            continue
        comment = _comment(header, key).lower()
        if re.search(r"\badu\b|\bdn\b", comment) and not re.search(r"e-|electron", comment):
            if gain_e_per_adu is None:
                continue
            return value * gain_e_per_adu, f"{key} (ADU)"
        return value, key
    return None, "none"


def iso_speed(header: Mapping) -> float | None:
    """The ISO setting of a camera (ISOSPEED, ISO, EXIF ISOSpeedRatings).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    float or None
        The ISO speed, or None when the header gives no positive one.

    Examples
    --------
    >>> iso_speed({"EXIF ISOSpeedRatings": "800"})
    800.0
    """
    for key in _ISO_KEYS:
        value = _as_float(_get(header, key))
        if value is not None and value > 0:
            return value
    return None


def bayer_pattern(header: Mapping) -> tuple[str | None, int, int]:
    """The CFA pattern (as written) and its x, y offsets.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    pattern : str or None
        One of :data:`BAYER_PATTERNS`, or None for a frame without one.
    xoffset, yoffset : int
        The pattern's offsets (XBAYROFF, YBAYROFF and aliases; 0 when not
        given).

    Examples
    --------
    >>> from astropy.io import fits
    >>> bayer_pattern(fits.Header({"BAYERPAT": "rggb", "XBAYROFF": 1}))
    ('RGGB', 1, 0)
    >>> bayer_pattern(fits.Header())
    (None, 0, 0)
    """
    pattern = None
    for key in _BAYER_KEYS:
        value = _get(header, key)
        if value is None:
            continue
        text = str(value).strip().upper()
        if text in BAYER_PATTERNS:
            pattern = text
            break
    offsets = []
    for keys in (_XOFF_KEYS, _YOFF_KEYS):
        found = 0
        for key in keys:
            value = _as_float(_get(header, key))
            if value is not None:
                found = int(value)
                break
        offsets.append(found)
    return pattern, offsets[0], offsets[1]


def row_order(header: Mapping) -> str | None:
    """ROWORDER ('TOP-DOWN' or 'BOTTOM-UP') when the header says, else None.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    str or None
        'TOP-DOWN' or 'BOTTOM-UP' (``bottom_up`` and like spellings
        included), or None.

    Examples
    --------
    >>> row_order({"ROWORDER": "bottom_up"})
    'BOTTOM-UP'
    """
    value = _get(header, "ROWORDER")
    if value is None:
        return None
    text = str(value).strip().upper().replace("_", "-").replace(" ", "-")
    return text if text in ("TOP-DOWN", "BOTTOM-UP") else None


def date_obs(header: Mapping) -> str | None:
    """The start of the exposure as ISO 8601 text, when known.

    EXIF's ``'2024:01:31 22:10:05'`` becomes ``'2024-01-31T22:10:05'`` (the
    camera's clock, converted to UTC when EXIF OffsetTimeOriginal gives its
    time zone); a date alone is completed with TIME-OBS or UT when the header
    has one.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read (FITS cards, or EDF / EXIF tags).

    Returns
    -------
    str or None
        The date and time, or None when the header gives no date.

    Examples
    --------
    >>> from astropy.io import fits
    >>> date_obs(fits.Header({"DATE-OBS": "2013-07-13", "UT": "00:57:33"}))
    '2013-07-13T00:57:33'
    >>> date_obs({"EXIF DateTimeOriginal": "2024:01:01 01:30:00",
    ...           "EXIF OffsetTimeOriginal": "+02:00"})
    '2023-12-31T23:30:00'
    """
    for key in _DATE_KEYS:
        value = _get(header, key)
        if value is None:
            continue
        text = str(value).strip()
        match = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)", text)
        if match:
            text = f"{match.group(1)}-{match.group(2)}-{match.group(3)}T{match.group(4)}"
            if key.startswith("EXIF"):
                return _exif_to_utc(text, _get(header, "EXIF OffsetTimeOriginal"))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            # A date alone (old FITS): the start time is in TIME-OBS / UT.
            for time_key in ("TIME-OBS", "UT", "UTSTART", "UT-START"):
                clock = _get(header, time_key)
                if clock is not None and re.fullmatch(r"\d{1,2}:\d{2}:\d{2}(?:\.\d+)?",
                                                      str(clock).strip()):
                    clock = str(clock).strip()
                    return f"{text}T{clock if len(clock.split(':')[0]) == 2 else '0' + clock}"
        return text
    return None


def _exif_to_utc(local: str, offset) -> str:
    """A camera's local clock time as UTC when EXIF gives its zone ('+02:00')."""
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", str(offset or "").strip())
    if not match:
        return local
    shift = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    when = datetime.fromisoformat(local)
    when = when - shift if match.group(1) == "+" else when + shift
    return when.isoformat()


def _add_frame_type(out: fits.Header, header: Mapping, *, path, frametype) -> None:
    """FRAMETYP and FTSOURCE: the type given by the user, else the one found."""
    if frametype is not None:
        parsed = parse_frame_type(frametype)
        if parsed is None and frametype != "unknown":
            raise ValueError(f"frametype={frametype!r} is not a frame type; use one of "
                             f"{', '.join(FRAME_TYPES)}")
        ftype, source = parsed or "unknown", "user"
    else:
        ftype, source = frame_type(header, path=path)
    out["FRAMETYP"] = (ftype, "calframe frame type")
    out["FTSOURCE"] = (source, "where FRAMETYP came from")


def _add_exposure(out: fits.Header, header: Mapping, *, path) -> None:
    """EXPTIME in seconds and EXPSRC; an EXPTIME that is not an exposure is removed."""
    exptime, expsrc = exposure_time(header)
    if exptime is not None:
        out["EXPTIME"] = (exptime, "[s] exposure time")
    elif "EXPTIME" in out:
        # A value that is not a number of seconds ('sixty', -1): the exposure is
        # unknown, and EXPTIME is absent as the keyword table promises.
        log.warning("%s: EXPTIME = %r is not an exposure in seconds; the exposure is "
                    "unknown", "header" if path is None else os.fsdecode(path), out["EXPTIME"])
        out.remove("EXPTIME", remove_all=True)
    out["EXPSRC"] = (expsrc, "where EXPTIME came from")


def _add_detector(out: fits.Header, header: Mapping) -> None:
    """CCD-TEMP, EGAIN, RDNOISE and ISOSPEED when found under another name."""
    temp, tsrc = temperature(header)
    if temp is not None:
        if tsrc != "CCD-TEMP":
            out["TEMPSRC"] = (tsrc, "where CCD-TEMP came from")
        out["CCD-TEMP"] = (temp, "[C] sensor temperature")
    g, gsrc = gain(header)
    if g is not None and gsrc != "EGAIN":
        out["EGAIN"] = (g, f"[e-/ADU] gain (from {gsrc})")
    rn, rsrc = read_noise(header, gain_e_per_adu=g)
    if rn is not None and rsrc != "RDNOISE":
        out["RDNOISE"] = (rn, f"[e-] read noise (from {rsrc})")
    iso = iso_speed(header)
    if iso is not None and _get(header, "ISOSPEED") is None:
        out["ISOSPEED"] = (int(iso) if float(iso).is_integer() else iso, "ISO speed")


def _add_layout(out: fits.Header, header: Mapping) -> None:
    """BAYERPAT with its offsets, and ROWORDER."""
    pattern, xoff, yoff = bayer_pattern(header)
    if pattern is not None:
        out["BAYERPAT"] = (pattern, "CFA pattern")
        out["XBAYROFF"] = (xoff, "CFA x offset")
        out["YBAYROFF"] = (yoff, "CFA y offset")
    order = row_order(header)
    if order is not None:
        out["ROWORDER"] = (order, "order of the rows")


def _add_date(out: fits.Header, header: Mapping) -> None:
    """DATE-OBS as ISO 8601, when the header gives it otherwise."""
    date = date_obs(header)
    if date is None or date == _get(header, "DATE-OBS"):
        return
    comment = "start of the exposure"
    if _get(header, "DATE-OBS") is None and _get(header, "EXIF DateTimeOriginal") \
            is not None and _get(header, "EXIF OffsetTimeOriginal") is None:
        comment = "camera clock, time zone unknown"
    out["DATE-OBS"] = (date, comment)


def normalize_header(header: Mapping, *, path: str | os.PathLike | None = None,
                     frametype: str | None = None) -> fits.Header:
    """A copy of ``header`` with the normalised keywords added.

    The original cards are kept, except an EXPTIME that is not an exposure in
    seconds (``'sixty'``, a negative number): it is removed and logged, since
    EXPTIME is absent when the exposure is unknown.  Values that cannot be
    determined are left out (never invented); FTSOURCE and EXPSRC say where
    the frame type and the exposure came from.  A mapping that is not a FITS
    header (EDF or EXIF tags) is copied into the result where its keys and
    values fit in FITS cards.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header as read.
    path : str or path-like, optional
        The file it came from (folder and file names are the last resort for
        the frame type).
    frametype : str, optional
        A frame type given by the user; recorded with FTSOURCE = 'user'.

    Returns
    -------
    astropy.io.fits.Header

    Raises
    ------
    ValueError
        If ``frametype`` is not one of :data:`FRAME_TYPES`.

    Examples
    --------
    >>> from astropy.io import fits
    >>> h = fits.Header({"IMAGETYP": "zero", "EXPOINUS": 1000, "CCD-TEMP": -10.0})
    >>> out = normalize_header(h)
    >>> out["FRAMETYP"], out["FTSOURCE"], out["EXPTIME"], out["EXPSRC"]
    ('bias', 'header', 0.001, 'EXPOINUS')
    """
    out = header.copy() if isinstance(header, fits.Header) else mapping_to_header(header)
    _add_frame_type(out, header, path=path, frametype=frametype)
    _add_exposure(out, header, path=path)
    _add_detector(out, header)
    _add_layout(out, header)
    _add_date(out, header)
    return out


def mapping_to_header(mapping: Mapping) -> fits.Header:
    """A FITS header holding the entries of a plain mapping (EDF, EXIF tags).

    Keys longer than 8 characters or with characters FITS keywords do not
    allow become HIERARCH cards; entries whose key or value cannot be a FITS
    card are left out (and logged).

    Parameters
    ----------
    mapping : mapping
        Keys and values (bytes are decoded as Latin-1, other objects written
        as text).

    Returns
    -------
    astropy.io.fits.Header
        A new header, in the order of ``mapping``.

    Examples
    --------
    >>> header = mapping_to_header({"count_time": "0.5", "Dim_1": 640})
    >>> list(header.items())
    [('count_time', '0.5'), ('DIM_1', 640)]
    """
    header = fits.Header()
    skipped = []
    for key, value in mapping.items():
        key = str(key).strip()
        if not key:
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        if not isinstance(value, str | int | float | bool):
            value = str(value)
        if isinstance(value, str):
            value = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in value)
            if len(value) > 2000:
                skipped.append(key)
                continue
        if re.fullmatch(r"[A-Z0-9_\-]{1,8}", key):
            card_key = key
        elif re.fullmatch(r"[A-Za-z0-9_\-]{1,8}", key) and key.upper() not in header:
            card_key = key.upper()
        else:
            clean = re.sub(r"[^A-Za-z0-9_\- ]+", "_", key)
            clean = re.sub(r" +", " ", clean).strip("_ ")
            if not clean:
                skipped.append(key)
                continue
            card_key = f"HIERARCH {clean}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                header.append(fits.Card(card_key, value), end=True)
        except (ValueError, fits.verify.VerifyWarning, Warning):
            skipped.append(key)
    if skipped:
        log.debug("left out of the FITS header: %s", ", ".join(skipped))
    return header
