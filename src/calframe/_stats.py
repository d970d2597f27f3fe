"""Numeric constants of the robust statistics, shared by the NumPy code and the compiled kernels.

numba freezes a module-level number into a kernel when it compiles it, and
its on-disk cache is keyed on the kernel's own source file: after changing a
value here, empty numba's cache (the ``__pycache__`` folders) so that the
kernels are compiled again.
"""

from __future__ import annotations

__all__ = ["MAD_TO_SIGMA", "WINSOR_MAXITER", "WINSOR_SIGMA_FACTOR", "WINSOR_TOLERANCE"]

#: standard deviation of a Gaussian per unit of its median absolute deviation,
#: ``1 / Phi^-1(3/4)``
MAD_TO_SIGMA = 1.482602218505602

#: winsorized sigma clipping (Siril, PixInsight ImageIntegration): the standard
#: deviation of the values winsorized at 1.5 sigma, times this factor, is that of
#: the Gaussian they were drawn from
WINSOR_SIGMA_FACTOR = 1.134
#: the winsorizing stops once the scale changes by at most this fraction (0.05%) ...
WINSOR_TOLERANCE = 0.0005
#: ... or after this many rounds
WINSOR_MAXITER = 100
