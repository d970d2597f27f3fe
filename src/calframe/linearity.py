"""Is a frame linear?  Refusing gamma-encoded lights on a linear flat.

Flat-fielding divides the light by the flat because both are proportional to
the same pixel response.  A RAW converter's default development applies a
tone curve (sRGB gamma ~2.2, plus white balance and auto-brightness), after
which the light is roughly ``(signal x response) ** (1 / 2.2)``: dividing it
by a linear flat leaves ``response ** (1/2.2 - 1)``, and the vignetting is
over-corrected (the corners come out brighter than the centre).  A corner
at 23% of the centre in the flat comes out at 2.2 times the centre.  calframe
reads RAW files linearly and never develops them; this module detects frames
that were developed elsewhere and refuses (or warns about) mixing them with
linear calibration frames.

What says a frame is not linear (first match wins):

1. ``GAMMA`` differing from 1 (``encode_gamma`` and developed-image readers
   write it);
2. ``CFLINEAR = F`` (a reader or user says so; ``T`` says linear);
3. ``TRANSFER`` or ``COLORSP`` naming a display transfer curve (``SRGB``,
   ``ADOBERGB``, ``REC709``) or ``COLORSP = 'RGB'`` from a developed RGB
   TIFF/JPEG (values as stored, not linearised);
4. an RGB cube not made by :func:`calframe.demosaic` (no ``DEMOSAIC``
   keyword): a developed image;
5. a JPEG (``IMGFMT = 'JPEG'``), or 8-bit data (an 8-bit PNG/TIFF mode in
   ``IMGMODE``, or ``BITPIX = 8``) without a Bayer pattern.

A 2-D mosaic with ``BAYERPAT`` (RAW or FITS from an astro camera) is linear;
anything else is "unknown" and passes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.nddata import CCDData

from . import bayer
from ._stats import MAD_TO_SIGMA
from .errors import InvalidSettingsError, NonLinearDataError, NonLinearDataWarning
from .provenance import _ATTRIBUTE as _PROVENANCE_ATTRIBUTE

__all__ = ["LinearityCheck", "check_flat_linearity", "check_light_linearity",
           "check_linear_pair", "encode_gamma", "header_linearity", "linearity",
           "response_exponent"]

log = logging.getLogger(__name__)

_CURVES = ("SRGB", "ADOBERGB", "REC709", "GAMMA")
_EIGHT_BIT_MODES = ("L", "P", "RGB", "RGBA", "LA")


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().upper()
    if text in ("T", "TRUE", "1", "YES", "Y"):
        return True
    if text in ("F", "FALSE", "0", "NO", "N"):
        return False
    return None


def linearity(frame: CCDData) -> tuple[bool | None, str]:
    """Whether a frame holds linear data, and why calframe thinks so.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        A frame as read by :func:`calframe.read_frame` (or made by calframe).

    Returns
    -------
    (bool or None, str)
        True (linear), False (gamma-encoded / developed) or None (unknown),
        with the reason in words.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> raw = CCDData(np.ones((4, 4)), unit="adu", meta={"BAYERPAT": "RGGB"})
    >>> linearity(raw)
    (True, 'a 2-D Bayer mosaic (BAYERPAT = RGGB)')
    >>> linearity(encode_gamma(raw, gamma=2.2, white=1.0))
    (False, 'GAMMA = 2.2')
    """
    return header_linearity(frame.meta, frame.shape)


def _declared_linearity(meta, shape: tuple[int, ...]) -> tuple[bool, str] | None:
    """What the header declares: GAMMA, CFLINEAR, a display transfer curve."""
    if "GAMMA" in meta:
        try:
            gamma = float(meta["GAMMA"])
        except (TypeError, ValueError):
            gamma = None
        if gamma is not None and np.isfinite(gamma):
            if abs(gamma - 1.0) > 1e-3:
                return False, f"GAMMA = {gamma:g}"
            return True, "GAMMA = 1"
    if "CFLINEAR" in meta:
        flag = _truthy(meta["CFLINEAR"])
        if flag is not None:
            return flag, f"CFLINEAR = {'T' if flag else 'F'}"
    for key in ("TRANSFER", "COLORSP"):
        value = str(meta.get(key, "")).strip().upper().replace(" ", "").replace("-", "")
        if value in _CURVES:
            return False, f"{key} = {meta[key]!r} (a display transfer curve)"
    return None


def _developed_image(meta, shape: tuple[int, ...]) -> tuple[bool, str] | None:
    """A developed (display-encoded) image: RGB not demosaiced by calframe, JPEG, 8 bits."""
    if str(meta.get("COLORSP", "")).strip().upper() == "RGB" and "DEMOSAIC" not in meta:
        return False, "COLORSP = 'RGB': a developed colour image, values as stored"
    if len(shape) == 3 and shape[0] == 3 and "DEMOSAIC" not in meta:
        return False, "an RGB image not made by calframe.demosaic (a developed image)"
    pattern = str(meta.get("BAYERPAT", "")).strip().upper()
    fmt = str(meta.get("IMGFMT", "")).strip().upper()
    if fmt == "JPEG":
        return False, "a JPEG image (display-encoded, gamma)"
    if str(meta.get("IMGMODE", "")).strip().upper() in _EIGHT_BIT_MODES and not pattern:
        return False, f"an 8-bit {fmt or 'image'} (mode {meta['IMGMODE']}), display-encoded"
    if meta.get("BITPIX") == 8 and not pattern:
        return False, "8-bit data without a Bayer pattern (a developed image)"
    return None


def _sensor_data(meta, shape: tuple[int, ...]) -> tuple[bool, str] | None:
    """Sensor data: a 2-D Bayer mosaic, or an image demosaiced by calframe."""
    pattern = str(meta.get("BAYERPAT", "")).strip().upper()
    if pattern and len(shape) == 2:
        return True, f"a 2-D Bayer mosaic (BAYERPAT = {pattern})"
    if "DEMOSAIC" in meta:
        return True, f"demosaiced by calframe ({meta['DEMOSAIC']}), linear"
    return None


def header_linearity(meta, shape: tuple[int, ...]) -> tuple[bool | None, str]:
    """:func:`linearity` from a frame's header and shape alone (no pixels).

    The first of these that applies decides: what the header declares
    (GAMMA, CFLINEAR, a display transfer curve in TRANSFER or COLORSP), a
    developed image (RGB not demosaiced by calframe, JPEG, 8-bit samples
    without a Bayer pattern), sensor data (a 2-D Bayer mosaic, an image
    demosaiced by calframe).

    Parameters
    ----------
    meta : `~astropy.io.fits.Header` or mapping
        The frame's header, with the normalised keywords of
        :mod:`calframe.metadata`.
    shape : tuple of int
        The frame's shape (``(3, ny, nx)`` for an RGB image).

    Returns
    -------
    (bool or None, str)
        As :func:`linearity`: True (linear), False (display-encoded) or None
        (the header does not say), with the reason in words.

    Examples
    --------
    >>> header_linearity({"IMGFMT": "JPEG", "IMGMODE": "L"}, (800, 1280))
    (False, 'a JPEG image (display-encoded, gamma)')
    """
    for rule in (_declared_linearity, _developed_image, _sensor_data):
        verdict = rule(meta, shape)
        if verdict is not None:
            return verdict
    return None, "nothing in the header says"


def response_exponent(light: CCDData, flat: CCDData, *, block: int = 16,
                      pattern: str | None = None) -> float:
    """How a light's background follows the flat's vignetting: ``light ~ flat ** b``.

    A linear light of a smooth sky seen through the same optics is proportional
    to the flat (``b = 1``); one developed with a display gamma follows
    ``flat ** (1 / gamma)`` (``b`` near 0.45).  Measured on block medians (robust
    to stars) of one green channel of a mosaic, by a least-squares fit of
    ``log(light)`` against ``log(flat)``.  Needs bias-subtracted frames and a
    flat whose level varies by at least 20 % across the frame.

    Parameters
    ----------
    light, flat : `~astropy.nddata.CCDData`
        2-D frames of the same shape (bias/dark removed).
    block : int
        Block size, in pixels of the channel, for the medians.
    pattern : str, optional
        Effective Bayer pattern; default from the flat's (or light's) keywords;
        the frames are treated as monochrome when neither has one.

    Returns
    -------
    float
        The exponent ``b``; NaN when it cannot be measured (shapes differ, too
        few blocks, or too little vignetting).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> vig = 1 - 0.6 * ((xx - 64) ** 2 + (yy - 64) ** 2) / 64 ** 2 / 2
    >>> flat = CCDData(vig, unit="")
    >>> light = CCDData(3000 * vig, unit="adu")
    >>> round(response_exponent(light, flat), 3)
    1.0
    >>> round(response_exponent(encode_gamma(light, white=65535.0), flat), 3)
    0.455
    """
    if light.shape != flat.shape or light.ndim != 2:
        return float("nan")
    if pattern is None:
        for frame in (flat, light):
            if str(frame.meta.get("BAYERPAT", "")).strip():
                pattern = bayer.effective_pattern(frame)
                break

    def plane(frame):
        data = np.array(frame.data, dtype=np.float64)
        if frame.mask is not None:
            data[np.asarray(frame.mask, bool)] = np.nan
        return bayer.channel_views(data, pattern)["G1"] if pattern else data

    lp, fp = plane(light), plane(flat)
    by, bx = lp.shape[0] // block, lp.shape[1] // block
    if by * bx < 9:
        return float("nan")

    def blocks(a):
        a = a[:by * block, :bx * block].reshape(by, block, bx, block).transpose(0, 2, 1, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
            return np.nanmedian(a.reshape(by, bx, -1), axis=-1).ravel()

    lb, fb = blocks(lp), blocks(fp)
    good = np.isfinite(lb) & np.isfinite(fb) & (lb > 0) & (fb > 0)
    if good.sum() < 9 or fb[good].max() < 1.2 * fb[good].min():
        return float("nan")
    x, y = np.log(fb[good]), np.log(lb[good])
    slope = np.polyfit(x, y, 1)[0]
    # one pass of outlier rejection (a bright nebula, a satellite trail...)
    resid = y - np.polyval(np.polyfit(x, y, 1), x)
    keep = np.abs(resid) < 3 * MAD_TO_SIGMA * np.median(np.abs(resid)) + 1e-12
    if keep.sum() >= 9:
        slope = np.polyfit(x[keep], y[keep], 1)[0]
    return float(slope)


def check_linear_pair(light: CCDData, flat: CCDData, *, on_mismatch: str = "raise",
                      light_name: str = "light", flat_name: str = "flat",
                      check_data: bool = False) -> None:
    """Refuse (or warn about) a gamma-encoded frame meeting a linear flat.

    Parameters
    ----------
    light, flat : `~astropy.nddata.CCDData`
        The frame to be flat-fielded and the flat.
    on_mismatch : {'raise', 'warn', 'ignore'}
        What to do when one of them is not linear.
    light_name, flat_name : str
        Names (e.g. file names) used in the message.
    check_data : bool
        When the headers do not tell whether the light is linear, measure
        :func:`response_exponent` and count an exponent below 0.75 as
        gamma-encoded (for bias-subtracted lights of the sky through the same
        optics as the flat).

    Raises
    ------
    NonLinearDataError
        With ``on_mismatch='raise'``, when either frame is gamma-encoded.
    ValueError
        If ``on_mismatch`` is not recognised.

    Warns
    -----
    NonLinearDataWarning
        With ``on_mismatch='warn'``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> flat = CCDData(np.ones((4, 4)), unit="", meta={"BAYERPAT": "RGGB"})
    >>> light = CCDData(np.ones((4, 4)), unit="adu", meta={"BAYERPAT": "RGGB"})
    >>> check_linear_pair(light, flat)  # both linear: nothing happens
    >>> developed = CCDData(np.ones((3, 4, 4)), unit="adu")
    >>> check_linear_pair(developed, flat)
    Traceback (most recent call last):
    ...
    calframe.errors.NonLinearDataError: light is not linear (an RGB image not made by ...
    """
    if on_mismatch not in ("raise", "warn", "ignore"):
        raise InvalidSettingsError(f"on_mismatch={on_mismatch!r} is not recognised; use 'raise', "
                         "'warn' or 'ignore'")
    light_lin, light_why = linearity(light)
    flat_lin, flat_why = linearity(flat)
    problems = []
    if light_lin is False:
        problems.append(f"{light_name} is not linear ({light_why})")
    if flat_lin is False:
        problems.append(f"{flat_name} is not linear ({flat_why})")
    if check_data and light_lin is None and flat_lin is not False:
        exponent = response_exponent(light, flat)
        log.debug("response exponent of %s against %s: %.3f", light_name, flat_name, exponent)
        if np.isfinite(exponent) and exponent < 0.75:
            problems.append(f"{light_name} looks gamma-encoded (its background follows the "
                            f"flat's vignetting as flat ** {exponent:.2f}, not flat ** 1)")
    if not problems or on_mismatch == "ignore":
        return
    message = ("; ".join(problems) + ": flat-fielding needs linear data on both sides "
               "(a gamma-encoded light divided by a linear flat over-corrects the "
               "vignetting). Use the camera's RAW files, read with calframe.read_frame, "
               "or linearise the frame first and set CFLINEAR = T")
    if on_mismatch == "raise":
        raise NonLinearDataError(message)
    warnings.warn(message, NonLinearDataWarning, stacklevel=2)


def encode_gamma(frame: CCDData, *, gamma: float = 2.2, white: float | None = None,
                 ) -> CCDData:
    """Apply a pure power-law tone curve, as a RAW converter's development would.

    This exists to show (and test) what happens to developed data; calframe
    never calls it on the calibration path.  ``out = white * (data / white) **
    (1 / gamma)``, negative values clipped to 0; the result carries
    ``GAMMA = gamma`` and ``CFLINEAR = F`` and no uncertainty.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        Linear data.
    gamma : float
        Display gamma (2.2 for sRGB-like curves).
    white : float, optional
        The level that maps to itself (default: the frame's maximum).

    Returns
    -------
    CCDData
        The encoded data (float, the frame's float type or float32), its unit
        and a copy of its mask; GAMMA and CFLINEAR = F in the header.

    Raises
    ------
    InvalidSettingsError
        ``gamma`` or ``white`` not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> ccd = CCDData(np.array([[0.25, 1.0]]), unit="adu")
    >>> encode_gamma(ccd, gamma=2.0).data
    array([[0.5, 1. ]])
    """
    if not gamma > 0:
        raise InvalidSettingsError(f"gamma={gamma} must be positive")
    data = np.asarray(frame.data, dtype=np.float64)
    if white is None:
        white = float(np.nanmax(data))
    if not white > 0:
        raise InvalidSettingsError(f"white={white} must be positive (the level kept fixed)")
    out = white * np.clip(data / white, 0, None) ** (1.0 / gamma)
    meta = frame.meta.copy()
    meta["GAMMA"] = float(gamma)
    meta["CFLINEAR"] = False
    return CCDData(out.astype(frame.data.dtype if frame.data.dtype.kind == "f" else np.float32),
                   unit=frame.unit, meta=meta, mask=None if frame.mask is None
                   else frame.mask.copy())


# ---------------------------------------------------------------------------
# The data guard: is a frame linear, judged from its pixels?
# ---------------------------------------------------------------------------
#: A frame is called gamma-encoded only when its exponent is below ``1 - _MARGIN``
#: (gamma 1.43 or more; gamma 1.8 gives 0.56, 2.2 gives 0.45, sRGB 0.42-0.5; real
#: linear lights measured against a flat of a drifting illumination came out
#: between 0.92 and 1.23) ...
_MARGIN = 0.3
#: ... and below 1 by more than ``_NSIGMA`` times its uncertainty.
_NSIGMA = 5.0
#: An exponent within this of 1, measured to better than ``_LINEAR_SIGMA``, is "linear".
_LINEAR_TOLERANCE = 0.15
_LINEAR_SIGMA = 0.05
#: The flat's level must vary by at least this much (log, 5th to 95th percentile of
#: the blocks) for its vignetting to be a lever.
_MIN_RANGE = 0.08
#: The same for the photon transfer of flats, which is not disturbed by the scene
#: (a tone curve also compresses the range: 30 % vignetting can become 3 %).
_MIN_RANGE_FLATS = 0.02
#: Blocks needed (after rejection) for a fit, and the share of blocks that must survive.
_MIN_BLOCKS = 24
_MIN_KEPT = 0.5
#: The robust scatter of the fit must stay below this fraction of the log range of
#: the flat: otherwise the light's own structure (nebulae, clouds, a landscape)
#: competes with the vignetting.
_MAX_STRUCTURE = 0.15
#: Median sky level over median pixel noise below which the sky is "too faint".
_MIN_SKY_SNR = 3.0
#: Read noise (electrons) that a linear reading of a flat's photon transfer may
#: need before it is rejected as implausible (no imaging sensor comes near it).
_MAX_READ_NOISE = 100.0
#: Pixels sampled per block (rows are sub-sampled in larger blocks, for speed).
_BLOCK_PIXELS = 1024
#: Super-tiles per axis for the jackknife uncertainty.
_TILES = 4


@dataclass(frozen=True)
class LinearityCheck:
    """The outcome of a linearity guard: what was measured and what it means.

    Parameters
    ----------
    channels : tuple of str
        Names of the channels measured (``'R'``, ``'G1'``, ``'G2'``, ``'B'`` for a
        Bayer mosaic, ``'mono'`` for a monochrome frame).
    exponents : tuple of float
        Response exponent ``b`` per channel (data ~ linear signal ** b): 1 for
        linear data, about ``1 / gamma`` for gamma-encoded data; NaN where it
        could not be measured.
    uncertainties : tuple of float
        One-sigma uncertainty of each exponent (NaN where not measured).
    verdict : bool or None
        True (linear), False (not linear) or None (cannot tell).
    reason : str
        The verdict in words.
    method : str
        ``'vignetting-exponent'`` (a light against its flat) or
        ``'photon-transfer'`` (flats against each other).
    exponent, uncertainty : float
        The channels combined (weighted mean, uncertainty scaled up when the
        channels disagree); NaN when nothing was measured.
    assumed_linear : bool
        True when the caller passed ``assume_linear=True`` (the check did not raise).

    Examples
    --------
    >>> check = LinearityCheck(channels=("mono",), exponents=(0.46,), uncertainties=(0.01,),
    ...                        verdict=False, reason="gamma-encoded",
    ...                        method="vignetting-exponent", exponent=0.46, uncertainty=0.01)
    >>> check.to_dict()["exponents"]
    {'mono': 0.46}
    """

    channels: tuple[str, ...]
    exponents: tuple[float, ...]
    uncertainties: tuple[float, ...]
    verdict: bool | None
    reason: str
    method: str
    exponent: float = float("nan")
    uncertainty: float = float("nan")
    assumed_linear: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary (NaN becomes None), for provenance records.

        Returns
        -------
        dict
            ``method``, ``verdict``, ``reason``, ``exponent``,
            ``uncertainty``, ``exponents`` and ``uncertainties`` (by
            channel) and ``assumed_linear``; numbers rounded to 4 decimals.
        """
        def num(value: float) -> float | None:
            return round(float(value), 4) if np.isfinite(value) else None

        return {"method": self.method, "verdict": self.verdict, "reason": self.reason,
                "exponent": num(self.exponent), "uncertainty": num(self.uncertainty),
                "exponents": {c: num(v) for c, v in zip(self.channels, self.exponents,
                                                        strict=True)},
                "uncertainties": {c: num(v) for c, v in zip(self.channels,
                                                            self.uncertainties, strict=True)},
                "assumed_linear": self.assumed_linear}


@dataclass(frozen=True)
class _Fit:
    """One channel's fit: slope, uncertainty, or why there is none."""

    slope: float = float("nan")
    sigma: float = float("nan")
    problem: str = ""
    scatter: float = float("nan")
    lever: float = float("nan")


def _frame_name(frame: Any, default: str) -> str:
    prov = getattr(frame, _PROVENANCE_ATTRIBUTE, None)
    inputs = getattr(prov, "inputs", None)
    if inputs:
        return os.path.basename(str(inputs[0].path)) or default
    return default


#: Frames larger than this (pixels) are measured on a regular subset of their
#: 2x2 cells: the fits use block averages, which a subset estimates as well.
_MEASURED_PIXELS = 1_500_000


def _cells(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and columns of a regular subset of whole 2x2 cells (None: take all)."""
    ny, nx = shape[-2:]
    step = int(np.ceil(np.sqrt(ny * nx / _MEASURED_PIXELS)))
    if step <= 1:
        return None

    def keep(n):
        index = np.arange(n)
        return index[(index // 2) % step == 0]

    return keep(ny), keep(nx)


def _planes(frame: CCDData, pattern: str | None) -> dict[str, np.ndarray]:
    """Float64 channel planes of a frame, NaN where masked, non-finite or saturated.

    A large frame is measured on a regular subset of its 2x2 cells (every
    colour keeps its place in the pattern).
    """
    cells = _cells(frame.shape)
    data = np.asarray(frame.data)
    mask = None if frame.mask is None else np.asarray(frame.mask, bool)
    if cells is not None:
        rows, cols = cells
        data = data[..., rows[:, None], cols]
        mask = None if mask is None else mask[..., rows[:, None], cols]
    data = np.array(data, dtype=np.float64)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= mask
    saturate = frame.meta.get("SATURATE")
    try:
        saturate = float(saturate) if saturate is not None else None
    except (TypeError, ValueError):
        saturate = None
    if saturate is not None and np.isfinite(saturate):
        bad |= data >= saturate
    if (~bad).any():
        top = data[~bad].max()
        plateau = data >= top - 1e-6 * abs(top)
        if np.count_nonzero(plateau & ~bad) > max(16, data.size // 100_000):
            bad |= plateau  # a clipped white level
    data[bad] = np.nan
    if data.ndim == 3:
        return {f"plane{k}": data[k] for k in range(data.shape[0])}
    if pattern:
        return dict(bayer.channel_views(data, pattern))
    return {"mono": data}


def _block_stats(plane: np.ndarray, block: int, *, trimmed_variance: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interquartile mean, robust sigma and valid count of each ``block`` x ``block`` block.

    The interquartile mean ignores stars, hot pixels and cosmic rays like a median
    does, but is not quantised to the integer ADU values of the pixels.  The sigma
    is the interquartile range / 1.349, or with ``trimmed_variance`` the standard
    deviation of the central 90 % of the pixels (more precise, but about 0.79 times
    the Gaussian sigma: a constant factor that the fits' intercepts absorb).
    """
    by, bx = plane.shape[0] // block, plane.shape[1] // block
    step = max(1, int(np.ceil(block * block / _BLOCK_PIXELS)))
    a = plane[:by * block, :bx * block].reshape(by, block, bx, block)[:, ::step]
    a = np.sort(a.transpose(0, 2, 1, 3).reshape(by, bx, -1), axis=-1)  # NaN sort last
    n = np.isfinite(a).sum(axis=-1)
    cs = np.concatenate([np.zeros((by, bx, 1)), np.cumsum(np.nan_to_num(a), axis=-1)], -1)
    lo, hi = n // 4, n - n // 4
    take = np.take_along_axis
    width = np.maximum(hi - lo, 1)
    level = (take(cs, hi[..., None], -1) - take(cs, lo[..., None], -1))[..., 0] / width
    q1 = take(a, np.minimum(lo, a.shape[-1] - 1)[..., None], -1)[..., 0]
    q3 = take(a, np.clip(hi - 1, 0, a.shape[-1] - 1)[..., None], -1)[..., 0]
    sigma = (q3 - q1) / 1.349
    if trimmed_variance:
        lo, hi = n // 20, n - n // 20
        width = np.maximum(hi - lo, 1)
        cs2 = np.concatenate([np.zeros((by, bx, 1)), np.cumsum(np.nan_to_num(a) ** 2, -1)], -1)
        mean = (take(cs, hi[..., None], -1) - take(cs, lo[..., None], -1))[..., 0] / width
        mean2 = (take(cs2, hi[..., None], -1) - take(cs2, lo[..., None], -1))[..., 0] / width
        sigma = np.sqrt(np.maximum(mean2 - mean**2, 0.0))
    few = n < max(8, a.shape[-1] // 2)
    level[few] = np.nan
    sigma[few] = np.nan
    return level, sigma, n


def _block_size(shape: tuple[int, ...]) -> int:
    return int(np.clip(max(shape) // 32, 4, 128))


def _robust_fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, tiles: np.ndarray
                ) -> tuple[float, float, float, np.ndarray]:
    """Sigma-clipped least squares of ``y = a_group + slope * x``.

    Returns the slope, its uncertainty (the larger of the formal error and a
    delete-one-tile jackknife over spatial super-tiles, which sees spatially
    correlated residuals), the robust scatter of the residuals and the mask of
    the points kept.
    """
    ugroups, gidx = np.unique(groups, return_inverse=True)
    design = np.zeros((len(x), len(ugroups) + 1))
    design[np.arange(len(x)), gidx] = 1.0
    design[:, -1] = x
    keep = np.ones(len(x), bool)
    scatter = np.nan
    for _ in range(6):
        if keep.sum() < design.shape[1] + 2:
            return np.nan, np.nan, np.nan, keep
        coef = np.linalg.lstsq(design[keep], y[keep], rcond=None)[0]
        resid = y - design @ coef
        scatter = MAD_TO_SIGMA * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        new = np.abs(resid) <= 3.0 * max(scatter, 1e-9)
        if np.array_equal(new, keep):
            break
        keep = new
    coef, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
    slope = float(coef[-1])
    resid = (y - design @ coef)[keep]
    dof = max(keep.sum() - design.shape[1], 1)
    cov = np.linalg.pinv(design[keep].T @ design[keep]) * (resid @ resid / dof)
    formal = float(np.sqrt(max(cov[-1, -1], 0.0)))
    jack = []
    for tile in np.unique(tiles[keep]):
        use = keep & (tiles != tile)
        if use.sum() >= design.shape[1] + 2:
            jack.append(np.linalg.lstsq(design[use], y[use], rcond=None)[0][-1])
    jack = np.asarray(jack)
    sigma = formal
    if len(jack) >= 3:
        sigma = max(formal, float(np.sqrt((len(jack) - 1) / len(jack)
                                          * np.sum((jack - jack.mean()) ** 2))))
    return slope, sigma, float(scatter), keep


def _tile_index(by: int, bx: int) -> np.ndarray:
    iy, ix = np.mgrid[0:by, 0:bx]
    return ((iy * _TILES) // by) * _TILES + (ix * _TILES) // bx


def _light_fit(lp: np.ndarray, fp: np.ndarray) -> _Fit:
    """Exponent of one channel of a light against the same channel of the flat."""
    block = _block_size(lp.shape)
    by, bx = lp.shape[0] // block, lp.shape[1] // block
    if by * bx < _MIN_BLOCKS:
        return _Fit(problem="the frame is too small for block statistics")
    lev, sig, n = _block_stats(lp, block)
    flev, _, _ = _block_stats(fp, block)
    tiles = _tile_index(by, bx).ravel()
    lev, sig, n, flev = lev.ravel(), sig.ravel(), n.ravel(), flev.ravel()
    ok = np.isfinite(lev) & np.isfinite(flev) & np.isfinite(sig) & (flev > 0)
    if ok.sum() < _MIN_BLOCKS:
        return _Fit(problem="too few unmasked blocks")
    noise = float(np.median(sig[ok]))
    sky = float(np.median(lev[ok]))
    if not sky > _MIN_SKY_SNR * noise:
        return _Fit(problem=f"the light's sky is too faint for its scatter (median "
                            f"{sky:.3g} for a pixel scatter of {noise:.3g}: a faint sky, or "
                            "one crowded with stars)")
    # blocks with structure (a nebula's edge, a cluster, a bright star's halo):
    # far more scatter than the typical block
    ok &= sig <= 3.0 * noise
    ok &= lev > 3.0 * sig / np.sqrt(np.maximum(n, 1))
    if ok.sum() < _MIN_BLOCKS:
        return _Fit(problem="too few blocks without structure")
    x, y = np.log(flev[ok]), np.log(lev[ok])
    lever = float(np.subtract(*np.percentile(x, [95, 5])))
    if lever < _MIN_RANGE:
        return _Fit(problem=f"the flat has too little vignetting (its level varies by "
                            f"{np.expm1(lever):.0%})", lever=lever)
    slope, sigma, scatter, keep = _robust_fit(x, y, np.zeros(len(x), int), tiles[ok])
    if not np.isfinite(slope) or keep.sum() < max(_MIN_BLOCKS, _MIN_KEPT * ok.sum()):
        return _Fit(problem="the light's background does not follow the flat (too many "
                            "blocks with structure)", lever=lever)
    if scatter > _MAX_STRUCTURE * lever:
        return _Fit(slope, sigma, problem=f"the light's background has structure "
                    f"({scatter:.1%}) comparable to the flat's vignetting ({lever:.0%})",
                    scatter=scatter, lever=lever)
    return _Fit(slope, sigma, scatter=scatter, lever=lever)


def _combine(fits: dict[str, _Fit]) -> tuple[float, float]:
    good = [f for f in fits.values() if not f.problem and np.isfinite(f.sigma)]
    if not good:
        return float("nan"), float("nan")
    b = np.array([f.slope for f in good])
    s = np.maximum(np.array([f.sigma for f in good]), 1e-6)
    w = 1 / s**2
    mean = float(np.sum(w * b) / np.sum(w))
    err = float(np.sqrt(1 / np.sum(w)))
    if len(b) > 1:
        chi2 = float(np.sum(w * (b - mean) ** 2) / (len(b) - 1))
        err *= max(1.0, np.sqrt(chi2))
    return mean, err


def _result(fits: dict[str, _Fit], method: str, assume_linear: bool,
            verdict_of) -> LinearityCheck:
    channels = tuple(fits)
    exps = tuple(float(f.slope) if not f.problem else float("nan") for f in fits.values())
    errs = tuple(float(f.sigma) if not f.problem else float("nan") for f in fits.values())
    exponent, uncertainty = _combine(fits)
    verdict, reason = verdict_of(fits, exponent, uncertainty)
    return LinearityCheck(channels=channels, exponents=exps, uncertainties=errs,
                          verdict=verdict, reason=reason, method=method, exponent=exponent,
                          uncertainty=uncertainty, assumed_linear=bool(assume_linear))


def _exponent_verdict(fits: dict[str, _Fit], exponent: float, uncertainty: float,
                      what: str) -> tuple[bool | None, str]:
    measured = {c: f for c, f in fits.items() if not f.problem}
    if not measured:
        problems = sorted({f.problem for f in fits.values()})
        return None, "cannot tell: " + "; ".join(problems)
    text = f"response exponent {exponent:.2f} +- {uncertainty:.2f} {what}, linear is 1"
    low = all(f.slope < 1 - _MARGIN and f.slope + _NSIGMA * f.sigma < 1
              for f in measured.values())
    if low and exponent < 1 - _MARGIN and exponent + _NSIGMA * uncertainty < 1:
        return False, text
    if abs(exponent - 1) <= _LINEAR_TOLERANCE and uncertainty <= _LINEAR_SIGMA:
        return True, text
    return None, f"cannot tell: {text}"


def check_light_linearity(light: CCDData, flat: CCDData, *, assume_linear: bool = False
                          ) -> LinearityCheck:
    """Refuse a light that looks gamma-encoded, judged from its pixels against the flat.

    A linear light of a smooth sky, seen through the same optics as the flat,
    follows the flat's vignetting: ``light ~ flat ** b`` with ``b = 1``.  A
    light developed with a display gamma (or any tone curve) has ``b`` near
    ``1 / gamma``: 0.56 for gamma 1.8, 0.45 for 2.2, 0.42-0.5 for sRGB.  The
    exponent is fitted per colour channel (Bayer mosaics) on the interquartile
    means of blocks (stars, hot pixels and cosmic rays do not move them),
    blocks with structure are dropped, the fit is sigma-clipped, and its
    uncertainty is the larger of the formal error and a jackknife over 4 x 4
    spatial tiles.

    The light is called non-linear only when every measured channel has an
    exponent below 0.7 and more than 5 sigma below 1.  The check stays silent
    (``verdict=None``) when it cannot measure: a flat with less than ~8 %
    vignetting, a sky fainter than 3 times its pixel noise, structure (a
    nebula, clouds, a landscape) comparable to the vignetting, or too few
    unmasked, unsaturated blocks.

    Both frames must have their bias and dark removed (a light still carrying
    an offset follows the flat with an exponent below 1 as well).

    Parameters
    ----------
    light : `~astropy.nddata.CCDData`
        The light (2-D, or an RGB cube) about to be divided by ``flat``.
    flat : `~astropy.nddata.CCDData`
        The flat (master flat, normalised or not), same shape.
    assume_linear : bool
        Return the measurement without raising (the caller vouches for the data).

    Returns
    -------
    LinearityCheck
        ``method='vignetting-exponent'``, the exponents per channel and the verdict.

    Raises
    ------
    NonLinearDataError
        When the light is measured to be gamma-encoded and ``assume_linear`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> yy, xx = np.mgrid[0:256, 0:256]
    >>> vig = 1 - 0.4 * ((xx - 128) ** 2 + (yy - 128) ** 2) / (2 * 128 ** 2)
    >>> rng = np.random.default_rng(0)
    >>> flat = CCDData(rng.poisson(20000 * vig).astype(float), unit="adu")
    >>> light = CCDData(rng.poisson(800 * vig).astype(float), unit="adu")
    >>> check = check_light_linearity(light, flat)
    >>> check.verdict, round(check.exponent, 2)
    (True, 1.0)
    >>> developed = encode_gamma(light, gamma=2.2, white=65535.0)
    >>> check_light_linearity(developed, flat)
    Traceback (most recent call last):
    ...
    calframe.errors.NonLinearDataError: light: the light looks gamma-encoded (response ...
    >>> check = check_light_linearity(developed, flat, assume_linear=True)
    >>> check.verdict, f"{check.exponent:.1f}", check.assumed_linear
    (False, '0.5', True)
    """
    name = _frame_name(light, "light")
    if light.shape != flat.shape or light.ndim not in (2, 3):
        fits = {"mono": _Fit(problem=f"the light {light.shape} and the flat {flat.shape} "
                                     "do not have one 2-D shape")}
    else:
        pattern = None
        if light.ndim == 2:
            for frame in (flat, light):
                if str(frame.meta.get("BAYERPAT", "")).strip():
                    pattern = bayer.effective_pattern(frame)
                    break
        lps, fps = _planes(light, pattern), _planes(flat, pattern)
        fits = {c: _light_fit(lps[c], fps[c]) for c in lps}

    def verdict(fits, exponent, uncertainty):
        return _exponent_verdict(fits, exponent, uncertainty, "against the flat's vignetting")

    check = _result(fits, "vignetting-exponent", assume_linear, verdict)
    log.debug("%s: %s", name, check.reason)
    if check.verdict is False and not assume_linear:
        raise NonLinearDataError(
            f"{name}: the light looks gamma-encoded ({check.reason}): a gamma-encoded "
            "light divided by a linear flat over-corrects the corners; calibrate the "
            "camera's RAW files, subtract the bias and dark first if the light still "
            "carries them, or pass assume_linear=True if the data are linear")
    return check


def _flat_pair_fit(planes: list[np.ndarray]) -> _Fit:
    """Photon-transfer exponent of one channel from pairs of flats of similar level."""
    block = _block_size(planes[0].shape)
    by, bx = planes[0].shape[0] // block, planes[0].shape[1] // block
    if by * bx < _MIN_BLOCKS:
        return _Fit(problem="the frames are too small for block statistics")
    tiles = _tile_index(by, bx).ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN planes
        medians = [float(np.nanmedian(p)) for p in planes]
    order = [i for i in np.argsort(medians) if medians[i] > 0]
    xs, ys, gs, ts, levels, variances = [], [], [], [], [], []
    for pair, (i, j) in enumerate(zip(order[0::2], order[1::2], strict=False)):
        if pair >= 4:
            break
        ratio = medians[j] / medians[i]
        diff = planes[j] - ratio * planes[i]
        mean = 0.5 * (planes[j] + ratio * planes[i])
        lev, _, _ = _block_stats(mean, block)
        _, dsig, _ = _block_stats(diff, block, trimmed_variance=True)
        lev, var = lev.ravel(), dsig.ravel() ** 2
        ok = np.isfinite(lev) & np.isfinite(var) & (lev > 0) & (var > 0)
        xs.append(np.log(lev[ok]))
        ys.append(np.log(var[ok]))
        gs.append(np.full(ok.sum(), pair))
        ts.append(tiles[ok])
        levels.append(lev[ok])
        variances.append(var[ok])
    if not xs:
        return _Fit(problem="needs at least two flats with a positive level")
    x, y, g, t = (np.concatenate(v) for v in (xs, ys, gs, ts))
    if len(x) < _MIN_BLOCKS:
        return _Fit(problem="too few unmasked blocks")
    lever = min(float(np.subtract(*np.percentile(xx, [95, 5]))) for xx in xs if len(xx))
    if lever < _MIN_RANGE_FLATS:
        return _Fit(problem=f"the flats' level varies too little across the frame "
                            f"({np.expm1(lever):.0%})", lever=lever)
    p, sp, scatter, keep = _robust_fit(x, y, g, t)
    if not np.isfinite(p) or keep.sum() < max(_MIN_BLOCKS, _MIN_KEPT * len(x)):
        return _Fit(problem="the flats' noise does not follow their level (too many blocks "
                            "with structure)", lever=lever)
    if p >= 1.9:
        return _Fit(problem=f"the flats' noise grows as level ** {p:.2f}: not photon noise",
                    lever=lever)
    # data ~ linear ** b gives variance ~ level ** (2 - 1/b): b = 1 / (2 - p)
    b, sb = 1.0 / (2.0 - p), sp / (2.0 - p) ** 2
    # a linear reading of a low exponent needs read noise; in electrons it is
    # m sqrt(1 - p) / (p sqrt(var)) whatever the gain or scaling of the data
    level = float(np.median(np.concatenate(levels)))
    var = float(np.median(np.concatenate(variances))) / 2.0
    p_hi = p + _NSIGMA * sp
    if 0 < p_hi < 1:
        read_noise = level * np.sqrt(1 - p_hi) / (p_hi * np.sqrt(var))
        if read_noise < _MAX_READ_NOISE:
            return _Fit(b, sb, problem=f"the flats' noise grows slowly with their level "
                        f"(level ** {p:.2f}), which a linear camera with {read_noise:.0f} e- "
                        "of read noise would also show", scatter=scatter, lever=lever)
    return _Fit(b, sb, scatter=scatter, lever=lever)


def check_flat_linearity(flats, *, assume_linear: bool = False) -> LinearityCheck:
    """Refuse raw flats that look gamma-encoded, judged from their photon noise.

    The ratio of two flats says nothing: ``f1 / f2`` is a constant for linear
    flats and for gamma-encoded ones alike (``(a / b) ** (1 / gamma)``).  Their
    *noise* tells.  For linear data the variance of the difference of two flats
    (which removes the pixel response and the vignetting) grows in proportion to
    the level (photon transfer: ``var ~ level ** p`` with ``p = 1``), and the
    vignetting gives a range of levels within each frame.  A tone curve
    ``y ~ x ** (1 / gamma)`` compresses the noise of the bright pixels:
    ``var ~ level ** (2 - gamma)``, i.e. ``p = -0.2`` for gamma 2.2 and ``0.2``
    for 1.8.  The exponent reported is the equivalent response exponent
    ``b = 1 / (2 - p)`` (1 when linear, ``1 / gamma`` when gamma-encoded),
    fitted per colour channel on block statistics, pairs of flats sorted by
    level, one intercept per pair, sigma-clipped, with a jackknife over spatial
    tiles.

    Read noise also flattens the photon transfer of a linear camera; the flats
    are called non-linear only when the read noise that a linear reading would
    need exceeds 100 electrons (a number independent of the gain and of any
    scaling of the data), or when the variance falls as the level rises, which
    linear data cannot do, and only when the equivalent exponent is below 0.7
    and more than 5 sigma below 1.  With a single flat, flats whose level varies
    by less than ~2 % across the frame, or flats too small to measure, the
    verdict is None.

    Parameters
    ----------
    flats : sequence of `~astropy.nddata.CCDData`
        Raw flats of one filter and setup (bias and dark may still be in them).
    assume_linear : bool
        Return the measurement without raising.

    Returns
    -------
    LinearityCheck
        ``method='photon-transfer'``.

    Raises
    ------
    NonLinearDataError
        When the flats are measured to be gamma-encoded and ``assume_linear`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> yy, xx = np.mgrid[0:512, 0:512]
    >>> vig = 1 - 0.4 * ((xx - 256) ** 2 + (yy - 256) ** 2) / (2 * 256 ** 2)
    >>> rng = np.random.default_rng(1)
    >>> flats = [CCDData(rng.poisson(20000 * vig).astype(float), unit="adu")
    ...          for _ in range(2)]
    >>> check = check_flat_linearity(flats)
    >>> check.verdict, round(check.exponent, 1)
    (True, 1.0)
    >>> developed = [encode_gamma(f, gamma=2.2, white=65535.0) for f in flats]
    >>> check_flat_linearity(developed)
    Traceback (most recent call last):
    ...
    calframe.errors.NonLinearDataError: flat: the flats look gamma-encoded (response ...
    """
    frames = [f if isinstance(f, CCDData) else CCDData(np.asarray(f), unit="adu")
              for f in flats]
    name = _frame_name(frames[0], "flat") if frames else "flat"
    if len(frames) < 2:
        fits = {"mono": _Fit(problem="the photon transfer needs at least two flats")}
    elif len({f.shape for f in frames}) != 1 or frames[0].ndim not in (2, 3):
        fits = {"mono": _Fit(problem="the flats do not have one 2-D shape")}
    else:
        pattern = None
        if frames[0].ndim == 2 and str(frames[0].meta.get("BAYERPAT", "")).strip():
            pattern = bayer.effective_pattern(frames[0])
        planes = [_planes(f, pattern) for f in frames]
        fits = {c: _flat_pair_fit([p[c] for p in planes]) for c in planes[0]}

    def verdict(fits, exponent, uncertainty):
        return _exponent_verdict(fits, exponent, uncertainty,
                                 "from the photon noise of the flats")

    check = _result(fits, "photon-transfer", assume_linear, verdict)
    log.debug("%s: %s", name, check.reason)
    if check.verdict is False and not assume_linear:
        raise NonLinearDataError(
            f"{name}: the flats look gamma-encoded ({check.reason}; their noise does not "
            "grow with their level as photon noise does): a master flat made of them "
            "over-corrects the corners of linear lights; use the camera's RAW files, or "
            "pass assume_linear=True if the data are linear")
    return check
