"""Choosing the plane of a colour (RGB) image that the distortion steps work on."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ..errors import InvalidSettingsError
from ..provenance import get_provenance, set_provenance

__all__ = ["CHANNELS", "select_channel"]

#: Values of the ``channel`` keyword: Rec. 709 luminance, or one colour plane.
CHANNELS = ("luminance", "r", "g", "b")
# Rec. 709 luma weights of R, G, B
_REC709 = np.array([0.2126, 0.7152, 0.0722])


def _check(channel):
    if channel is not None and channel not in CHANNELS:
        raise InvalidSettingsError(f"channel must be one of {', '.join(CHANNELS)}, "
                                   f"got {channel!r}")


def is_colour(shape) -> bool:
    """True for the shape of a ``(3, ny, nx)`` colour cube."""
    return len(shape) == 3 and shape[0] == 3


def plane_array(data, mask, channel, *, name="image"):
    """The 2-D plane of ``data`` (and of its ``mask``) that ``channel`` selects.

    A grey (2-D) image is returned as it is (``channel`` may then be None or
    ``"luminance"``); a ``(3, ny, nx)`` cube needs a ``channel``.
    """
    _check(channel)
    if is_colour(data.shape):
        if channel is None:
            raise InvalidSettingsError(
                f"{name}: expected a 2-D image, got a colour cube of shape {data.shape}; pass "
                "channel='luminance' (or 'r', 'g', 'b') to choose the plane to use "
                "(--channel on the command line)")
        if channel == "luminance":
            return np.tensordot(_REC709, data, axes=1), mask.any(axis=0)
        k = "rgb".index(channel)
        return data[k], mask[k]
    if data.ndim != 2:
        raise InvalidSettingsError(
            f"{name}: expected a 2-D image or a (3, ny, nx) colour cube, got shape "
            f"{data.shape}; pass one grid image")
    if channel in ("r", "g", "b"):
        raise InvalidSettingsError(
            f"{name}: channel={channel!r} picks a colour plane, but the image is grey (2-D); "
            "leave the channel unset (or use 'luminance')")
    return data, mask


def select_channel(ccd, channel: str | None) -> CCDData:
    """The plane of a frame that ``channel`` selects, as a 2-D CCDData.

    Parameters
    ----------
    ccd : CCDData or array-like
        A grey (2-D) frame or a ``(3, ny, nx)`` RGB cube.
    channel : {"luminance", "r", "g", "b"} or None
        ``"luminance"`` is the Rec. 709 weighted sum ``0.2126 R + 0.7152 G +
        0.0722 B`` (the uncertainty is propagated, a pixel masked in any
        plane is masked); ``"r"``, ``"g"``, ``"b"`` pick one plane.  None
        returns the frame unchanged (a cube stays a cube).

    Returns
    -------
    CCDData
        The frame (2-D unless ``channel`` is None and the input is a cube).

    Raises
    ------
    InvalidSettingsError
        For an unknown channel, a colour plane asked of a grey frame, or an
        array that is neither 2-D nor ``(3, ny, nx)``.

    Examples
    --------
    >>> import numpy as np
    >>> cube = np.stack([np.full((2, 3), v, np.float32) for v in (10.0, 20.0, 30.0)])
    >>> float(select_channel(cube, "g").data[0, 0])
    20.0
    >>> round(float(select_channel(cube, "luminance").data[0, 0]), 3)
    18.596
    """
    _check(channel)
    if not isinstance(ccd, CCDData):
        ccd = CCDData(np.asarray(ccd, dtype=np.float32), unit="adu")
    if channel is None:
        if not (ccd.ndim == 2 or is_colour(ccd.shape)):
            plane_array(np.asarray(ccd.data), np.zeros(ccd.shape, bool), None, name="frame")
        return ccd
    data = np.asarray(ccd.data)
    mask = np.zeros(data.shape, bool) if ccd.mask is None else np.asarray(ccd.mask, bool)
    if not is_colour(data.shape):
        plane_array(data, mask, channel, name="frame")  # raises unless grey + luminance
        return ccd
    out, omask = plane_array(data, mask, channel, name="frame")
    unc = None
    if ccd.uncertainty is not None:
        sd = np.asarray(ccd.uncertainty.represent_as(StdDevUncertainty).array, np.float64)
        if channel == "luminance":
            sd = np.sqrt(np.tensordot(_REC709 ** 2, sd ** 2, axes=1))
        else:
            sd = sd["rgb".index(channel)]
        unc = StdDevUncertainty(sd.astype(np.float32))
    meta = ccd.meta.copy()
    if isinstance(meta, fits.Header):
        meta["CHANNEL"] = (channel, "colour plane used (luminance: Rec. 709 weights)")
    else:
        meta["CHANNEL"] = channel
    result = CCDData(np.asarray(out, np.float32), unit=ccd.unit, mask=omask, uncertainty=unc,
                     meta=meta)
    prov = get_provenance(ccd).copy()
    prov.add_step("select_channel", channel=channel)
    set_provenance(result, prov)
    return result
