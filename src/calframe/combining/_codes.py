"""The interface of the compiled combine kernels: integer codes and the rejection parameters.

A module of its own so that :func:`calframe.combine` can check its
arguments before the compiled kernels (and numba) are imported.

The kernels take the method and the rejection algorithm as the integer
codes below, and a rejection's settings as a float64 array of ``NPARAMS``
values (``Rejection._params()``), read at the named indices below; each
algorithm uses those its comment names.  numba freezes these integers into
the kernels when it compiles them (see :mod:`calframe._stats` about its
cache).
"""

METHOD_MEDIAN = 0
METHOD_MEAN = 1
METHOD_SUM = 2
METHOD_CODES = {"median": METHOD_MEDIAN, "mean": METHOD_MEAN, "sum": METHOD_SUM}

REJ_NONE = 0
REJ_SIGMA = 1
REJ_WINSORIZED = 2
REJ_LINEARFIT = 3
REJ_PERCENTILE = 4
REJ_MINMAX = 5
REJ_GESD = 6
#: the codes by ``Rejection._code``
REJECTION_CODES = {
    None: REJ_NONE,
    "sigma": REJ_SIGMA,
    "winsorized": REJ_WINSORIZED,
    "linearfit": REJ_LINEARFIT,
    "percentile": REJ_PERCENTILE,
    "minmax": REJ_MINMAX,
    "gesd": REJ_GESD,
}

#: pixels per tile: the row of a block is cut into tiles of this width, and the
#: kernels' per-pixel scratch arrays have this length
TILE = 256

#: lower and upper clipping thresholds (sigma, winsorized, linear fit:
#: in sigmas; percentile: fractions of the median)
P_LOW = 0
P_HIGH = 1
#: min/max clipping: how many of the lowest and of the highest values go
P_NLOW = P_LOW
P_NHIGH = P_HIGH
#: generalized ESD: the largest fraction of the values that may be outliers
#: (its significance enters through the critical values instead)
P_FRACTION = P_LOW
#: sigma clipping: 1.0 to clip about the mean (else the median) and 1.0 to
#: scale by the MAD (else the standard deviation)
P_CENTER_MEAN = 2
P_SCALE_MAD = 3
#: iterations at most (sigma, winsorized, linear fit); -1: until nothing changes
P_MAXITERS = 4
#: winsorized clipping: where the values are winsorized, in sigmas
P_CUTOFF = 5
#: length of the parameter array
NPARAMS = 6
