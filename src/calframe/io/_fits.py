"""FITS reading: any image HDU, scaled integers, tile compression, calframe MEFs."""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import warnings
import zlib

import numpy as np
from astropy.io import fits

from ..errors import FrameReadError, UnsupportedFormatError
from ._common import Loaded, exact_float_dtype, integer_full_scale, open_for_reading
from ._kernels import scaled_to_float

log = logging.getLogger(__name__)

_EXTRA_NAMES = ("PROVENANCE", "NCOMBINE", "REJECTED")
# Keywords that describe the stored bytes, not the float data read from them.
_SCALE_KEYS = ("BZERO", "BSCALE", "BLANK", "ZBLANK", "CHECKSUM", "DATASUM")
_BITPIX = (8, 16, 32, 64, -32, -64)
# What astropy raises for a file whose header or layout is broken (a KeyError
# for a missing BITPIX, a TypeError for NAXIS = 'two'...).
_ASTROPY_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError,
                   fits.verify.VerifyError)
# What the gzip and bzip2 decompressors raise for damaged or truncated data.
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error)
_COMPRESSIONS = ((b"\x1f\x8b", "gzip", lambda handle: gzip.GzipFile(fileobj=handle)),
                 (b"BZh", "bzip2", bz2.BZ2File))
# First bytes of the compressed files astropy opens (gzip, bzip2, zip, xz, LZW).
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04", b"\xfd7zXZ", b"\x1f\x9d")


def _compression(handle) -> tuple[str, object] | None:
    """The name and opener of a gzip or bzip2 file's compression, or None."""
    magic = handle.read(3)
    handle.seek(0)
    for start, name, opener in _COMPRESSIONS:
        if magic.startswith(start):
            return name, opener
    return None


def _structure_problem(header: fits.Header, what: str = "the header") -> str | None:
    """What makes ``header`` unable to describe an array (bad BITPIX, NAXIS...), or None."""
    def value(key):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # astropy's fixes of non-standard cards
            try:
                return header.get(key)
            except (fits.verify.VerifyError, ValueError):
                pass
            try:    # the card's value as written, e.g. NAXIS1 = 1 0
                return header.cards[key].image[10:].split("/")[0].strip()
            except (fits.verify.VerifyError, ValueError, KeyError):
                return "(unreadable)"

    def is_int(v):
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    bitpix = value("BITPIX")
    if bitpix is None:
        return f"{what} has no BITPIX keyword"
    if not is_int(bitpix) or bitpix not in _BITPIX:
        return (f"{what} has BITPIX = {bitpix!r}, which is not a FITS data type "
                "(8, 16, 32, 64, -32 or -64)")
    naxis = value("NAXIS")
    if naxis is None:
        return f"{what} has no NAXIS keyword"
    if not is_int(naxis) or not 0 <= naxis <= 999:
        return f"{what} has NAXIS = {naxis!r}, which is not a number of axes (0 to 999)"
    for axis in range(1, naxis + 1):
        length = value(f"NAXIS{axis}")
        if length is None:
            return f"{what} has NAXIS = {naxis} but no NAXIS{axis} keyword"
        if not is_int(length) or length < 0:
            return (f"{what} has NAXIS{axis} = {length!r}, which is not an axis length "
                    "(an integer >= 0)")
    return None


def _first_header_problem(handle, path) -> str | None:
    """Why astropy could not open a FITS file, when it can be told; else None.

    Called only after astropy failed.  A compressed file is decompressed again
    to tell damaged compression (raised as FrameReadError) from a damaged
    header (returned).
    """
    handle.seek(0)
    stream = handle
    compression = _compression(handle)
    if compression is not None:
        name, opener = compression
        try:
            with opener(handle) as decompressor:
                stream = io.BytesIO(decompressor.read())
        except _DECOMPRESS_ERRORS as err:
            raise FrameReadError(path, f"the {name}-compressed data are damaged or truncated "
                                 f"({err})", "copy or download the file again") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromfile(stream)
    except _ASTROPY_ERRORS:
        return None
    problem = _structure_problem(header, "the primary header")
    if problem is None:
        naxes = [header[f"NAXIS{i}"] for i in range(1, header["NAXIS"] + 1)]
        if 0 in naxes:
            # An image of no pixels, yet no header follows this one.
            problem = (f"the primary header gives the image the axes {naxes} (no pixels), "
                       "yet data follow the header")
    return problem


