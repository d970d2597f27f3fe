"""Exact small-N factors for the uncertainty of a combined pixel.

For ``n`` independent Gaussian values of standard deviation ``sigma``:

* the mean has variance ``sigma**2 / n``;
* the median has variance ``f(n)**2 * sigma**2 / n``, where ``f(n)**2`` tends
  to ``pi / 2`` for large ``n`` but is smaller at small ``n``
  (``f(1) = f(2) = 1``, ``f(3)**2 = 1.3460``, ``f(4)**2 = 1.1928``,
  ``f(10)**2 = 1.3833``; even ``n`` is more efficient than odd);
* the sample standard deviation ``s`` (``ddof=1``) has ``E[s] = c4(n) sigma``
  (``c4(2) = 0.798``, ``c4(5) = 0.940``, ``c4(30) = 0.991``), so ``s / c4(n)``
  is an unbiased estimate of ``sigma``.

``f(n)`` is computed here from the exact distribution of order statistics by
one-dimensional numerical integration (no Monte Carlo, no asymptotic
formula): for odd ``n`` from the density of the middle order statistic, for
even ``n`` from the second moments of the two middle order statistics and
their product moment.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
from scipy import special, stats

__all__ = ["c4", "median_efficiency_factor"]

_GRID = np.linspace(-12.0, 12.0, 48001)


def _trapz_cumulative_from_top(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``G[i] = integral of y from x[i] to the top of the grid``."""
    step = np.diff(x)
    pieces = 0.5 * (y[1:] + y[:-1]) * step
    out = np.zeros_like(y)
    out[:-1] = np.cumsum(pieces[::-1])[::-1]
    return out


@cache
def _median_variance(n: int) -> float:
    """Variance of the median of ``n`` standard normal values."""
    if n <= 2:
        return 1.0 / n
    x = _GRID
    logcdf = stats.norm.logcdf(x)
    logsf = stats.norm.logsf(x)
    logpdf = stats.norm.logpdf(x)
    if n % 2 == 1:
        k = n // 2  # order statistic k+1 of n (0-based k below, k above)
        logc = special.gammaln(n + 1) - 2 * special.gammaln(k + 1)
        dens = np.exp(logc + k * logcdf + k * logsf + logpdf)
        return float(np.trapezoid(x * x * dens, x))
    k = n // 2  # the middle pair: order statistics k and k+1 (1-based)
    # second moment of X_(k) (equal to that of X_(k+1) by symmetry)
    logc = special.gammaln(n + 1) - special.gammaln(k) - special.gammaln(n - k + 1)
    dens_k = np.exp(logc + (k - 1) * logcdf + (n - k) * logsf + logpdf)
    m2 = float(np.trapezoid(x * x * dens_k, x))
    # product moment E[X_(k) X_(k+1)]: joint density
    # n!/((k-1)!(n-k-1)!) F(x)^(k-1) f(x) f(y) (1-F(y))^(n-k-1), x < y
    logc2 = special.gammaln(n + 1) - special.gammaln(k) - special.gammaln(n - k)
    inner = _trapz_cumulative_from_top(x * np.exp(logpdf + (n - k - 1) * logsf), x)
    outer = x * np.exp(logc2 + (k - 1) * logcdf + logpdf) * inner
    m11 = float(np.trapezoid(outer, x))
    return 0.5 * (m2 + m11)


def median_efficiency_factor(n: int) -> float:
    """``f(n) = sqrt(n * Var(median of n unit Gaussians))``.

    The standard error of the median of ``n`` Gaussian values is
    ``f(n) * sigma / sqrt(n)``.

    Examples
    --------
    >>> round(median_efficiency_factor(3) ** 2, 4)
    1.346
    >>> round(median_efficiency_factor(1001) ** 2, 3)  # about pi/2
    1.57
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n={n}: need at least one value")
    return float(np.sqrt(n * _median_variance(n)))


def c4(n: int) -> float:
    """``E[s] / sigma`` for the sample standard deviation of ``n`` Gaussian values.

    Examples
    --------
    >>> round(c4(5), 4)
    0.94
    """
    n = int(n)
    if n < 2:
        return 1.0
    return float(np.exp(0.5 * np.log(2.0 / (n - 1)) + special.gammaln(n / 2)
                        - special.gammaln((n - 1) / 2)))


@lru_cache(maxsize=16)
def tables(nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """``(f, c4)`` as arrays indexed by ``n = 0 .. nmax`` (index 0 unused)."""
    f = np.ones(nmax + 1)
    c = np.ones(nmax + 1)
    for n in range(1, nmax + 1):
        f[n] = median_efficiency_factor(n) if n <= 400 else _large_n_factor(n)
        c[n] = c4(n)
    f.setflags(write=False)
    c.setflags(write=False)
    return f, c


def _large_n_factor(n: int) -> float:
    # beyond 400 frames the asymptote with its 1/n correction is exact to 1e-5
    f400 = median_efficiency_factor(400) ** 2
    slope = (np.pi / 2 - f400) * 400
    return float(np.sqrt(np.pi / 2 - slope / n))
