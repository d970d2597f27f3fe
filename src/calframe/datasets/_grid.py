"""Synthetic images of a grid target with a known geometric distortion.

A grid target is a plate with a regular square lattice of holes (bright spots
on a dark field, as in front of an X-ray detector) or a printed pattern of
dots (dark dots on a bright field).  The functions here render such images
through a known distortion field, so that a distortion calibration can be
checked against the truth.

Conventions (the same as :class:`calframe.DistortionModel`): pixel centres are
at integer coordinates, ``x`` is the column and ``y`` the row.  A distortion
field gives, at an *observed* position ``(x, y)``, the displacement
``(dx, dy)`` such that the *ideal* (undistorted) position is
``(x + dx, y + dy)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from scipy.special import erfc

__all__ = ["GridDistortion", "GridTruth", "make_grid_image"]


@dataclass
class GridDistortion:
    """A smooth synthetic distortion field: radial plus random low-frequency.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the detector; sets the centre and the field scale.
    radial : float
        Radial displacement in pixels at the corners (distance of half the
        diagonal): positive values push observed points outwards to their ideal
        positions (the image shows barrel distortion), negative values
        correspond to pincushion.
    smooth : float
        Amplitude in pixels of the random smooth component (a sum of a few
        low-frequency sinusoids).
    radial5 : float
        Radial displacement in pixels at the corners of a fifth-order term
        (``r**5``), added to the third-order ``radial`` term: a wide-angle
        lens whose distortion grows faster than ``r**3`` towards the edge
        (or, with opposite signs, a "moustache" profile).
    fisheye : float
        Half-diagonal field angle in degrees of an equidistant (fisheye)
        lens, ``r_observed = f theta``, seen as a rectilinear image,
        ``r_ideal = f tan(theta)``: a barrel whose displacement grows
        steeply towards the corners (0, the default, adds none).  Added to
        the other terms.
    seed : int
        Seed of the random component.
    center : tuple of float, optional
        ``(xc, yc)`` of the radial term (default the detector centre, slightly
        offset so that it is not on a symmetry point).
    nwaves : int
        Number of sinusoids in the random component.

    Examples
    --------
    >>> field = GridDistortion((200, 300), radial=2.0, smooth=1.0, seed=1)
    >>> dx, dy = field(150.0, 100.0)
    >>> bool(abs(dx) < 3 and abs(dy) < 3)
    True
    """

    shape: tuple[int, int]
    radial: float = 2.0
    smooth: float = 1.5
    seed: int = 0
    radial5: float = 0.0
    fisheye: float = 0.0
    center: tuple[float, float] | None = None
    nwaves: int = 4
    _waves: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        ny, nx = self.shape
        if self.center is None:
            self.center = (0.5 * (nx - 1) + 0.037 * nx, 0.5 * (ny - 1) - 0.029 * ny)
        rng = np.random.default_rng(self.seed)
        size = max(nx, ny)
        self._waves = []
        for _ in range(self.nwaves):
            # wavelengths of 0.7 to 2 detector sizes: smooth over a few pitches
            wavelength = size * rng.uniform(0.7, 2.0)
            theta = rng.uniform(0, np.pi)
            kx, ky = 2 * np.pi / wavelength * np.cos(theta), 2 * np.pi / wavelength * np.sin(theta)
            phase = rng.uniform(0, 2 * np.pi)
            ax, ay = rng.normal(size=2)
            self._waves.append((kx, ky, phase, ax, ay))
        # normalise the random part to the requested amplitude (max over a grid)
        yy, xx = np.mgrid[0:ny:complex(0, 25), 0:nx:complex(0, 25)]
        gx, gy = self._random(xx, yy, scale=1.0)
        peak = float(np.max(np.hypot(gx, gy))) or 1.0
        self._scale = self.smooth / peak

    def _random(self, x, y, scale):
        gx = np.zeros_like(x, dtype=float)
        gy = np.zeros_like(x, dtype=float)
        for kx, ky, phase, ax, ay in self._waves:
            s = np.sin(kx * x + ky * y + phase)
            gx = gx + ax * s
            gy = gy + ay * s
        return scale * gx, scale * gy

    def __call__(self, x, y):
        """Displacement ``(dx, dy)`` from observed ``(x, y)`` to the ideal position."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ny, nx = self.shape
        xc, yc = self.center
        rmax = 0.5 * np.hypot(nx, ny)
        u, v = (x - xc) / rmax, (y - yc) / rmax
        r2 = u * u + v * v
        fx = self.radial * u * r2
        fy = self.radial * v * r2
        if self.radial5:
            fx = fx + self.radial5 * u * r2 * r2
            fy = fy + self.radial5 * v * r2 * r2
        if self.fisheye:
            # r_ideal = f tan(r / f), with f such that the corner is at the field angle
            f = 1.0 / np.deg2rad(self.fisheye)
            r = np.sqrt(r2)
            grow = np.where(r > 0, f * np.tan(r / f) / np.where(r > 0, r, 1.0), 1.0) - 1.0
            fx = fx + grow * u * rmax
            fy = fy + grow * v * rmax
        gx, gy = self._random(x, y, self._scale)
        return fx + gx, fy + gy

    def observed(self, x_ideal, y_ideal, *, iterations: int = 30):
        """Observed position of an ideal position (inverse of the field)."""
        xi = np.asarray(x_ideal, dtype=float)
        yi = np.asarray(y_ideal, dtype=float)
        x, y = xi.copy(), yi.copy()
        for _ in range(iterations):
            dx, dy = self(x, y)
            x, y = xi - dx, yi - dy
        return x, y