def _hdu_problem(hdu, index: int) -> str | None:
    """What makes HDU ``index`` unusable (unreadable name or structure), or None."""
    if type(hdu).__name__ in ("_CorruptedHDU", "_ValidHDU"):
        return f"HDU {index} is damaged (astropy cannot tell what it holds)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # astropy's fixes of non-standard cards
        try:
            hdu.name  # noqa: B018 - EXTNAME must be readable to find the HDUs by name
        except (fits.verify.VerifyError, ValueError, KeyError) as err:
            return f"the EXTNAME card of HDU {index} cannot be read ({err})"
    return _structure_problem(hdu.header, f"the header of HDU {index}")


def _bytes_after_last_hdu(hdul: fits.HDUList, count: int = 8) -> bytes | None:
    """The first bytes after the data of the last HDU astropy read (None: cannot tell)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            info = hdul.fileinfo(len(hdul) - 1)
        except (fits.verify.VerifyError, ValueError):
            return None     # its header cannot even be written out again
    if not info:
        return b""
    stream = hdul._file      # astropy's file object (the decompressed bytes for gzip)
    stream.seek(info["datLoc"] + info["datSpan"])
    return stream.read(count)


def _open(path) -> fits.HDUList:
    """Open a FITS file, turning astropy's problems into FrameReadError.

    A gzip or bzip2 file is decompressed into memory as a whole, which checks
    it to its end (gzip CRC-32 and length, bzip2 block CRCs); read as a
    stream, astropy would stop at the last HDU and take a damaged stream for
    the end of the file.  The file is closed when astropy fails.
    """
    handle = open_for_reading(path)
    try:
        compressed = handle.read(6).startswith(_COMPRESSED_MAGIC)
        handle.seek(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(handle, memmap=True, do_not_scale_image_data=True,
                             lazy_load_hdus=False, decompress_in_memory=True)
    except (*_ASTROPY_ERRORS, zlib.error) as err:
        try:
            problem = _first_header_problem(handle, path)
        finally:
            handle.close()
        if problem is not None:
            raise FrameReadError(path, f"not a valid FITS file: {problem}",
                                 "the header is damaged; check what wrote the file") from err
        text = " ".join(str(err).split()) or type(err).__name__
        raise FrameReadError(path, f"not a readable FITS file ({text})",
                             "check that the file is complete and really is FITS") from err
    if compressed:
        handle.close()    # astropy holds the decompressed bytes; else it owns `handle`
    for index, hdu in enumerate(hdul):
        problem = _hdu_problem(hdu, index)
        if problem is not None:
            hdul.close()
            raise FrameReadError(path, f"not a valid FITS file: {problem}",
                                 "the header is damaged; check what wrote the file")
    for item in caught:
        text = " ".join(str(item.message).split())
        if "truncated" in text:
            hdul.close()
            raise FrameReadError(path, f"the FITS file is truncated ({text})",
                                 "copy or download the file again")
        if "Error validating header" in text:
            # astropy stops at the first HDU it cannot read: an extension cut
            # short (a truncated file), or bytes after the last HDU.
            tail = _bytes_after_last_hdu(hdul)
            if tail is None:
                hdul.close()
                raise FrameReadError(path, f"not a valid FITS file: the header of HDU "
                                     f"{len(hdul) - 1} is damaged",
                                     "copy the file again, or check what wrote it")
            if tail.startswith(b"XTENSION"):
                hdul.close()
                raise FrameReadError(path, f"truncated: the file ends inside the header of "
                                     f"HDU {len(hdul)} (an extension cut short)",
                                     "copy or download the file again")
            log.warning("%s: %s; only the first %d HDU(s) are read", path, text, len(hdul))
        else:
            log.debug("%s: %s", path, text)
    return hdul


def _sanitised(header: fits.Header, path) -> fits.Header:
    """A copy of ``header`` in which every card can be read.

    Cards that break the FITS standard (``EXPTIME = 1.0E``) are fixed the way
    astropy fixes them (the value kept as text) or, if that fails, left out;
    either way the file and keyword are logged.
    """
    clean = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for card in header.cards:
            try:
                _ = card.value
                clean.append(card, end=True)
                continue
            except (fits.verify.VerifyError, ValueError):
                pass
            try:
                fixed = fits.Card.fromstring(card.image)
                fixed.verify("fix")
                _ = fixed.value
                clean.append(fixed, end=True)
                log.warning("%s: card %s is not FITS standard; read as %r",
                            path, card.keyword, fixed.value)
            except (fits.verify.VerifyError, ValueError):
                log.warning("%s: card %s cannot be read and is left out", path, card.keyword)
    return clean


def _frame_hdus(hdul: fits.HDUList) -> list[int]:
    return [i for i, h in enumerate(hdul)
            if h.is_image and h.header.get("NAXIS", 0) >= 2
            and h.name not in ("UNCERT", "MASK", "NCOMBINE", "REJECTED")]


def _pick_hdu(hdul: fits.HDUList, hdu, path):
    images = _frame_hdus(hdul)
    if hdu is None:
        if not images:
            kinds = ", ".join(f"{i}:{h.name}:{type(h).__name__}" for i, h in enumerate(hdul))
            raise UnsupportedFormatError(
                path, f"no image HDU with two or more axes (HDUs: {kinds})",
                "this file holds no frame; pass a FITS file with an image")
        return images[0]
    try:
        index = hdul.index_of(hdu)
    except (KeyError, IndexError) as err:
        raise FrameReadError(path, f"hdu={hdu!r} not found (the file has {len(hdul)} HDUs: "
                             f"{', '.join(h.name for h in hdul)})",
                             "pass an index or a name that exists") from err
    if not hdul[index].is_image or hdul[index].header.get("NAXIS", 0) < 2:
        raise UnsupportedFormatError(path, f"hdu={hdu!r} is not an image with two or more axes",
                                     f"image HDUs are {images}")
    return index


def _scaling(header: fits.Header, path) -> tuple[float, float]:
    """BSCALE and BZERO of an image header, checked to be usable numbers."""
    values = []
    for key, default in (("BSCALE", 1.0), ("BZERO", 0.0)):
        value = header.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
                or not np.isfinite(value):
            raise FrameReadError(path, f"{key} = {value!r} is not a number, so the pixel "
                                 "values cannot be computed",
                                 f"fix or remove {key} in the header")
        values.append(float(value))
    if values[0] == 0:
        raise FrameReadError(path, "BSCALE = 0 would make every pixel equal to BZERO",
                             "fix BSCALE in the header (1 when the values are stored as is)")
    return values[0], values[1]


def _physical(raw: np.ndarray, header: fits.Header, dtype,
              path) -> tuple[np.ndarray, np.ndarray | None]:
    """Physical values from stored ones (BZERO/BSCALE), and the BLANK pixels."""
    bscale, bzero = _scaling(header, path)
    blank_mask = None
    if raw.dtype.kind in "iu":
        blank = header.get("BLANK")
        if isinstance(blank, bool) or not isinstance(blank, int | np.integer | None):
            log.warning("%s: BLANK = %r is not an integer; no pixel is taken as blank",
                        path, blank)
            blank = None
        if blank is not None:
            blank_mask = raw == blank
            if not blank_mask.any():
                blank_mask = None
    return scaled_to_float(raw, bscale, bzero, dtype), blank_mask


def _extension_array(hdul, name):
    try:
        return hdul[name]
    except KeyError:
        return None


def _checked_image(hdul: fits.HDUList, hdu, path):
    """The index and HDU of the image to read, refused when it cannot hold a frame."""
    index = _pick_hdu(hdul, hdu, path)
    image = hdul[index]
    problem = _structure_problem(image.header, f"the header of HDU {index}")
    if problem is not None:
        raise FrameReadError(path, f"not a valid FITS image: {problem}",
                             "the header is damaged; check what wrote the file")
    if 0 in image.shape:
        raise UnsupportedFormatError(path, f"HDU {index} is an image of shape "
                                     f"{image.shape}, which holds no pixels",
                                     "this file holds no frame; pass a file with an image")
    return index, image


def _stored_array(image, index: int, path) -> np.ndarray:
    """The HDU's stored values (memory-mapped when the file allows), as a frame or cube."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = image.data
    except (TypeError, ValueError, OSError, KeyError, EOFError, zlib.error) as err:
        raise FrameReadError(path, f"the data of HDU {index} cannot be read ({err})",
                             "the file is probably truncated; copy it again") from err
    for item in caught:
        if "truncated" in str(item.message):
            raise FrameReadError(path, "the FITS file is truncated",
                                 "copy or download the file again")
    if raw is None:
        raise UnsupportedFormatError(path, f"HDU {index} has no data",
                                     "pass hdu= of an image HDU")
    while raw.ndim > 2 and raw.shape[0] == 1:
        raw = raw[0]  # (1, ny, nx) cubes written by some programs: one frame
    if raw.ndim > 3:
        raise UnsupportedFormatError(path, f"HDU {index} is an image of {raw.ndim} axes "
                                     f"{raw.shape}", "calframe reads 2-D frames and "
                                     "(planes, ny, nx) cubes")
    return raw


