"""Frame sources: where the combine engine gets rows of each frame from.

One parser turns whatever the user passed (paths, CCDData, ndarrays, or an
iterator of them) into a list of sources, each of which can fill a block of
rows with float32 values (NaN where masked or non-finite) and, when it has
one, the matching standard deviations:

* :class:`FitsSource`: an uncompressed FITS image read by offset straight
  from the file (``os.pread`` into the row block; BZERO/BSCALE, byte order,
  BLANK and saturation handled in a compiled decode kernel for 16-bit data).
  Nothing is converted before it is needed, and no file page stays mapped,
  so memory does not grow with the number of frames.
* :class:`ArraySource`: an in-memory CCDData or ndarray (rows are copied).
* :class:`CacheSource`: anything else (camera RAW, EDF, TIFF, compressed
  FITS, and the items of an iterator) decoded once with
  :func:`calframe.read_frame` into a float32 file in a temporary folder that
  is removed when the combine ends.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import FrameReadError, IncompatibleFramesError, NoFramesError
from ..io._fits import _sanitised
from ..io._formats import check_regular_file, format_from_name
from ..metadata import normalize_header
from ..provenance import get_provenance
from ._kernels import decode_i2be

# astropy.nddata takes about 0.6 s to import: it is imported only where frames in
# memory are read (their caller has imported it then) or wrapped, so that
# combine() can import it while the kernels run (see _combine._run_local)
if TYPE_CHECKING:
    from astropy.nddata import CCDData, NDData

__all__ = ["ArraySource", "CacheSource", "FitsSource", "FrameSource", "parse_frames"]

log = logging.getLogger(__name__)

_SKIP_EXTNAMES = ("UNCERT", "MASK", "NCOMBINE", "REJECTED")
_STRUCTURAL = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
               "BZERO", "BSCALE", "BLANK", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME",
               "CHECKSUM", "DATASUM")


class FrameSource:
    """A frame the engine reads block by block (base class)."""

    label: str = ""
    path: str | None = None
    shape: tuple[int, int] = (0, 0)
    unit: u.UnitBase = u.adu
    header: fits.Header
    has_unc: bool = False
    provenance = None

    def read_rows(self, r0: int, r1: int, data: np.ndarray, unc: np.ndarray | None) -> None:
        """Fill ``data[: r1 - r0]`` (and ``unc``) with rows ``r0:r1``."""
        raise NotImplementedError  # pragma: no cover

    def read_all(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The whole frame (NaN where invalid) and its uncertainty, as float32."""
        ny, nx = self.shape
        data = np.empty((ny, nx), np.float32)
        unc = np.empty((ny, nx), np.float32) if self.has_unc else None
        self.read_rows(0, ny, data, unc)
        return data, unc

    def sample(self, max_values: int = 400_000) -> np.ndarray:
        """Valid values on a regular subset of rows (for scale statistics)."""
        ny, nx = self.shape
        step = max(1, int(np.ceil(ny * nx / max_values)))
        rows = range(0, ny, step) if step <= ny else [ny // 2]
        out = np.empty((1, nx), np.float32)
        parts = []
        for r in rows:
            self.read_rows(r, r + 1, out, None)
            parts.append(out[0][np.isfinite(out[0])].copy())
        return np.concatenate(parts) if parts else np.empty(0, np.float32)

    def quantum(self) -> float:
        """The step between the values the frame can take (0.0: continuous).

        Integer data have the step of their scaling (``BSCALE``, else 1);
        floating-point data whose sampled values are all whole numbers (ADU
        read into floats) have a step of 1.  A median keeps the rounding of
        its values, which the combine engine adds to the median's uncertainty.
        """
        values = self.sample(100_000)
        return 1.0 if values.size and bool(np.all(values == np.round(values))) else 0.0

    @property
    def frametype(self) -> str:
        return str(self.header.get("FRAMETYP", "")) if self.header is not None else ""

    @property
    def exptime(self) -> float | None:
        value = self.header.get("EXPTIME") if self.header is not None else None
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    def close(self) -> None:
        """Release what the source holds (files, temporary data)."""


def _pread(fd: int, offset: int, out: np.ndarray) -> None:
    view = memoryview(out).cast("B")
    done = 0
    while done < view.nbytes:
        count = os.preadv(fd, [view[done:]], offset + done)
        if count <= 0:
            raise OSError(f"unexpected end of file at byte {offset + done}")
        done += count


class _RawImage:
    """Where an uncompressed image's data sit in a FITS file, and how to scale them."""

    def __init__(self, path: str, hdu, *, saturate: float | None):
        header = hdu.header
        self.path = path
        self.offset = int(hdu._data_offset)
        self.bitpix = int(header["BITPIX"])
        self.shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        self.bscale = float(header.get("BSCALE", 1.0))
        self.bzero = float(header.get("BZERO", 0.0))
        blank = header.get("BLANK")
        self.blank = int(blank) if blank is not None and self.bitpix > 0 else None
        self.dtype = np.dtype({8: "u1", 16: ">i2", 32: ">i4", 64: ">i8",
                               -32: ">f4", -64: ">f8"}[self.bitpix])
        self.saturate = np.inf if saturate is None else float(saturate)

    def close(self) -> None:
        """Nothing stays open: each read opens and closes the file."""

    def read_rows(self, r0: int, r1: int, out: np.ndarray) -> None:
        nx = self.shape[1]
        nbytes = self.dtype.itemsize
        raw = np.empty((r1 - r0, nx), dtype=self.dtype)
        # one descriptor per read: thousands of frames never exhaust the limit
        fd = os.open(self.path, os.O_RDONLY)
        try:
            _pread(fd, self.offset + r0 * nx * nbytes, raw)
        finally:
            os.close(fd)
        target = out[: r1 - r0]
        if self.bitpix == 16:
            decode_i2be(raw.view(np.uint16), target, self.bscale, self.bzero,
                        -1 if self.blank is None else self.blank, self.blank is not None,
                        self.saturate)
            return
        values = raw.astype(np.float64) if self.bitpix in (32, 64) else raw.astype(np.float32)
        bad = None
        if self.blank is not None:
            bad = raw == self.blank
        if self.bscale != 1.0:
            values = values * self.bscale
        if self.bzero != 0.0:
            values = values + self.bzero
        target[...] = values
        if self.saturate < np.inf:
            target[target >= self.saturate] = np.nan
        if bad is not None:
            target[bad] = np.nan


def _full_scale(bitpix: int, bscale: float, bzero: float) -> float | None:
    if bitpix <= 0:
        return None
    top = {8: 255, 16: 32767, 32: 2**31 - 1, 64: 2**63 - 1}[bitpix]
    return top * bscale + bzero


class FitsSource(FrameSource):
    """An uncompressed FITS image, read by offset (see module docstring).

    Pixels at or above SATURATE (else the integer full scale), BLANK pixels
    and non-finite values are invalid, as :func:`calframe.read_frame` masks
    them; an astropy/calframe ``MASK`` and ``UNCERT`` extension is honoured.
    """

    def __init__(self, path, label: str, hdul: fits.HDUList, index: int, *,
                 keep_header: bool = True):
        self.path = str(path)
        self.label = label
        image = hdul[index]
        header = image.header
        saturate = header.get("SATURATE")
        if not isinstance(saturate, int | float) or isinstance(saturate, bool):
            saturate = _full_scale(int(header["BITPIX"]), float(header.get("BSCALE", 1.0)),
                                   float(header.get("BZERO", 0.0)))
        self._image = _RawImage(self.path, image, saturate=saturate)
        self.shape = self._image.shape
        unit = header.get("BUNIT")
        try:
            self.unit = u.Unit(unit) if unit else u.adu
        except ValueError as err:
            raise FrameReadError(path, f"BUNIT={unit!r} is not a unit astropy knows",
                                 "fix BUNIT in the header") from err
        self.header = _slim(_normalised_header(header, path), keep_header)
        self._mask = self._unc = None
        self._utype = "StdDevUncertainty"
        if index == 0:
            for name in ("MASK", "UNCERT"):
                if name in hdul and hdul[name].is_image and hdul[name].data is not None \
                        and not isinstance(hdul[name], fits.CompImageHDU):
                    raw = _RawImage(self.path, hdul[name], saturate=None)
                    if raw.shape != self.shape:
                        raise FrameReadError(path, f"{name} extension shape {raw.shape} "
                                             f"differs from the image {self.shape}",
                                             "the file is inconsistent; rewrite it")
                    if name == "MASK":
                        self._mask = raw
                    else:
                        self._unc = raw
                        self._utype = str(hdul[name].header.get("UTYPE", "StdDevUncertainty"))
        self.has_unc = self._unc is not None

    def quantum(self) -> float:
        if self._image.bitpix > 0:
            return abs(self._image.bscale)
        return super().quantum()

    def read_rows(self, r0, r1, data, unc):
        self._image.read_rows(r0, r1, data)
        n = r1 - r0
        if self._mask is not None:
            m = np.empty((n, self.shape[1]), np.float32)
            self._mask.read_rows(r0, r1, m)
            data[:n][m != 0] = np.nan
        if unc is not None and self._unc is not None:
            target = unc[:n]
            self._unc.read_rows(r0, r1, target)
            if self._utype == "VarianceUncertainty":
                np.sqrt(target, out=target)
            elif self._utype == "InverseVariance":
                with np.errstate(divide="ignore"):
                    np.divide(1.0, np.sqrt(target), out=target)

    def close(self):
        for raw in (self._image, self._mask, self._unc):
            if raw is not None:
                raw.close()


def _normalised_header(header: fits.Header, path) -> fits.Header:
    """The header :func:`calframe.read_frame` gives (cards that cannot be read are
    fixed or left out, as its FITS reader does), without the structural cards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = normalize_header(_sanitised(header, path), path=path)
    for key in _STRUCTURAL:
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


_KEPT_KEYS = ("FRAMETYP", "EXPTIME", "DATE-OBS")


def _slim(header: fits.Header, keep: bool) -> fits.Header:
    """The whole header (the first frame's, for the result) or only what every frame needs.

    Headers of thousands of frames would otherwise cost about 0.1 MB each.
    """
    if keep:
        return header
    slim = fits.Header()
    for key in _KEPT_KEYS:
        if key in header:
            slim[key] = header[key]
    return slim


def _as_header(meta) -> fits.Header:
    """A FITS header from a CCDData's meta (cards that cannot be FITS are left out)."""
    if isinstance(meta, fits.Header):
        return meta.copy()
    header = fits.Header()
    for key, value in dict(meta or {}).items():
        if not isinstance(key, str):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                header[key] = value
        except (ValueError, TypeError, KeyError):
            log.debug("meta key %r cannot be a FITS card; left out of the header", key)
    return header


def _is_nddata(obj) -> bool:
    """Whether ``obj`` is an astropy NDData (such as CCDData).

    Nothing can be one before astropy.nddata is imported, and the combine
    engine imports it (0.4 s) only while its kernels run.
    """
    nddata = sys.modules.get("astropy.nddata")
    cls = getattr(nddata, "NDData", None)
    return cls is not None and isinstance(obj, cls)


def _uncertainty_array(ccd: NDData) -> np.ndarray | None:
    # deferred: see the top of this module
    from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

    unc = ccd.uncertainty
    if unc is None:
        return None
    values = np.asarray(unc.array, dtype=np.float64)
    if isinstance(unc, StdDevUncertainty):
        pass
    elif isinstance(unc, VarianceUncertainty):
        values = np.sqrt(values)
    elif isinstance(unc, InverseVariance):
        with np.errstate(divide="ignore"):
            values = 1.0 / np.sqrt(values)
    else:
        raise IncompatibleFramesError(
            f"uncertainty of type {type(unc).__name__} cannot be combined; convert it to "
            "StdDevUncertainty, VarianceUncertainty or InverseVariance")
    if getattr(unc, "unit", None) is not None and ccd.unit is not None \
            and isinstance(unc, StdDevUncertainty) and unc.unit != ccd.unit:
        values = (values * unc.unit).to_value(ccd.unit)
    return values


class ArraySource(FrameSource):
    """An in-memory CCDData or ndarray."""

    def __init__(self, obj, label: str, *, keep_header: bool = True):
        self.label = label
        if _is_nddata(obj):
            data = np.asarray(obj.data)
            self.unit = obj.unit if obj.unit is not None else u.dimensionless_unscaled
            self.header = _slim(_as_header(obj.meta), keep_header)
            self._mask = None if obj.mask is None else np.asarray(obj.mask, dtype=bool)
            self._unc = _uncertainty_array(obj)
            self.provenance = get_provenance(obj)
        else:
            data = np.asarray(obj)
            self.unit = None  # no unit: takes the others' or adu
            self.header = fits.Header()
            self._mask = None
            self._unc = None
        if data.ndim != 2:
            raise IncompatibleFramesError(
                f"{label}: a frame must be a 2-D image, got shape {data.shape}; "
                "combine each colour plane separately")
        if data.dtype.kind not in "biuf":
            raise IncompatibleFramesError(f"{label}: data of dtype {data.dtype} is not numeric")
        if self._mask is not None and self._mask.shape != data.shape:
            raise IncompatibleFramesError(
                f"{label}: mask shape {self._mask.shape} differs from data {data.shape}")
        if self._unc is not None and self._unc.shape != data.shape:
            raise IncompatibleFramesError(
                f"{label}: uncertainty shape {self._unc.shape} differs from data {data.shape}")
        self._data = data
        self.shape = data.shape
        self.has_unc = self._unc is not None

    def quantum(self) -> float:
        if self._data.dtype.kind in "biu":
            return 1.0
        return super().quantum()

    def read_rows(self, r0, r1, data, unc):
        n = r1 - r0
        target = data[:n]
        target[...] = self._data[r0:r1]
        if self._mask is not None:
            target[self._mask[r0:r1]] = np.nan
        if unc is not None and self._unc is not None:
            unc[:n] = self._unc[r0:r1]


class CacheSource(FrameSource):
    """A frame decoded once into float32 files in a temporary folder."""

    def __init__(self, ccd: CCDData, label: str, folder: str, *, path: str | None = None,
                 keep_header: bool = True):
        src = ArraySource(ccd, label, keep_header=keep_header)
        self.label = label
        self.path = path
        self.shape = src.shape
        self.unit = src.unit
        self.header = src.header
        self.has_unc = src.has_unc
        self.provenance = src.provenance
        ny, nx = self.shape
        fd, self._data_file = tempfile.mkstemp(suffix=".f32", dir=folder)
        os.close(fd)
        data = np.empty((ny, nx), np.float32)
        unc = np.empty((ny, nx), np.float32) if self.has_unc else None
        src.read_rows(0, ny, data, unc)
        data.tofile(self._data_file)
        self._unc_file = None
        if unc is not None:
            fd, self._unc_file = tempfile.mkstemp(suffix=".f32", dir=folder)
            os.close(fd)
            unc.tofile(self._unc_file)

    def _read(self, name, r0, r1, out):
        nx = self.shape[1]
        fd = os.open(name, os.O_RDONLY)
        try:
            _pread(fd, r0 * nx * 4, out[: r1 - r0])
        finally:
            os.close(fd)

    def read_rows(self, r0, r1, data, unc):
        self._read(self._data_file, r0, r1, data)
        if unc is not None and self._unc_file is not None:
            self._read(self._unc_file, r0, r1, unc)


def _is_plain_fits(path: Path) -> bool:
    """Whether ``path`` is an uncompressed FITS file (read by offset, not decoded).

    Anything that is not a regular file (a FIFO, a socket) is refused by the
    format registry before it is opened.
    """
    check_regular_file(path)
    if format_from_name(path) != "fits" or path.name.lower().endswith((".gz", ".bz2",
                                                                       ".fz")):
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(9) == b"SIMPLE  ="
    except OSError as err:
        raise FrameReadError(path, f"cannot be opened ({err.strerror})",
                             "check the path and permissions") from err


def _fits_source(path, label, keep_header=True):
    """A FitsSource for ``path``, or None when it must be decoded (compressed...)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=True, do_not_scale_image_data=True,
                             lazy_load_hdus=False)
    except OSError as err:
        raise FrameReadError(path, f"not a readable FITS file ({err})",
                             "check that the file is complete and really is FITS") from err
    for item in caught:
        if "truncated" in str(item.message):
            hdul.close()
            raise FrameReadError(path, f"the FITS file is truncated ({item.message})",
                                 "copy or download the file again")
    try:
        images = [i for i, h in enumerate(hdul)
                  if h.is_image and h.header.get("NAXIS", 0) >= 2
                  and h.name not in _SKIP_EXTNAMES]
        if not images:
            return None
        index = images[0]
        hdu = hdul[index]
        if isinstance(hdu, fits.CompImageHDU) or hdu.header.get("NAXIS") != 2:
            return None
        size = os.path.getsize(path)
        need = hdu._data_offset + abs(hdu.header["BITPIX"]) // 8 * \
            hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
        if size < need:
            raise FrameReadError(path, f"the FITS file is truncated ({size} bytes, the "
                                 f"image needs {need})", "copy or download the file again")
        return FitsSource(path, label, hdul, index, keep_header=keep_header)
    finally:
        hdul.close()


def _decoded(path, label, folder, keep_header=True):
    # deferred: calframe.io's reader imports astropy.nddata (see the top of this module)
    from ..io import read_frame

    ccd = read_frame(path)
    return CacheSource(ccd, label, folder, path=str(path), keep_header=keep_header)


def parse_frames(frames, folder_factory) -> list[FrameSource]:
    """Turn the user's ``frames`` into sources.

    ``folder_factory()`` returns the temporary folder for decoded frames
    (created on first use).
    """
    if isinstance(frames, str | os.PathLike | np.ndarray) or _is_nddata(frames):
        raise IncompatibleFramesError(
            f"frames must be a list (or iterator) of frames, got one {type(frames).__name__}; "
            "wrap it in a list")
    if not isinstance(frames, Iterable):
        raise TypeError(f"frames must be a list or iterator of paths, CCDData or arrays, "
                        f"got {type(frames).__name__}")
    streaming = isinstance(frames, Iterator)
    sources: list[FrameSource] = []
    for k, item in enumerate(frames):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            label = str(item)
            if not path.exists():
                raise FrameReadError(item, "no such file", "check the path")
            keep = not sources
            src = _fits_source(item, label, keep) if _is_plain_fits(path) else None
            if src is None:
                src = _decoded(item, label, folder_factory(), keep)
        elif isinstance(item, np.ndarray) or _is_nddata(item):
            label = f"frame {k}"
            keep = not sources
            if streaming:
                if not _is_nddata(item):
                    from astropy.nddata import CCDData  # (see the top of this module)

                    item = CCDData(np.asarray(item), unit=u.dimensionless_unscaled)
                    src = CacheSource(item, label, folder_factory(), keep_header=keep)
                    src.unit = None
                else:
                    src = CacheSource(item, label, folder_factory(), keep_header=keep)
            else:
                src = ArraySource(item, label, keep_header=keep)
        else:
            raise TypeError(f"frames[{k}] is a {type(item).__name__}; expected a path, "
                            "CCDData or 2-D ndarray")
        sources.append(src)
    if not sources:
        raise NoFramesError("combine was given no frames; pass a list of at least one path, "
                            "CCDData or array")
    return sources
