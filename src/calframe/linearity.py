"""Is a frame linear?  Refusing gamma-encoded lights on a linear flat.

Flat-fielding divides the light by the flat because both are proportional to
the same pixel response.  A RAW converter's default development applies a
tone curve (sRGB gamma ~2.2, plus white balance and auto-brightness), after
which the light is roughly ``(signal x response) ** (1 / 2.2)``: dividing it
by a linear flat leaves ``response ** (1/2.2 - 1)``, and the vignetting is
over-corrected (the corners come out brighter than the centre).  A corner
at 23% of the centre in the flat comes out at 2.2 times the centre.  calframe
reads RAW files linearly and never develops them; this module detects frames
that were developed elsewhere and refuses (or warns about) mixing them with
linear calibration frames.

What says a frame is not linear (first match wins):

1. ``GAMMA`` differing from 1 (``encode_gamma`` and developed-image readers
   write it);
2. ``CFLINEAR = F`` (a reader or user says so; ``T`` says linear);
3. ``TRANSFER`` or ``COLORSP`` naming a display transfer curve (``SRGB``,
   ``ADOBERGB``, ``REC709``) or ``COLORSP = 'RGB'`` from a developed RGB
   TIFF/JPEG (values as stored, not linearised);
4. an RGB cube not made by :func:`calframe.demosaic` (no ``DEMOSAIC``
   keyword): a developed image;
5. a JPEG (``IMGFMT = 'JPEG'``), or 8-bit data (an 8-bit PNG/TIFF mode in
   ``IMGMODE``, or ``BITPIX = 8``) without a Bayer pattern.

A 2-D mosaic with ``BAYERPAT`` (RAW or FITS from an astro camera) is linear;
anything else is "unknown" and passes.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from astropy.nddata import CCDData

from .errors import InvalidSettingsError, NonLinearDataError, NonLinearDataWarning

__all__ = ["check_linear_pair", "encode_gamma", "header_linearity", "linearity",
           "response_exponent"]

log = logging.getLogger(__name__)

_CURVES = ("SRGB", "ADOBERGB", "REC709", "GAMMA")
_EIGHT_BIT_MODES = ("L", "P", "RGB", "RGBA", "LA")


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().upper()
    if text in ("T", "TRUE", "1", "YES", "Y"):
        return True
    if text in ("F", "FALSE", "0", "NO", "N"):
        return False
    return None


def linearity(frame: CCDData) -> tuple[bool | None, str]:
    """Whether a frame holds linear data, and why calframe thinks so.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        A frame as read by :func:`calframe.read_frame` (or made by calframe).

    Returns
    -------
    (bool or None, str)
        True (linear), False (gamma-encoded / developed) or None (unknown),
        with the reason in words.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> raw = CCDData(np.ones((4, 4)), unit="adu", meta={"BAYERPAT": "RGGB"})
    >>> linearity(raw)
    (True, 'a 2-D Bayer mosaic (BAYERPAT = RGGB)')
    >>> linearity(encode_gamma(raw, gamma=2.2, white=1.0))
    (False, 'GAMMA = 2.2')
    """
    return header_linearity(frame.meta, frame.shape)


def header_linearity(meta, shape: tuple[int, ...]) -> tuple[bool | None, str]:
    """:func:`linearity` from a frame's header and shape alone (no pixels).

    Examples
    --------
    >>> header_linearity({"IMGFMT": "JPEG", "IMGMODE": "L"}, (800, 1280))
    (False, 'a JPEG image (display-encoded, gamma)')
    """
    ndim = len(shape)
    if "GAMMA" in meta:
        try:
            gamma = float(meta["GAMMA"])
        except (TypeError, ValueError):
            gamma = None
        if gamma is not None and np.isfinite(gamma):
            if abs(gamma - 1.0) > 1e-3:
                return False, f"GAMMA = {gamma:g}"
            return True, "GAMMA = 1"
    if "CFLINEAR" in meta:
        flag = _truthy(meta["CFLINEAR"])
        if flag is not None:
            return flag, f"CFLINEAR = {'T' if flag else 'F'}"
    for key in ("TRANSFER", "COLORSP"):
        value = str(meta.get(key, "")).strip().upper().replace(" ", "").replace("-", "")
        if value in _CURVES:
            return False, f"{key} = {meta[key]!r} (a display transfer curve)"
    if str(meta.get("COLORSP", "")).strip().upper() == "RGB" and "DEMOSAIC" not in meta:
        return False, "COLORSP = 'RGB': a developed colour image, values as stored"
    if ndim == 3 and shape[0] == 3 and "DEMOSAIC" not in meta:
        return False, "an RGB image not made by calframe.demosaic (a developed image)"
    pattern = str(meta.get("BAYERPAT", "")).strip().upper()
    fmt = str(meta.get("IMGFMT", "")).strip().upper()
    if fmt == "JPEG":
        return False, "a JPEG image (display-encoded, gamma)"
    if str(meta.get("IMGMODE", "")).strip().upper() in _EIGHT_BIT_MODES and not pattern:
        return False, f"an 8-bit {fmt or 'image'} (mode {meta['IMGMODE']}), display-encoded"
    if meta.get("BITPIX") == 8 and not pattern:
        return False, "8-bit data without a Bayer pattern (a developed image)"
    if pattern and ndim == 2:
        return True, f"a 2-D Bayer mosaic (BAYERPAT = {pattern})"
    if "DEMOSAIC" in meta:
        return True, f"demosaiced by calframe ({meta['DEMOSAIC']}), linear"
    return None, "nothing in the header says"


def response_exponent(light: CCDData, flat: CCDData, *, block: int = 16,
                      pattern: str | None = None) -> float:
    """How a light's background follows the flat's vignetting: ``light ~ flat ** b``.

    A linear light of a smooth sky seen through the same optics is proportional
    to the flat (``b = 1``); one developed with a display gamma follows
    ``flat ** (1 / gamma)`` (``b`` near 0.45).  Measured on block medians (robust
    to stars) of one green channel of a mosaic, by a least-squares fit of
    ``log(light)`` against ``log(flat)``.  Needs bias-subtracted frames and a
    flat whose level varies by at least 20 % across the frame.

    Parameters
    ----------
    light, flat : `~astropy.nddata.CCDData`
        2-D frames of the same shape (bias/dark removed).
    block : int
        Block size, in pixels of the channel, for the medians.
    pattern : str, optional
        Effective Bayer pattern; default from the flat's (or light's) keywords;
        the frames are treated as monochrome when neither has one.

    Returns
    -------
    float
        The exponent ``b``; NaN when it cannot be measured (shapes differ, too
        few blocks, or too little vignetting).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> vig = 1 - 0.6 * ((xx - 64) ** 2 + (yy - 64) ** 2) / 64 ** 2 / 2
    >>> flat = CCDData(vig, unit="")
    >>> light = CCDData(3000 * vig, unit="adu")
    >>> round(response_exponent(light, flat), 3)
    1.0
    >>> round(response_exponent(encode_gamma(light, white=65535.0), flat), 3)
    0.455
    """
    from . import bayer

    if light.shape != flat.shape or light.ndim != 2:
        return float("nan")
    if pattern is None:
        for frame in (flat, light):
            if str(frame.meta.get("BAYERPAT", "")).strip():
                pattern = bayer.effective_pattern(frame)
                break

    def plane(frame):
        data = np.array(frame.data, dtype=np.float64)
        if frame.mask is not None:
            data[np.asarray(frame.mask, bool)] = np.nan
        return bayer.channel_views(data, pattern)["G1"] if pattern else data

    lp, fp = plane(light), plane(flat)
    by, bx = lp.shape[0] // block, lp.shape[1] // block
    if by * bx < 9:
        return float("nan")

    def blocks(a):
        a = a[:by * block, :bx * block].reshape(by, block, bx, block).transpose(0, 2, 1, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
            return np.nanmedian(a.reshape(by, bx, -1), axis=-1).ravel()

    lb, fb = blocks(lp), blocks(fp)
    good = np.isfinite(lb) & np.isfinite(fb) & (lb > 0) & (fb > 0)
    if good.sum() < 9 or fb[good].max() < 1.2 * fb[good].min():
        return float("nan")
    x, y = np.log(fb[good]), np.log(lb[good])
    slope = np.polyfit(x, y, 1)[0]
    # one pass of outlier rejection (a bright nebula, a satellite trail...)
    resid = y - np.polyval(np.polyfit(x, y, 1), x)
    keep = np.abs(resid) < 3 * 1.4826 * np.median(np.abs(resid)) + 1e-12
    if keep.sum() >= 9:
        slope = np.polyfit(x[keep], y[keep], 1)[0]
    return float(slope)


def check_linear_pair(light: CCDData, flat: CCDData, *, on_mismatch: str = "raise",
                      light_name: str = "light", flat_name: str = "flat",
                      check_data: bool = False) -> None:
    """Refuse (or warn about) a gamma-encoded frame meeting a linear flat.

    Parameters
    ----------
    light, flat : `~astropy.nddata.CCDData`
        The frame to be flat-fielded and the flat.
    on_mismatch : {'raise', 'warn', 'ignore'}
        What to do when one of them is not linear.
    light_name, flat_name : str
        Names (e.g. file names) used in the message.
    check_data : bool
        When the headers do not tell whether the light is linear, measure
        :func:`response_exponent` and count an exponent below 0.75 as
        gamma-encoded (for bias-subtracted lights of the sky through the same
        optics as the flat).

    Raises
    ------
    NonLinearDataError
        With ``on_mismatch='raise'``, when either frame is gamma-encoded.
    ValueError
        If ``on_mismatch`` is not recognised.

    Warns
    -----
    NonLinearDataWarning
        With ``on_mismatch='warn'``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> flat = CCDData(np.ones((4, 4)), unit="", meta={"BAYERPAT": "RGGB"})
    >>> light = CCDData(np.ones((4, 4)), unit="adu", meta={"BAYERPAT": "RGGB"})
    >>> check_linear_pair(light, flat)  # both linear: nothing happens
    >>> developed = CCDData(np.ones((3, 4, 4)), unit="adu")
    >>> check_linear_pair(developed, flat)
    Traceback (most recent call last):
    ...
    calframe.errors.NonLinearDataError: light is not linear (an RGB image not made by ...
    """
    if on_mismatch not in ("raise", "warn", "ignore"):
        raise InvalidSettingsError(f"on_mismatch={on_mismatch!r} is not recognised; use 'raise', "
                         "'warn' or 'ignore'")
    light_lin, light_why = linearity(light)
    flat_lin, flat_why = linearity(flat)
    problems = []
    if light_lin is False:
        problems.append(f"{light_name} is not linear ({light_why})")
    if flat_lin is False:
        problems.append(f"{flat_name} is not linear ({flat_why})")
    if check_data and light_lin is None and flat_lin is not False:
        exponent = response_exponent(light, flat)
        log.debug("response exponent of %s against %s: %.3f", light_name, flat_name, exponent)
        if np.isfinite(exponent) and exponent < 0.75:
            problems.append(f"{light_name} looks gamma-encoded (its background follows the "
                            f"flat's vignetting as flat ** {exponent:.2f}, not flat ** 1)")
    if not problems or on_mismatch == "ignore":
        return
    message = ("; ".join(problems) + ": flat-fielding needs linear data on both sides "
               "(a gamma-encoded light divided by a linear flat over-corrects the "
               "vignetting). Use the camera's RAW files, read with calframe.read_frame, "
               "or linearise the frame first and set CFLINEAR = T")
    if on_mismatch == "raise":
        raise NonLinearDataError(message)
    warnings.warn(message, NonLinearDataWarning, stacklevel=2)


def encode_gamma(frame: CCDData, *, gamma: float = 2.2, white: float | None = None,
                 ) -> CCDData:
    """Apply a pure power-law tone curve, as a RAW converter's development would.

    This exists to show (and test) what happens to developed data; calframe
    never calls it on the calibration path.  ``out = white * (data / white) **
    (1 / gamma)``, negative values clipped to 0; the result carries
    ``GAMMA = gamma`` and ``CFLINEAR = F`` and no uncertainty.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        Linear data.
    gamma : float
        Display gamma (2.2 for sRGB-like curves).
    white : float, optional
        The level that maps to itself (default: the frame's maximum).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> ccd = CCDData(np.array([[0.25, 1.0]]), unit="adu")
    >>> encode_gamma(ccd, gamma=2.0).data
    array([[0.5, 1. ]])
    """
    if not gamma > 0:
        raise InvalidSettingsError(f"gamma={gamma} must be positive")
    data = np.asarray(frame.data, dtype=np.float64)
    if white is None:
        white = float(np.nanmax(data))
    if not white > 0:
        raise InvalidSettingsError(f"white={white} must be positive (the level kept fixed)")
    out = white * np.clip(data / white, 0, None) ** (1.0 / gamma)
    meta = frame.meta.copy()
    meta["GAMMA"] = float(gamma)
    meta["CFLINEAR"] = False
    return CCDData(out.astype(frame.data.dtype if frame.data.dtype.kind == "f" else np.float32),
                   unit=frame.unit, meta=meta, mask=None if frame.mask is None
                   else frame.mask.copy())