def _stored_uncertainty(hdul, index: int, dtype, shape, path):
    """The UNCERT extension of a calframe MEF as standard deviations, and its unit."""
    uncert = _extension_array(hdul, "UNCERT")
    if uncert is None or index != 0 or uncert.data is None:
        return None, None
    utype = str(uncert.header.get("UTYPE", "StdDevUncertainty"))
    values = np.asarray(uncert.data, dtype=dtype)
    if utype == "VarianceUncertainty":
        values = np.sqrt(values)
    elif utype == "InverseVariance":
        with np.errstate(divide="ignore"):
            values = 1.0 / np.sqrt(values)
    elif utype != "StdDevUncertainty":
        raise UnsupportedFormatError(path, f"UNCERT extension of type UTYPE={utype!r}",
                                     "calframe reads StdDev, Variance and "
                                     "InverseVariance uncertainties")
    if values.shape != shape:
        raise FrameReadError(path, f"UNCERT extension shape {values.shape} differs "
                             f"from the image {shape}", "the file is inconsistent; rewrite it")
    # calframe writes no BUNIT for dimensionless data (as astropy does); its
    # uncertainty, in the data's unit, says '' then
    unit = str(uncert.header["BUNIT"]) if "BUNIT" in uncert.header else None
    return values, unit


