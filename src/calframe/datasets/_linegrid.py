"""Synthetic images of a line-grid target with a known geometric distortion.

The conventions are those of :mod:`calframe.datasets._grid`: a field gives,
at an observed position, the displacement to the ideal position, so a pixel
is rendered from where its (supersampled) position falls in the ideal
lattice of lines; no inversion of the field is needed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import erf

__all__ = ["make_line_grid"]


def make_line_grid(shape: tuple[int, int] = (480, 640), *, pitch: float = 30.0,
                   width: float = 2.0, distortion=None, amplitude: float = 1000.0,
                   background: float = 100.0, polarity: str = "dark", blur: float = 0.8,
                   gradient: float = 0.0, read_noise: float = 3.0, broken: int = 0,
                   offset: tuple[float, float] = (0.3, 0.2), supersample: int = 3,
                   seed: int = 0) -> np.ndarray:
    """Render a square grid of lines through a known distortion.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    pitch, width : float
        Line spacing and full line width in pixels (ideal frame); the line
        edges are soft (0.35 px Gaussian).
    distortion : callable, optional
        ``field(x, y) -> (dx, dy)`` from observed to ideal positions, e.g.
        :class:`calframe.datasets.GridDistortion`.
    amplitude, background : float
        Contrast of the lines and level of the field.
    polarity : {"dark", "bright"}
        Dark lines on a bright field (a printed target) or bright lines.
    blur : float
        Gaussian blur (optics), standard deviation in pixels.
    gradient : float
        Fractional left-to-right illumination gradient.
    read_noise : float
        Gaussian noise added to Poisson noise (gain 1).
    broken : int
        Number of gaps cut across the lines (6 rows by 0.5-1.5 pitches).
    offset : tuple of float
        Shift ``(x, y)`` of the lattice from the image centre.
    supersample : int
        Sub-samples per pixel and axis.
    seed : int
        Seed of the noise and gaps.

    Returns
    -------
    numpy.ndarray
        float64 image.

    Examples
    --------
    >>> img = make_line_grid((64, 96), pitch=16, seed=1)
    >>> img.shape, bool(img.min() < 0.5 * img.max())
    ((64, 96), True)
    """
    if polarity not in ("dark", "bright"):
        raise ValueError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    cx, cy = 0.5 * (nx - 1) + offset[0], 0.5 * (ny - 1) + offset[1]
    acc = np.zeros(shape)
    for oy in offs:
        for ox in offs:
            x, y = xx + ox, yy + oy
            if distortion is not None:
                dx, dy = distortion(x, y)
                x, y = x + dx, y + dy
            du = np.abs((x - cx) / pitch - np.round((x - cx) / pitch)) * pitch
            dv = np.abs((y - cy) / pitch - np.round((y - cy) / pitch)) * pitch
            lu = 0.5 * (1 - erf((du - width / 2) / (np.sqrt(2) * 0.35)))
            lv = 0.5 * (1 - erf((dv - width / 2) / (np.sqrt(2) * 0.35)))
            acc += np.maximum(lu, lv)
    lines = acc / supersample ** 2
    if blur:
        lines = ndimage.gaussian_filter(lines, blur)
    for _ in range(broken):
        y0, x0 = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        h = int(pitch * rng.uniform(0.5, 1.5))
        lines[max(0, y0 - 3):y0 + 3, max(0, x0 - h // 2):x0 + h // 2] = 0.0
    illum = 1.0 + gradient * (xx / max(nx - 1, 1) - 0.5)
    level = background + amplitude * ((1 - lines) if polarity == "dark" else lines)
    img = rng.poisson(np.clip(illum * level, 0, None)).astype(float)
    return img + rng.normal(0.0, read_noise, shape)
