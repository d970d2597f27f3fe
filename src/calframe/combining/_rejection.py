"""Rejection settings: what :func:`calframe.combine` throws away before combining.

Every algorithm works per pixel on the values that are valid there (masked
and non-finite values never take part), after scaling.  All of them keep a
contiguous range of the pixel's sorted values: an outlier is always one of
the extremes, so this loses nothing and lets the kernel work on sorted tiles.
The definitions follow Siril's stacking documentation (which follows
PixInsight's ImageIntegration); where a choice was left open it is stated.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import InvalidSettingsError
from ._codes import (
    NPARAMS,
    P_CENTER_MEAN,
    P_CUTOFF,
    P_FRACTION,
    P_HIGH,
    P_LOW,
    P_MAXITERS,
    P_NHIGH,
    P_NLOW,
    P_SCALE_MAD,
)

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


def _param_array(values: dict[int, float]) -> np.ndarray:
    """The kernels' parameter array: ``values`` at their named indices (see ``_codes``).

    Unnamed entries are 0, and ``P_MAXITERS`` is 1 (one pass) unless given.
    """
    params = np.zeros(NPARAMS, dtype=np.float64)
    params[P_MAXITERS] = 1.0
    for index, value in values.items():
        params[index] = value
    return params


class Rejection:
    """Base class of the rejection settings (not used directly)."""

    _code = ""

    def _params(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form, with the algorithm's name under ``"algorithm"``.

        :meth:`from_dict` is its inverse.

        Returns
        -------
        dict
            ``{"algorithm": class name, setting: value, ...}``.

        Examples
        --------
        >>> MinMaxClip(nlow=1, nhigh=2).to_dict()
        {'algorithm': 'MinMaxClip', 'nlow': 1, 'nhigh': 2}
        """
        return {"algorithm": type(self).__name__, **asdict(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Rejection:
        """The settings object that :meth:`to_dict` gave ``values`` for (its inverse).

        ``values["algorithm"]`` names the class (``"SigmaClip"``,
        ``"WinsorizedSigmaClip"``, ``"LinearFitClip"``, ``"PercentileClip"``,
        ``"MinMaxClip"``, ``"GESD"``); called on a class, it may be left out.
        Settings left out take the class's defaults, so that a TOML table
        such as ``rejection = {algorithm = "SigmaClip", low = 4}`` is enough.

        Parameters
        ----------
        values : mapping
            The algorithm's name and settings.

        Returns
        -------
        Rejection
            A new settings object, equal to the one ``values`` came from.

        Raises
        ------
        InvalidSettingsError
            ``values`` is not a mapping, names no or an unknown algorithm,
            another algorithm than the class it is called on, a setting the
            algorithm does not have, or a value the algorithm refuses.

        Examples
        --------
        >>> clip = WinsorizedSigmaClip(low=4, high=3)
        >>> Rejection.from_dict(clip.to_dict()) == clip
        True
        >>> SigmaClip.from_dict({"low": 5, "scale": "mad"})
        SigmaClip(low=5.0, high=3.0, center='median', scale='mad', maxiters=10)
        """
        if not isinstance(values, Mapping):
            raise InvalidSettingsError(
                f"rejection settings {values!r}: expected a table of settings such as "
                "{'algorithm': 'SigmaClip', 'low': 3.0, 'high': 3.0}")
        settings = dict(values)
        algorithms = _algorithms()
        name = settings.pop("algorithm", None)
        if name is None:
            if cls is Rejection:
                raise InvalidSettingsError(
                    f"rejection settings {dict(values)!r} name no algorithm; add "
                    f"'algorithm', one of {', '.join(algorithms)}")
            target = cls
        elif name not in algorithms:
            raise InvalidSettingsError(
                f"rejection algorithm {name!r} is not known; use one of "
                f"{', '.join(algorithms)}")
        else:
            target = algorithms[name]
            if cls is not Rejection and target is not cls:
                raise InvalidSettingsError(
                    f"{cls.__name__}.from_dict: the settings are of {name}; call "
                    f"Rejection.from_dict or {name}.from_dict")
        known = [f.name for f in fields(target)]
        unknown = sorted(set(settings) - set(known), key=str)
        if unknown:
            raise InvalidSettingsError(
                f"{target.__name__} has no setting {', '.join(map(repr, unknown))}; its "
                f"settings are {', '.join(known)}")
        return target(**settings)

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
        return _param_array({P_LOW: self.low, P_HIGH: self.high,
                             P_CENTER_MEAN: self.center == "mean",
                             P_SCALE_MAD: self.scale == "mad",
                             P_MAXITERS: _maxiters("SigmaClip", self.maxiters)})

    @classmethod
    def from_astropy(cls, clip) -> SigmaClip:
        """The same clipping as an :class:`astropy.stats.SigmaClip` applied along the frames.

        ``sigma_lower`` and ``sigma_upper`` (``sigma`` where None) become
        ``low`` and ``high`` and ``maxiters`` stays (None: to convergence).
        ``cenfunc`` ``'median'`` or ``'mean'`` (or :func:`numpy.nanmedian`,
        :func:`numpy.nanmean`) becomes ``center``; ``stdfunc`` ``'mad_std'``
        (or ``functools.partial(astropy.stats.mad_std, ignore_nan=True)``)
        becomes ``scale='mad'`` and ``functools.partial(numpy.nanstd,
        ddof=1)`` becomes ``scale='std'``.  The result equals what astropy
        gives along the frame axis, value for value.

        Parameters
        ----------
        clip : astropy.stats.SigmaClip
            The astropy settings.

        Returns
        -------
        SigmaClip
            The same clipping.

        Raises
        ------
        InvalidSettingsError
            A setting calframe does not apply the same way, named with the
            settings that do: ``stdfunc='std'`` (astropy's population
            standard deviation, ``ddof=0``; calframe's is the sample one,
            ``ddof=1``); ``'mad_std'`` about the mean (astropy's MAD is
            about the median, calframe's about the centre); the strings
            ``'median'``/``'mean'`` with ``'mad_std'`` and ``maxiters`` other
            than 1 (astropy's compiled path then tests every value afresh at
            each iteration, so that a rejected value can come back; calframe
            rejects for good, as astropy does with functions); functions that
            are not NaN-aware or not one of the above; ``grow``.

        Examples
        --------
        >>> import numpy as np
        >>> from astropy.stats import SigmaClip as AstropySigmaClip
        >>> SigmaClip.from_astropy(AstropySigmaClip(sigma=3, sigma_upper=2.5,
        ...                                         cenfunc=np.nanmedian, stdfunc="mad_std",
        ...                                         maxiters=None))
        SigmaClip(low=3.0, high=2.5, center='median', scale='mad', maxiters=None)
        """
        stats = sys.modules.get("astropy.stats")   # (an instance means it is imported)
        if stats is None or not isinstance(clip, stats.SigmaClip):
            raise InvalidSettingsError(f"{clip!r} is not an astropy.stats.SigmaClip")
        low, high = _astropy_limits(clip)
        maxiters = _astropy_maxiters(clip)
        center = _astropy_center(clip.cenfunc)
        scale = _astropy_scale(clip.stdfunc, stats)
        instead = (f"calframe.combining.SigmaClip(low={low}, high={high}, center={center!r}, "
                   f"scale={'std' if scale == 'ddof0' else scale!r}, maxiters={maxiters!r})")
        if scale == "ddof0":
            raise InvalidSettingsError(
                f"astropy SigmaClip(stdfunc={clip.stdfunc!r}) cannot be converted: it is the "
                "population standard deviation (ddof=0), calframe's the sample one (ddof=1); "
                "pass stdfunc=functools.partial(numpy.nanstd, ddof=1), or " + instead)
        if scale == "mad" and center == "mean":
            raise InvalidSettingsError(
                f"astropy SigmaClip(cenfunc={clip.cenfunc!r}, stdfunc={clip.stdfunc!r}) cannot "
                "be converted: astropy's MAD is about the median, calframe's about the "
                "centre (the mean here); use cenfunc='median', or stdfunc="
                "functools.partial(numpy.nanstd, ddof=1)")
        if isinstance(clip.cenfunc, str) and isinstance(clip.stdfunc, str) \
                and maxiters != 1:
            raise InvalidSettingsError(
                f"astropy SigmaClip(cenfunc={clip.cenfunc!r}, stdfunc={clip.stdfunc!r}, "
                f"maxiters={maxiters!r}) cannot be converted: astropy clips these along an "
                "axis in compiled code that tests every value afresh at each iteration (a "
                "rejected value can come back), calframe rejects for good, as astropy does "
                f"with functions; pass cenfunc=numpy.nan{center} to astropy for the "
                "clipping calframe does, or " + instead)
        if getattr(clip, "grow", False) not in (False, None, 0):
            raise InvalidSettingsError(
                f"astropy SigmaClip(grow={clip.grow!r}) cannot be converted: calframe "
                "rejects values of one pixel along the frame axis, never their neighbours; "
                "use grow=False")
        return cls(low=low, high=high, center=center, scale=scale, maxiters=maxiters)


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

    Parameters
    ----------
    low, high : float
        Rejection thresholds below and above the median, in units of the
        winsorized standard deviation.
    maxiters : int or None
        Maximum number of iterations; None iterates to convergence.
    cutoff : float
        Where the copy is clamped, in units of the standard deviation.

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
        return _param_array({P_LOW: self.low, P_HIGH: self.high,
                             P_MAXITERS: _maxiters("WinsorizedSigmaClip", self.maxiters),
                             P_CUTOFF: self.cutoff})


@dataclass(frozen=True)
class LinearFitClip(Rejection):
    """Linear fit clipping (Siril, PixInsight).

    The surviving values of a pixel are sorted and a straight line is fitted
    to them against their rank; the scale is the mean absolute deviation
    from the line.  Values more than ``low`` (below) or ``high`` (above)
    scales from the line are rejected, peeling from the ends of the sorted
    stack; iterate.  Suited to large stacks with a gradient of levels
    (e.g. sky that changes during the night).

    Parameters
    ----------
    low, high : float
        Rejection thresholds below and above the line, in units of the mean
        absolute deviation from it.
    maxiters : int or None
        Maximum number of iterations; None iterates to convergence.

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
        return _param_array({P_LOW: self.low, P_HIGH: self.high,
                             P_MAXITERS: _maxiters("LinearFitClip", self.maxiters)})


@dataclass(frozen=True)
class PercentileClip(Rejection):
    """Percentile clipping (Siril): one pass, relative to the median.

    A value ``x`` is rejected when ``(median - x) / median > low`` or
    ``(x - median) / median > high``: the thresholds are fractions of the
    median level (0.2 = 20%).  Meant for very small stacks (N < 6), where no
    scatter can be estimated.  Pixels whose median is 0 are not clipped.

    Parameters
    ----------
    low, high : float
        Rejection thresholds below and above the median, as fractions of it.

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
        return _param_array({P_LOW: self.low, P_HIGH: self.high})


@dataclass(frozen=True)
class MinMaxClip(Rejection):
    """Reject the ``nlow`` lowest and ``nhigh`` highest valid values of each pixel.

    Counts, not thresholds (IRAF ``minmax``).  Where a pixel has no more than
    ``nlow + nhigh`` valid values, only its middle value (the lower of the
    two middle ones for an even count) is kept.

    Parameters
    ----------
    nlow, nhigh : int
        Number of lowest and highest values rejected per pixel.

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
        return _param_array({P_NLOW: self.nlow, P_NHIGH: self.nhigh})


@dataclass(frozen=True)
class GESD(Rejection):
    """Generalized extreme Studentized deviate test (Rosner 1983; Siril, PixInsight).

    Up to ``floor(outliers_fraction * n)`` values are tested: at step ``k``
    the value farthest from the mean of the remaining ones, in units of their
    sample standard deviation, is removed and its statistic ``R_k`` compared
    with the critical value ``lambda_k`` of a two-sided test at
    ``significance``; the number of outliers is the largest ``k`` with
    ``R_k > lambda_k``.  Best for large stacks (N > 50).

    Parameters
    ----------
    outliers_fraction : float
        Largest fraction of the values of a pixel that may be outliers (0 to 1).
    significance : float
        Significance level of the test (0 to 1).

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
        # the significance enters through the critical values (see combine)
        return _param_array({P_FRACTION: self.outliers_fraction})


def _algorithms() -> dict[str, type[Rejection]]:
    """The rejection classes by name (the ``"algorithm"`` of :meth:`Rejection.to_dict`)."""
    return {c.__name__: c for c in Rejection.__subclasses__()}


def _astropy_limits(clip) -> tuple[float, float]:
    """``sigma_lower`` and ``sigma_upper`` of an astropy SigmaClip (``sigma`` where None)."""
    low = clip.sigma if clip.sigma_lower is None else clip.sigma_lower
    high = clip.sigma if clip.sigma_upper is None else clip.sigma_upper
    return float(low), float(high)


def _astropy_maxiters(clip) -> int | None:
    """``maxiters`` of an astropy SigmaClip (None: to convergence, kept by astropy as inf)."""
    maxiters = clip.maxiters
    if maxiters is None or (isinstance(maxiters, float) and math.isinf(maxiters)):
        return None
    if isinstance(maxiters, float) and maxiters.is_integer():
        return int(maxiters)
    return maxiters


def _astropy_center(cenfunc) -> str:
    """calframe's ``center`` for an astropy ``cenfunc``."""
    if isinstance(cenfunc, str) and cenfunc in ("median", "mean"):
        return cenfunc
    for function, center in ((np.nanmedian, "median"), (np.nanmean, "mean")):
        if cenfunc is function:
            return center
    hint = (" (astropy puts NaN in place of rejected values: use numpy.nanmedian or "
            "numpy.nanmean)" if cenfunc in (np.median, np.mean) else "")
    raise InvalidSettingsError(
        f"astropy SigmaClip(cenfunc={cenfunc!r}) cannot be converted{hint}: calframe's "
        "SigmaClip centres on the median or the mean; use cenfunc='median' or 'mean'")


def _astropy_scale(stdfunc, stats) -> str:
    """calframe's ``scale`` for an astropy ``stdfunc`` ('ddof0': astropy's 'std')."""
    if isinstance(stdfunc, str) and stdfunc in ("std", "mad_std"):
        return "ddof0" if stdfunc == "std" else "mad"
    if isinstance(stdfunc, functools.partial) and not stdfunc.args:
        if stdfunc.func is np.nanstd and stdfunc.keywords == {"ddof": 1}:
            return "std"
        if stdfunc.func is stats.mad_std and stdfunc.keywords == {"ignore_nan": True}:
            return "mad"
    if stdfunc in (np.nanstd, np.std):
        return "ddof0"
    raise InvalidSettingsError(
        f"astropy SigmaClip(stdfunc={stdfunc!r}) cannot be converted: calframe's SigmaClip "
        "scales by the sample standard deviation (stdfunc=functools.partial(numpy.nanstd, "
        "ddof=1)) or by the MAD (stdfunc='mad_std')")


def as_rejection(value) -> Rejection | None:
    """Rejection settings as :func:`calframe.combine` takes them.

    A calframe settings object or None is returned as it is; an
    :class:`astropy.stats.SigmaClip` is converted by
    :meth:`SigmaClip.from_astropy` (or refused with what cannot be converted).

    Parameters
    ----------
    value : Rejection, astropy.stats.SigmaClip or None
        The settings.

    Returns
    -------
    Rejection or None
        The calframe settings (None: no rejection).

    Raises
    ------
    InvalidSettingsError
        Anything else, or astropy settings calframe cannot apply the same way.

    Examples
    --------
    >>> import functools, numpy as np
    >>> from astropy.stats import SigmaClip as AstropySigmaClip
    >>> as_rejection(AstropySigmaClip(sigma=4, cenfunc="mean",
    ...                               stdfunc=functools.partial(np.nanstd, ddof=1)))
    SigmaClip(low=4.0, high=4.0, center='mean', scale='std', maxiters=5)
    """
    if value is None or isinstance(value, Rejection):
        return value
    stats = sys.modules.get("astropy.stats")   # (an instance means it is imported)
    if stats is not None and isinstance(value, stats.SigmaClip):
        return SigmaClip.from_astropy(value)
    raise InvalidSettingsError(
        f"rejection={value!r}: pass a settings object such as SigmaClip(low=3, high=3) "
        "(calframe.combine), an astropy.stats.SigmaClip, or None")


def gesd_critical_values(nmax: int, significance: float) -> np.ndarray:
    """Table ``lam[n, k]`` of GESD critical values for ``n`` values, step ``k + 1``.

    Examples
    --------
    >>> lam = gesd_critical_values(20, 0.05)
    >>> round(float(lam[20, 0]), 3)  # Grubbs' two-sided 5% critical value, n=20
    2.708
    """
    # Student's t quantile; imported here: only GESD needs it, and scipy.special adds
    # about 0.4 s to importing calframe.combine (time.perf_counter, a busy machine)
    from scipy.special import stdtrit

    lam = np.full((nmax + 1, max(nmax, 1)), np.inf)
    for n in range(3, nmax + 1):
        i = np.arange(1, n - 1)          # steps 1 .. n-2
        dof = n - i - 1
        prob = 1.0 - significance / (2.0 * (n - i + 1))
        tval = stdtrit(dof, prob)
        lam[n, : len(i)] = (n - i) * tval / np.sqrt((dof + tval**2) * (n - i + 1))
    return lam
