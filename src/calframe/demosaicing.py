"""Demosaicing of Bayer mosaics into RGB cubes, with uncertainty and mask.

:func:`demosaic` turns a calibrated 2-D CFA frame into a ``(3, ny, nx)``
:class:`~astropy.nddata.CCDData` cube (planes R, G, B) whose uncertainty and
mask are cubes of the same shape.  It stays linear: no white balance, no
gamma.

The methods:

``'bilinear'``
    Normalised convolution per channel: each missing colour is the weighted
    mean of the valid same-colour samples in its 3x3 neighbourhood (weights
    1-2-1 for R and B, the 4-neighbour cross for G).  Masked or non-finite
    samples are left out and the weights renormalised; where a 3x3 window
    has none, a 5x5 window is used.  The uncertainty is exact for this linear
    estimate: ``sigma_out**2 = sum(w**2 sigma**2) / sum(w)**2``.
``'malvar2004'``
    Malvar, He & Cutler (2004) gradient-corrected linear interpolation
    (5x5 kernels that use the other colours' high frequencies), computed
    by ``colour_demosaicing``.  It is linear, so the uncertainty is exact:
    the sum of the squared kernel weights times the input variances,
    including the mirrored samples at the frame edges.  Masked samples are
    first replaced by their bilinear estimate.
``'menon2007'``
    Menon, Andriani & Calvagno (2007) directional interpolation with a
    posteriori decision and refinement, computed by ``colour_demosaicing``.
    It is *not* linear (the direction chosen depends on the data); its
    uncertainty is approximated by the Malvar propagation, whose 5x5
    kernels have a similar sum of squared weights, and the mask is dilated
    over a 7x7 window (the refinement step reaches one pixel further).

**Mask.** A colour plane is flagged at a pixel when any masked sample that its
estimate uses (any non-zero weight) was masked, or when no valid sample was
available; values there are still the best estimate from the valid samples
(bilinear) and are NaN only when there was none.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from scipy import ndimage

from .bayer import _pattern_for, channel_index
from .errors import IncompatibleFramesError, InvalidSettingsError
from .provenance import get_provenance, set_provenance

# The numba kernels (calframe._demosaic_kernels) are imported by the functions that
# run them: 0.3 s that ``import calframe.demosaicing`` and split_rgb do not need.

__all__ = ["METHODS", "demosaic", "split_rgb"]

log = logging.getLogger(__name__)

#: Demosaicing methods known to :func:`demosaic`.
METHODS: tuple[str, ...] = ("bilinear", "malvar2004", "menon2007")

# channel index (R, G1, G2, B) -> RGB plane
_PLANE_OF_CHANNEL = np.array([0, 1, 1, 2])


# Malvar et al. (2004) kernels (Table/Fig. 2 of the paper), divided by 8.
_M_G_AT_RB = np.array([[0, 0, -1, 0, 0],
                       [0, 0, 2, 0, 0],
                       [-1, 2, 4, 2, -1],
                       [0, 0, 2, 0, 0],
                       [0, 0, -1, 0, 0]], float) / 8
_M_RB_AT_G_ROW = np.array([[0, 0, 0.5, 0, 0],
                           [0, -1, 0, -1, 0],
                           [-1, 4, 5, 4, -1],
                           [0, -1, 0, -1, 0],
                           [0, 0, 0.5, 0, 0]], float) / 8
_M_RB_AT_G_COL = _M_RB_AT_G_ROW.T.copy()
_M_RB_AT_BR = np.array([[0, 0, -1.5, 0, 0],
                        [0, 2, 0, 2, 0],
                        [-1.5, 0, 6, 0, -1.5],
                        [0, 2, 0, 2, 0],
                        [0, 0, -1.5, 0, 0]], float) / 8
_IDENTITY5 = np.zeros((5, 5))
_IDENTITY5[2, 2] = 1.0


def _malvar_kernels() -> dict[tuple[int, int], np.ndarray]:
    """Kernel for (RGB plane, pixel channel index) of the Malvar filter.

    Pixel channels: 0 = R, 1 = G1 (red row), 2 = G2 (blue row), 3 = B.
    """
    k = {}
    for chan in range(4):
        k[(1, chan)] = _IDENTITY5 if chan in (1, 2) else _M_G_AT_RB
    k[(0, 0)] = _IDENTITY5
    k[(2, 3)] = _IDENTITY5
    # R at a green on a red row: red neighbours are left/right -> row kernel
    k[(0, 1)] = _M_RB_AT_G_ROW
    k[(0, 2)] = _M_RB_AT_G_COL
    k[(2, 2)] = _M_RB_AT_G_ROW
    k[(2, 1)] = _M_RB_AT_G_COL
    k[(0, 3)] = _M_RB_AT_BR
    k[(2, 0)] = _M_RB_AT_BR
    return k


_MALVAR = _malvar_kernels()


# ---------------------------------------------------------------------------
# Kernels on plain arrays (loops in _demosaic_kernels)
# ---------------------------------------------------------------------------
def _malvar_stack() -> np.ndarray:
    """The Malvar kernels as a (3, 4, 5, 5) array in correlation orientation."""
    out = np.empty((3, 4, 5, 5))
    for (p, chan), k in _MALVAR.items():
        out[p, chan] = k[::-1, ::-1]  # scipy convolves (flips); all are symmetric anyway
    return out


_MALVAR_STACK = _malvar_stack()


def _bilinear(data, var, bad, index):
    """Normalised-convolution bilinear demosaic of float64 arrays.

    Returns values (3, ny, nx), variances (3, ny, nx) or None, flags (3, ny, nx).
    """
    from . import _demosaic_kernels as k

    shape = (3, *data.shape)
    values = np.empty(shape)
    variances = np.empty(shape) if var is not None else np.empty((1, 1, 1))
    flags = np.empty(shape, dtype=bool)
    k.bilinear(data, var if var is not None else np.empty((1, 1)), bad, index,
               k._W_RB, k._W_G, k._W_WIDE, values, variances, flags, var is not None)
    return values, (variances if var is not None else None), flags


def _linear_variance(var, index):
    """Exact variance of the Malvar linear filter (mirrored edges)."""
    from . import _demosaic_kernels as k

    out = np.empty((3, *var.shape))
    k.linear5_variance(var, index, _MALVAR_STACK, out)
    return out


def _footprint_flags(bad, index, dilate=0):
    from . import _demosaic_kernels as k

    flags = np.zeros((3, *bad.shape), dtype=bool)
    if not bad.any():
        return flags
    k.linear5_flags(bad, index, _MALVAR_STACK, flags)
    if dilate:
        for p in range(3):
            flags[p] = ndimage.binary_dilation(flags[p], iterations=dilate)
    return flags


def _import_colour_demosaicing():
    # imported here, not at the top: it takes 1.7 s and only malvar2004 and
    # menon2007 need it.
    # colour-science sets numpy's print options to legacy '1.13' when imported, which
    # would change how every array prints in the caller's process: restore them.
    printoptions = np.get_printoptions()
    errstate = np.geterr()
    try:
        with warnings.catch_warnings():
            # colour-demosaicing 0.2.x imports from scipy.ndimage.filters (deprecated)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            import colour_demosaicing
    finally:
        np.set_printoptions(**printoptions)
        np.seterr(**errstate)
    return colour_demosaicing


_PAD = {"malvar2004": 2, "menon2007": 4}


def _library(data, pattern, method):
    cd = _import_colour_demosaicing()
    func = {"malvar2004": cd.demosaicing_CFA_Bayer_Malvar2004,
            "menon2007": cd.demosaicing_CFA_Bayer_Menon2007}[method]
    # colour-demosaicing names a pattern by its R/G/B letters at [0,0],[0,1],[1,0],[1,1]
    # (our convention) and works on any float range; it returns (ny, nx, 3).  Its
    # convolutions mirror the edge pixel twice (scipy 'reflect'), which breaks the
    # Bayer parity at the border; pad by an even width with a whole-sample mirror
    # (parity kept) and crop instead.
    pad = _PAD[method]
    padded = np.pad(data, pad, mode="reflect")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        rgb = func(padded, pattern)
    rgb = np.moveaxis(np.asarray(rgb, dtype=np.float64), -1, 0)
    return rgb[:, pad:-pad, pad:-pad]


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def demosaic(frame: CCDData, *, method: str = "bilinear", pattern: str | None = None,
             dtype: type = np.float32) -> CCDData:
    """Demosaic a Bayer mosaic into an RGB cube with uncertainty and mask.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        A calibrated 2-D mosaic (linear data; dark/bias already removed).
    method : {'bilinear', 'malvar2004', 'menon2007'}
        Interpolation method (see the module notes for how each propagates
        the uncertainty).
    pattern : str, optional
        Effective pattern at array pixel [0, 0]; default from the frame's
        ``BAYERPAT``/``XBAYROFF``/``YBAYROFF``/``ROWORDER``.
    dtype : numpy dtype
        Output data type (float32 or float64).

    Returns
    -------
    `~astropy.nddata.CCDData`
        Shape ``(3, ny, nx)``, planes R, G, B; ``uncertainty`` (if the input
        has one) and ``mask`` are cubes of the same shape.  Meta: the input's
        without the Bayer keywords, plus ``DEMOSAIC`` (method), ``CFAPAT`` and
        ``PLANE1..3`` = R, G, B.

    Raises
    ------
    ValueError
        If the method is unknown or the frame is not 2-D (or is too small).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData, StdDevUncertainty
    >>> raw = np.tile(np.array([[4., 2.], [2., 1.]], np.float32), (4, 4))
    >>> ccd = CCDData(raw, unit="adu", meta={"BAYERPAT": "RGGB"},
    ...               uncertainty=StdDevUncertainty(np.ones_like(raw)))
    >>> rgb = demosaic(ccd)
    >>> rgb.shape, [float(v) for v in rgb.data[:, 3, 3]]
    ((3, 8, 8), [4.0, 2.0, 1.0])
    >>> round(float(rgb.uncertainty.array[0, 3, 3]), 3)  # R at a B pixel: mean of 4
    0.5
    """
    if method not in METHODS:
        raise InvalidSettingsError(f"method={method!r} is not a demosaicing method; use one of "
                         f"{', '.join(METHODS)}")
    if not isinstance(frame, CCDData):
        raise TypeError(f"demosaic needs a CCDData mosaic, got {type(frame).__name__}")
    if frame.ndim != 2:
        raise IncompatibleFramesError(f"demosaic needs a 2-D Bayer mosaic, got a frame of shape "
                         f"{frame.shape} (already demosaiced?)")
    if min(frame.shape) < 5:
        raise IncompatibleFramesError(
            f"frame of shape {frame.shape} is too small to demosaic; it needs at "
                         "least 5x5 pixels")
    pattern = _pattern_for(frame, pattern)
    data = np.ascontiguousarray(frame.data, dtype=np.float64)
    bad = ~np.isfinite(data)
    if frame.mask is not None:
        bad |= np.asarray(frame.mask, bool)
    var = None
    if frame.uncertainty is not None:
        var = np.ascontiguousarray(frame.uncertainty.array, dtype=np.float64) ** 2
        bad |= ~np.isfinite(var)
    index = channel_index(data.shape, pattern)

    any_bad = bool(bad.any())
    if method == "bilinear":
        values, variances, flags = _bilinear(data, var, bad, index)
    else:
        # replace unusable samples by their bilinear estimate, then filter
        filled = data if not any_bad else data.copy()
        fill_var = None if var is None else (var if not any_bad else var.copy())
        variances = None
        if any_bad:
            values, variances, _ = _bilinear(data, var, bad, index)
            plane = _PLANE_OF_CHANNEL[index]
            ys, xs = np.nonzero(bad)
            filled[ys, xs] = values[plane[ys, xs], ys, xs]
            if fill_var is not None:
                fill_var[ys, xs] = variances[plane[ys, xs], ys, xs]
            unresolved = ~np.isfinite(filled)
            filled[unresolved] = 0.0
            if fill_var is not None:
                fill_var[unresolved] = 0.0
        values = _library(filled, pattern, method)
        if fill_var is not None:
            variances = _linear_variance(fill_var, index)
        flags = _footprint_flags(bad, index, dilate=1 if method == "menon2007" else 0)
        values[flags & ~np.isfinite(values)] = np.nan

    meta = frame.meta.copy()
    for key in ("BAYERPAT", "XBAYROFF", "YBAYROFF"):
        meta.pop(key, None)
    meta["DEMOSAIC"] = method
    meta["CFAPAT"] = pattern
    for i, name in enumerate("RGB", start=1):
        meta[f"PLANE{i}"] = name
    unc = None
    if variances is not None:
        unc = StdDevUncertainty(np.sqrt(variances).astype(np.float32))
    out = CCDData(values.astype(dtype), unit=frame.unit, meta=meta, uncertainty=unc,
                  mask=flags)
    prov = get_provenance(frame)
    prov.add_step("demosaic", method=method, pattern=pattern,
                  uncertainty="exact linear propagation" if method != "menon2007"
                  else "approximated by the Malvar 2004 linear propagation")
    set_provenance(out, prov)
    log.info("demosaiced %s frame with %s (pattern %s); %d flagged values",
             frame.shape, method, pattern, int(flags.sum()))
    return out


def split_rgb(cube: CCDData) -> dict[str, CCDData]:
    """One `CCDData` per colour plane of a demosaiced ``(3, ny, nx)`` cube.

    Parameters
    ----------
    cube : CCDData
        A ``(3, ny, nx)`` cube made by :func:`demosaic`.

    Returns
    -------
    dict of str to CCDData
        ``{'R': ..., 'G': ..., 'B': ...}``, each 2-D with its uncertainty, mask and
        ``PLANE`` keyword.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> cube = CCDData(np.zeros((3, 4, 5), np.float32), unit="adu")
    >>> planes = split_rgb(cube)
    >>> sorted(planes), planes["G"].shape, planes["G"].meta["PLANE"]
    (['B', 'G', 'R'], (4, 5), 'G')
    """
    if not isinstance(cube, CCDData) or cube.ndim != 3 or cube.shape[0] != 3:
        raise IncompatibleFramesError(f"split_rgb needs a (3, ny, nx) CCDData cube, got "
                         f"{getattr(cube, 'shape', type(cube).__name__)}")
    out = {}
    for i, name in enumerate("RGB"):
        meta = cube.meta.copy()
        for k in (1, 2, 3):
            meta.pop(f"PLANE{k}", None)
        meta["PLANE"] = name
        unc = None
        if cube.uncertainty is not None:
            unc = StdDevUncertainty(np.array(cube.uncertainty.array[i]))
        mask = None if cube.mask is None else np.array(cube.mask[i])
        out[name] = CCDData(np.array(cube.data[i]), unit=cube.unit, meta=meta,
                            uncertainty=unc, mask=mask)
        set_provenance(out[name], get_provenance(cube))
    return out