@dataclass
class GridTruth:
    """What a synthetic grid image was made from.

    Attributes
    ----------
    spots : astropy.table.Table
        One row per lattice point whose spot touches the image: ``i``, ``j``
        (lattice indices), ``x``, ``y`` (observed centre), ``x_ideal``,
        ``y_ideal``, ``inside`` (the whole spot is on the detector) and
        ``present`` (False for spots removed on purpose).
    field : GridDistortion or None
        The distortion field (``None`` for an undistorted image).
    pitch : float
        Lattice pitch in pixels (ideal frame).
    spurious : numpy.ndarray
        ``(n, 2)`` positions ``(x, y)`` of the spurious blobs added.
    """

    spots: Table
    field: GridDistortion | None
    pitch: float
    spurious: np.ndarray

    def displacement(self, x, y):
        """True ``(dx, dy)`` at observed positions (zeros without a field)."""
        if self.field is None:
            x = np.asarray(x, dtype=float)
            return np.zeros_like(x), np.zeros_like(x)
        return self.field(x, y)


def _render(shape, xs, ys, radius, edge, supersample):
    """Sum of soft-edged disks integrated over the pixel areas."""
    ny, nx = shape
    out = np.zeros(shape, dtype=np.float64)
    half = int(np.ceil(radius + 5 * edge + 2))
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    win = np.arange(-half, half + 1)
    sub = (win[:, None] + offs[None, :]).ravel()  # (w * s,)
    w = win.size
    for x0, y0 in zip(xs, ys, strict=True):
        ix, iy = round(x0), round(y0)
        if ix + half < 0 or iy + half < 0 or ix - half >= nx or iy - half >= ny:
            continue
        dxs = ix + sub - x0
        dys = iy + sub - y0
        rho = np.sqrt(dys[:, None] ** 2 + dxs[None, :] ** 2)
        prof = 0.5 * erfc((rho - radius) / (np.sqrt(2.0) * edge))
        prof = prof.reshape(w, supersample, w, supersample).mean(axis=(1, 3))
        y_lo, x_lo = iy - half, ix - half
        ys0, xs0 = max(0, y_lo), max(0, x_lo)
        ys1, xs1 = min(ny, y_lo + w), min(nx, x_lo + w)
        out[ys0:ys1, xs0:xs1] += prof[ys0 - y_lo:ys1 - y_lo, xs0 - x_lo:xs1 - x_lo]
    return out


