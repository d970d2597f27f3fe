"""Running mean and standard error over a sequence of frames of any length."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u

from ..errors import IncompatibleFramesError, NoFramesError

if TYPE_CHECKING:
    from astropy.nddata import CCDData

__all__ = ["running_mean"]


def running_mean(frames: Iterable, *, dtype=np.float64) -> Iterator[CCDData]:
    """Yield the running mean of ``frames`` and its standard error after each frame.

    Memory stays at a few frames whatever the length of the sequence
    (Welford's update per pixel): suited to monitoring a long series, or to
    averaging more frames than fit in memory.  Masked and non-finite values
    are skipped pixel by pixel.

    Parameters
    ----------
    frames : iterable of path, CCDData or ndarray
        Frames of one shape and unit, consumed one at a time.
    dtype : numpy dtype
        Accumulator precision (float64 by default).

    Yields
    ------
    astropy.nddata.CCDData
        The mean so far (float32), with the standard error of the mean
        ``s / sqrt(n)`` (``s`` the sample standard deviation, ``ddof=1``) as
        :class:`~astropy.nddata.StdDevUncertainty` (NaN where fewer than two
        values), mask True where no value yet, ``ncombine`` per pixel (int32) and
        ``meta["NCOMBINE"]`` the number of frames so far.

    Raises
    ------
    NoFramesError
        ``frames`` is empty (raised when the generator is first advanced).
    IncompatibleFramesError
        A frame's shape or unit differs from the first's.

    Examples
    --------
    >>> import numpy as np
    >>> frames = (np.full((2, 2), v) for v in (1.0, 2.0, 6.0))
    >>> for step in running_mean(frames):
    ...     print(float(step.data[0, 0]), step.meta["NCOMBINE"])
    1.0 1
    1.5 2
    3.0 3
    >>> round(float(step.uncertainty.array[0, 0]), 4)  # std([1, 2, 6]) / sqrt(3)
    1.5275
    """
    # deferred: astropy.nddata and ._sources (numba and the compiled kernels) take
    # about 0.6 s and 0.5 s to import, which importing calframe.combine does not pay
    from astropy.nddata import CCDData, NDData, StdDevUncertainty

    from ._sources import parse_frames

    if isinstance(frames, str | os.PathLike | np.ndarray | NDData):
        raise IncompatibleFramesError(
            f"frames must be an iterable of frames, got one {type(frames).__name__}; "
            "wrap it in a list")
    folder = tempfile.mkdtemp(prefix="calframe-running-")
    try:
        count = mean = m2 = None
        shape = unit = None
        nseen = 0
        for item in frames:
            (src,) = parse_frames([item], lambda: folder)
            try:
                data, _ = src.read_all()
            finally:
                src.close()
                for name in os.listdir(folder):
                    os.remove(os.path.join(folder, name))
            if shape is None:
                shape, unit = src.shape, src.unit
                count = np.zeros(shape, np.int64)
                mean = np.zeros(shape, dtype)
                m2 = np.zeros(shape, dtype)
            elif src.shape != shape:
                raise IncompatibleFramesError(
                    f"{src.label} of the sequence has shape {src.shape}, the first had {shape}")
            elif src.unit is not None and unit is not None and src.unit != unit:
                raise IncompatibleFramesError(
                    f"{src.label} of the sequence is in {src.unit}, the first was in {unit}")
            nseen += 1
            good = np.isfinite(data)
            count += good
            x = data.astype(dtype)
            delta = np.where(good, x - mean, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean += np.where(good, delta / np.maximum(count, 1), 0.0)
            m2 += np.where(good, delta * (x - mean), 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                sem = np.sqrt(m2 / (count - 1) / count)
            sem[count < 2] = np.nan
            out_mean = mean.astype(np.float32)
            out_mean[count == 0] = np.nan
            out = CCDData(out_mean, unit=unit if unit is not None else u.adu,
                          uncertainty=StdDevUncertainty(sem.astype(np.float32)),
                          mask=count == 0)
            out.meta["NCOMBINE"] = nseen
            out.ncombine = count.astype(np.int32)  # a stream may exceed 32767 frames
            yield out
        if nseen == 0:
            raise NoFramesError("running_mean was given no frames")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
