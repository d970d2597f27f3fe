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

import math
import os
import warnings

import numba
import numpy as np

from .errors import UncertaintyUnknownWarning

__all__: list[str] = []

_warned: set[str] = set()


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sigma_kernel(data, tile, inv_gain, floor, out):  # pragma: no cover - numba
    ny, nx = data.shape
    ty, tx = tile.shape
    for y in range(ny):
        row = tile[y % ty]
        if tx == 1:
            level = row[0]
            for x in range(nx):
                out[y, x] = math.sqrt(max(data[y, x] - level, 0.0) * inv_gain + floor)
        else:
            xi = 0
            for x in range(nx):
                out[y, x] = math.sqrt(max(data[y, x] - row[xi], 0.0) * inv_gain + floor)
                xi += 1
                if xi == tx:
                    xi = 0


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
    data = np.ascontiguousarray(data)
    out = np.empty_like(data)
    tile = as_tile(pedestal, data.shape)
    for plane, out_plane in zip(planes(data), planes(out), strict=True):
        _sigma_kernel(plane, tile, 1.0 / gain, (read_noise / gain) ** 2, out_plane)
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
