"""Rejection settings: what :func:`calframe.combine` throws away before combining.

Every algorithm works per pixel on the values that are valid there (masked
and non-finite values never take part), after scaling.  All of them keep a
contiguous range of the pixel's sorted values: an outlier is always one of
the extremes, so this loses nothing and lets the kernel work on sorted tiles.
The definitions follow Siril's stacking documentation (which follows
PixInsight's ImageIntegration); where a choice was left open it is stated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InvalidSettingsError

__all__ = [
    "GESD",
    "LinearFitClip",
    "MinMaxClip",
    "PercentileClip",
    "Rejection",
    "SigmaClip",
    "WinsorizedSigmaClip",
]


def _positive(name: str, cls: str, value, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidSettingsError(
            f"{cls}({name}={value!r}): expected a number; pass e.g. {name}=3") from err
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise InvalidSettingsError(
            f"{cls}({name}={value!r}): must be a finite number > 0"
            + (" (or 0)" if allow_zero else "") + f"; pass e.g. {name}=3")
    return number


def _maxiters(cls: str, value) -> int:
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidSettingsError(
            f"{cls}(maxiters={value!r}): must be a whole number >= 1, or None to iterate "
            "until nothing more is rejected")
    return int(value)


class Rejection:
    """Base class of the rejection settings (not used directly)."""

    _code = ""

    def _params(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form, with the algorithm's name under ``"algorithm"``."""
        return {"algorithm": type(self).__name__, **asdict(self)}

    def describe(self) -> str:
        """Short text for a FITS header card."""
        args = ",".join(f"{k}={v}" for k, v in asdict(self).items())
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class SigmaClip(Rejection):
    """Iterative sigma clipping about the median (or mean).

    At each iteration the centre and the scale of the pixel's surviving
    values are computed, and values below ``center - low * scale`` or above
    ``center + high * scale`` are rejected; iteration stops when nothing more
    is rejected or after ``maxiters`` iterations.  It is exactly
    :func:`astropy.stats.sigma_clip` with ``cenfunc=center`` and a standard
    deviation with ``ddof=1`` (or ``"mad"``: 1.4826 times the median absolute
    deviation), applied per pixel along the frame axis.

    Parameters
    ----------
    low, high : float
        Rejection thresholds below and above the centre, in units of the scale.
    center : {"median", "mean"}
        Centre of the distribution.
    scale : {"std", "mad"}
        ``"std"``: sample standard deviation (as Siril); ``"mad"``: robust
        1.4826 * MAD (as ccdproc users often choose).
    maxiters : int or None
        Maximum number of iterations; None iterates to convergence.

    Examples
    --------
    >>> SigmaClip(low=4, high=3).to_dict()["high"]
    3.0
    """

    low: float = 3.0
    high: float = 3.0
    center: str = "median"
    scale: str = "std"
    maxiters: int | None = 10

    _code = "sigma"

    def __post_init__(self):
        object.__setattr__(self, "low", _positive("low", "SigmaClip", self.low))
        object.__setattr__(self, "high", _positive("high", "SigmaClip", self.high))
        if self.center not in ("median", "mean"):
            raise InvalidSettingsError(
                f"SigmaClip(center={self.center!r}): use 'median' or 'mean'")
        if self.scale not in ("std", "mad"):
            raise InvalidSettingsError(f"SigmaClip(scale={self.scale!r}): use 'std' or 'mad'")
        _maxiters("SigmaClip", self.maxiters)

    def _params(self) -> np.ndarray:
        return np.array([self.low, self.high, self.center == "mean", self.scale == "mad",
                         _maxiters("SigmaClip", self.maxiters), 0.0], dtype=np.float64)


@dataclass(frozen=True)
class WinsorizedSigmaClip(Rejection):
    """Winsorized sigma clipping (Siril, PixInsight).

    Per iteration: the median ``m`` and sample standard deviation ``s`` of
    the surviving values are computed; a copy of them is winsorized
    (clamped to ``m +/- cutoff * s``) and ``s`` is replaced by
    ``1.134 * std(winsorized)`` until it changes by less than 0.05%; then
    values below ``m - low * s`` or above ``m + high * s`` are rejected.  The
    factor 1.134 makes the winsorized standard deviation of a Gaussian
    (clamped at 1.5 sigma) unbiased.  Robust against a large fraction of
    outliers at small N, where plain sigma clipping's standard deviation is
    inflated by the outliers themselves.

    Examples
    --------
    >>> WinsorizedSigmaClip(low=4, high=3).describe()
    'WinsorizedSigmaClip(low=4.0,high=3.0,maxiters=10,cutoff=1.5)'
    """

    low: float = 3.0
    high: float = 3.0
    maxiters: int | None = 10
    cutoff: float = 1.5

    _code = "winsorized"

    def __post_init__(self):
        for name in ("low", "high", "cutoff"):
            object.__setattr__(self, name,
                               _positive(name, "WinsorizedSigmaClip", getattr(self, name)))
        _maxiters("WinsorizedSigmaClip", self.maxiters)

    def _params(self) -> np.ndarray:
        return np.array([self.low, self.high, 0.0, 0.0,
                         _maxiters("WinsorizedSigmaClip", self.maxiters), self.cutoff])


