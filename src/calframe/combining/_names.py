"""The rejection algorithms by name: one vocabulary for the command line and the runs.

Siril's names (``minmax`` is IRAF's), each with what its two limits mean and
the defaults of its settings class in :mod:`calframe.combining`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidSettingsError
from ._rejection import (
    GESD,
    LinearFitClip,
    MinMaxClip,
    PercentileClip,
    SigmaClip,
    WinsorizedSigmaClip,
)

__all__ = ["REJECTIONS", "RejectionName", "rejection_from_name"]


@dataclass(frozen=True)
class RejectionName:
    """One rejection algorithm by name: its settings and what ``low``/``high`` mean.

    Attributes
    ----------
    name : str
        The name (Siril's).
    build : callable or None
        ``build(low, high)`` gives the settings object (None: no rejection).
    low, high : float
        The default limits (those of the settings class).
    limits : str
        What the limits are, in words.
    aliases : tuple of str
        Other spellings taken for the name (Siril's one-letter names).
    """

    name: str
    build: Callable[[float, float], object] | None
    low: float
    high: float
    limits: str
    aliases: tuple[str, ...] = ()

    @property
    def whole(self) -> bool:
        """Whether the limits are numbers of values (whole numbers)."""
        return self.name == "minmax"


#: The rejection algorithms by name.
REJECTIONS: dict[str, RejectionName] = {r.name: r for r in (
    RejectionName("none", None, 0.0, 0.0, "no rejection"),
    RejectionName("sigma", lambda lo, hi: SigmaClip(low=lo, high=hi), 3.0, 3.0,
                  "sigma below/above the median", ("s",)),
    RejectionName("mad", lambda lo, hi: SigmaClip(low=lo, high=hi, scale="mad"), 3.0, 3.0,
                  "sigma (1.4826 MAD) below/above the median", ("a", "amad")),
    RejectionName("winsorized", lambda lo, hi: WinsorizedSigmaClip(low=lo, high=hi), 3.0,
                  3.0, "winsorized sigma below/above the median", ("w",)),
    RejectionName("linear", lambda lo, hi: LinearFitClip(low=lo, high=hi), 5.0, 2.5,
                  "mean deviations below/above a line fitted to the sorted values",
                  ("l", "linearfit")),
    RejectionName("percentile", lambda lo, hi: PercentileClip(low=lo, high=hi), 0.2, 0.1,
                  "fractions of the median below/above it", ("p",)),
    RejectionName("minmax", lambda lo, hi: MinMaxClip(nlow=int(lo), nhigh=int(hi)), 1, 1,
                  "numbers of lowest/highest values"),
    RejectionName("generalized",
                  lambda lo, hi: GESD(outliers_fraction=lo, significance=hi), 0.3, 0.05,
                  "largest fraction of outliers and significance of the test",
                  ("g", "gesd")),
)}

#: Other spellings -> name.
ALIASES = {alias: r.name for r in REJECTIONS.values() for alias in r.aliases}


def rejection_from_name(name: str, low: float | None = None, high: float | None = None):
    """The rejection settings object for an algorithm's name (None for ``'none'``).

    Parameters
    ----------
    name : str
        One of :data:`REJECTIONS` or an alias (Siril's one-letter names).
    low, high : float, optional
        The limits (default: the algorithm's own).

    Returns
    -------
    Rejection or None
        The settings object, None for ``'none'``.

    Raises
    ------
    InvalidSettingsError
        An unknown name, or limits the algorithm cannot take.

    Examples
    --------
    >>> rejection_from_name("minmax", high=2)
    MinMaxClip(nlow=1, nhigh=2)
    >>> rejection_from_name("w")
    WinsorizedSigmaClip(low=3.0, high=3.0, maxiters=10, cutoff=1.5)
    >>> rejection_from_name("none") is None
    True
    """
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in REJECTIONS:
        raise InvalidSettingsError(f"rejection {name!r} is not known; use one of "
                                   f"{', '.join(REJECTIONS)}")
    choice = REJECTIONS[key]
    for which, value in (("low", low), ("high", high)):
        if value is None:
            continue
        if choice.whole and value != int(value):
            raise InvalidSettingsError(f"{which}={value:g} is not a whole number of values "
                                       "(minmax rejects that many lowest/highest values)")
        if key == "generalized" and not 0 < value < 1:
            raise InvalidSettingsError(f"{which}={value:g} must be between 0 and 1 for the "
                                       "generalized ESD test")
        if key not in ("none", "minmax") and not value > 0:
            raise InvalidSettingsError(f"{which}={value:g} must be more than 0 for {key} "
                                       "rejection")
    if choice.whole and (low, high) == (0, 0):
        raise InvalidSettingsError("low=0 and high=0 reject nothing; use rejection 'none'")
    if choice.build is None:
        return None
    return choice.build(choice.low if low is None else low,
                        choice.high if high is None else high)