def make_grid_image(shape: tuple[int, int] = (512, 512), *, pitch: float = 24.0,
                    spot_radius: float = 5.0, amplitude: float = 1000.0,
                    background: float = 100.0, polarity: str = "bright",
                    distortion: GridDistortion | None = None, angle: float = 0.0,
                    offset: tuple[float, float] = (0.0, 0.0), vignetting: float = 0.0,
                    gradient: float = 0.0, read_noise: float = 3.0, poisson: bool = True,
                    missing: float = 0.0, spurious: int = 0, edge: float = 0.6,
                    supersample: int = 4, field_stop: float | None = None,
                    seed: int = 0) -> tuple[np.ndarray, GridTruth]:
    """Render a grid target through a known distortion.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    pitch : float
        Lattice pitch in pixels (ideal frame).
    spot_radius : float
        Radius of the holes/dots in pixels.
    amplitude, background : float
        Signal of a hole above the dark level (``polarity="bright"``), or depth
        of a dot below the bright level (``"dark"``); and the level of the
        field without spots.  Bright: ``background + amplitude * spot``; dark:
        ``background + amplitude * (1 - spot)``.
    polarity : {"bright", "dark"}
        Bright holes on a dark field, or dark dots on a bright field.
    distortion : GridDistortion, optional
        The field; ``None`` renders an undistorted lattice.
    angle : float
        Rotation of the lattice in degrees.
    offset : tuple of float
        Shift ``(x, y)`` of the lattice in pixels (use fractions of a pitch
        for independent exposures).
    vignetting : float
        Fractional loss of illumination at the corners (0 to 1), multiplying
        the whole image with a smooth radial fall-off.
    gradient : float
        Fractional left-to-right illumination gradient.
    read_noise : float
        Gaussian noise (standard deviation, in the image units).
    poisson : bool
        Add Poisson noise (gain 1).
    missing : float
        Fraction of the spots removed at random.
    spurious : int
        Number of spurious small blobs added at random positions.
    edge : float
        Gaussian softness of the spot edge (pixels).
    supersample : int
        Sub-samples per pixel and axis for the pixel-area integration.
    field_stop : float, optional
        Radius of a circular field of view, as a fraction of half the
        diagonal: outside it the image is dark (``background`` of a bright
        grid, 5 % of the field level of a dark one), as with a lens image
        circle or a target smaller than the view.  A soft edge of 2 %.
        None (the default) fills the whole image.
    seed : int
        Seed of everything random (noise, missing and spurious spots).

    Returns
    -------
    image : numpy.ndarray
        float64 image.
    truth : GridTruth
        The spots' true positions and the field.

    Examples
    --------
    >>> img, truth = make_grid_image((128, 128), pitch=20, seed=1)
    >>> img.shape, bool(img.max() > 900)
    ((128, 128), True)
    >>> int(truth.spots["inside"].sum()) > 20
    True
    """
    if polarity not in ("bright", "dark"):
        raise ValueError(f"polarity must be 'bright' or 'dark', got {polarity!r}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    th = np.deg2rad(angle)
    a = pitch * np.array([np.cos(th), np.sin(th)])
    b = pitch * np.array([-np.sin(th), np.cos(th)])
    cx, cy = 0.5 * (nx - 1) + offset[0], 0.5 * (ny - 1) + offset[1]
    n = int(np.ceil(np.hypot(nx, ny) / pitch)) + 2
    ii, jj = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    xi = cx + ii * a[0] + jj * b[0]
    yi = cy + ii * a[1] + jj * b[1]
    margin = spot_radius + 3
    keep = ((xi > -3 * margin) & (xi < nx + 3 * margin)
            & (yi > -3 * margin) & (yi < ny + 3 * margin))
    ii, jj, xi, yi = ii[keep], jj[keep], xi[keep], yi[keep]
    if distortion is not None:
        xo, yo = distortion.observed(xi, yi)
    else:
        xo, yo = xi.copy(), yi.copy()
    touch = (xo > -margin) & (xo < nx - 1 + margin) & (yo > -margin) & (yo < ny - 1 + margin)
    ii, jj, xi, yi, xo, yo = (v[touch] for v in (ii, jj, xi, yi, xo, yo))
    inside = ((xo - spot_radius - 2 * edge >= -0.5) & (xo + spot_radius + 2 * edge <= nx - 0.5)
              & (yo - spot_radius - 2 * edge >= -0.5) & (yo + spot_radius + 2 * edge <= ny - 0.5))
    present = rng.random(xo.size) >= missing
    spots_img = _render(shape, xo[present], yo[present], spot_radius, edge, supersample)
    spur = np.column_stack([rng.uniform(10, nx - 10, spurious),
                            rng.uniform(10, ny - 10, spurious)])
    if spurious:
        spots_img += _render(shape, spur[:, 0], spur[:, 1], 0.35 * spot_radius, edge, supersample)
    np.clip(spots_img, 0.0, 1.0, out=spots_img)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    rr2 = ((xx - 0.5 * (nx - 1)) ** 2 + (yy - 0.5 * (ny - 1)) ** 2) / (0.25 * (nx * nx + ny * ny))
    illum = (1.0 - vignetting * rr2 ** 2) * (1.0 + gradient * (xx / max(nx - 1, 1) - 0.5))
    if polarity == "bright":
        img = illum * (background + amplitude * spots_img)
    else:
        img = illum * (background + amplitude * (1.0 - spots_img))
    if field_stop is not None:
        # smooth step from 1 inside to 0 outside the circle, 2 % of the radius wide
        rr = np.sqrt(rr2)
        stop = 0.5 * erfc((rr - field_stop) / (np.sqrt(2.0) * 0.02 * field_stop))
        dark = background if polarity == "bright" else 0.05 * (background + amplitude)
        img = dark + (img - dark) * stop
    if poisson:
        img = rng.poisson(np.clip(img, 0, None)).astype(np.float64)
    if read_noise:
        img = img + rng.normal(0.0, read_noise, size=shape)
    table = Table({"i": ii, "j": jj, "x": xo, "y": yo, "x_ideal": xi, "y_ideal": yi,
                   "inside": inside, "present": present})
    return img, GridTruth(spots=table, field=distortion, pitch=float(pitch), spurious=spur)
