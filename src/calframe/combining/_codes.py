"""Integer codes of the combine methods and rejection algorithms, as the kernels take them.

A module of its own so that :func:`calframe.combine` can check its
arguments before the compiled kernels (and numba) are imported.
"""

METHOD_CODES = {"median": 0, "mean": 1, "sum": 2}
REJECTION_CODES = {
    None: 0,
    "sigma": 1,
    "winsorized": 2,
    "linearfit": 3,
    "percentile": 4,
    "minmax": 5,
    "gesd": 6,
}
