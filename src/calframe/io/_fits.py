"""FITS reading: any image HDU, scaled integers, tile compression, calframe MEFs."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.io import fits

from ..errors import FrameReadError, UnsupportedFormatError
from ._common import Loaded, integer_full_scale
from ._kernels import scaled_to_float

log = logging.getLogger(__name__)

_EXTRA_NAMES = ("PROVENANCE", "NCOMBINE", "REJECTED")
# Keywords that describe the stored bytes, not the float data read from them.
_SCALE_KEYS = ("BZERO", "BSCALE", "BLANK", "ZBLANK", "CHECKSUM", "DATASUM")


def _open(path) -> fits.HDUList:
    """Open a FITS file, turning astropy's problems into FrameReadError."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=True, do_not_scale_image_data=True,
                             lazy_load_hdus=False)
    except (OSError, ValueError, fits.verify.VerifyError) as err:
        raise FrameReadError(path, f"not a readable FITS file ({err})",
                             "check that the file is complete and really is FITS") from err
    for item in caught:
        text = str(item.message)
        if "truncated" in text:
            hdul.close()
            raise FrameReadError(path, f"the FITS file is truncated ({text.strip()})",
                                 "copy or download the file again")
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


def _physical(raw: np.ndarray, header: fits.Header, dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """Physical values from stored ones (BZERO/BSCALE), and the BLANK pixels."""
    bscale = float(header.get("BSCALE", 1.0))
    bzero = float(header.get("BZERO", 0.0))
    blank_mask = None
    if raw.dtype.kind in "iu":
        blank = header.get("BLANK")
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


def load_fits(path, *, hdu=None, dtype=np.float32) -> Loaded:
    """Read one image HDU of a FITS file (see :func:`calframe.read_frame`)."""
    dtype = np.dtype(dtype).type
    hdul = _open(path)
    try:
        index = _pick_hdu(hdul, hdu, path)
        image = hdul[index]
        header = _sanitised(image.header, path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                raw = image.data
        except (TypeError, ValueError, OSError) as err:
            raise FrameReadError(path, f"the data of HDU {index} cannot be read ({err})",
                                 "the file is probably truncated; copy it again") from err
        for item in caught:
            if "truncated" in str(item.message):
                raise FrameReadError(path, "the FITS file is truncated",
                                     "copy or download the file again")
        if raw is None:
            raise UnsupportedFormatError(path, f"HDU {index} has no data",
                                         "pass hdu= of an image HDU")
        if isinstance(image, fits.CompImageHDU):
            # The compressed table's own header keywords describe the table.
            for key in ("ZBLANK",):
                header.remove(key, ignore_missing=True)
        while raw.ndim > 2 and raw.shape[0] == 1:
            raw = raw[0]  # (1, ny, nx) cubes written by some programs: one frame
        data, blank = _physical(raw, header, dtype)
        full_scale = integer_full_scale(raw.dtype, float(header.get("BZERO", 0.0)),
                                        float(header.get("BSCALE", 1.0)))
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

        # calframe's own MEF layout (astropy CCDData conventions).
        uncert = _extension_array(hdul, "UNCERT")
        if uncert is not None and index == 0 and uncert.data is not None:
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
            if values.shape != data.shape:
                raise FrameReadError(path, f"UNCERT extension shape {values.shape} differs "
                                     f"from the image {data.shape}",
                                     "the file is inconsistent; rewrite it")
            loaded.uncertainty = values
            if loaded.unit is None and "BUNIT" in uncert.header:
                # calframe writes no BUNIT for dimensionless data (as astropy
                # does); its uncertainty, in the data's unit, says '' then.
                loaded.unit = str(uncert.header["BUNIT"])
        mask = _extension_array(hdul, "MASK")
        if mask is not None and index == 0 and mask.data is not None:
            values = np.asarray(mask.data).astype(bool)
            if values.shape != data.shape:
                raise FrameReadError(path, f"MASK extension shape {values.shape} differs "
                                     f"from the image {data.shape}",
                                     "the file is inconsistent; rewrite it")
            loaded.mask = values
        loaded.has_extras = index == 0 and any(
            _extension_array(hdul, name) is not None for name in _EXTRA_NAMES)
        return loaded
    finally:
        hdul.close()


def attach_fits_extras(ccd, path) -> None:
    """Attach a calframe MEF's provenance and counts, when the writer is installed."""
    try:
        from ._mef import attach_extras
    except ImportError:  # the MEF writer module is not part of this installation
        log.debug("calframe.io._mef not available; PROVENANCE/NCOMBINE not read")
        return
    with fits.open(path, memmap=True) as hdul:
        attach_extras(ccd, hdul, path=path)


def image_hdus(path) -> list[int]:
    """Indices of the frame HDUs of a FITS file (not UNCERT / MASK / counts)."""
    hdul = _open(path)
    try:
        return _frame_hdus(hdul)
    finally:
        hdul.close()
