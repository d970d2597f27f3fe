"""Bayer colour filter arrays (CFA): patterns, offsets, channels, statistics.

A one-shot-colour sensor records one colour per pixel through a repeating
2x2 filter pattern.  calframe keeps such data as a 2-D mosaic all along the
calibration path and works on the four colour channels separately: **R**,
**G1** (the green on the red rows), **G2** (the green on the blue rows) and
**B**.

**Conventions.** A pattern name (``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``) lists the colours of
a 2x2 cell in reading order: array ``[0, 0]``, ``[0, 1]``, ``[1, 0]``,
``[1, 1]`` (numpy ``[row, column]`` = ``[y, x]``).

The header keywords are read as follows (the convention of MaxIm DL, NINA
and Siril's ``ROWORDER`` note):

- ``BAYERPAT`` is the pattern of the sensor in the camera's read-out order,
  top row first (``TOP-DOWN``);
- ``XBAYROFF`` / ``YBAYROFF`` shift it: the pixel at column ``x`` and
  top-down row ``y`` of the file has the colour that the pattern has at
  ``(x + XBAYROFF, y + YBAYROFF)``;
- ``ROWORDER = 'BOTTOM-UP'`` means the first row stored is the *bottom* row
  of the read-out, so top-down row ``y`` is array row ``ny - 1 - y``: the
  pattern flips vertically, and whether that swaps the rows of the 2x2 cell
  depends on whether ``ny`` is odd or even.

:func:`effective_pattern` turns all of that into the one thing the code
needs: the pattern at array pixel ``[0, 0]`` of the data as stored (and of
any crop of it).  Everything else in this module takes that plain pattern.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table

from .errors import IncompatibleFramesError, InvalidSettingsError, MissingMetadataError
from .provenance import get_provenance, set_provenance

__all__ = [
    "CHANNELS",
    "PATTERNS",
    "channel_index",
    "channel_of",
    "channel_scales",
    "channel_slices",
    "channel_statistics",
    "channel_views",
    "crop_keywords",
    "effective_pattern",
    "merge",
    "normalise_channels",
    "same_colour_neighbours",
    "same_colour_offsets",
    "shift_pattern",
    "split",
    "standard_regions",
]

log = logging.getLogger(__name__)

#: The four Bayer patterns, named by the 2x2 cell in reading order.
PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")
#: The four channels of a Bayer mosaic (G1 shares rows with R, G2 with B).
CHANNELS: tuple[str, ...] = ("R", "G1", "G2", "B")

_ROWORDERS = ("TOP-DOWN", "BOTTOM-UP")


# ---------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------
def _check_pattern(pattern: Any, name: str = "pattern") -> str:
    if not isinstance(pattern, str):
        raise TypeError(f"{name} must be a string such as 'RGGB', got {type(pattern).__name__}")
    value = pattern.strip().upper()
    if value not in PATTERNS:
        raise InvalidSettingsError(f"{name}={pattern!r} is not a Bayer pattern; use one of "
                         f"{', '.join(PATTERNS)}")
    return value


def _colour_at(pattern: str, x: int, y: int) -> str:
    """The colour letter of ``pattern`` at array column ``x``, row ``y``."""
    return pattern[2 * (y % 2) + (x % 2)]


def shift_pattern(pattern: str, dx: int = 0, dy: int = 0) -> str:
    """The pattern seen from pixel ``(x=dx, y=dy)`` of a mosaic with ``pattern``.

    This is the pattern of a crop that starts at column ``dx`` and row ``dy``.

    Parameters
    ----------
    pattern : str
        The pattern of the mosaic (``'RGGB'``...).
    dx, dy : int
        Column and row of the pixel the new pattern starts at.

    Returns
    -------
    str
        The pattern of the crop.

    Examples
    --------
    >>> shift_pattern("RGGB", 1, 0)
    'GRBG'
    >>> shift_pattern("RGGB", 0, 1)
    'GBRG'
    >>> shift_pattern("RGGB", 1, 1)
    'BGGR'
    """
    pattern = _check_pattern(pattern)
    return "".join(_colour_at(pattern, dx + c, dy + r) for r in (0, 1) for c in (0, 1))


def _meta_of(source: Any) -> Mapping | None:
    if isinstance(source, CCDData):
        return source.meta
    if isinstance(source, Mapping):
        return source
    return None


def effective_pattern(source: Any, *, xoff: int | None = None, yoff: int | None = None,
                      roworder: str | None = None, shape: tuple[int, ...] | None = None,
                      origin: tuple[int, int] = (0, 0)) -> str:
    """The Bayer pattern at array pixel ``[0, 0]`` of the data as stored.

    Parameters
    ----------
    source : str, `~astropy.io.fits.Header`, mapping or `~astropy.nddata.CCDData`
        A pattern name (``'RGGB'``...), or a header / frame whose ``BAYERPAT``,
        ``XBAYROFF``, ``YBAYROFF`` and ``ROWORDER`` keywords describe it.
    xoff, yoff : int, optional
        Pattern offsets; override ``XBAYROFF`` / ``YBAYROFF`` (default 0).
    roworder : {'TOP-DOWN', 'BOTTOM-UP'}, optional
        Overrides ``ROWORDER`` (default ``'TOP-DOWN'``).
    shape : tuple of int, optional
        Shape ``(ny, nx)`` of the stored array; taken from a `CCDData`, or from
        ``NAXIS2``.  Needed only for ``BOTTOM-UP``.
    origin : (int, int)
        ``(x0, y0)``: give the pattern at this array pixel instead, i.e. the
        pattern of a crop ``data[y0:, x0:]``.

    Returns
    -------
    str
        One of :data:`PATTERNS`.

    Raises
    ------
    MissingMetadataError
        If the source has no ``BAYERPAT``, or the shape is needed and unknown.
    ValueError
        If a pattern or row order is not recognised.

    Examples
    --------
    >>> effective_pattern("RGGB")
    'RGGB'
    >>> effective_pattern("RGGB", xoff=1)
    'GRBG'
    >>> effective_pattern({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, shape=(4, 6))
    'GBRG'
    >>> effective_pattern({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, shape=(5, 6))
    'RGGB'
    >>> effective_pattern("RGGB", origin=(1, 1))
    'BGGR'
    """
    meta = _meta_of(source)
    if meta is not None:
        raw = meta.get("BAYERPAT")
        if raw is None or not str(raw).strip():
            raise MissingMetadataError(
                "no BAYERPAT keyword: the frame does not say which Bayer pattern it has; "
                "pass the pattern explicitly (e.g. pattern='RGGB')")
        pattern = _check_pattern(str(raw), "BAYERPAT")
        if xoff is None:
            xoff = int(meta.get("XBAYROFF", 0) or 0)
        if yoff is None:
            yoff = int(meta.get("YBAYROFF", 0) or 0)
        if roworder is None:
            roworder = str(meta.get("ROWORDER", "TOP-DOWN") or "TOP-DOWN")
        if shape is None:
            if isinstance(source, CCDData):
                shape = source.shape
            elif "NAXIS2" in meta:
                shape = (int(meta["NAXIS2"]), int(meta.get("NAXIS1", 0)))
    else:
        pattern = _check_pattern(source)
    xoff = int(xoff or 0)
    yoff = int(yoff or 0)
    order = str(roworder or "TOP-DOWN").strip().upper()
    if order not in _ROWORDERS:
        raise InvalidSettingsError(f"roworder={roworder!r} is not recognised; use 'TOP-DOWN' or "
                         "'BOTTOM-UP'")
    x0, y0 = (int(v) for v in origin)
    if order == "TOP-DOWN":
        return "".join(_colour_at(pattern, x0 + c + xoff, y0 + r + yoff)
                       for r in (0, 1) for c in (0, 1))
    if shape is None:
        raise MissingMetadataError(
            "ROWORDER is 'BOTTOM-UP' but the array height is unknown, and the pattern "
            "depends on it; pass shape=(ny, nx)")
    ny = int(shape[-2])
    return "".join(_colour_at(pattern, x0 + c + xoff, (ny - 1 - (y0 + r)) + yoff)
                   for r in (0, 1) for c in (0, 1))


def crop_keywords(meta: Any, *, origin: tuple[int, int], shape: tuple[int, int],
                  cropped_shape: tuple[int, int]) -> dict[str, Any]:
    """CFA keywords that describe a crop ``data[y0:, x0:]`` of a mosaic.

    The returned ``BAYERPAT`` (with ``XBAYROFF = YBAYROFF = 0`` and the same
    ``ROWORDER``) makes :func:`effective_pattern` of the cropped array give the
    colour that its pixel ``[0, 0]`` really has.  Write them into the header of
    any trimmed or cropped frame, or the pattern is off by one row or column
    after a crop that starts at an odd pixel.

    Parameters
    ----------
    meta : header or mapping
        Keywords of the full frame (``BAYERPAT``, ``XBAYROFF``, ``YBAYROFF``,
        ``ROWORDER``).
    origin : (int, int)
        ``(x0, y0)`` of the crop in the full array.
    shape, cropped_shape : tuple of int
        ``(ny, nx)`` of the full and of the cropped arrays.

    Returns
    -------
    dict
        ``BAYERPAT``, ``XBAYROFF``, ``YBAYROFF`` and ``ROWORDER``.

    Examples
    --------
    >>> crop_keywords({"BAYERPAT": "RGGB"}, origin=(1, 0), shape=(8, 8),
    ...               cropped_shape=(8, 7))["BAYERPAT"]
    'GRBG'
    """
    at_origin = effective_pattern(meta, shape=shape, origin=origin)
    roworder = str(meta.get("ROWORDER", "TOP-DOWN") or "TOP-DOWN").strip().upper()
    for candidate in PATTERNS:
        keywords = {"BAYERPAT": candidate, "XBAYROFF": 0, "YBAYROFF": 0,
                    "ROWORDER": roworder}
        if effective_pattern(keywords, shape=cropped_shape) == at_origin:
            return keywords
    raise ValueError(f"no Bayer pattern describes the crop at {origin}")  # pragma: no cover


def _pattern_for(data_source: Any, pattern: Any) -> str:
    """Resolve ``pattern`` (None = from the frame's meta) to an effective pattern."""
    if pattern is None:
        if isinstance(data_source, CCDData):
            return effective_pattern(data_source)
        raise MissingMetadataError("pattern is required for a plain array; pass "
                                   "pattern='RGGB' (or the frame's BAYERPAT)")
    if isinstance(pattern, str):
        return _check_pattern(pattern)
    return effective_pattern(pattern, shape=getattr(data_source, "shape", None))


def channel_of(pattern: str, letter_position: int) -> str:
    """Channel name (R, G1, G2, B) of position 0-3 of a 2x2 cell in reading order.

    Parameters
    ----------
    pattern : str
        The CFA pattern (``'RGGB'``...).
    letter_position : int
        Position 0-3 in the 2x2 cell: top left, top right, bottom left, bottom right.

    Returns
    -------
    str
        ``'R'``, ``'G1'``, ``'G2'`` or ``'B'`` (the first green in reading order is G1).

    Examples
    --------
    >>> [channel_of("GRBG", i) for i in range(4)]
    ['G1', 'R', 'B', 'G2']
    """
    pattern = _check_pattern(pattern)
    letter = pattern[letter_position]
    if letter != "G":
        return letter
    row = letter_position // 2
    other = pattern[2 * row] if pattern[2 * row] != "G" else pattern[2 * row + 1]
    return "G1" if other == "R" else "G2"


def channel_slices(pattern: str) -> dict[str, tuple[slice, slice]]:
    """Strided ``(row, column)`` slices that pick each channel out of a mosaic.

    Parameters
    ----------
    pattern : str
        The CFA pattern (``'RGGB'``...).

    Returns
    -------
    dict of str to tuple of slice
        ``{channel: (rows, columns)}`` for R, G1, G2 and B.

    Examples
    --------
    >>> channel_slices("GBRG")["R"]
    (slice(1, None, 2), slice(0, None, 2))
    """
    pattern = _check_pattern(pattern)
    out: dict[str, tuple[slice, slice]] = {}
    for i in range(4):
        out[channel_of(pattern, i)] = (slice(i // 2, None, 2), slice(i % 2, None, 2))
    return {name: out[name] for name in CHANNELS}


def channel_views(array: np.ndarray, pattern: str) -> dict[str, np.ndarray]:
    """Views (no copies) of the four channels of a 2-D mosaic.

    Writing into a view writes into the mosaic.

    Parameters
    ----------
    array : ndarray
        A 2-D mosaic.
    pattern : str
        Its CFA pattern.

    Returns
    -------
    dict of str to ndarray
        ``{channel: view}`` for R, G1, G2 and B.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(16.).reshape(4, 4)
    >>> v = channel_views(a, "RGGB")
    >>> v["B"]
    array([[ 5.,  7.],
           [13., 15.]])
    >>> np.shares_memory(v["B"], a)
    True
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise IncompatibleFramesError(
            f"a Bayer mosaic must be 2-D, got an array of shape {array.shape}")
    return {name: array[sl] for name, sl in channel_slices(pattern).items()}


def channel_index(shape: tuple[int, int], pattern: str) -> np.ndarray:
    """An int8 array of ``shape`` giving each pixel's channel (index into CHANNELS).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the mosaic.
    pattern : str
        Its CFA pattern.

    Returns
    -------
    ndarray
        int8 channel index of every pixel.

    Examples
    --------
    >>> channel_index((2, 4), "RGGB")
    array([[0, 1, 0, 1],
           [2, 3, 2, 3]], dtype=int8)
    """
    out = np.empty(shape, dtype=np.int8)
    for k, name in enumerate(CHANNELS):
        out[channel_slices(pattern)[name]] = k
    return out


# ---------------------------------------------------------------------------
# Split / merge
# ---------------------------------------------------------------------------
def _as_ccd(frame: Any) -> CCDData:
    if isinstance(frame, CCDData):
        return frame
    raise TypeError(f"expected a CCDData frame, got {type(frame).__name__}")


def split(frame: CCDData, *, pattern: str | None = None) -> dict[str, CCDData]:
    """Split a mosaic into four half-resolution frames, one per channel.

    Data, uncertainty and mask are copied; each channel's meta is a copy of
    the frame's with ``CFACHAN`` set to the channel name and the Bayer keywords
    removed (a channel is no longer a mosaic).

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        A 2-D mosaic.
    pattern : str, optional
        The effective pattern; default from the frame's keywords
        (:func:`effective_pattern`).

    Returns
    -------
    dict
        ``{'R': CCDData, 'G1': ..., 'G2': ..., 'B': ...}``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> ccd = CCDData(np.arange(16, dtype=np.float32).reshape(4, 4), unit="adu")
    >>> planes = split(ccd, pattern="RGGB")
    >>> planes["G2"].data
    array([[ 4.,  6.],
           [12., 14.]], dtype=float32)
    >>> np.array_equal(merge(planes, pattern="RGGB").data, ccd.data)
    True
    """
    frame = _as_ccd(frame)
    pattern = _pattern_for(frame, pattern)
    if frame.ndim != 2:
        raise IncompatibleFramesError(
            f"a Bayer mosaic must be 2-D, got a frame of shape {frame.shape}")
    out: dict[str, CCDData] = {}
    for name, sl in channel_slices(pattern).items():
        meta = frame.meta.copy()
        for key in ("BAYERPAT", "XBAYROFF", "YBAYROFF"):
            meta.pop(key, None)
        meta["CFACHAN"] = name
        meta["CFAPAT"] = pattern
        unc = None
        if frame.uncertainty is not None:
            unc = StdDevUncertainty(np.array(frame.uncertainty.array[sl]))
        mask = None if frame.mask is None else np.array(frame.mask[sl])
        out[name] = CCDData(np.array(frame.data[sl]), unit=frame.unit, uncertainty=unc,
                            mask=mask, meta=meta)
    return out


def merge(planes: Mapping[str, Any], *, pattern: str,
          meta: Mapping | None = None) -> CCDData:
    """Interleave four channel planes back into a mosaic (inverse of :func:`split`).

    Parameters
    ----------
    planes : mapping
        ``{'R', 'G1', 'G2', 'B'}`` to `CCDData` or arrays of matching shapes.
    pattern : str
        The pattern of the mosaic to build.
    meta : mapping, optional
        Header of the result (default: the R plane's, with ``BAYERPAT`` set to
        ``pattern`` and zero offsets).

    Returns
    -------
    `~astropy.nddata.CCDData`
    """
    pattern = _check_pattern(pattern)
    missing = [name for name in CHANNELS if name not in planes]
    if missing:
        raise InvalidSettingsError(f"planes is missing channel(s) {', '.join(missing)}; "
                         "give all of R, G1, G2, B")
    slices = channel_slices(pattern)
    arrays = {name: planes[name] for name in CHANNELS}
    rows = {name: np.shape(getattr(a, "data", a))[0] for name, a in arrays.items()}
    cols = {name: np.shape(getattr(a, "data", a))[1] for name, a in arrays.items()}
    by_offset_row = {sl[0].start: name for name, sl in slices.items()}
    by_offset_col = {sl[1].start: name for name, sl in slices.items()}
    ny = rows[by_offset_row[0]] + rows[by_offset_row[1]]
    nx = cols[by_offset_col[0]] + cols[by_offset_col[1]]
    first = arrays["R"]
    dtype = np.result_type(*[np.asarray(getattr(a, "data", a)).dtype for a in arrays.values()])
    data = np.empty((ny, nx), dtype=dtype)
    has_unc = all(getattr(a, "uncertainty", None) is not None for a in arrays.values())
    has_mask = any(getattr(a, "mask", None) is not None for a in arrays.values())
    unc = np.empty((ny, nx), dtype=np.float32) if has_unc else None
    mask = np.zeros((ny, nx), dtype=bool) if has_mask else None
    for name, sl in slices.items():
        a = arrays[name]
        target = data[sl]
        values = np.asarray(getattr(a, "data", a))
        if values.shape != target.shape:
            raise IncompatibleFramesError(
                f"channel {name} has shape {values.shape} but a {ny}x{nx} mosaic with "
                f"pattern {pattern} needs {target.shape}; check the planes come from one split")
        target[...] = values
        if unc is not None:
            unc[sl] = a.uncertainty.array
        if mask is not None and getattr(a, "mask", None) is not None:
            mask[sl] = a.mask
    if meta is None:
        meta = first.meta.copy() if isinstance(first, CCDData) else {}
    header = dict(meta) if not hasattr(meta, "copy") else meta.copy()
    for key in ("CFACHAN", "CFAPAT"):
        header.pop(key, None)
    header["BAYERPAT"] = pattern
    header["XBAYROFF"] = 0
    header["YBAYROFF"] = 0
    header["ROWORDER"] = "TOP-DOWN"
    unit = first.unit if isinstance(first, CCDData) else "adu"
    return CCDData(data, unit=unit, meta=header,
                   uncertainty=None if unc is None else StdDevUncertainty(unc), mask=mask)


# ---------------------------------------------------------------------------
# Statistics in regions
# ---------------------------------------------------------------------------
def standard_regions(shape: tuple[int, int], *,
                     size: float = 0.1) -> dict[str, tuple[slice, slice]]:
    """The centre and the four corners of a frame, as ``(row, column)`` slices.

    Each box is ``size`` of the frame's height and width (at least 2x2 pixels),
    with even start so it holds whole 2x2 cells.  Corners are named by array
    index: ``row0-col0`` is ``data[0, 0]``, ``rowN-colN`` is ``data[-1, -1]``.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the frame.
    size : float
        Side of each box as a fraction of the frame's height and width.

    Returns
    -------
    dict of str to tuple of slice
        ``{name: (rows, columns)}`` for ``centre``, ``row0-col0``, ``row0-colN``,
        ``rowN-col0`` and ``rowN-colN``.

    Examples
    --------
    >>> r = standard_regions((100, 200), size=0.1)
    >>> r["centre"]
    (slice(44, 54, None), slice(90, 110, None))
    >>> r["rowN-colN"]
    (slice(90, 100, None), slice(180, 200, None))
    """
    if not 0 < size <= 1:
        raise InvalidSettingsError(f"size={size} must be a fraction of the frame in (0, 1]")
    ny, nx = (int(v) for v in shape[-2:])
    by = max(2, round(ny * size) // 2 * 2)
    bx = max(2, round(nx * size) // 2 * 2)
    cy = (ny - by) // 2 // 2 * 2
    cx = (nx - bx) // 2 // 2 * 2
    ey = (ny - by) // 2 * 2
    ex = (nx - bx) // 2 * 2
    return {
        "centre": (slice(cy, cy + by), slice(cx, cx + bx)),
        "row0-col0": (slice(0, by), slice(0, bx)),
        "row0-colN": (slice(0, by), slice(ex, ex + bx)),
        "rowN-col0": (slice(ey, ey + by), slice(0, bx)),
        "rowN-colN": (slice(ey, ey + by), slice(ex, ex + bx)),
    }


def _region_slices(shape, regions) -> dict[str, tuple[slice, slice]]:
    if regions is None:
        return standard_regions(shape)
    if isinstance(regions, str):
        if regions == "full":
            return {"full": (slice(0, shape[0]), slice(0, shape[1]))}
        raise InvalidSettingsError(f"regions={regions!r} is not recognised; use None (centre and "
                         "corners), 'full', or a dict of name -> (y0, y1, x0, x1) boxes")
    out = {}
    for name, box in regions.items():
        if isinstance(box, tuple) and len(box) == 2 and all(isinstance(b, slice) for b in box):
            ys, xs = box
        else:
            try:
                y0, y1, x0, x1 = (int(v) for v in box)
            except (TypeError, ValueError) as err:
                raise InvalidSettingsError(
                    f"region {name!r}={box!r} must be (y0, y1, x0, x1) or a pair "
                                 "of slices") from err
            ys, xs = slice(y0, y1), slice(x0, x1)
        ys = slice(*ys.indices(shape[0])[:2])
        xs = slice(*xs.indices(shape[1])[:2])
        if ys.stop <= ys.start or xs.stop <= xs.start:
            raise InvalidSettingsError(
                f"region {name!r}={box!r} is empty inside a frame of shape {shape}")
        out[str(name)] = (ys, xs)
    return out


def _valid_values(data, mask, sl):
    values = np.asarray(data[sl], dtype=np.float64)
    good = np.isfinite(values)
    if mask is not None:
        good &= ~np.asarray(mask[sl])
    return values[good]


def channel_statistics(frame: CCDData | np.ndarray, *, pattern: str | None = None,
                       regions: Any = None, mask: np.ndarray | None = None) -> Table:
    """Per-channel statistics of a mosaic in chosen regions.

    Masked and non-finite pixels are excluded.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData` or 2-D array
        The mosaic.
    pattern : str, optional
        Effective pattern (default from the frame's keywords).
    regions : None, 'full' or dict
        None: the centre and four corners (:func:`standard_regions`, 10% boxes);
        ``'full'``: the whole frame; or ``{name: (y0, y1, x0, x1)}`` /
        ``{name: (row_slice, col_slice)}`` in array pixels.
    mask : ndarray of bool, optional
        Extra pixels to exclude (added to the frame's own mask).

    Returns
    -------
    `~astropy.table.Table`
        One row per region and channel: ``region``, ``channel``, ``y0``, ``y1``,
        ``x0``, ``x1``, ``npix``, ``mean``, ``median``, ``std`` (sample, ddof=1)
        and ``snr`` (mean / std).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.tile(np.array([[4., 2.], [2., 1.]]), (8, 8))
    >>> t = channel_statistics(a, pattern="RGGB", regions="full")
    >>> t["channel", "npix", "median", "std"].pprint()
    channel npix median std
    ------- ---- ------ ---
          R   64    4.0 0.0
         G1   64    2.0 0.0
         G2   64    2.0 0.0
          B   64    1.0 0.0
    """
    if isinstance(frame, CCDData):
        data = frame.data
        own_mask = frame.mask
    else:
        data = np.asarray(frame)
        own_mask = None
    pattern = _pattern_for(frame, pattern)
    if data.ndim != 2:
        raise IncompatibleFramesError(f"a Bayer mosaic must be 2-D, got shape {data.shape}")
    full_mask = own_mask
    if mask is not None:
        full_mask = np.asarray(mask, bool) if own_mask is None else (own_mask | mask)
    rows = []
    for name, (ys, xs) in _region_slices(data.shape, regions).items():
        sub_pattern = shift_pattern(pattern, xs.start, ys.start)
        sub = data[ys, xs]
        sub_mask = None if full_mask is None else full_mask[ys, xs]
        for chan, sl in channel_slices(sub_pattern).items():
            values = _valid_values(sub, sub_mask, sl)
            n = values.size
            mean = float(values.mean()) if n else np.nan
            median = float(np.median(values)) if n else np.nan
            std = float(values.std(ddof=1)) if n > 1 else np.nan
            snr = mean / std if n > 1 and std > 0 else np.nan
            rows.append((name, chan, ys.start, ys.stop, xs.start, xs.stop, n, mean, median,
                         std, snr))
    names = ("region", "channel", "y0", "y1", "x0", "x1", "npix", "mean", "median", "std",
             "snr")
    table = Table(rows=rows, names=names,
                  dtype=(str, str, int, int, int, int, int, float, float, float, float))
    table.meta["pattern"] = pattern
    return table


# ---------------------------------------------------------------------------
# Per-channel normalisation
# ---------------------------------------------------------------------------
_STATISTICS = ("median", "mean")


def channel_scales(frame: CCDData | np.ndarray, *, pattern: str | None = None,
                   statistic: str = "median", region: Any = "full",
                   combine_greens: bool = False) -> dict[str, float]:
    """The level of each channel: its median (or mean) over a region.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData` or 2-D array
        The mosaic (masked and non-finite pixels are ignored).
    pattern : str, optional
        Effective pattern (default from the frame's keywords).
    statistic : {'median', 'mean'}
        How to measure the level.
    region : 'full', 'centre' or (y0, y1, x0, x1)
        Where to measure it: the whole frame, the central 10% box, or a box.
    combine_greens : bool
        If True, G1 and G2 get one common level (measured on both).

    Returns
    -------
    dict
        ``{'R': level, 'G1': ..., 'G2': ..., 'B': ...}``.

    Raises
    ------
    ValueError
        If the statistic is unknown or a channel has no valid pixel.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.tile(np.array([[4., 2.], [2., 1.]]), (4, 4))
    >>> channel_scales(a, pattern="RGGB")
    {'R': 4.0, 'G1': 2.0, 'G2': 2.0, 'B': 1.0}
    """
    if statistic not in _STATISTICS:
        raise InvalidSettingsError(
            f"statistic={statistic!r} is not recognised; use 'median' or 'mean'")
    if isinstance(frame, CCDData):
        data, mask = frame.data, frame.mask
    else:
        data, mask = np.asarray(frame), None
    pattern = _pattern_for(frame, pattern)
    if isinstance(region, str) and region == "centre":
        ys, xs = standard_regions(data.shape)["centre"]
    else:
        (ys, xs), = _region_slices(data.shape, "full" if region == "full"
                                   else {"box": region}).values()
    sub_pattern = shift_pattern(pattern, xs.start, ys.start)
    sub = data[ys, xs]
    sub_mask = None if mask is None else mask[ys, xs]
    values = {chan: _valid_values(sub, sub_mask, sl)
              for chan, sl in channel_slices(sub_pattern).items()}
    if combine_greens:
        greens = np.concatenate([values["G1"], values["G2"]])
        values["G1"] = values["G2"] = greens
    func = np.median if statistic == "median" else np.mean
    out = {}
    for chan in CHANNELS:
        if values[chan].size == 0:
            raise IncompatibleFramesError(
                f"channel {chan} has no valid (unmasked, finite) pixel in the "
                             "region used for its level; choose a larger region")
        out[chan] = float(func(values[chan]))
    return out


def normalise_channels(frame: CCDData, *, pattern: str | None = None,
                       statistic: str = "median", region: Any = "full",
                       combine_greens: bool = False) -> CCDData:
    """Divide each CFA channel of a mosaic by its own level (for flats).

    A flat normalised with one number for the whole mosaic carries the colour
    of the flat light source into every calibrated light; normalising each
    channel separately keeps the camera's own colour response.  The
    uncertainty is divided by the same factors (the error of a level measured
    on many pixels is neglected), the mask is kept.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        A 2-D mosaic (e.g. a combined flat).
    pattern, statistic, region, combine_greens
        As in :func:`channel_scales`.

    Returns
    -------
    `~astropy.nddata.CCDData`
        A new frame (float32 unless the input is float64), unit dimensionless,
        with ``NORMSTAT`` and ``NORM_R``, ``NORM_G1``, ``NORM_G2``, ``NORM_B`` (the
        levels divided out) in its meta and a ``normalise_channels`` provenance step.

    Raises
    ------
    ValueError
        If a channel level is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> flat = CCDData(np.tile(np.array([[4., 2.], [2., 1.]], np.float32), (4, 4)),
    ...                unit="adu", meta={"BAYERPAT": "RGGB"})
    >>> out = normalise_channels(flat)
    >>> float(out.data.min()), float(out.data.max()), out.meta["NORM_R"]
    (1.0, 1.0, 4.0)
    """
    frame = _as_ccd(frame)
    pattern = _pattern_for(frame, pattern)
    scales = channel_scales(frame, pattern=pattern, statistic=statistic, region=region,
                            combine_greens=combine_greens)
    bad = {k: v for k, v in scales.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise IncompatibleFramesError(
            f"channel level(s) {bad} are not positive: the frame cannot be "
                         "normalised (is it bias-subtracted twice, or not a flat?)")
    dtype = np.float64 if frame.data.dtype == np.float64 else np.float32
    data = np.array(frame.data, dtype=dtype)
    unc = None
    if frame.uncertainty is not None:
        unc = np.array(frame.uncertainty.array, dtype=np.float32)
    for chan, sl in channel_slices(pattern).items():
        data[sl] /= scales[chan]
        if unc is not None:
            unc[sl] /= scales[chan]
    meta = frame.meta.copy()
    meta["NORMSTAT"] = (statistic, "per-CFA-channel flat normalisation statistic") \
        if hasattr(meta, "comments") else statistic
    for chan in CHANNELS:
        meta[f"NORM_{chan}"] = scales[chan]
    out = CCDData(data, unit="", meta=meta,
                  uncertainty=None if unc is None else StdDevUncertainty(unc),
                  mask=None if frame.mask is None else frame.mask.copy())
    prov = get_provenance(frame)
    prov.add_step("normalise_channels", pattern=pattern, statistic=statistic,
                  region=region if isinstance(region, str) else [int(v) for v in region],
                  combine_greens=bool(combine_greens), levels=scales)
    set_provenance(out, prov)
    return out


# ---------------------------------------------------------------------------
# Same-colour neighbours (cosmetic correction)
# ---------------------------------------------------------------------------
_RING2 = ((-2, -2), (-2, 0), (-2, 2), (0, -2), (0, 2), (2, -2), (2, 0), (2, 2))
_DIAG1 = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def same_colour_offsets(channel: str) -> tuple[tuple[int, int], ...]:
    """``(dy, dx)`` offsets of the nearest same-colour neighbours of a channel.

    Every channel has eight at distance 2; a green also has its four diagonal
    neighbours (the other green).

    Parameters
    ----------
    channel : str
        ``'R'``, ``'G1'``, ``'G2'`` or ``'B'``.

    Returns
    -------
    tuple of tuple of int
        The ``(dy, dx)`` offsets.

    Examples
    --------
    >>> len(same_colour_offsets("R")), len(same_colour_offsets("G1"))
    (8, 12)
    """
    if channel not in CHANNELS:
        raise InvalidSettingsError(f"channel={channel!r} is not one of {', '.join(CHANNELS)}")
    return _DIAG1 + _RING2 if channel.startswith("G") else _RING2


def same_colour_neighbours(array: np.ndarray, pattern: str, ys: np.ndarray, xs: np.ndarray,
                           *, mask: np.ndarray | None = None) -> np.ndarray:
    """Values of the same-colour neighbours of chosen pixels of a mosaic.

    Parameters
    ----------
    array : 2-D ndarray
        The mosaic.
    pattern : str
        Its effective pattern.
    ys, xs : int arrays
        Rows and columns of the pixels (e.g. ``np.nonzero(bad)``).
    mask : bool ndarray, optional
        Neighbours to leave out (True = bad).

    Returns
    -------
    ndarray, shape (n, 12), float64
        Neighbour values; NaN where a neighbour is outside the frame, masked,
        non-finite, or does not exist (R and B have 8, greens 12).  Take
        ``np.nanmedian(..., axis=1)`` for a replacement value.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.tile(np.array([[4., 2.], [2., 1.]]), (4, 4))
    >>> a[4, 4] = 1000.0                      # a hot red pixel
    >>> vals = same_colour_neighbours(a, "RGGB", np.array([4]), np.array([4]))
    >>> float(np.nanmedian(vals))
    4.0
    """
    array = np.asarray(array)
    ys = np.asarray(ys, dtype=np.intp).ravel()
    xs = np.asarray(xs, dtype=np.intp).ravel()
    ny, nx = array.shape
    index = channel_index(array.shape[:2], pattern)
    out = np.full((ys.size, 12), np.nan)
    chan = index[ys, xs]
    green = (chan == 1) | (chan == 2)
    for k, (dy, dx) in enumerate(_RING2 + _DIAG1):
        yy = ys + dy
        xx = xs + dx
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        if k >= len(_RING2):
            ok &= green
        vy, vx = yy[ok], xx[ok]
        vals = array[vy, vx].astype(np.float64)
        if mask is not None:
            vals[np.asarray(mask)[vy, vx]] = np.nan
        out[np.nonzero(ok)[0], k] = vals
    out[~np.isfinite(out)] = np.nan
    return out
