"""The combine engine: many frames into one, with rejection and honest uncertainty.

:func:`combine` streams frames in row blocks through compiled kernels (a
sorting network across frames on cache-sized tiles), locally on threads or
as Dask tasks; :func:`running_mean` gives a running mean and its standard
error over a sequence of any length.  Rejection algorithms are settings
objects (:class:`SigmaClip`, :class:`WinsorizedSigmaClip`,
:class:`LinearFitClip`, :class:`PercentileClip`, :class:`MinMaxClip`,
:class:`GESD`); :class:`Scale` says how frames are normalised.
"""

from ._combine import combine
from ._efficiency import c4, median_efficiency_factor
from ._rejection import (
    GESD,
    LinearFitClip,
    MinMaxClip,
    PercentileClip,
    Rejection,
    SigmaClip,
    WinsorizedSigmaClip,
)
from ._scaling import Scale
from ._stream import running_mean

__all__ = [
    "GESD",
    "LinearFitClip",
    "MinMaxClip",
    "PercentileClip",
    "Rejection",
    "Scale",
    "SigmaClip",
    "WinsorizedSigmaClip",
    "c4",
    "combine",
    "median_efficiency_factor",
    "running_mean",
]
