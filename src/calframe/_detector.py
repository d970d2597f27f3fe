"""The detector noise model used when a frame is read.

sigma_adu = sqrt(max(signal - pedestal, 0) / gain + (read_noise / gain) ** 2)

with ``signal`` and ``pedestal`` in ADU, ``gain`` in e-/ADU and ``read_noise``
in electrons.  The pedestal (the bias or black level) carries no photon noise;
when it is not known at read time (most FITS files) it is taken as zero, which
makes the Poisson term an upper bound until a bias is subtracted.

Per-position levels (pedestal, saturation) are given as a small tile that
repeats over the frame: one number, a (2, 2) tile for a CFA pattern, or a
map of the frame's shape.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .errors import UncertaintyUnknownWarning

__all__: list[str] = []

_warned: set[str] = set()


#: Rows processed at a time, so that the temporaries stay in the CPU cache.
_BLOCK_ROWS = 64


def blocks(plane: np.ndarray, tile: np.ndarray):
    """Yield (row slice, level block) pairs covering a 2-D plane.

    The level block is the repeating ``tile`` laid over those rows (a view
    when the tile is one number or a full map).
    """
    ny, nx = plane.shape
    ty, tx = tile.shape
    if (ty, tx) == (ny, nx):
        for y0 in range(0, ny, _BLOCK_ROWS):
            rows = slice(y0, min(y0 + _BLOCK_ROWS, ny))
            yield rows, tile[rows]
        return
    step = ty * max(1, _BLOCK_ROWS // ty)        # blocks start on a tile row 0
    if (ty, tx) == (1, 1):
        for y0 in range(0, ny, step):
            yield slice(y0, min(y0 + step, ny)), tile     # broadcasts
        return
    pattern = np.tile(tile, (step // ty, -(-nx // tx)))[:, :nx]
    for y0 in range(0, ny, step):
        rows = slice(y0, min(y0 + step, ny))
        yield rows, pattern[:rows.stop - y0]


def as_tile(level, shape) -> np.ndarray:
    """A level as a 2-D float64 tile that repeats over a frame of ``shape``."""
    tile = np.asarray(level, dtype=np.float64)
    if tile.ndim == 0:
        return tile.reshape(1, 1)
    if tile.ndim != 2 or tile.shape[0] > shape[-2] or tile.shape[1] > shape[-1]:
        raise ValueError(f"a per-pixel level of shape {tile.shape} does not fit a frame of "
                         f"shape {tuple(shape)}; give one number, a 2x2 CFA tile or a full map")
    return np.ascontiguousarray(tile)


def planes(data: np.ndarray) -> list[np.ndarray]:
    """The 2-D planes of a frame (itself, or each plane of a cube), as views."""
    if data.ndim == 2:
        return [data]
    return list(data.reshape(-1, *data.shape[-2:]))


def detector_sigma(data: np.ndarray, *, gain: float, read_noise: float,
                   pedestal=0.0) -> np.ndarray:
    """Per-pixel standard deviation (ADU) from the detector model, in data's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> detector_sigma(np.array([[100.0, 1100.0]], np.float32), gain=1.0, read_noise=0.0,
    ...                pedestal=100.0)
    array([[ 0.      , 31.622776]], dtype=float32)
    """
    if not gain > 0:
        raise ValueError(f"gain={gain!r}: must be a positive number of e-/ADU")
    if not read_noise >= 0:
        raise ValueError(f"read_noise={read_noise!r}: must be >= 0 electrons")
    out = np.empty(data.shape, dtype=data.dtype)
    tile = as_tile(pedestal, data.shape).astype(data.dtype)
    inv_gain = data.dtype.type(1.0 / gain)
    floor = data.dtype.type((read_noise / gain) ** 2)
    for plane, out_plane in zip(planes(data), planes(out), strict=True):
        for rows, level in blocks(plane, tile):
            block = out_plane[rows]
            np.subtract(plane[rows], level, out=block)
            np.maximum(block, 0, out=block)
            block *= inv_gain
            block += floor
            np.sqrt(block, out=block)
    return out


def _once_key() -> str:
    # Under pytest "once" means once per test, so that whether a test sees the
    # warning does not depend on which tests ran before it in the process.
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def warn_uncertainty_unknown(path, missing: str, *, stacklevel: int = 3) -> None:
    """Say once per process (once per test under pytest) that there is no uncertainty."""
    key = _once_key()
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(
        f"{path}: {missing} unknown, so the frame has no uncertainty (later steps estimate "
        "it from the scatter of the frames); pass gain= and read_noise= to read_frame, or "
        "write EGAIN (e-/ADU) and RDNOISE (e-) in the header. This is said once.",
        UncertaintyUnknownWarning, stacklevel=stacklevel)


def _reset_warning() -> None:
    """Let the next unknown uncertainty warn again (for tests)."""
    _warned.clear()
