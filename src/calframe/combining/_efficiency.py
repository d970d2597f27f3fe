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

``f(n)`` comes from the exact distribution of order statistics by
one-dimensional numerical integration (no Monte Carlo): for odd ``n`` from
the density of the middle order statistic, for even ``n`` from the second
moments of the two middle order statistics and their product moment.  The
values for ``n <= 200`` are tabulated (the test suite recomputes them);
beyond, a two-term expansion in ``1/n`` fitted to the end of the table is
used.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np

__all__ = ["c4", "median_efficiency_factor"]

_GRID = np.linspace(-12.0, 12.0, 48001)

#: f(n) for n = 0 .. 200 (index 0 unused), from :func:`_median_variance`; the
#: test suite recomputes every entry.
_F_TABLE = np.array([
    0.0000000000, 1.0000000000, 1.0000000000, 1.1601781388, 1.0921531436,
    1.1975676632, 1.1351017798, 1.2137248579, 1.1599340278, 1.2226657484,
    1.1761226736, 1.2283268169, 1.1875161172, 1.2322284427, 1.1959724567,
    1.2350788563, 1.2024990318, 1.2372517465, 1.2076894815, 1.2389626816,
    1.2119164321, 1.2403446516, 1.2154256403, 1.2414841175, 1.2183857776,
    1.2424397071, 1.2209164710, 1.2432525727, 1.2231049285, 1.2439524470,
    1.2250162296, 1.2445613447, 1.2266999284, 1.2450959133, 1.2281944243,
    1.2455689738, 1.2295299351, 1.2459905602, 1.2307305662, 1.2463686374,
    1.2318157827, 1.2467096079, 1.2328014747, 1.2470186773, 1.2337007427,
    1.2473001214, 1.2345244837, 1.2475574845, 1.2352818365, 1.2477937297,
    1.2359805220, 1.2480113533, 1.2366271087, 1.2482124730, 1.2372272193,
    1.2483988973, 1.2377856957, 1.2485721797, 1.2383067296, 1.2487336625,
    1.2387939682, 1.2488845109, 1.2392506002, 1.2490257418, 1.2396794250,
    1.2491582464, 1.2400829109, 1.2492828091, 1.2404632426, 1.2494001232,
    1.2408223605, 1.2495108032, 1.2411619942, 1.2496153966, 1.2414836903,
    1.2497143917, 1.2417888360, 1.2498082264, 1.2420786790, 1.2498972939,
    1.2423543447, 1.2499819484, 1.2426168510, 1.2500625099, 1.2428671205,
    1.2501392682, 1.2431059916, 1.2502124865, 1.2433342279, 1.2502824041,
    1.2435525264, 1.2503492392, 1.2437615243, 1.2504131913, 1.2439618057,
    1.2504744430, 1.2441539067, 1.2505331617, 1.2443383206, 1.2505895014,
    1.2445155015, 1.2506436038, 1.2446858687, 1.2506955996, 1.2448498097,
    1.2507456094, 1.2450076831, 1.2507937449, 1.2451598214, 1.2508401095,
    1.2453065334, 1.2508847992, 1.2454481059, 1.2509279031, 1.2455848061,
    1.2509695042, 1.2457168828, 1.2510096796, 1.2458445683, 1.2510485015,
    1.2459680797, 1.2510860370, 1.2460876199, 1.2511223492, 1.2462033789,
    1.2511574968, 1.2463155348, 1.2511915350, 1.2464242549, 1.2512245155,
    1.2465296960, 1.2512564868, 1.2466320057, 1.2512874945, 1.2467313230,
    1.2513175816, 1.2468277785, 1.2513467885, 1.2469214957, 1.2513751532,
    1.2470125909, 1.2514027117, 1.2471011739, 1.2514294977, 1.2471873485,
    1.2514555435, 1.2472712130, 1.2514808791, 1.2473528604, 1.2515055334,
    1.2474323786, 1.2515295333, 1.2475098511, 1.2515529047, 1.2475853571,
    1.2515756718, 1.2476589718, 1.2515978578, 1.2477307666, 1.2516194848,
    1.2478008093, 1.2516405734, 1.2478691644, 1.2516611437, 1.2479358934,
    1.2516812145, 1.2480010548, 1.2517008037, 1.2480647042, 1.2517199285,
    1.2481268950, 1.2517386051, 1.2481876776, 1.2517568493, 1.2482471006,
    1.2517746758, 1.2483052100, 1.2517920988, 1.2483620502, 1.2518091318,
    1.2484176632, 1.2518257878, 1.2484720893, 1.2518420792, 1.2485253674,
    1.2518580179, 1.2485775342, 1.2518736150, 1.2486286253, 1.2518888816,
    1.2486786746, 1.2519038280, 1.2487277145, 1.2519184642, 1.2487757764,
    1.2519327997, 1.2488228901, 1.2519468437, 1.2488690844, 1.2519606050,
    1.2489143869,
])


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
    # deferred: scipy.stats takes about 1.8 s to import, and only the tests call
    # this function (to recompute _F_TABLE)
    from scipy import special, stats

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

    Parameters
    ----------
    n : int
        Number of values.

    Returns
    -------
    float
        ``f(n)`` (1 for ``n`` of 1 and 2, about ``sqrt(pi / 2)`` for large ``n``).

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
    if n < len(_F_TABLE):
        return float(_F_TABLE[n])
    return _large_n_factor(n)


def c4(n: int) -> float:
    """``E[s] / sigma`` for the sample standard deviation of ``n`` Gaussian values.

    Parameters
    ----------
    n : int
        Number of values (at least 2).

    Returns
    -------
    float
        The bias factor ``c4(n)``.

    Examples
    --------
    >>> round(c4(5), 4)
    0.94
    """
    n = int(n)
    if n < 2:
        return 1.0
    return math.exp(0.5 * math.log(2.0 / (n - 1)) + math.lgamma(n / 2)
                    - math.lgamma((n - 1) / 2))


@lru_cache(maxsize=16)
def tables(nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """``(f, c4)`` as arrays indexed by ``n = 0 .. nmax`` (index 0 unused)."""
    f = np.ones(nmax + 1)
    c = np.ones(nmax + 1)
    for n in range(1, nmax + 1):
        f[n] = median_efficiency_factor(n)
        c[n] = c4(n)
    f.setflags(write=False)
    c.setflags(write=False)
    return f, c


def _large_n_factor(n: int) -> float:
    """``f(n)`` beyond the table: ``f(n)**2 = (pi/2) (1 - a/n + b/n**2)``.

    ``a`` and ``b`` are solved from the last two tabulated values of the same
    parity (odd and even ``n`` differ); the result agrees with the integral
    to 2e-4 or better (and needs neither scipy nor time).
    """
    n1 = len(_F_TABLE) - 1
    if (n1 - n) % 2:
        n1 -= 1  # the last tabulated n of the same parity as n
    n2 = n1 - 2
    y1 = 1.0 - _F_TABLE[n1] ** 2 / (np.pi / 2)   # = a/n1 - b/n1**2
    y2 = 1.0 - _F_TABLE[n2] ** 2 / (np.pi / 2)
    # a/n - b/n^2 = y  for n1, n2: linear in (a, b)
    matrix = np.array([[1 / n1, -1 / n1**2], [1 / n2, -1 / n2**2]])
    a, b = np.linalg.solve(matrix, np.array([y1, y2]))
    return float(np.sqrt(np.pi / 2 * (1.0 - a / n + b / n**2)))
