"""The camera's black level: when it is removed, and how.

A camera RAW frame holds the photon signal on top of a black level (an
offset the camera adds, often 512 or 2048 ADU, one value per CFA position),
which :func:`calframe.read_frame` records as ``BLKLEV0`` .. ``BLKLEV3`` (the
positions (0, 0), (0, 1), (1, 0), (1, 1) of the 2x2 cell) and ``BLKLEVEL``
(their mean), without subtracting it.  A master bias removes it, and so does
a dark that includes the bias.  A camera user with flats and lights but no
bias or dark frames has nothing else to remove it: left in, it makes the
flat's vignetting look shallower (a corner at 0.277 of the centre instead of
0.183 on a real DNG) and every flat-fielded light wrong.

So :func:`calframe.calibrate` and :func:`calframe.make_master_flat`
subtract it, per CFA position, exactly when nothing else will
(``subtract_black=None``, the default): the frame has a black level, it was
not subtracted when read (``BLKSUB``), and no bias, no dark that includes the
bias and no overscan are given.  ``subtract_black=True`` asks for it and
``False`` keeps it; asking for it next to a bias is refused, since the black
level would be removed twice.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from .errors import InvalidSettingsError, MissingMetadataError

__all__ = ["black_level", "decide_black_level", "subtract_black_level"]


def _truthy(value) -> bool:
    return value is True or str(value).strip().upper() in ("T", "TRUE", "1")


def black_level(meta) -> np.ndarray | None:
    """The black level a frame's header records, as a 2x2 (or 1x1) tile; None if none.

    Parameters
    ----------
    meta : mapping
        The frame's header (BLKLEV0-3 per CFA position, or BLKLEVEL).

    Returns
    -------
    ndarray or None
        The level of each position of the 2x2 CFA cell (one value, 1x1, when the
        header has a single level); None when the header records none.

    Examples
    --------
    >>> black_level({"BLKLEV0": 512.0, "BLKLEV1": 510.0, "BLKLEV2": 511.0,
    ...              "BLKLEV3": 512.0}).tolist()
    [[512.0, 510.0], [511.0, 512.0]]
    >>> black_level({"BLKLEVEL": 2048}).tolist(), black_level({}) is None
    ([[2048.0]], True)
    """
    values = [meta.get(f"BLKLEV{i}") for i in range(4)]
    try:
        if all(v is not None for v in values):
            return np.array([float(v) for v in values]).reshape(2, 2)
        if meta.get("BLKLEVEL") is not None:
            return np.array([[float(meta["BLKLEVEL"])]])
    except (TypeError, ValueError):
        return None
    return None


def decide_black_level(meta, subtract: bool | None, *, removed_by: str | None) -> bool:
    """Whether the black level of a frame with header ``meta`` is to be subtracted.

    Parameters
    ----------
    meta : mapping
        The frame's header.
    subtract : bool or None
        The user's choice; None decides: subtract when the frame has a black
        level, it is still in, and nothing else removes it.
    removed_by : str or None
        What else removes it ('the bias', 'the dark', 'the overscan'), if
        anything.

    Returns
    -------
    bool
        True when the black level is to be subtracted.

    Raises
    ------
    InvalidSettingsError
        ``subtract`` is True while ``removed_by`` removes the black level too.
    MissingMetadataError
        ``subtract`` is True and the frame records no black level.

    Examples
    --------
    >>> raw = {"BLKLEVEL": 512.0}
    >>> decide_black_level(raw, None, removed_by=None)
    True
    >>> decide_black_level(raw, None, removed_by="the bias")
    False
    >>> decide_black_level({**raw, "BLKSUB": True}, None, removed_by=None)
    False
    """
    already = _truthy(meta.get("BLKSUB"))
    level = black_level(meta)
    if subtract is None:
        return level is not None and not already and removed_by is None
    if not subtract:
        return False
    if removed_by is not None:
        raise InvalidSettingsError(
            f"subtract_black=True, but {removed_by} removes the black level already: it "
            "would be subtracted twice; leave subtract_black out")
    if already:
        return False
    if level is None:
        raise MissingMetadataError(
            "subtract_black=True but the frame records no black level (BLKLEV0..3 or "
            "BLKLEVEL, which camera RAW files have); subtract a master bias instead")
    return True


def subtract_black_level(frame: CCDData) -> CCDData:
    """A copy of ``frame`` with its recorded black level subtracted per CFA position.

    The uncertainty is unchanged (the black level is a known constant) and
    ``BLKSUB = T`` says it was done.

    Parameters
    ----------
    frame : CCDData
        A frame whose header records its black level (a camera RAW frame).

    Returns
    -------
    CCDData
        The frame less its black level, with ``BLKSUB = T`` and a provenance step.

    Raises
    ------
    MissingMetadataError
        The frame records no black level.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> raw = CCDData(np.full((2, 4), 600.0), unit="adu",
    ...               meta={"BLKLEV0": 512, "BLKLEV1": 510, "BLKLEV2": 511, "BLKLEV3": 512})
    >>> subtract_black_level(raw).data.tolist()
    [[88.0, 90.0, 88.0, 90.0], [89.0, 88.0, 89.0, 88.0]]
    """
    tile = black_level(frame.meta)
    if tile is None:
        raise MissingMetadataError(
            "the frame records no black level (BLKLEV0..3 or BLKLEVEL, which camera RAW "
            "files have); subtract a master bias instead")
    from ._calutil import header_of  # deferred: 0.4 s on ``import calframe.blacklevel``

    out = frame.copy()
    out.data = subtract_tile(np.asarray(frame.data), tile)
    out.meta = header_of(frame.meta)
    out.meta["BLKSUB"] = (True, "camera black level subtracted")
    return out


def subtract_tile(data: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """``data`` minus a tile that repeats over it (a new array, of data's float type)."""
    dtype = data.dtype if data.dtype.kind == "f" else np.float32
    ty, tx = tile.shape
    reps = (-(-data.shape[-2] // ty), -(-data.shape[-1] // tx))
    full = np.tile(tile, reps)[: data.shape[-2], : data.shape[-1]]
    return (data - full.astype(dtype)).astype(dtype, copy=False)
