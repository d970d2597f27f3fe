"""The combine engine: many frames into one, with rejection and honest uncertainty.

:func:`combine` streams frames in row blocks through compiled kernels (a
sorting network across frames on cache-sized tiles), locally on threads or
as Dask tasks; :func:`running_mean` gives a running mean and its standard
error over a sequence of any length.  Rejection algorithms are settings
objects (:class:`SigmaClip`, :class:`WinsorizedSigmaClip`,
:class:`LinearFitClip`, :class:`PercentileClip`, :class:`MinMaxClip`,
:class:`GESD`), also chosen by name (:func:`rejection_from_name`, Siril's
names); :class:`Scale` says how frames are normalised.
"""

from ._combine import combine
from ._efficiency import c4, median_efficiency_factor
from ._names import REJECTIONS, RejectionName, rejection_from_name
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
    "REJECTIONS",
    "LinearFitClip",
    "MinMaxClip",
    "PercentileClip",
    "Rejection",
    "RejectionName",
    "Scale",
    "SigmaClip",
    "WinsorizedSigmaClip",
    "c4",
    "combine",
    "median_efficiency_factor",
    "rejection_from_name",
    "running_mean",
]
