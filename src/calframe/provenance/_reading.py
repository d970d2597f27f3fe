"""Reading the record of a file, and telling a damaged FITS file."""

from __future__ import annotations

import bz2
import gzip
import re
import struct
import warnings
import zlib

from astropy.io import fits

from ..errors import CalframeError, CalframeWarning, FrameReadError
from ..io._formats import format_from_name
from ..io._mef import read_provenance
from ._cells import _printable
from ._hashing import sha256_file
from ._provenance import Provenance


def _is_fits_name(path: str) -> bool:
    return format_from_name(path) == "fits"


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


def _calstat_of(path: str) -> str:
    value = fits.getheader(path).get("CALSTAT", "")
    return value if isinstance(value, str) else ""


def _has_provenance(path: str, *, warn: bool = False) -> bool:
    """Whether a FITS file has a PROVENANCE table (False if it cannot be read).

    With ``warn``, a file that is cut short or damaged is said so in one
    :class:`~calframe.errors.CalframeWarning` (instead of astropy's warnings).
    """

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
