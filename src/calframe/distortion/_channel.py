"""Choosing the plane of a colour (RGB) image that the distortion steps work on."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ..errors import InvalidSettingsError
from ..provenance import get_provenance, set_provenance

__all__ = ["CHANNELS", "cfa_pattern", "select_channel"]

#: Values of the ``channel`` keyword: Rec. 709 luminance, or one colour plane
#: (``"luma"`` is another name of ``"luminance"``; upper case is accepted).
CHANNELS = ("luminance", "r", "g", "b")
_ALIASES = {"luma": "luminance"}
# Rec. 709 luma weights of R, G, B
_REC709 = np.array([0.2126, 0.7152, 0.0722])


def _check(channel):
    """The channel in its canonical spelling (``"luma"``, ``"G"`` are accepted)."""
    if channel is None:
        return None
    name = _ALIASES.get(str(channel).lower(), str(channel).lower())
    if name not in CHANNELS:
        raise InvalidSettingsError(f"channel must be one of {', '.join(CHANNELS)} (or "
                                   f"'luma'), got {channel!r}")
    return name


def cfa_pattern(ccd):
    """The Bayer pattern at pixel ``[0, 0]`` of a 2-D CFA frame, or None.

    A frame is a CFA mosaic when it is 2-D and its header has ``BAYERPAT``.
    """
    from ..bayer import effective_pattern

    if not isinstance(ccd, CCDData) or ccd.ndim != 2 or not ccd.meta.get("BAYERPAT"):
        return None
    return effective_pattern(ccd)


def cfa_sites(pattern, letter):
    """``(row, column)`` offsets in the 2x2 cell of the sites of ``letter`` (R, G or B)."""
    return [(k // 2, k % 2) for k in range(4) if pattern[k] == letter]


def cfa_plane_array(data, mask, pattern, channel):
    """A full-size grey plane of one colour of a CFA mosaic, for finding a grid in it.

    ``"g"`` (and ``"luminance"`` or None, since green carries most of the
    luminance): the green sites as they are, each red or blue site the mean
    of its four green neighbours (masked ones left out).  ``"r"``, ``"b"``:
    the quarter-size plane of that colour interpolated bilinearly at every
    pixel.  The sites keep their place, so positions in the plane are
    positions on the mosaic.
    """
    from scipy import ndimage

    channel = _check(channel) or "g"
    data = np.asarray(data, np.float64)
    mask = np.asarray(mask, bool)
    ny, nx = data.shape
    if channel in ("g", "luminance"):
        green = np.zeros((ny, nx), bool)
        for oy, ox in cfa_sites(pattern, "G"):
            green[oy::2, ox::2] = True
        good = (~mask & np.isfinite(data)).astype(np.float64)
        val = np.where(good > 0, data, 0.0)
        vp = np.pad(val, 1, mode="reflect")
        gp = np.pad(good, 1, mode="reflect")
        tot = vp[:-2, 1:-1] + vp[2:, 1:-1] + vp[1:-1, :-2] + vp[1:-1, 2:]
        cnt = gp[:-2, 1:-1] + gp[2:, 1:-1] + gp[1:-1, :-2] + gp[1:-1, 2:]
        out = np.where(green, data, tot / np.maximum(cnt, 1.0))
        omask = np.where(green, mask, cnt == 0)
        return out, omask
    (oy, ox), = cfa_sites(pattern, channel.upper())
    q = data[oy::2, ox::2]
    qm = mask[oy::2, ox::2] | ~np.isfinite(q)
    yy = (np.arange(ny, dtype=float) - oy) / 2.0
    xx = (np.arange(nx, dtype=float) - ox) / 2.0
    coords = np.meshgrid(yy, xx, indexing="ij")
    out = ndimage.map_coordinates(np.where(qm, 0.0, q), coords, order=1, mode="nearest")
    bad = ndimage.map_coordinates(qm.astype(float), coords, order=1, mode="nearest") > 0
    return out, bad


def is_colour(shape) -> bool:
    """True for the shape of a ``(3, ny, nx)`` colour cube."""
    return len(shape) == 3 and shape[0] == 3


def plane_array(data, mask, channel, *, name="image"):
    """The 2-D plane of ``data`` (and of its ``mask``) that ``channel`` selects.

    A grey (2-D) image is returned as it is (``channel`` may then be None or
    ``"luminance"``); a ``(3, ny, nx)`` cube needs a ``channel``.
    """
    channel = _check(channel)
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
        A grey (2-D) frame, a ``(3, ny, nx)`` RGB cube, or a CFA mosaic (2-D
        with ``BAYERPAT`` in its header).
    channel : {"luminance", "r", "g", "b"} or None
        ``"luminance"`` (or ``"luma"``) is the Rec. 709 weighted sum ``0.2126
        R + 0.7152 G + 0.0722 B`` (the uncertainty is propagated, a pixel
        masked in any plane is masked); ``"r"``, ``"g"``, ``"b"`` pick one
        plane.  None returns the frame unchanged (a cube stays a cube).  For
        a CFA mosaic ``"g"`` and ``"luminance"`` give the green sites, with
        each red or blue site the mean of its four green neighbours, and
        ``"r"``, ``"b"`` that colour interpolated bilinearly at every pixel:
        a full-size grey image in which positions are mosaic positions (no
        uncertainty is carried).

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
    channel = _check(channel)
    if not isinstance(ccd, CCDData):
        ccd = CCDData(np.asarray(ccd, dtype=np.float32), unit="adu")
    pattern = cfa_pattern(ccd)
    if pattern is not None and channel is not None:
        mask = np.zeros(ccd.shape, bool) if ccd.mask is None else np.asarray(ccd.mask, bool)
        out, omask = cfa_plane_array(ccd.data, mask, pattern, channel)
        meta = ccd.meta.copy()
        for key in ("BAYERPAT", "XBAYROFF", "YBAYROFF"):
            meta.pop(key, None)
        name = "g" if channel == "luminance" else channel
        how = "green sites" if name == "g" else f"{name.upper()} sites, bilinear"
        if isinstance(meta, fits.Header):
            meta["CHANNEL"] = (name, f"CFA plane used ({how})")
        else:
            meta["CHANNEL"] = name
        result = CCDData(np.asarray(out, np.float32), unit=ccd.unit, mask=omask, meta=meta)
        prov = get_provenance(ccd).copy()
        prov.add_step("select_channel", channel=name, cfa=pattern)
        set_provenance(result, prov)
        return result
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
