"""The synthetic detector model: everything about a camera that does not change
from frame to frame (bias structure, hot pixels, vignetting, dust, gain...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["CFA_PATTERNS", "SyntheticCamera", "cfa_colour_index"]

#: The Bayer patterns calframe understands, as the letters of the 2x2 cell
#: read row by row from array element ``[0, 0]``.
CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

_COLOUR = {"R": 0, "G": 1, "B": 2}


def cfa_colour_index(cfa: str | None, shape: tuple[int, int]) -> np.ndarray:
    """Colour of every pixel of a mosaic: 0 red, 1 green, 2 blue.

    Parameters
    ----------
    cfa : str or None
        Bayer pattern (one of :data:`CFA_PATTERNS`) whose first letter is the
        colour of array element ``[0, 0]``; None for a monochrome sensor (all
        pixels are then reported as green, index 1).
    shape : tuple of int
        Shape ``(ny, nx)`` of the mosaic.

    Returns
    -------
    numpy.ndarray
        int8 array of ``shape``.

    Raises
    ------
    ValueError
        If ``cfa`` is not a known pattern.

    Examples
    --------
    >>> cfa_colour_index("RGGB", (2, 4)).tolist()
    [[0, 1, 0, 1], [1, 2, 1, 2]]
    """
    ny, nx = shape
    if cfa is None:
        return np.ones(shape, dtype=np.int8)
    cfa = _check_cfa(cfa)
    cell = np.array([[_COLOUR[cfa[0]], _COLOUR[cfa[1]]],
                     [_COLOUR[cfa[2]], _COLOUR[cfa[3]]]], dtype=np.int8)
    reps = ((ny + 1) // 2, (nx + 1) // 2)
    return np.tile(cell, reps)[:ny, :nx]


def _check_cfa(cfa: str | None) -> str | None:
    if cfa is None:
        return None
    upper = str(cfa).upper()
    if upper not in CFA_PATTERNS:
        raise ValueError(f"cfa={cfa!r} is not a Bayer pattern; use one of "
                         f"{', '.join(CFA_PATTERNS)} or None for a monochrome sensor")
    return upper


def _cell_position(shape: tuple[int, int]) -> np.ndarray:
    """Position of every pixel in its 2x2 cell, 0..3 row by row."""
    ny, nx = shape
    yy = (np.arange(ny) % 2)[:, None]
    xx = (np.arange(nx) % 2)[None, :]
    return (2 * yy + xx).astype(np.int8)


@dataclass(frozen=True)
class SyntheticCamera:
    """A detector model with a known truth.

    The fixed-pattern parts of the camera (bias structure, hot pixels, dust,
    pixel response non-uniformity) are drawn once from ``pattern_seed``, so
    two cameras with equal fields are the same camera.  The frame factories
    (:func:`bias_frame`, :func:`dark_frame`, :func:`flat_frame`,
    :func:`light_frame`) add the per-frame noise with their own ``seed``.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of a frame.
    bias_level : float or sequence of 4 floats
        Bias (black) level in ADU; four values give a level per position of
        the 2x2 CFA cell, row by row (for ``cfa='RGGB'``: R, G, G, B).
    bias_column_sigma, bias_row_sigma : float
        Standard deviation (ADU) of the fixed per-column / per-row bias offsets.
    read_noise : float
        Read noise in electrons.
    gain : float
        Gain in electrons per ADU.
    dark_current : float
        Mean dark current of normal pixels in e-/s at ``temperature``.
    dark_current_sigma : float
        Relative pixel-to-pixel spread of the dark current of normal pixels.
    n_hot_pixels : int
        Number of hot pixels.
    hot_pixel_current : tuple of float
        Range (e-/s) of the dark current of hot pixels (log-uniform).
    dark_doubling : float
        Temperature rise (deg C) that doubles the dark current.
    full_well : float
        Full-well capacity in electrons (pixels clip there).
    adc_max : int
        Largest ADU value the converter writes (16-bit: 65535).
    cfa : str or None
        Bayer pattern of the colour filter array, or None (monochrome).
    colour_response : tuple of 3 floats
        Relative sensitivity of red, green and blue pixels (CFA only).
    vignetting : float
        Fractional light loss in the corners of the frame (cos^4-like law).
    vignetting_colour : tuple of 3 floats
        Factors on ``vignetting`` for red, green and blue pixels (CFA only).
    optical_centre : tuple of float or None
        ``(y, x)`` of the optical axis in pixels (default: frame centre).
    n_dust : int
        Number of dust donuts (out-of-focus dust shadows).
    dust_depth : tuple of float
        Range of the fractional depth of a dust donut.
    dust_radius : tuple of float
        Range of the outer radius of a dust donut, in pixels.
    prnu : float
        Pixel response non-uniformity (relative standard deviation).
    temperature : float
        Sensor temperature in deg C.
    instrument : str
        Camera name written to INSTRUME.
    pattern_seed : int
        Seed of the fixed-pattern parts.
    roworder : {'TOP-DOWN', 'BOTTOM-UP'}
        Row order the camera writes in ROWORDER (CFA only).  ``cfa`` is always
        the pattern at array element ``[0, 0]``; the header's BAYERPAT is
        chosen so that, read with XBAYROFF / YBAYROFF and ROWORDER as MaxIm DL,
        NINA and Siril do, it describes ``cfa`` (see :meth:`header_pattern`).
    bayer_offset : tuple of int
        ``(XBAYROFF, YBAYROFF)`` written to the header (CFA only).
    extra_cards : tuple of (keyword, value, comment)
        More header cards, e.g. ``(("GAIN", 120, "gain setting"),)`` as some
        CMOS drivers write a gain *setting* under GAIN.

    Examples
    --------
    >>> cam = SyntheticCamera(shape=(64, 64), cfa="RGGB")
    >>> cam.bias_map().shape
    (64, 64)
    >>> round(float(cam.read_noise_adu), 3)
    3.333
    """

    shape: tuple[int, int] = (256, 256)
    bias_level: float | tuple[float, float, float, float] = 1000.0
    bias_column_sigma: float = 2.0
    bias_row_sigma: float = 0.5
    read_noise: float = 5.0
    gain: float = 1.5
    dark_current: float = 0.1
    dark_current_sigma: float = 0.2
    n_hot_pixels: int = 20
    hot_pixel_current: tuple[float, float] = (5.0, 100.0)
    dark_doubling: float = 6.0
    full_well: float = 60000.0
    adc_max: int = 65535
    cfa: str | None = None
    colour_response: tuple[float, float, float] = (0.6, 1.0, 0.5)
    vignetting: float = 0.3
    vignetting_colour: tuple[float, float, float] = (1.3, 1.0, 0.7)
    optical_centre: tuple[float, float] | None = None
    n_dust: int = 3
    dust_depth: tuple[float, float] = (0.04, 0.12)
    dust_radius: tuple[float, float] = (6.0, 14.0)
    prnu: float = 0.005
    temperature: float = -10.0
    instrument: str = "calframe synthetic camera"
    pattern_seed: int = 0
    roworder: str = "TOP-DOWN"
    bayer_offset: tuple[int, int] = (0, 0)
    extra_cards: tuple[tuple[str, object, str], ...] = ()
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False,
                         hash=False)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 2 or min(shape) < 2:
            raise ValueError(f"shape={self.shape!r} must be (ny, nx) with both at least 2")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "cfa", _check_cfa(self.cfa))
        if not np.isscalar(self.bias_level):
            levels = tuple(float(v) for v in self.bias_level)
            if len(levels) != 4:
                raise ValueError(f"bias_level={self.bias_level!r} must be one number or "
                                 "four (one per position of the 2x2 CFA cell)")
            object.__setattr__(self, "bias_level", levels)
        for name in ("gain", "full_well"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        for name in ("read_noise", "dark_current", "vignetting", "prnu", "n_hot_pixels",
                     "n_dust"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must not be negative")
        order = str(self.roworder).upper()
        if order not in ("TOP-DOWN", "BOTTOM-UP"):
            raise ValueError(f"roworder={self.roworder!r} must be 'TOP-DOWN' or 'BOTTOM-UP'")
        object.__setattr__(self, "roworder", order)
        object.__setattr__(self, "bayer_offset", tuple(int(v) for v in self.bayer_offset))
        if self.vignetting >= 1:
            raise ValueError(f"vignetting={self.vignetting!r} is the light lost in the "
                             "corners and must be below 1")

    # ------------------------------------------------------------------ scalars
    @property
    def read_noise_adu(self) -> float:
        """Read noise in ADU (``read_noise / gain``)."""
        return self.read_noise / self.gain

    @property
    def bias_levels(self) -> tuple[float, float, float, float]:
        """Bias level of each position of the 2x2 cell (row by row), in ADU."""
        if np.isscalar(self.bias_level):
            return (float(self.bias_level),) * 4
        return self.bias_level  # type: ignore[return-value]

    @property
    def saturation_adu(self) -> float:
        """The ADU value above which a pixel is saturated (full well or ADC)."""
        return float(min(self.adc_max, min(self.bias_levels) + self.full_well / self.gain))

    # ---------------------------------------------------------- fixed patterns
    def _rng(self, part: str) -> np.random.Generator:
        key = sum(ord(c) * 31 ** i for i, c in enumerate(part)) % (2**32)
        return np.random.default_rng([self.pattern_seed, key])

    def colour_index(self) -> np.ndarray:
        """Colour of every pixel (0 red, 1 green, 2 blue; all 1 for mono)."""
        if "colour" not in self._cache:
            self._cache["colour"] = cfa_colour_index(self.cfa, self.shape)
        return self._cache["colour"]

    def bias_map(self) -> np.ndarray:
        """True bias level of every pixel in ADU (float64, read-only)."""
        if "bias" not in self._cache:
            ny, nx = self.shape
            rng = self._rng("bias")
            levels = np.asarray(self.bias_levels)[_cell_position(self.shape)]
            cols = rng.normal(0.0, self.bias_column_sigma, nx) if self.bias_column_sigma else 0
            rows = rng.normal(0.0, self.bias_row_sigma, ny) if self.bias_row_sigma else 0
            bias = levels + np.zeros((ny, 1)) + cols + np.reshape(rows, (-1, 1))
            self._cache["bias"] = _readonly(bias.astype(np.float64))
        return self._cache["bias"]

    @cached_property
    def hot_pixels(self) -> np.ndarray:
        """The hot pixels: a structured array with fields ``y``, ``x``, ``current`` (e-/s).

        Examples
        --------
        >>> SyntheticCamera(shape=(32, 32), n_hot_pixels=3).hot_pixels.dtype.names
        ('y', 'x', 'current')
        """
        ny, nx = self.shape
        n = min(int(self.n_hot_pixels), ny * nx)
        rng = self._rng("hot")
        flat_index = rng.choice(ny * nx, size=n, replace=False)
        lo, hi = self.hot_pixel_current
        current = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        out = np.zeros(n, dtype=[("y", np.int32), ("x", np.int32), ("current", np.float64)])
        out["y"], out["x"] = np.unravel_index(flat_index, self.shape)
        out["current"] = current
        return out

    def dark_current_map(self, temperature: float | None = None) -> np.ndarray:
        """True dark current of every pixel in e-/s at ``temperature`` (default: the camera's).

        Hot pixels keep their listed current at the camera temperature; every
        pixel scales by ``2 ** ((temperature - self.temperature) / dark_doubling)``.
        """
        if "dark" not in self._cache:
            rng = self._rng("dark")
            dark = self.dark_current * np.clip(
                rng.normal(1.0, self.dark_current_sigma, self.shape), 0.0, None)
            hot = self.hot_pixels
            dark[hot["y"], hot["x"]] = hot["current"]
            self._cache["dark"] = _readonly(dark)
        dark = self._cache["dark"]
        if temperature is None or temperature == self.temperature:
            return dark
        return dark * 2.0 ** ((temperature - self.temperature) / self.dark_doubling)

    @cached_property
    def dust(self) -> np.ndarray:
        """The dust donuts: structured array with ``y``, ``x``, ``radius``, ``depth``."""
        ny, nx = self.shape
        rng = self._rng("dust")
        n = int(self.n_dust)
        out = np.zeros(n, dtype=[("y", float), ("x", float), ("radius", float),
                                 ("depth", float)])
        out["radius"] = rng.uniform(*self.dust_radius, n)
        out["y"] = rng.uniform(0.15 * ny, 0.85 * ny, n)
        out["x"] = rng.uniform(0.15 * nx, 0.85 * nx, n)
        out["depth"] = rng.uniform(*self.dust_depth, n)
        return out

    def vignetting_map(self) -> np.ndarray:
        """Vignetting of every pixel (1 on the optical axis), colour-dependent for CFA."""
        if "vignetting" not in self._cache:
            ny, nx = self.shape
            cy, cx = self.optical_centre or ((ny - 1) / 2, (nx - 1) / 2)
            y = np.arange(ny)[:, None] - cy
            x = np.arange(nx)[None, :] - cx
            r2 = y * y + x * x
            corner2 = max((yy - cy) ** 2 + (xx - cx) ** 2
                          for yy in (0, ny - 1) for xx in (0, nx - 1))
            # cos^4 law, 1 / (1 + (r/f)^2)^2, with f chosen so that the corner
            # loses ``strength`` of its light.
            if self.cfa is None:
                q = (1.0 - self.vignetting) ** -0.5 - 1.0
            else:
                factors = np.asarray(self.vignetting_colour, dtype=float)
                strength = np.clip(self.vignetting * factors, 0, 0.99)
                q = ((1.0 - strength) ** -0.5 - 1.0)[self.colour_index()]
            t = 1.0 + q * (r2 / corner2)
            vig = 1.0 / (t * t)
            self._cache["vignetting"] = _readonly(vig)
        return self._cache["vignetting"]

    def dust_map(self) -> np.ndarray:
        """Transmission of the dust donuts (1 where there is no dust)."""
        if "dust_map" not in self._cache:
            ny, nx = self.shape
            out = np.ones(self.shape)
            for mote in self.dust:
                r_out = mote["radius"]
                r_in = 0.4 * r_out
                y0, y1 = max(int(mote["y"] - r_out - 4), 0), min(int(mote["y"] + r_out + 5), ny)
                x0, x1 = max(int(mote["x"] - r_out - 4), 0), min(int(mote["x"] + r_out + 5), nx)
                yy = np.arange(y0, y1)[:, None] - mote["y"]
                xx = np.arange(x0, x1)[None, :] - mote["x"]
                r = np.hypot(yy, xx)
                ring = 0.25 * (1 + np.tanh((r_out - r) / 1.0)) * (1 + np.tanh((r - r_in) / 1.0))
                out[y0:y1, x0:x1] *= 1.0 - mote["depth"] * ring
            self._cache["dust_map"] = _readonly(out)
        return self._cache["dust_map"]

    def flat_map(self) -> np.ndarray:
        """True relative response of every pixel: colour x vignetting x dust x PRNU.

        This is what a flat field measures (before normalisation).  For a CFA
        camera it includes the colour response, so each colour has its own level;
        :meth:`flat_map_normalised` divides that out.
        """
        if "flat" not in self._cache:
            rng = self._rng("prnu")
            prnu = rng.normal(1.0, self.prnu, self.shape) if self.prnu else 1.0
            flat = self.vignetting_map() * self.dust_map() * prnu
            if self.cfa is not None:
                flat = flat * np.asarray(self.colour_response, float)[self.colour_index()]
            self._cache["flat"] = _readonly(np.asarray(flat, dtype=np.float64))
        return self._cache["flat"]

    def flat_map_normalised(self) -> np.ndarray:
        """:meth:`flat_map` normalised to a mean of 1 (per CFA colour for a CFA camera)."""
        flat = self.flat_map()
        colour = self.colour_index()
        out = np.empty_like(flat)
        for c in np.unique(colour):
            sel = colour == c
            out[sel] = flat[sel] / flat[sel].mean()
        return _readonly(out)

    # --------------------------------------------------------------- headers
    def header_pattern(self) -> str | None:
        """The BAYERPAT this camera writes (None for mono).

        BAYERPAT is the pattern in the camera's top-down read-out order; the
        pixel at column ``x`` and top-down row ``y`` has the colour BAYERPAT has
        at ``(x + XBAYROFF, y + YBAYROFF)``; with ROWORDER 'BOTTOM-UP' array
        row ``i`` is top-down row ``ny - 1 - i``.

        Examples
        --------
        >>> SyntheticCamera(shape=(4, 4), cfa="RGGB").header_pattern()
        'RGGB'
        >>> SyntheticCamera(shape=(4, 4), cfa="RGGB", roworder="BOTTOM-UP").header_pattern()
        'GBRG'
        >>> SyntheticCamera(shape=(4, 4), cfa="RGGB", bayer_offset=(1, 0)).header_pattern()
        'GRBG'
        """
        if self.cfa is None:
            return None
        ny = self.shape[0]
        xoff, yoff = self.bayer_offset
        for candidate in CFA_PATTERNS:
            seen = ""
            for row in (0, 1):
                top_down = row if self.roworder == "TOP-DOWN" else ny - 1 - row
                for col in (0, 1):
                    seen += candidate[2 * ((top_down + yoff) % 2) + (col + xoff) % 2]
            if seen == self.cfa:
                return candidate
        raise AssertionError("unreachable: every pattern has a description")  # pragma: no cover

    def header_cards(self) -> list[tuple[str, object, str]]:
        """FITS cards that a camera driver writes for every frame of this camera."""
        cards: list[tuple[str, object, str]] = [
            ("INSTRUME", self.instrument, "camera"),
            ("EGAIN", float(self.gain), "[e-/ADU] electrons per ADU"),
            ("RDNOISE", float(self.read_noise), "[e-] read noise"),
            ("XBINNING", 1, "binning in x"),
            ("YBINNING", 1, "binning in y"),
        ]
        if self.cfa is not None:
            cards += [("BAYERPAT", self.header_pattern(), "Bayer colour filter pattern"),
                      ("XBAYROFF", self.bayer_offset[0], "x offset of the Bayer pattern"),
                      ("YBAYROFF", self.bayer_offset[1], "y offset of the Bayer pattern"),
                      ("ROWORDER", self.roworder, "order of the rows in the array")]
        cards += [(str(key), value, str(comment)) for key, value, comment in self.extra_cards]
        return cards


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array

