"""Scaling (normalisation) and weighting of frames before they are combined."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidSettingsError, MissingMetadataError

__all__ = ["Scale", "frame_scales", "frame_weights"]

_STATISTICS = ("median", "mean")
_MODES = ("multiplicative", "additive")


@dataclass(frozen=True)
class Scale:
    """How frames are brought to a common level before they are combined.

    Parameters
    ----------
    statistic : {"median", "mean"}, array or callable
        ``"median"`` / ``"mean"``: each frame's level is that statistic of
        its valid pixels (a regular subsample of about 400,000 of them), and
        frames are brought to the mean of the levels.  An array gives one
        number per frame: the factor each frame is multiplied by
        (multiplicative) or the offset added to it (additive).  A callable is
        called with the 1-D array of a frame's valid values and returns that
        number (e.g. ``lambda v: 1 / np.median(v)``, as in ccdproc).
    mode : {"multiplicative", "additive"}
        Multiplicative for flats (levels that differ by a factor: lamp or
        sky brightness); additive for biases and darks (levels that drift by
        an offset).

    Examples
    --------
    >>> Scale("median").mode
    'multiplicative'
    >>> Scale("median", mode="additive").to_dict()
    {'statistic': 'median', 'mode': 'additive'}
    """

    statistic: Any = "median"
    mode: str = "multiplicative"

    def __post_init__(self):
        if self.mode not in _MODES:
            raise InvalidSettingsError(
                f"Scale(mode={self.mode!r}): use 'multiplicative' or 'additive'")
        stat = self.statistic
        if isinstance(stat, str):
            if stat not in _STATISTICS:
                raise InvalidSettingsError(
                    f"Scale(statistic={stat!r}): use 'median', 'mean', an array with one "
                    "number per frame, or a callable")
        elif not callable(stat):
            try:
                values = np.asarray(stat, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise InvalidSettingsError(
                    f"Scale(statistic={stat!r}): not a statistic name, array or callable"
                ) from err
            if values.ndim != 1 or not np.all(np.isfinite(values)):
                raise InvalidSettingsError(
                    f"Scale(statistic=...): an array of scales must be 1-D and finite, got "
                    f"shape {values.shape}")
            object.__setattr__(self, "statistic", tuple(float(v) for v in values))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (a callable is recorded by its name)."""
        stat = self.statistic
        if callable(stat):
            stat = f"callable:{getattr(stat, '__qualname__', type(stat).__name__)}"
        elif isinstance(stat, tuple):
            stat = list(stat)
        return {"statistic": stat, "mode": self.mode}


def as_scale(scale) -> Scale | None:
    """Normalise the ``scale=`` argument of :func:`combine`."""
    if scale is None or isinstance(scale, Scale):
        return scale
    if isinstance(scale, str) or callable(scale):
        return Scale(scale)
    if isinstance(scale, Sequence | np.ndarray):
        return Scale(scale)
    raise InvalidSettingsError(
        f"scale={scale!r}: use None, 'median', 'mean', an array, a callable or a Scale")


def frame_scales(scale: Scale | None, sources) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``(mul, add)`` with which values are normalised: ``x * mul + add``."""
    n = len(sources)
    mul = np.ones(n)
    add = np.zeros(n)
    if scale is None:
        return mul, add
    stat = scale.statistic
    if isinstance(stat, tuple):
        values = np.asarray(stat)
        if values.size != n:
            raise InvalidSettingsError(
                f"scale has {values.size} values for {n} frames; give one per frame")
        if scale.mode == "multiplicative":
            if np.any(values == 0):
                raise InvalidSettingsError("scale: a multiplicative factor of 0 erases a frame")
            mul = values.copy()
        else:
            add = values.copy()
        return mul, add
    if isinstance(stat, str):
        func: Callable = np.median if stat == "median" else np.mean
        levels = np.empty(n)
        for i, src in enumerate(sources):
            values = src.sample()
            if values.size == 0:
                raise InvalidSettingsError(
                    f"scale={stat!r}: {src.label} has no valid pixel to measure its level")
            levels[i] = float(func(values))
        ref = float(np.mean(levels))
        if scale.mode == "multiplicative":
            if np.any(levels == 0) or not np.all(np.isfinite(levels)):
                raise InvalidSettingsError(
                    f"scale={stat!r} (multiplicative): a frame has level {levels.min()}; "
                    "frames at zero level cannot be scaled, use mode='additive'")
            mul = ref / levels
        else:
            add = ref - levels
        return mul, add
    for i, src in enumerate(sources):  # callable
        data, _ = src.read_all()
        value = float(stat(data[np.isfinite(data)]))
        if not math.isfinite(value) or (scale.mode == "multiplicative" and value == 0):
            raise InvalidSettingsError(
                f"scale callable returned {value} for {src.label}; it must return a finite, "
                "non-zero number")
        if scale.mode == "multiplicative":
            mul[i] = value
        else:
            add[i] = value
    return mul, add


def frame_weights(weights, sources, method: str) -> tuple[np.ndarray, bool, Any]:
    """Per-frame weights, whether to use inverse variances, and the JSON form."""
    n = len(sources)
    if weights is None:
        return np.ones(n), False, None
    if method == "median":
        raise InvalidSettingsError(
            "weights apply to method='mean' or 'sum'; a median is not weighted "
            "(pass weights=None, or use method='mean' with a rejection)")
    if isinstance(weights, str):
        if weights == "exposure":
            values = []
            for src in sources:
                t = src.exptime
                if t is None or not t > 0:
                    raise MissingMetadataError(
                        f"weights='exposure': {src.label} has no positive EXPTIME "
                        f"({t!r}); set EXPTIME or pass an array of weights")
                values.append(t)
            return np.asarray(values, dtype=np.float64), False, "exposure"
        if weights == "inverse-variance":
            missing = [s.label for s in sources if not s.has_unc]
            if missing:
                raise MissingMetadataError(
                    f"weights='inverse-variance' needs an uncertainty on every frame; "
                    f"{missing[0]} has none (read frames with gain and read noise, or "
                    "pass an array of weights)")
            return np.ones(n), True, "inverse-variance"
        raise InvalidSettingsError(
            f"weights={weights!r}: use None, an array, 'exposure' or 'inverse-variance'")
    try:
        values = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidSettingsError(f"weights={weights!r}: not an array of numbers") from err
    if values.shape != (n,):
        raise InvalidSettingsError(
            f"weights has shape {values.shape} for {n} frames; give one weight per frame")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
        raise InvalidSettingsError(
            "weights must be finite, >= 0, and not all 0")
    return values, False, values.tolist()