def _stored_mask(hdul, index: int, shape, path):
    """The MASK extension of a calframe MEF, or None."""
    mask = _extension_array(hdul, "MASK")
    if mask is None or index != 0 or mask.data is None:
        return None
    values = np.asarray(mask.data).astype(bool)
    if values.shape != shape:
        raise FrameReadError(path, f"MASK extension shape {values.shape} differs "
                             f"from the image {shape}", "the file is inconsistent; rewrite it")
    return values


def _loaded_image(image, raw, index: int, header: fits.Header, dtype, path) -> Loaded:
    """The physical values, BLANK pixels, saturation and unit of one image HDU."""
    if isinstance(image, fits.CompImageHDU):
        # The compressed table's own header keywords describe the table.
        header.remove("ZBLANK", ignore_missing=True)
    bscale, bzero = _scaling(header, path)
    target = exact_float_dtype(raw, dtype, header, bzero=bzero, bscale=bscale)
    data, blank = _physical(raw, header, np.dtype(target).type, path)
    full_scale = integer_full_scale(raw.dtype, bzero, bscale)
    for key in _SCALE_KEYS:
        header.remove(key, ignore_missing=True, remove_all=True)
    loaded = Loaded(data=data, header=header, location={"hdu": index},
                    integer=raw.dtype.kind in "iu")
    if blank is not None:
        loaded.masks["blank"] = blank
    saturate = header.get("SATURATE")
    if isinstance(saturate, int | float) and not isinstance(saturate, bool):
        loaded.saturation = float(saturate)
    elif full_scale is not None:
        loaded.saturation = full_scale
    loaded.unit = header.get("BUNIT")
    return loaded


