"""The calframe output file: a multi-extension FITS with provenance.

Layout (see the file-layout page of the documentation):

``PRIMARY``
    the science array (2-D, or a (3, ny, nx) colour cube) with ``BUNIT``,
    the frame's FITS-legal header keywords, ``HISTORY`` lines in plain words
    and the summary keywords ``CALSTAT``, ``NCOMBINE``, ``EXPTIME``,
    ``DATE``, ``CREATOR``, ``CALFVERS``.
``MASK``
    uint8, 1 = do not use (astropy's convention, read back as bool).
``UNCERT``
    the uncertainty, same unit as the data, ``UTYPE`` naming its kind.
``NCOMBINE``, ``REJECTED``
    int16 per-pixel counts of a combined frame (when it carries them).
``PROVENANCE``
    binary table, one row per input file and one per processing step.

Every HDU has ``CHECKSUM`` / ``DATASUM``.  ``astropy.nddata.CCDData.read``
reads the data, unit, uncertainty and mask of such a file unchanged;
:func:`attach_extras` restores the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import numbers
import os
import re
import unicodedata
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)

from .._atomic import temporary_path
from ..errors import (
    ChecksumMismatchWarning,
    FrameReadError,
    IncompatibleFramesError,
    InputOverwriteError,
    OutputExistsError,
)
from ..provenance import (
    Provenance,
    get_provenance,
    set_provenance,
    software_versions,
    utc_now,
)

__all__ = ["attach_extras", "read_provenance", "write_frame"]

log = logging.getLogger(__name__)

_UNCERTAINTY_NAMES = {StdDevUncertainty: "StdDevUncertainty",
                      VarianceUncertainty: "VarianceUncertainty",
                      InverseVariance: "InverseVariance"}

# Keywords that describe the data layout or that the writer sets itself: never
# copied from the frame's meta.
_RESERVED = frozenset({
    "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "XTENSION", "GROUPS",
    "BZERO", "BSCALE", "BLANK", "CHECKSUM", "DATASUM", "BUNIT", "EXTNAME", "EXTVER",
    "EXTLEVEL", "TFIELDS", "THEAP", "END", "UTYPE", "DATE", "CREATOR", "CALFVERS",
    "CALSTAT", "BLOCKED",
})
# Indexed keywords of tables and random groups: not allowed in an image HDU.
_RESERVED_PATTERN = re.compile(
    r"NAXIS\d+|(TBCOL|TFORM|TSCAL|TZERO|TNULL|TTYPE|TUNIT|TDISP|TDIM|TCTYP|TCUNI|TCRVL"
    r"|TCDLT|TCRPX|TCROT|PTYPE|PSCAL|PZERO)\d+")
# Reserved keywords whose value must have a given type (FITS standard, fitsverify).
_FLOAT_KEYS = frozenset({"EQUINOX", "MJD-OBS", "MJD-AVG", "DATAMAX", "DATAMIN"})
_STRING_KEYS = frozenset({"ORIGIN", "AUTHOR", "REFERENC", "TELESCOP", "INSTRUME",
                          "OBSERVER", "OBJECT"})
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?Z?")
_OLD_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{2})")
_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")
_COMMENTARY = ("HISTORY", "COMMENT", "")
_HISTORY_PREFIX = "calframe "
_COUNT_EXTENSIONS = (("ncombine", "NCOMBINE", "frames that contributed to the pixel"),
                     ("rejected", "REJECTED", "values rejected at the pixel"))


# --- writing ---------------------------------------------------------------------

def write_frame(ccd: CCDData, path: str | os.PathLike, *, overwrite: bool = False,
                checksum: bool = True, absolute_paths: bool = False,
                extra_hdus=()) -> Path:
    """Write a frame as a calframe multi-extension FITS file, atomically.

    The science array goes in the primary HDU so that
    ``astropy.nddata.CCDData.read`` gives back data, unit, uncertainty
    (``UNCERT``) and mask (``MASK``) unchanged.  Per-pixel counts
    (``ccd.ncombine`` / ``ccd.rejected`` when the frame carries them) go in
    ``NCOMBINE`` / ``REJECTED`` images and the frame's provenance in the
    ``PROVENANCE`` table.  Header keywords that cannot be written legally
    (names longer than 8 characters, objects, NaN, dates that are not dates)
    are left out, text is cut to one card and reduced to ASCII (see the
    file-layout page of the documentation).

    The file is written to a hidden temporary file in the destination folder,
    flushed to disk and renamed over ``path``, so an interrupted write leaves
    either no file or the previous one.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        The frame.
    path : str or path-like
        Destination; missing folders are created.
    overwrite : bool, optional
        Replace an existing file.
    checksum : bool, optional
        Write ``CHECKSUM`` / ``DATASUM`` in every HDU.
    absolute_paths : bool, optional
        Write input paths as absolute paths instead of relative to the
        output's folder.
    extra_hdus : sequence of `~astropy.io.fits.ImageHDU` or `~astropy.io.fits.BinTableHDU`
        More extension HDUs, written before ``PROVENANCE``.  Like the others, they are
        covered by the checksums and by the digest of the file (``CFDIGEST``,
        which :func:`calframe.provenance.verify_output` checks): HDUs
        appended to the file afterwards would make it fail verification.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    InputOverwriteError
        ``path`` is one of the files the frame was made from.
    IncompatibleFramesError
        The mask, uncertainty or count arrays do not match the data.
    TypeError
        ``ccd`` is not a CCDData.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from astropy.nddata import CCDData, StdDevUncertainty
    >>> ccd = CCDData(np.ones((4, 5), np.float32), unit="adu",
    ...               uncertainty=StdDevUncertainty(np.full((4, 5), 0.5, np.float32)),
    ...               mask=np.zeros((4, 5), bool))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "frame.fits"
    >>> write_frame(ccd, out).name
    'frame.fits'
    >>> back = CCDData.read(out)
    >>> back.unit, float(back.uncertainty.array[0, 0]), bool(back.mask.any())
    (Unit("adu"), 0.5, False)
    """
    if not isinstance(ccd, CCDData):
        raise TypeError(f"write_frame needs an astropy CCDData, got {type(ccd).__name__}; "
                        "wrap arrays with CCDData(data, unit=...)")
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a folder; give a file name to write to")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: file exists; pass overwrite=True (or "
                                "--overwrite) to replace it, or choose another name")
    prov = get_provenance(ccd)
    _refuse_inputs(path, prov)
    folder = path.parent
    # files named in step parameters (a combine's frames...) as the input table names them
    prov = prov.for_output(folder, absolute_paths=absolute_paths)
    folder.mkdir(parents=True, exist_ok=True)
    hdulist = _build_hdulist(ccd, prov, folder, absolute_paths=absolute_paths)
    for hdu in extra_hdus:
        hdulist.insert(len(hdulist) - 1, hdu)
    _atomic_write(hdulist, path, overwrite=overwrite, checksum=checksum)
    log.info("wrote %s (%d HDUs)", path, len(hdulist))
    return path


def _refuse_inputs(path: Path, prov: Provenance) -> None:
    target = _same_file_key(path)
    for record in prov.inputs:
        if not record.path:
            continue
        candidate = Path(record.path)
        same = _same_file_key(candidate) == target
        if not same and path.exists() and candidate.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(path, candidate)
        if same:
            raise InputOverwriteError(
                f"{path}: is an input of this frame (role {record.role or 'input'!r}, "
                "listed in its provenance); inputs are never overwritten, write the "
                "result under another name")


def _same_file_key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _build_hdulist(ccd: CCDData, prov: Provenance, folder: Path, *,
                   absolute_paths: bool) -> fits.HDUList:
    data = np.asarray(ccd.data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    header = _fits_safe_header(ccd.meta, drop_history=bool(prov.steps))
    if ccd.wcs is not None:
        header.extend(ccd.wcs.to_header(relax=True), useblanks=False, update=True)
    unit = ccd.unit
    if unit is not None:
        # A dimensionless frame (a normalised flat) gets a blank BUNIT, which
        # CCDData.read takes as dimensionless (no BUNIT at all is an error).
        header["BUNIT"] = (unit.to_string(), "physical unit of the data"
                           if unit != u.dimensionless_unscaled else "dimensionless")
    _summary_keywords(header, ccd, prov)
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [
        _image_hdu(fits.PrimaryHDU, data, header=header)]

    if ccd.mask is not None:
        mask = np.asarray(ccd.mask)
        if mask.shape != data.shape:
            raise IncompatibleFramesError(
                f"mask: shape {mask.shape} does not match the data {data.shape}; "
                "give a mask of the data's shape (or None)")
        mhdr = fits.Header([("COMMENT", "1 = do not use this pixel, 0 = good")])
        hdus.append(_image_hdu(fits.ImageHDU, mask, np.uint8, header=mhdr, name="MASK"))

    if ccd.uncertainty is not None:
        hdus.append(_uncertainty_hdu(ccd, data.shape))

    for attribute, name, meaning in _COUNT_EXTENSIONS:
        counts = getattr(ccd, attribute, None)
        if counts is None:
            continue
        counts = np.asarray(counts)
        if counts.shape != data.shape:
            raise IncompatibleFramesError(
                f"{attribute}: per-pixel counts of shape {counts.shape} do not match the "
                f"data {data.shape}; counts must have the data's shape")
        if counts.size and (counts.min() < 0 or counts.max() > np.iinfo(np.int16).max):
            raise IncompatibleFramesError(
                f"{attribute}: counts from {counts.min()} to {counts.max()} do not fit "
                "int16 (0..32767)")
        chdr = fits.Header([("COMMENT", f"per-pixel number of {meaning}")])
        hdus.append(_image_hdu(fits.ImageHDU, counts, ">i2", header=chdr, name=name))

    hdus.append(prov.to_fits_table(out_dir=folder, absolute_paths=absolute_paths))
    return fits.HDUList(hdus)


#: Elements per block of :func:`_stored`: 4 MiB of float32, which stays in the cache
_BLOCK = 1 << 20
#: Data types astropy writes as they are (no BZERO/BSCALE of its own)
_VERBATIM = {("f", 4), ("f", 8), ("i", 2), ("i", 4), ("i", 8), ("u", 1)}


def _image_hdu(kind, array: np.ndarray, dtype=None, *, header, name=None):
    """An image HDU of ``array`` in FITS byte order, its DATASUM and digest made in the
    same pass (see :func:`_stored`)."""
    data, datasum, digest = _stored(np.asarray(array), dtype)
    hdu = kind(data, header) if name is None else kind(data, header, name=name)
    if digest is not None:
        # astropy would sum the data again to write DATASUM, and the digest would
        # read the file back: both are known already
        hdu._calculate_datasum = lambda datasum=datasum: datasum
        hdu._calframe_digest = digest
    return hdu


def _stored(array: np.ndarray, dtype=None) -> tuple[np.ndarray, int | None, str | None]:
    """``array`` as stored in FITS (``dtype``, big-endian), with its DATASUM and SHA-256.

    One pass over blocks that stay in the CPU cache: each block is converted to
    FITS byte order (so astropy neither byte-swaps the array to checksum it nor
    to write it), summed (the FITS ones' complement sum) and hashed (the bytes
    as stored, zero padding included, as :func:`_measure` reads them).  Data
    types that astropy stores otherwise (unsigned integers with BZERO) give
    ``(array, None, None)``: astropy sums them itself and the digest reads them
    back.
    """
    target = np.dtype(dtype if dtype is not None else array.dtype).newbyteorder(">")
    if (target.kind, target.itemsize) not in _VERBATIM or array.dtype.kind not in "biuf":
        return array.astype(target, copy=False), None, None
    if array.dtype == target and array.flags.c_contiguous:
        out = array
    else:
        out = np.empty(array.shape, target)
        if not array.flags.c_contiguous:
            np.copyto(out, array, casting="unsafe")
            array = out
    source = array.reshape(-1)
    flat = out.reshape(-1)
    digest = hashlib.sha256()
    total = 0
    for start in range(0, flat.size, _BLOCK):
        block = flat[start:start + _BLOCK]
        if source is not flat:
            np.copyto(block, source[start:start + _BLOCK], casting="unsafe")
        raw = block.view(np.uint8)
        digest.update(raw)
        whole = raw.size // 4 * 4
        total = _ones_sum(raw[:whole], total)
        if whole < raw.size:  # the last bytes, padded with zeros to a 32-bit word
            total = _ones_sum(raw[whole:].tobytes().ljust(4, b"\0"), total)
    nbytes = flat.size * target.itemsize
    digest.update(bytes(-nbytes % 2880))
    return out, total, digest.hexdigest()


def _uncertainty_hdu(ccd: CCDData, shape) -> fits.ImageHDU:
    unc = ccd.uncertainty
    kind = _UNCERTAINTY_NAMES.get(type(unc))
    if kind is None:
        raise IncompatibleFramesError(
            f"uncertainty: {type(unc).__name__} cannot be written; use a "
            "StdDevUncertainty, VarianceUncertainty or InverseVariance")
    array = np.asarray(unc.array)
    if array.shape != tuple(shape):
        raise IncompatibleFramesError(
            f"uncertainty: shape {array.shape} does not match the data {tuple(shape)}; "
            "give an uncertainty of the data's shape (or None)")
    own_unit = getattr(unc, "_unit", None)
    if own_unit is not None and ccd.unit is not None:
        expected = {"StdDevUncertainty": ccd.unit, "VarianceUncertainty": ccd.unit ** 2,
                    "InverseVariance": ccd.unit ** -2}[kind]
        if own_unit != expected:
            try:
                array = (array * own_unit).to_value(expected).astype(array.dtype,
                                                                      copy=False)
            except u.UnitConversionError as err:
                raise IncompatibleFramesError(
                    f"uncertainty: unit {own_unit} cannot be converted to {expected} "
                    "(the unit of the data); give the uncertainty in the data's unit"
                ) from err
    uhdr = fits.Header()
    uhdr["UTYPE"] = (kind, "kind of uncertainty (astropy class name)")
    if ccd.unit is not None and kind == "StdDevUncertainty":
        uhdr["BUNIT"] = (ccd.unit.to_string(), "physical unit of the uncertainty")
    return _image_hdu(fits.ImageHDU, array, header=uhdr, name="UNCERT")


def _summary_keywords(header: fits.Header, ccd: CCDData, prov: Provenance) -> None:
    version = software_versions().get("calframe", "0")
    meta = ccd.meta if isinstance(ccd.meta, Mapping) else {}
    frametype = meta.get("FRAMETYP")
    current = meta.get("CALSTAT")
    calstat = prov.calstat(frametype if isinstance(frametype, str) else None,
                           current=current if isinstance(current, str) else None)
    header["CALSTAT"] = (calstat, "corrections applied, letters OTBDFGCRMWA")
    ncombine = getattr(ccd, "ncombine", None)
    if "NCOMBINE" not in header and ncombine is not None and np.size(ncombine):
        header["NCOMBINE"] = (int(np.max(ncombine)), "number of frames combined")
    header["DATE"] = (utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
                      "UTC date this file was written")
    header["CREATOR"] = (f"calframe {version}"[:68], "software that wrote this file")
    header["CALFVERS"] = (version[:68], "calframe version")
    for line in prov.history_lines():
        header.add_history(line)
    if prov.inputs or prov.steps:
        header.add_history(f"{_HISTORY_PREFIX}record: {len(prov.inputs)} input files, "
                           f"{len(prov.steps)} steps, in the PROVENANCE table")


def _atomic_write(hdulist: fits.HDUList, path: Path, *, overwrite: bool,
                  checksum: bool) -> None:
    folder = path.parent
    tmp = temporary_path(path)  # listed in the run's journal before it exists
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        # astropy stamps the CHECKSUM and DATASUM comments with the time of
        # writing: calframe's clock instead (SOURCE_DATE_EPOCH when set), so that
        # reproducible runs stay byte-identical
        stamp = utc_now().strftime("%Y-%m-%dT%H:%M:%S")
        for hdu in hdulist:
            hdu._get_timestamp = lambda stamp=stamp: stamp
        with os.fdopen(fd, "wb") as handle:
            _digest_placeholders(hdulist)
            hdulist.writeto(handle, checksum=checksum, output_verify="exception")
            handle.flush()
            known = {index: hdu._calframe_digest for index, hdu in enumerate(hdulist)
                     if getattr(hdu, "_calframe_digest", None)}
            _seal(tmp, handle, known)
            os.fsync(handle.fileno())
        if overwrite or not _link_no_clobber(tmp, path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _link_no_clobber(tmp: Path, path: Path) -> bool:
    """Give ``tmp`` the name ``path`` only if no file has it (atomically).

    Returns False when the file system has no hard links (the caller then
    renames, after a last check).
    """
    try:
        os.link(tmp, path)
    except FileExistsError as err:
        raise OutputExistsError(f"{path}: file appeared while writing; pass "
                                "overwrite=True to replace it") from err
    except OSError:  # no hard links here (FAT, some network shares)
        if path.exists():
            raise OutputExistsError(f"{path}: file appeared while writing; pass "
                                    "overwrite=True to replace it") from None
        return False
    os.unlink(tmp)
    return True


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


# --- the digest of what calframe wrote ----------------------------------------------
#
# The primary header of every output carries a SHA-256 of the HDUs as calframe wrote
# them, which CHECKSUM / DATASUM cannot give: anyone can recompute those after an
# edit.  The digest covers, for each HDU in order, its header cards as keyword=value
# pairs (comments left out; of CHECKSUM and DATASUM only their presence, at the end) and the
# bytes of its data as stored.  It is computed from the file itself once written
# (so it holds whatever astropy stored, scaled integers, heaps and all) and written
# into cards reserved before writing, whose size does not change; the primary
# CHECKSUM is then made again from the header bytes and DATASUM, without reading
# the data a second time.

#: Version of the digest (keyword ``CFDIGVER``): how :func:`_measure` reads a file.
DIGEST_VERSION = 1
_DIGEST = "CFDIGEST"
_DIGEST_VERSION = "CFDIGVER"
_DIGEST_COUNT = "CFDNHDU"
_DIGEST_PART = "CFDHDU"  # CFDHDU0 ... CFDHDU99: name and short digests of each HDU
_DIGEST_PARTS_MAX = 100
_DIGEST_KEYS = re.compile(r"CFDIGEST|CFDIGVER|CFDNHDU|CFDHDU\d+")
# the cards written after the file: left out of what the digest covers
_DIGEST_SEALED = re.compile(r"CFDIGEST|CFDHDU\d+")
_DIGEST_SHORT = 16
_CHUNK = 1 << 22


def _digest_placeholders(hdulist: fits.HDUList) -> None:
    """Reserve the digest cards in the primary header (filled by :func:`_seal`)."""
    header = hdulist[0].header
    for key in [k for k in header if _DIGEST_KEYS.fullmatch(k)]:
        del header[key]
    header[_DIGEST_VERSION] = (DIGEST_VERSION, "version of the calframe digest CFDIGEST")
    header[_DIGEST_COUNT] = (len(hdulist), "HDUs calframe wrote (digests: CFDHDUn)")
    zeros = "0" * _DIGEST_SHORT
    for index, hdu in enumerate(hdulist[:_DIGEST_PARTS_MAX]):
        header[f"{_DIGEST_PART}{index}"] = _part_card(_hdu_name(hdu), zeros, zeros)
    header[_DIGEST] = "0" * 64


def _hdu_name(hdu) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(hdu.name or "")) or "-"
    return name[:30]


def _part_card(name: str, header_digest: str, data_digest: str) -> str:
    return f"{name} {header_digest[:_DIGEST_SHORT]} {data_digest[:_DIGEST_SHORT]}"


def _ones_sum(buffer, total: int = 0) -> int:
    """32-bit ones' complement sum of big-endian words (the FITS checksum's)."""
    words = np.frombuffer(buffer, dtype=">u4")
    total += int(words.sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _encode_checksum(value: int) -> str:
    """The 16 characters of a ``CHECKSUM`` value (FITS checksum convention, A.7.2)."""
    exclude = set(range(0x3A, 0x41)) | set(range(0x5B, 0x61))
    chars = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in exclude or ch[j + 1] in exclude:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            chars[4 * j + i] = ch[j]
    return "".join(chr(chars[(i + 15) % 16]) for i in range(16))


def _canonical_value(card: fits.Card) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = card.value
        except (ValueError, fits.VerifyError):
            caught.append(None)
    if caught:  # a card astropy cannot read cleanly: its text as it is
        return "?" + card.image[8:].rstrip()
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, (float, complex, np.floating, np.complexfloating)):
        return repr(complex(value) if isinstance(value, complex) else float(value))
    if isinstance(value, str):
        return json.dumps(value)
    if value is None or isinstance(value, fits.card.Undefined):
        return ""
    return repr(value)


_CHECKSUM_KEYS = ("CHECKSUM", "DATASUM")


def _canonical_header(header: fits.Header, *, primary: bool,
                      checksums: tuple[str, ...] | None = None) -> bytes:
    """The cards of a header as the digest covers them: ``KEYWORD=value``, in order.

    Of ``CHECKSUM`` and ``DATASUM``, only whether they are there (or, to test
    whether they were removed, ``checksums``), after the other cards.
    """
    lines = []
    for card in header.cards:
        key = card.keyword
        if (primary and _DIGEST_SEALED.fullmatch(key)) or key in _CHECKSUM_KEYS:
            continue
        lines.append(f"{key}={_canonical_value(card)}")
    if checksums is None:
        checksums = tuple(key for key in _CHECKSUM_KEYS if key in header)
    lines.extend(checksums)
    return "\n".join(lines).encode("ascii", "backslashreplace")


@dataclasses.dataclass
class _Part:
    """What the digest sees of one HDU of a file."""

    name: str
    header: fits.Header
    header_digest: str
    data_digest: str
    header_bytes: bytes
    datasum: int | None  # of the data bytes; None when not computed


def _measure(path, *, sums: bool, known: Mapping[int, str] | None = None) -> list[_Part]:
    """The digest parts of every HDU of a FITS file (``sums``: also the data sums).

    ``known`` gives the data digests of HDUs (by index) computed while writing
    them: their data are not read again (only with ``sums`` False).

    Raises FrameReadError when the data of an HDU end before the file says.
    """
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=False) as hdulist:
            layout = [(hdu.name, hdu.header, hdulist.fileinfo(i))
                      for i, hdu in enumerate(hdulist)]
    except (ValueError, fits.VerifyError) as err:   # a card astropy cannot write back
        text = " ".join(str(err).split())
        raise FrameReadError(path, f"a header card is not valid FITS ({text})",
                             "calframe did not write this file as it is; check its origin"
                             ) from err
    parts = []
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with _open_stored(path) as handle:
        for index, (name, header, info) in enumerate(layout):
            handle.seek(info["hdrLoc"])
            header_bytes = handle.read(info["datLoc"] - info["hdrLoc"])
            digest = hashlib.sha256()
            datasum = 0
            handle.seek(info["datLoc"])
            left = info["datSpan"]
            stored = None if sums or known is None else known.get(index)
            if stored is not None:
                left = 0
            while left:
                size = handle.readinto(view[:min(left, _CHUNK)])
                if not size:
                    raise FrameReadError(path, f"is truncated (HDU {index} {name} ends "
                                         f"{left} bytes early)",
                                         "copy the file again, or make it again")
                digest.update(view[:size])
                if sums:
                    datasum = _ones_sum(view[:size], datasum)
                left -= size
            parts.append(_Part(
                name=name, header=header,
                header_digest=hashlib.sha256(
                    _canonical_header(header, primary=index == 0)).hexdigest(),
                data_digest=stored or digest.hexdigest(), header_bytes=header_bytes,
                datasum=datasum if sums else None))
    return parts


def _open_stored(path):
    """The bytes of a FITS file as astropy reads them (a gzip or bzip2 file unpacked)."""
    import bz2
    import gzip

    with open(path, "rb") as handle:
        magic = handle.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == b"BZh":
        return bz2.open(path, "rb")
    return open(path, "rb", buffering=0)


def _file_digest(parts: list[_Part]) -> str:
    digest = hashlib.sha256(f"calframe digest {DIGEST_VERSION}\n".encode())
    for index, part in enumerate(parts):
        digest.update(f"{index} {part.header_digest} {part.data_digest}\n".encode())
    return digest.hexdigest()


def _seal(tmp: Path, handle, known: Mapping[int, str] | None = None) -> None:
    """Fill the digest cards of a file just written (open for writing as ``handle``).

    ``known``: the data digests computed while writing (see :func:`_measure`).
    """
    parts = _measure(tmp, sums=False, known=known)
    primary = parts[0]
    values = {_DIGEST: _file_digest(parts)}
    for index, part in enumerate(parts[:_DIGEST_PARTS_MAX]):
        values[f"{_DIGEST_PART}{index}"] = _part_card(_hdu_name(part), part.header_digest,
                                                      part.data_digest)
    raw = bytearray(primary.header_bytes)
    checksum_at = None
    for start in range(0, len(raw), 80):
        key = raw[start:start + 8].decode("ascii", "replace").rstrip()
        if key in values:
            image = fits.Card(key, values.pop(key)).image.encode("ascii")
            if len(image) != 80:  # pragma: no cover - values are short by design
                raise RuntimeError(f"calframe digest card {key} does not fit one card")
            raw[start:start + 80] = image
        elif key == "CHECKSUM" and raw[start + 10:start + 11] == b"'":
            checksum_at = start + 11
    if values:  # pragma: no cover - placeholders are always written
        raise RuntimeError(f"calframe digest cards not found: {sorted(values)}")
    if checksum_at is not None:
        raw[checksum_at:checksum_at + 16] = b"0" * 16
        total = _ones_sum(bytes(raw), int(primary.header.get("DATASUM", 0)))
        raw[checksum_at:checksum_at + 16] = _encode_checksum(~total & 0xFFFFFFFF).encode()
    handle.seek(0)
    handle.write(bytes(raw))
    handle.flush()


def check_digest(path: str | os.PathLike) -> tuple[str, list[str]]:
    """Compare a file with the digest calframe stored when it wrote it.

    Returns ``(status, findings)``: status ``'ok'``; ``'tampered'`` (the
    findings say which HDU changed, header cards or data, and which checksum
    fails); ``'absent'`` (no digest: written before calframe stored one, or
    not by calframe); ``'unknown'`` (a digest version this calframe does not
    know).  Raises FrameReadError for a file cut short.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from astropy.nddata import CCDData
    >>> out = write_frame(CCDData(np.ones((2, 3), np.float32), unit="adu"),
    ...                   pathlib.Path(tempfile.mkdtemp()) / "f.fits")
    >>> check_digest(out)
    ('ok', [])
    >>> with fits.open(out, mode="update") as hdul:
    ...     hdul[0].header["EXPTIME"] = 30.0
    ...     hdul[0].add_checksum()
    >>> check_digest(out)  # doctest: +NORMALIZE_WHITESPACE
    ('tampered', ['HDU 0 PRIMARY: header cards changed since calframe wrote them
                   (its CHECKSUM and DATASUM were made again to match)'])
    """
    parts = _measure(path, sums=True)
    header = parts[0].header
    findings = []
    summed = []  # HDUs whose CHECKSUM and DATASUM are there and match
    for index, part in enumerate(parts):
        label = f"HDU {index} {part.name}"
        bad = False
        if "DATASUM" in part.header and str(part.header["DATASUM"]).strip() != \
                str(part.datasum):
            findings.append(f"{label}: DATASUM does not match the data")
            bad = True
        if "CHECKSUM" in part.header and \
                _ones_sum(part.header_bytes, part.datasum) != 0xFFFFFFFF:
            findings.append(f"{label}: CHECKSUM does not match the bytes")
            bad = True
        if not bad and all(key in part.header for key in _CHECKSUM_KEYS):
            summed.append(index)
    if _DIGEST not in header:
        if any(_DIGEST_KEYS.fullmatch(k) for k in header):
            return "tampered", [f"HDU 0 {parts[0].name}: the {_DIGEST} card was removed",
                                *findings]
        return "absent", findings
    version = header.get(_DIGEST_VERSION)
    if version != DIGEST_VERSION:
        return "unknown", [f"digest version {_DIGEST_VERSION}={version!r} is not one this "
                           f"calframe knows (it knows {DIGEST_VERSION})", *findings]
    recorded = []
    for index in range(min(int(header.get(_DIGEST_COUNT, 0) or 0), _DIGEST_PARTS_MAX)):
        words = str(header.get(f"{_DIGEST_PART}{index}", "")).split()
        recorded.append(words if len(words) == 3 else ["?", "", ""])
    whole = _file_digest(parts) == str(header[_DIGEST]).strip()
    located = _locate_changes(parts, recorded, header.get(_DIGEST_COUNT), summed)
    if whole and located:
        located = [f"HDU 0 {parts[0].name}: the {_DIGEST_PART}n cards were edited"]
    elif not whole and not located:
        located = [f"HDU 0 {parts[0].name}: the file's digest does not match {_DIGEST}"]
    findings = located + findings
    return ("tampered" if findings else "ok"), findings


def _locate_changes(parts: list[_Part], recorded: list[list[str]], count,
                    summed: list[int]) -> list[str]:
    """Which HDUs differ from the short digests of the CFDHDUn cards.

    ``summed``: the HDUs whose checksums are there and match (made again
    after a change, when the change is not theirs).
    """
    names = [_hdu_name(p) for p in parts]
    written = [r[0] for r in recorded]
    findings = []
    if count != len(parts) or names[:len(written)] != written:
        findings.extend(f"HDU {name} was removed after writing"
                        for name in written if name not in names)
        findings.extend(f"HDU {name} was added after writing"
                        for name in names if name not in written)
        if not findings:
            findings.append(f"the HDUs are not the {count} calframe wrote, in its order")
    for index, (name, header_short, data_short) in enumerate(recorded):
        if name not in names:
            continue
        where = names.index(name)
        part = parts[where]
        what = []
        if not part.header_digest.startswith(header_short):
            gone = [key for key in _CHECKSUM_KEYS if key not in part.header]
            whole = hashlib.sha256(_canonical_header(
                part.header, primary=where == 0, checksums=_CHECKSUM_KEYS)).hexdigest()
            if gone and whole.startswith(header_short):
                findings.append(f"HDU {index} {name}: {' and '.join(gone)} removed")
            else:
                what.append("header cards")
        if not part.data_digest.startswith(data_short):
            what.append("data")
        if what:
            again = " (its CHECKSUM and DATASUM were made again to match)" \
                if where in summed else ""
            findings.append(f"HDU {index} {name}: {' and '.join(what)} changed since "
                            f"calframe wrote them{again}")
    return findings


# --- header sanitising ------------------------------------------------------------

def _fits_safe_header(meta, *, drop_history: bool) -> fits.Header:
    """A new header with the FITS-legal keywords of ``meta`` (dropped ones logged)."""
    header = fits.Header()
    dropped: list[str] = []
    for key, value, comment in _iter_meta(meta, dropped):
        key = str(key).strip().upper()
        if key in _COMMENTARY:
            text = _ascii(value)
            if key == "HISTORY" and drop_history and text.startswith(_HISTORY_PREFIX):
                continue
            header.append((key, text), bottom=True)
            continue
        if not _KEYWORD.fullmatch(key):
            dropped.append(key)
            continue
        if key in _RESERVED or _RESERVED_PATTERN.fullmatch(key) \
                or _DIGEST_KEYS.fullmatch(key):  # (a calframe file read back)
            continue
        value, unit_comment = _fits_value(value)
        if value is not _DROP:
            key, value = _typed(key, value, meta)
        if value is _DROP:
            dropped.append(key)
            continue
        comment = _ascii(comment or unit_comment)
        header[key] = _fitting_card(key, value, comment)
    if dropped:
        log.info("left out %d header keywords that are not FITS-legal: %s", len(dropped),
                 ", ".join(sorted(set(dropped))[:20]))
    return header


def _iter_meta(meta, dropped):
    if meta is None:
        return
    if isinstance(meta, fits.Header):
        for card in meta.cards:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    key, value, comment = card.keyword, card.value, card.comment
                except (ValueError, fits.VerifyError):
                    dropped.append(str(card.keyword))
                    continue
            if caught:
                dropped.append(str(key))
                continue
            yield key, value, comment
        return
    for key, value in dict(meta).items():
        comment = ""
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
            value, comment = value
        if str(key).upper() in _COMMENTARY and isinstance(value, (list, tuple)):
            for item in value:
                yield key, item, ""
            continue
        yield key, value, comment


_DROP = object()


def _fits_value(value):
    """(FITS value, comment) for a Python value, or (_DROP, '')."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value), ""
    if isinstance(value, numbers.Integral):
        value = int(value)
        return (value, "") if abs(value) < 2 ** 63 else (_DROP, "")
    if isinstance(value, numbers.Real):
        value = float(value)
        return (value, "") if math.isfinite(value) else (_DROP, "")
    if isinstance(value, str):
        return _ascii(value), ""
    if isinstance(value, u.Quantity) and value.isscalar:
        number, _ = _fits_value(value.value)
        return (number, f"[{value.unit.to_string()}]") if number is not _DROP \
            else (_DROP, "")
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")[:19], ""
    return _DROP, ""


def _typed(key: str, value, meta) -> tuple[str, object]:
    """Give reserved keywords the type the FITS standard requires, or drop them."""
    if key.startswith("DATE"):
        return key, (_fits_date(value) if isinstance(value, str) else _DROP)
    if key in _STRING_KEYS:
        return key, str(value)
    if key in _FLOAT_KEYS or key == "EPOCH":
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            return key, _DROP
        if not math.isfinite(number):
            return key, _DROP
        if key == "EPOCH":  # deprecated: an equinox (years) becomes EQUINOX
            has_equinox = "EQUINOX" in meta if isinstance(meta, Mapping) else False
            return ("EQUINOX", number) if 1000 < number < 3000 and not has_equinox \
                else (key, _DROP)
        return key, number
    return key, value


def _fits_date(text: str):
    """A date in the FITS form (ISO 8601, 'T' separator), or _DROP."""
    text = text.strip()
    match = _ISO_DATE.fullmatch(text)
    if match:
        year, month, day, hour, minute, second = match.groups()
        if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
            return _DROP
        if hour is None:
            return f"{year}-{month}-{day}"
        if int(hour) > 23 or int(minute) > 59 or float(second or 0) >= 61:
            return _DROP
        return f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}"
    match = _OLD_DATE.fullmatch(text)
    if match:  # the pre-2000 form dd/mm/yy always means 19yy
        day, month, year = match.groups()
        if 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
            return f"19{year}-{month}-{day}"
    return _DROP


def _ascii(text) -> str:
    if text is None:
        return ""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return "".join(c for c in text if " " <= c <= "~")


def _fitting_card(key: str, value, comment: str):
    """Shorten a string value, then the comment, so the card fits 80 characters."""
    if isinstance(value, str):
        value = value[:68]
        while len(fits.Card(key, value).image) > 80:
            value = value[:-1]
    if not comment:
        return value
    # astropy pads a value to column 30, then writes " / " and the comment.
    used = max(len(fits.Card(key, value).image.rstrip()), 30)
    room = 80 - used - 3
    return (value, comment[:room]) if room >= 1 else value


# --- reading back -----------------------------------------------------------------

def attach_extras(ccd: CCDData, hdulist: fits.HDUList, *,
                  path: str | os.PathLike | None = None,
                  verify_checksum: bool = True) -> CCDData:
    """Attach what :func:`write_frame` adds beyond CCDData to a frame read back.

    Restores the provenance (from ``PROVENANCE``) and the per-pixel counts
    (``ccd.ncombine`` / ``ccd.rejected`` from ``NCOMBINE`` / ``REJECTED``,
    int16), and checks ``CHECKSUM`` / ``DATASUM`` of every HDU that has them.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        The frame read from ``hdulist`` (modified in place and returned).
    hdulist : `~astropy.io.fits.HDUList`
        The open file.
    path : str or path-like, optional
        The file's path as the user gave it (default: ``hdulist.filename()``);
        stored input paths, relative to the file's folder, are rewritten
        relative to the current folder.
    verify_checksum : bool, optional
        Check the checksums.

    Returns
    -------
    `~astropy.nddata.CCDData`
        ``ccd``.

    Warns
    -----
    ChecksumMismatchWarning
        A checksum does not match the bytes (the file changed after writing).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from astropy.io import fits
    >>> from astropy.nddata import CCDData
    >>> from calframe.provenance import get_provenance
    >>> ccd = CCDData(np.zeros((3, 3), np.float32), unit="adu")
    >>> ccd.ncombine = np.full((3, 3), 5, np.int16)
    >>> get_provenance(ccd).add_step("combine", method="median")
    >>> out = write_frame(ccd, pathlib.Path(tempfile.mkdtemp()) / "m.fits")
    >>> with fits.open(out) as hdul:
    ...     back = attach_extras(CCDData.read(out), hdul)
    >>> int(back.ncombine[0, 0]), get_provenance(back).steps[0].step
    (5, 'combine')
    """
    where = path if path is not None else (hdulist.filename() or "<memory>")
    if verify_checksum:
        _verify_checksums(hdulist, where)
    for attribute, name, _meaning in _COUNT_EXTENSIONS:
        if name in hdulist and hdulist[name].data is not None:
            setattr(ccd, attribute, np.array(hdulist[name].data, dtype=np.int16))
    if "PROVENANCE" in hdulist:
        file_path = path if path is not None else hdulist.filename()
        set_provenance(ccd, Provenance.from_fits_table(hdulist["PROVENANCE"],
                                                       file_path=file_path))
    return ccd


def _verify_checksums(hdulist: fits.HDUList, where) -> None:
    bad = []
    for index, hdu in enumerate(hdulist):
        name = hdu.name or str(index)
        # CHECKSUM covers header and data; the data sum is computed a second
        # time only to say which of the two changed.
        if "CHECKSUM" in hdu.header:
            if hdu.verify_checksum() == 0:
                data_bad = "DATASUM" in hdu.header and hdu.verify_datasum() == 0
                bad.append(f"{name} ({'data' if data_bad else 'header'})")
        elif "DATASUM" in hdu.header and hdu.verify_datasum() == 0:
            bad.append(f"{name} (data)")
    if bad:
        warnings.warn(f"{where}: checksum mismatch in {', '.join(bad)}: the file was "
                      "modified or damaged after it was written; re-create it or check "
                      "its origin before trusting it",
                      ChecksumMismatchWarning, stacklevel=3)


def read_provenance(path: str | os.PathLike, *, verify_checksum: bool = True
                    ) -> Provenance:
    """The provenance recorded in a calframe file (empty if it has none).

    Stored input paths are rewritten relative to the current folder.  Raises
    :class:`~calframe.errors.FrameReadError` for a file that is not FITS and
    warns (:class:`~calframe.errors.ChecksumMismatchWarning`) when a checksum
    fails.

    Parameters
    ----------
    path : str or path-like
        A FITS file.
    verify_checksum : bool, optional
        Check the CHECKSUM and DATASUM keywords.

    Returns
    -------
    Provenance
        Its inputs and steps.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from astropy.nddata import CCDData
    >>> from calframe.provenance import get_provenance
    >>> ccd = CCDData(np.zeros((2, 2), np.float32), unit="adu")
    >>> get_provenance(ccd).add_step("subtract_bias")
    >>> out = write_frame(ccd, pathlib.Path(tempfile.mkdtemp()) / "c.fits")
    >>> read_provenance(out).calstat()
    'B'
    """
    try:
        hdulist = fits.open(path)
    except OSError as err:
        raise FrameReadError(path, f"cannot be read as FITS ({err})",
                             "give a FITS file written by calframe") from err
    with hdulist:
        if verify_checksum:
            _verify_checksums(hdulist, path)
        if "PROVENANCE" not in hdulist:
            return Provenance()
        return Provenance.from_fits_table(hdulist["PROVENANCE"], file_path=path)
