"""The detector noise model used when a frame is read.

sigma_adu = sqrt(max(signal - pedestal, 0) / gain + (read_noise / gain) ** 2)

with ``signal`` and ``pedestal`` in ADU, ``gain`` in e-/ADU and ``read_noise``
in electrons.  The pedestal (the bias or black level) carries no photon noise;
when it is not known at read time (most FITS files) it is taken as zero, which
makes the Poisson term an upper bound until a bias is subtracted.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import UncertaintyUnknownWarning

__all__: list[str] = []

_warned = False


def detector_sigma(data: np.ndarray, *, gain: float, read_noise: float,
                   pedestal: float | np.ndarray = 0.0,
                   dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Per-pixel standard deviation (ADU) from the detector model.

    Examples
    --------
    >>> import numpy as np
    >>> detector_sigma(np.array([100.0, 1100.0]), gain=1.0, read_noise=0.0, pedestal=100.0)
    array([ 0.      , 31.622776], dtype=float32)
    """
    if not gain > 0:
        raise ValueError(f"gain={gain!r}: must be a positive number of e-/ADU")
    if not read_noise >= 0:
        raise ValueError(f"read_noise={read_noise!r}: must be >= 0 electrons")
    work = np.asarray(data, dtype=dtype) - np.asarray(pedestal, dtype=dtype)
    np.maximum(work, 0, out=work)
    work *= 1.0 / gain
    work += (read_noise / gain) ** 2
    np.sqrt(work, out=work)
    # Non-finite data give a non-finite sigma; those pixels are masked anyway.
    return work


def warn_uncertainty_unknown(path, missing: str, *, stacklevel: int = 3) -> None:
    """Say once per process that frames are read without an uncertainty."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"{path}: {missing} unknown, so the frame has no uncertainty (later steps estimate "
        "it from the scatter of the frames); pass gain= and read_noise= to read_frame, or "
        "write EGAIN (e-/ADU) and RDNOISE (e-) in the header. This is said once.",
        UncertaintyUnknownWarning, stacklevel=stacklevel)


def _reset_warning() -> None:
    """Let the next unknown uncertainty warn again (for tests)."""
    global _warned
    _warned = False