@dataclass(frozen=True)
class LinearFitClip(Rejection):
    """Linear fit clipping (Siril, PixInsight).

    The surviving values of a pixel are sorted and a straight line is fitted
    to them against their rank; the scale is the mean absolute deviation
    from the line.  Values more than ``low`` (below) or ``high`` (above)
    scales from the line are rejected, peeling from the ends of the sorted
    stack; iterate.  Suited to large stacks with a gradient of levels
    (e.g. sky that changes during the night).

    Examples
    --------
    >>> LinearFitClip(low=5, high=2.5).low
    5.0
    """

    low: float = 5.0
    high: float = 2.5
    maxiters: int | None = 10

    _code = "linearfit"

    def __post_init__(self):
        for name in ("low", "high"):
            object.__setattr__(self, name, _positive(name, "LinearFitClip", getattr(self, name)))
        _maxiters("LinearFitClip", self.maxiters)

    def _params(self) -> np.ndarray:
        return np.array([self.low, self.high, 0.0, 0.0,
                         _maxiters("LinearFitClip", self.maxiters), 0.0])


@dataclass(frozen=True)
class PercentileClip(Rejection):
    """Percentile clipping (Siril): one pass, relative to the median.

    A value ``x`` is rejected when ``(median - x) / median > low`` or
    ``(x - median) / median > high``: the thresholds are fractions of the
    median level (0.2 = 20%).  Meant for very small stacks (N < 6), where no
    scatter can be estimated.  Pixels whose median is 0 are not clipped.

    Examples
    --------
    >>> PercentileClip(low=0.2, high=0.1).high
    0.1
    """

    low: float = 0.2
    high: float = 0.1

    _code = "percentile"

    def __post_init__(self):
        for name in ("low", "high"):
            object.__setattr__(self, name, _positive(name, "PercentileClip", getattr(self, name)))

    def _params(self) -> np.ndarray:
        return np.array([self.low, self.high, 0.0, 0.0, 1.0, 0.0])


@dataclass(frozen=True)
class MinMaxClip(Rejection):
    """Reject the ``nlow`` lowest and ``nhigh`` highest valid values of each pixel.

    Counts, not thresholds (IRAF ``minmax``).  Where a pixel has no more than
    ``nlow + nhigh`` valid values, only its middle value (the lower of the
    two middle ones for an even count) is kept.

    Examples
    --------
    >>> MinMaxClip(nlow=1, nhigh=2).nhigh
    2
    """

    nlow: int = 1
    nhigh: int = 1

    _code = "minmax"

    def __post_init__(self):
        for name in ("nlow", "nhigh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise InvalidSettingsError(
                    f"MinMaxClip({name}={value!r}): must be a whole number >= 0")
            object.__setattr__(self, name, int(value))
        if self.nlow + self.nhigh == 0:
            raise InvalidSettingsError(
                "MinMaxClip(nlow=0, nhigh=0) rejects nothing; pass rejection=None instead")

    def _params(self) -> np.ndarray:
        return np.array([self.nlow, self.nhigh, 0.0, 0.0, 1.0, 0.0])


@dataclass(frozen=True)
class GESD(Rejection):
    """Generalized extreme Studentized deviate test (Rosner 1983; Siril, PixInsight).

    Up to ``floor(outliers_fraction * n)`` values are tested: at step ``k``
    the value farthest from the mean of the remaining ones, in units of their
    sample standard deviation, is removed and its statistic ``R_k`` compared
    with the critical value ``lambda_k`` of a two-sided test at
    ``significance``; the number of outliers is the largest ``k`` with
    ``R_k > lambda_k``.  Best for large stacks (N > 50).

    Examples
    --------
    >>> GESD(outliers_fraction=0.3, significance=0.05).significance
    0.05
    """

    outliers_fraction: float = 0.3
    significance: float = 0.05

    _code = "gesd"

    def __post_init__(self):
        for name in ("outliers_fraction", "significance"):
            value = _positive(name, "GESD", getattr(self, name))
            if value >= 1:
                raise InvalidSettingsError(f"GESD({name}={value!r}): must be between 0 and 1")
            object.__setattr__(self, name, value)

    def _params(self) -> np.ndarray:
        return np.array([self.outliers_fraction, self.significance, 0.0, 0.0, 1.0, 0.0])


def gesd_critical_values(nmax: int, significance: float) -> np.ndarray:
    """Table ``lam[n, k]`` of GESD critical values for ``n`` values, step ``k + 1``.

    Examples
    --------
    >>> lam = gesd_critical_values(20, 0.05)
    >>> round(float(lam[20, 0]), 3)  # Grubbs' two-sided 5% critical value, n=20
    2.708
    """
    from scipy.special import stdtrit  # Student's t quantile (scipy.stats takes 1 s to import)

    lam = np.full((nmax + 1, max(nmax, 1)), np.inf)
    for n in range(3, nmax + 1):
        i = np.arange(1, n - 1)          # steps 1 .. n-2
        dof = n - i - 1
        prob = 1.0 - significance / (2.0 * (n - i + 1))
        tval = stdtrit(dof, prob)
        lam[n, : len(i)] = (n - i) * tval / np.sqrt((dof + tval**2) * (n - i + 1))
    return lam