def load_fits(path, *, hdu=None, dtype=np.float32) -> Loaded:
    """Read one image HDU of a FITS file (see :func:`calframe.read_frame`)."""
    dtype = np.dtype(dtype).type
    hdul = _open(path)
    try:
        index, image = _checked_image(hdul, hdu, path)
        header = _sanitised(image.header, path)
        raw = _stored_array(image, index, path)
        loaded = _loaded_image(image, raw, index, header, dtype, path)
        # calframe's own MEF layout (astropy CCDData conventions).
        loaded.uncertainty, unit = _stored_uncertainty(hdul, index, loaded.data.dtype,
                                                       loaded.data.shape, path)
        if loaded.uncertainty is not None and loaded.unit is None and unit is not None:
            loaded.unit = unit
        loaded.mask = _stored_mask(hdul, index, loaded.data.shape, path)
        loaded.has_extras = index == 0 and any(
            _extension_array(hdul, name) is not None for name in _EXTRA_NAMES)
        return loaded
    finally:
        hdul.close()


class FitsCube:
    """The planes of a FITS image cube ``(n, ny, nx)``, read one at a time.

    Each plane is read through astropy's ``section`` (from the memory map of
    an uncompressed file, tile by tile for a compressed one), so a cube larger
    than memory can be streamed.  A 2-D image is a cube of one plane.
    """

    def __init__(self, path, *, hdu=None):
        self.path = path
        self.hdul = _open(path)
        try:
            self.index, image = _checked_image(self.hdul, hdu, path)
            self.image = image
            self.header = _sanitised(image.header, path)
            self.bscale, self.bzero = _scaling(self.header, path)
            shape = tuple(int(n) for n in image.shape)
            while len(shape) > 2 and shape[0] == 1:
                shape = shape[1:]
            if len(shape) > 3:
                raise UnsupportedFormatError(path, f"HDU {self.index} is an image of "
                                             f"{len(shape)} axes {shape}",
                                             "calframe streams 2-D frames and (n, ny, nx) cubes")
            self.nframes = shape[0] if len(shape) == 3 else 1
            self.frame_shape = shape[-2:]
            self.dtype = _stored_dtype(image.header)
        except BaseException:
            self.hdul.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.hdul.close()

    def raw(self, frame: int) -> np.ndarray:
        """Plane ``frame`` as stored (BZERO/BSCALE not applied)."""
        if not 0 <= frame < self.nframes:
            raise ValueError(f"frame={frame}: {self.path} has {self.nframes} plane(s)")
        ndim = self.image.header.get("NAXIS", 2)
        lead = (0,) * (ndim - 3) + (frame,) if ndim >= 3 else ()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(self.image.section[lead])
        except (TypeError, ValueError, OSError, KeyError, EOFError, zlib.error) as err:
            raise FrameReadError(self.path, f"plane {frame} of HDU {self.index} cannot be "
                                 f"read ({err})", "the file is probably truncated; copy it "
                                 "again") from err

    def values(self, frame: int, dtype=np.float32) -> np.ndarray:
        """Plane ``frame`` as physical values (BZERO/BSCALE applied), NaN at BLANK."""
        raw = self.raw(frame)
        data, blank = _physical(raw, self.header, np.dtype(dtype).type, self.path)
        if blank is not None:
            data[blank] = np.nan
        return data

    @property
    def saturation(self) -> float | None:
        """SATURATE, else the full scale of an integer cube."""
        saturate = self.header.get("SATURATE")
        if isinstance(saturate, int | float) and not isinstance(saturate, bool):
            return float(saturate)
        bitpix = int(self.image.header.get("ZBITPIX", self.image.header["BITPIX"]))
        stored = {8: np.uint8, 16: np.int16, 32: np.int32, 64: np.int64}.get(bitpix)
        return None if stored is None else \
            integer_full_scale(np.dtype(stored), self.bzero, self.bscale)


def attach_fits_extras(ccd, path) -> None:
    """Attach a calframe MEF's provenance and counts, when the writer is installed."""
    try:
        from ._mef import attach_extras
    except ImportError:  # the MEF writer module is not part of this installation
        log.debug("calframe.io._mef not available; PROVENANCE/NCOMBINE not read")
        return
    from ..errors import ChecksumMismatchWarning

    hdul = _open(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            attach_extras(ccd, hdul, path=path)
    except (fits.verify.VerifyError, ValueError, KeyError, TypeError, IndexError,
            AttributeError) as err:
        # What astropy raises for a damaged table (an unparsable TFORM1, a
        # header it no longer takes for a table...).
        text = " ".join(str(err).split()) or type(err).__name__
        raise FrameReadError(path, "the PROVENANCE, NCOMBINE or REJECTED extension cannot "
                             f"be read ({text})", "the file is damaged; copy it again, or "
                             "write the frame again") from err
    finally:
        hdul.close()
    for item in caught:
        if issubclass(item.category, ChecksumMismatchWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
        else:
            log.debug("%s: %s", path, " ".join(str(item.message).split()))


def image_hdus(path) -> list[int]:
    """Indices of the frame HDUs of a FITS file (not UNCERT / MASK / counts)."""
    hdul = _open(path)
    try:
        return _frame_hdus(hdul)
    finally:
        hdul.close()


def _stored_dtype(header: fits.Header) -> np.dtype:
    """The sample type a FITS image stores, with the unsigned BZERO convention."""
    bitpix = int(header.get("ZBITPIX", header["BITPIX"]))
    bzero = header.get("BZERO", 0)
    kinds = {8: "u1", 16: "i2", 32: "i4", 64: "i8", -32: "f4", -64: "f8"}
    if bitpix not in kinds:
        raise KeyError(bitpix)
    if bitpix in (16, 32, 64) and bzero == 2 ** (bitpix - 1):
        return np.dtype(f"u{bitpix // 8}")
    return np.dtype(kinds[bitpix])


def fits_header(path, *, hdu=None):
    """The header and shape :func:`load_fits` gives, without reading the pixels."""
    import os

    from ._formats import HeaderRead

    with open(path, "rb") as handle:
        compressed = handle.read(3).startswith((b"\x1f\x8b", b"BZh"))
    hdul = _open(path)
    try:
        index = _pick_hdu(hdul, hdu, path)
        image = hdul[index]
        offset = getattr(image, "_data_offset", None)   # None: not from a file
        if offset is not None and not compressed and \
                not isinstance(image, fits.CompImageHDU):
            end = offset + image._data_size
            size = os.path.getsize(path)
            if end > size:
                raise FrameReadError(path, f"the FITS file is truncated ({size} bytes, the "
                                     f"header announces {end})",
                                     "copy or download the file again")
        header = _sanitised(image.header, path)
        _scaling(header, path)
        try:
            shape = tuple(int(n) for n in image.shape)
            dtype = _stored_dtype(image.header)
        except (KeyError, TypeError, ValueError) as err:
            raise FrameReadError(path, f"HDU {index} has an invalid BITPIX or NAXISn "
                                 f"({err})", "the header is damaged; rewrite the file") from err
        while len(shape) > 2 and shape[0] == 1:
            shape = shape[1:]
        if isinstance(image, fits.CompImageHDU):
            header.remove("ZBLANK", ignore_missing=True)
        for key in _SCALE_KEYS:
            header.remove(key, ignore_missing=True, remove_all=True)
        return HeaderRead(header=header, shape=shape, dtype=dtype, location={"hdu": index})
    finally:
        hdul.close()
