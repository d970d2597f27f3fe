"""Frame factories: bias, dark, flat and light frames of a :class:`SyntheticCamera`,
each returned with the truth it was made from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from astropy.io import fits
from scipy.special import erf

from ._camera import SyntheticCamera

__all__ = [
    "IMAGETYP_MAXIM",
    "FrameTruth",
    "StarField",
    "SyntheticFrame",
    "bias_frame",
    "dark_frame",
    "flat_frame",
    "light_frame",
    "render_stars",
]

#: IMAGETYP spellings written by MaxIm DL (and many drivers that copy it).
IMAGETYP_MAXIM = {
    "bias": "Bias Frame",
    "dark": "Dark Frame",
    "flat": "Flat Field",
    "light": "Light Frame",
    "darkflat": "DARKFLAT",
}

_STAR_DTYPE = [("x", np.float64), ("y", np.float64), ("flux", np.float64)]


@dataclass(frozen=True)
class StarField:
    """A field of stars and sky for light frames.

    Positions follow the astropy/photutils convention: pixel ``(y, x)``
    covers ``[y - 0.5, y + 0.5] x [x - 0.5, x + 0.5]``.  Fluxes are electrons
    per second over the whole PSF for a pixel response of 1 (the flat field
    of the camera multiplies them).

    Parameters
    ----------
    n_stars : int
        Number of stars.
    flux : tuple of float
        Range of the star fluxes in e-/s (log-uniform).
    psf : {'gaussian', 'moffat'}
        PSF profile.
    fwhm : float
        PSF full width at half maximum in pixels.
    beta : float
        Moffat power index.
    sky : float
        Sky background in e-/s per pixel (before the flat field).
    margin : float
        Minimum distance of a star from the frame edges, in pixels.

    Examples
    --------
    >>> stars = StarField(n_stars=5).draw((64, 64), seed=1)
    >>> len(stars), stars.dtype.names
    (5, ('x', 'y', 'flux'))
    """

    n_stars: int = 40
    flux: tuple[float, float] = (50.0, 20000.0)
    psf: Literal["gaussian", "moffat"] = "gaussian"
    fwhm: float = 3.0
    beta: float = 3.5
    sky: float = 5.0
    margin: float = 8.0

    def __post_init__(self) -> None:
        if self.psf not in ("gaussian", "moffat"):
            raise ValueError(f"psf={self.psf!r} is not a known profile; use 'gaussian' or "
                             "'moffat'")
        if not self.fwhm > 0:
            raise ValueError(f"fwhm={self.fwhm!r} must be positive (pixels)")
        if self.psf == "moffat" and not self.beta > 1:
            raise ValueError(f"beta={self.beta!r} must be above 1 for a Moffat PSF")

    def draw(self, shape: tuple[int, int], *, seed=None) -> np.ndarray:
        """Draw star positions and fluxes: structured array with ``x``, ``y``, ``flux``."""
        rng = np.random.default_rng(seed)
        ny, nx = shape
        m = min(self.margin, (min(ny, nx) - 1) / 2)
        out = np.zeros(int(self.n_stars), dtype=_STAR_DTYPE)
        out["x"] = rng.uniform(m, nx - 1 - m, len(out))
        out["y"] = rng.uniform(m, ny - 1 - m, len(out))
        lo, hi = self.flux
        out["flux"] = np.exp(rng.uniform(np.log(lo), np.log(hi), len(out)))
        return out


def render_stars(shape: tuple[int, int], stars: np.ndarray, field: StarField) -> np.ndarray:
    """Noise-free image of ``stars`` (flux per pixel, float64) with ``field``'s PSF.

    The Gaussian PSF is integrated exactly over each pixel; the Moffat PSF is
    integrated on a 5x5 sub-grid.  The image of a star is cut at about 5 (Gaussian)
    or 10 (Moffat) FWHM from its centre, so very faint wings are lost.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the image.
    stars : ndarray
        Structured array with fields ``x``, ``y`` and ``flux``.
    field : StarField
        The PSF.

    Returns
    -------
    ndarray
        float64 image of the flux per pixel.

    Examples
    --------
    >>> stars = np.array([(10.0, 12.0, 1000.0)], dtype=[("x", float), ("y", float),
    ...                  ("flux", float)])
    >>> img = render_stars((24, 24), stars, StarField())
    >>> round(float(img.sum()), 3), np.unravel_index(img.argmax(), img.shape)
    (1000.0, (np.int64(12), np.int64(10)))
    """
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    if field.psf == "gaussian":
        sigma = field.fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        half = int(np.ceil(5.0 * sigma)) + 1
    else:
        alpha = field.fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / field.beta) - 1.0))
        half = int(np.ceil(10.0 * field.fwhm)) + 1
    for star in np.atleast_1d(stars):
        x0, y0, flux = float(star["x"]), float(star["y"]), float(star["flux"])
        ix, iy = int(np.rint(x0)), int(np.rint(y0))
        xa, xb = max(ix - half, 0), min(ix + half + 1, nx)
        ya, yb = max(iy - half, 0), min(iy + half + 1, ny)
        if xa >= xb or ya >= yb:
            continue
        xs = np.arange(xa, xb)
        ys = np.arange(ya, yb)
        if field.psf == "gaussian":
            s = sigma * np.sqrt(2.0)
            fx = 0.5 * (erf((xs + 0.5 - x0) / s) - erf((xs - 0.5 - x0) / s))
            fy = 0.5 * (erf((ys + 0.5 - y0) / s) - erf((ys - 0.5 - y0) / s))
            image[ya:yb, xa:xb] += flux * np.outer(fy, fx)
        else:
            sub = (np.arange(5) - 2) / 5.0
            gx = (xs[:, None] + sub[None, :]).ravel() - x0
            gy = (ys[:, None] + sub[None, :]).ravel() - y0
            r2 = gy[:, None] ** 2 + gx[None, :] ** 2
            prof = (field.beta - 1.0) / (np.pi * alpha**2) * (1.0 + r2 / alpha**2) ** -field.beta
            prof = prof.reshape(len(ys), 5, len(xs), 5).mean(axis=(1, 3))
            image[ya:yb, xa:xb] += flux * prof
    return image


@dataclass
class FrameTruth:
    """What a synthetic frame was made from.

    Attributes
    ----------
    frametype : str
        'bias', 'dark', 'flat', 'light' or 'darkflat'.
    exptime : float
        Exposure time in seconds.
    temperature : float
        Sensor temperature in deg C.
    bias : numpy.ndarray
        True bias level of every pixel (ADU).
    dark_current : numpy.ndarray
        True dark current of every pixel at ``temperature`` (e-/s).
    flat : numpy.ndarray or None
        True response of every pixel (the camera's :meth:`~SyntheticCamera.flat_map`)
        for frames that saw light, else None.
    signal : numpy.ndarray
        Expected electrons above the bias (dark + light), before noise.
    expected : numpy.ndarray
        Noise-free expectation of the frame in ADU (``bias + signal / gain``).
    sigma : numpy.ndarray
        True standard deviation of every pixel in ADU: Poisson noise through the
        gain, read noise and the rounding to integer ADU,
        ``sqrt(signal / gain**2 + (read_noise / gain)**2 + 1/12)``.
        ``expected`` and ``sigma`` are computed each time they are asked for.
    cosmic_mask : numpy.ndarray
        True where a cosmic ray hit.
    saturated : numpy.ndarray
        True where the pixel reached the full well or the ADC maximum.
    gain, read_noise : float
        Gain (e-/ADU) and read noise (e-) of the camera.
    stars : numpy.ndarray or None
        Stars of a light frame (``x``, ``y`` in this frame, ``flux`` in e-/s).
    sky : float
        Sky background of a light in e-/s per pixel (0 otherwise).
    """

    frametype: str
    exptime: float
    temperature: float
    bias: np.ndarray
    dark_current: np.ndarray
    flat: np.ndarray | None
    signal: np.ndarray
    cosmic_mask: np.ndarray
    saturated: np.ndarray
    gain: float
    read_noise: float
    stars: np.ndarray | None = None
    sky: float = 0.0

    @property
    def expected(self) -> np.ndarray:
        """Noise-free expectation of the frame in ADU (computed when asked)."""
        return self.bias + self.signal / self.gain

    @property
    def sigma(self) -> np.ndarray:
        """True per-pixel standard deviation in ADU (computed when asked)."""
        return np.sqrt(self.signal / self.gain**2 + (self.read_noise / self.gain) ** 2
                       + 1.0 / 12.0)


@dataclass
class SyntheticFrame:
    """A synthetic frame: its ADU values, its header and its truth.

    Attributes
    ----------
    data : numpy.ndarray
        The frame as the camera wrote it: integer ADU values in
        ``[0, adc_max]``, stored as float32.
    header : astropy.io.fits.Header
        The header a camera driver would write (IMAGETYP, EXPTIME, CCD-TEMP, ...).
    truth : FrameTruth
        What the frame was made from.
    """

    data: np.ndarray
    header: fits.Header
    truth: FrameTruth = field(repr=False)

    @property
    def frametype(self) -> str:
        """The frame type ('bias', 'dark', 'flat', 'light', 'darkflat')."""
        return self.truth.frametype

    @property
    def exptime(self) -> float:
        """Exposure time in seconds."""
        return self.truth.exptime

    def to_hdu(self) -> fits.PrimaryHDU:
        """The frame as a FITS primary HDU of unsigned 16-bit integers (BZERO = 32768)."""
        return fits.PrimaryHDU(data=self.data.astype(np.uint16), header=self.header.copy())

    def to_ccddata(self, *, uncertainty: bool = True):
        """The frame as a :class:`~astropy.nddata.CCDData` in ADU.

        Parameters
        ----------
        uncertainty : bool
            Attach the true per-pixel sigma as a ``StdDevUncertainty``.

        The mask is the saturated pixels (what a reader can know); the cosmic
        rays stay in :attr:`truth`.
        """
        # deferred: astropy.nddata adds 0.1 s to ``import calframe.datasets``
        from astropy.nddata import CCDData, StdDevUncertainty

        unc = StdDevUncertainty(self.truth.sigma.astype(np.float32)) if uncertainty else None
        return CCDData(self.data.astype(np.float32), unit="adu", uncertainty=unc,
                       mask=self.truth.saturated.copy(), meta=self.header.copy())


def _cosmic_rays(rng: np.random.Generator, shape: tuple[int, int], n: int
                 ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Pixels hit by ``n`` cosmic rays (short tracks) and the electrons deposited."""
    ny, nx = shape
    ys, xs, es = [], [], []
    for _ in range(int(n)):
        length = rng.integers(1, 6)
        angle = rng.uniform(0, np.pi)
        y0, x0 = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
        energy = rng.uniform(2000.0, 20000.0)
        steps = np.arange(length)
        ys.append(np.clip(np.rint(y0 + steps * np.sin(angle)).astype(np.intp), 0, ny - 1))
        xs.append(np.clip(np.rint(x0 + steps * np.cos(angle)).astype(np.intp), 0, nx - 1))
        es.append(energy * rng.uniform(0.5, 1.5, length))
    if not ys:
        return (np.zeros(0, np.intp), np.zeros(0, np.intp)), np.zeros(0)
    return (np.concatenate(ys), np.concatenate(xs)), np.concatenate(es)


def _header(camera: SyntheticCamera, frametype: str, exptime: float, temperature: float,
            date_obs: str | None, imagetyp: dict[str, str] | None) -> fits.Header:
    spellings = IMAGETYP_MAXIM if imagetyp is None else {**IMAGETYP_MAXIM, **imagetyp}
    header = fits.Header()
    header["IMAGETYP"] = (spellings[frametype], "type of image")
    header["EXPTIME"] = (float(exptime), "[s] exposure time")
    header["CCD-TEMP"] = (float(temperature), "[C] sensor temperature")
    header["SET-TEMP"] = (float(camera.temperature), "[C] set point of the cooler")
    if date_obs:
        header["DATE-OBS"] = (date_obs, "UTC start of exposure")
    for key, value, comment in camera.header_cards():
        header[key] = (value, comment)
    header["SWCREATE"] = ("calframe.datasets", "software that made the frame")
    return header


def _expose(camera: SyntheticCamera, frametype: str, exptime: float, light_e: np.ndarray | None,
            *, seed, temperature: float | None, cosmic_rays: int, date_obs: str | None,
            imagetyp: dict[str, str] | None, stars=None, sky: float = 0.0) -> SyntheticFrame:
    if exptime < 0:
        raise ValueError(f"exptime={exptime!r} must not be negative (seconds)")
    if cosmic_rays < 0:
        raise ValueError(f"cosmic_rays={cosmic_rays!r} must not be negative")
    rng = np.random.default_rng(seed)
    temp = camera.temperature if temperature is None else float(temperature)
    bias = camera.bias_map()
    dark = camera.dark_current_map(temp)
    signal = dark * float(exptime)
    if light_e is not None:
        signal += light_e
    if exptime > 0 or light_e is not None:
        electrons = rng.poisson(signal).astype(np.float64)
    else:
        electrons = np.zeros(camera.shape)
    where, deposit = _cosmic_rays(rng, camera.shape, cosmic_rays)
    np.add.at(electrons, where, deposit)
    cosmic = np.zeros(camera.shape, dtype=bool)
    cosmic[where] = True
    full = electrons >= camera.full_well
    np.minimum(electrons, camera.full_well, out=electrons)
    if camera.read_noise:
        electrons += rng.standard_normal(camera.shape) * camera.read_noise
    adu = electrons
    adu /= camera.gain
    adu += bias
    np.rint(adu, out=adu)
    saturated = full
    saturated |= adu >= camera.adc_max
    adu = np.clip(adu, 0, camera.adc_max).astype(np.float32)
    truth = FrameTruth(
        frametype=frametype, exptime=float(exptime), temperature=temp, bias=bias,
        dark_current=dark, flat=camera.flat_map() if light_e is not None else None,
        signal=signal, cosmic_mask=cosmic, saturated=saturated, gain=camera.gain,
        read_noise=camera.read_noise, stars=stars, sky=float(sky))
    header = _header(camera, frametype, exptime, temp, date_obs, imagetyp)
    return SyntheticFrame(data=adu, header=header, truth=truth)


def bias_frame(camera: SyntheticCamera, *, seed=None, temperature: float | None = None,
               cosmic_rays: int = 0, date_obs: str | None = None,
               imagetyp: dict[str, str] | None = None) -> SyntheticFrame:
    """A bias frame (zero exposure): bias structure plus read noise.

    Parameters
    ----------
    camera : SyntheticCamera
        The detector.
    seed : int, numpy.random.SeedSequence or None
        Seed of the frame's noise (same seed, same frame).
    temperature : float, optional
        Sensor temperature (default: the camera's).
    cosmic_rays : int
        Number of cosmic-ray hits.
    date_obs : str, optional
        DATE-OBS to write in the header.
    imagetyp : dict, optional
        IMAGETYP spellings overriding :data:`IMAGETYP_MAXIM` (e.g. ``{'bias': 'zero'}``).

    Returns
    -------
    SyntheticFrame

    Examples
    --------
    >>> cam = SyntheticCamera(shape=(64, 64))
    >>> frame = bias_frame(cam, seed=0)
    >>> frame.header["IMAGETYP"], frame.data.dtype
    ('Bias Frame', dtype('float32'))
    >>> bool(abs(frame.data.mean() - cam.bias_map().mean()) < 1)
    True
    """
    return _expose(camera, "bias", 0.0, None, seed=seed, temperature=temperature,
                   cosmic_rays=cosmic_rays, date_obs=date_obs, imagetyp=imagetyp)


def dark_frame(camera: SyntheticCamera, exptime: float, *, seed=None,
               temperature: float | None = None, cosmic_rays: int = 0,
               date_obs: str | None = None, imagetyp: dict[str, str] | None = None,
               frametype: Literal["dark", "darkflat"] = "dark") -> SyntheticFrame:
    """A dark frame of ``exptime`` seconds: bias, dark current (with hot pixels) and noise.

    Parameters
    ----------
    camera : SyntheticCamera
        The detector.
    exptime : float
        Exposure time in seconds.
    seed : int, numpy.random.SeedSequence or None
        Seed of the frame's noise (same seed, same frame).
    temperature : float, optional
        Sensor temperature (default: the camera's).
    cosmic_rays : int
        Number of cosmic-ray hits.
    date_obs : str, optional
        DATE-OBS to write in the header.
    imagetyp : dict, optional
        IMAGETYP spellings overriding :data:`IMAGETYP_MAXIM`.
    frametype : {'dark', 'darkflat'}
        'darkflat' for the darks that go with flats.

    Returns
    -------
    SyntheticFrame

    Examples
    --------
    >>> cam = SyntheticCamera(shape=(64, 64), n_hot_pixels=2)
    >>> frame = dark_frame(cam, 300.0, seed=0)
    >>> y, x = cam.hot_pixels["y"][0], cam.hot_pixels["x"][0]
    >>> bool(frame.data[y, x] > frame.data.mean() + 100)
    True
    """
    if frametype not in ("dark", "darkflat"):
        raise ValueError(f"frametype={frametype!r} must be 'dark' or 'darkflat'")
    return _expose(camera, frametype, exptime, None, seed=seed, temperature=temperature,
                   cosmic_rays=cosmic_rays, date_obs=date_obs, imagetyp=imagetyp)


def flat_frame(camera: SyntheticCamera, level: float = 20000.0, exptime: float = 1.0, *,
               seed=None, temperature: float | None = None, cosmic_rays: int = 0,
               date_obs: str | None = None,
               imagetyp: dict[str, str] | None = None) -> SyntheticFrame:
    """A flat field: uniform light through the camera's response, plus dark and noise.

    Parameters
    ----------
    camera : SyntheticCamera
        The detector.
    level : float
        Signal above the bias, in ADU, of a pixel whose response is 1 (a green
        or mono pixel on the optical axis without dust).
    exptime : float
        Exposure time in seconds (only the dark current depends on it).
    seed : int, numpy.random.SeedSequence or None
        Seed of the frame's noise (same seed, same frame).
    temperature : float, optional
        Sensor temperature (default: the camera's).
    cosmic_rays : int
        Number of cosmic-ray hits.
    date_obs : str, optional
        DATE-OBS to write in the header.
    imagetyp : dict, optional
        IMAGETYP spellings overriding :data:`IMAGETYP_MAXIM`.

    Returns
    -------
    SyntheticFrame

    Examples
    --------
    >>> cam = SyntheticCamera(shape=(64, 64))
    >>> frame = flat_frame(cam, level=10000.0, seed=0)
    >>> ratio = (frame.data - cam.bias_map()) / frame.truth.flat
    >>> bool(abs(np.median(ratio) - 10000.0) < 50)
    True
    """
    if not level > 0:
        raise ValueError(f"level={level!r} must be positive (ADU above the bias)")
    light = camera.flat_map() * (float(level) * camera.gain)
    return _expose(camera, "flat", exptime, light, seed=seed, temperature=temperature,
                   cosmic_rays=cosmic_rays, date_obs=date_obs, imagetyp=imagetyp)


def light_frame(camera: SyntheticCamera, exptime: float = 60.0, *,
                field: StarField | None = None, stars: np.ndarray | None = None,
                shift: tuple[float, float] = (0.0, 0.0), seed=None,
                temperature: float | None = None, cosmic_rays: int = 0,
                date_obs: str | None = None,
                imagetyp: dict[str, str] | None = None) -> SyntheticFrame:
    """A light frame: stars and sky through the camera's response, dark, noise, cosmic rays.

    Parameters
    ----------
    camera : SyntheticCamera
        The detector.
    exptime : float
        Exposure time in seconds.
    field : StarField, optional
        PSF, sky level and (when ``stars`` is not given) how to draw the stars.
    stars : numpy.ndarray, optional
        Stars to render (structured ``x``, ``y``, ``flux`` in e-/s); drawn from
        ``field`` with the frame's seed when omitted.
    shift : tuple of float
        ``(dy, dx)`` added to the star positions (a dither); the truth holds the
        shifted positions.
    seed : int, numpy.random.SeedSequence or None
        Seed of the frame's noise (same seed, same frame).
    temperature : float, optional
        Sensor temperature (default: the camera's).
    cosmic_rays : int
        Number of cosmic-ray hits.
    date_obs : str, optional
        DATE-OBS to write in the header.
    imagetyp : dict, optional
        IMAGETYP spellings overriding :data:`IMAGETYP_MAXIM`.

    Returns
    -------
    SyntheticFrame

    Examples
    --------
    >>> cam = SyntheticCamera(shape=(64, 64))
    >>> frame = light_frame(cam, 30.0, field=StarField(n_stars=3), seed=2)
    >>> len(frame.truth.stars), frame.header["IMAGETYP"]
    (3, 'Light Frame')
    """
    field = StarField() if field is None else field
    rng = np.random.default_rng(seed)
    star_seed, noise_seed = rng.integers(0, 2**63 - 1, 2)
    if stars is None:
        stars = field.draw(camera.shape, seed=int(star_seed))
    given = np.atleast_1d(stars)
    stars = np.zeros(len(given), dtype=_STAR_DTYPE)
    for name in ("x", "y", "flux"):
        stars[name] = given[name]
    stars["y"] += shift[0]
    stars["x"] += shift[1]
    sky_image = render_stars(camera.shape, stars, field) + field.sky
    light = camera.flat_map() * sky_image * float(exptime)
    return _expose(camera, "light", exptime, light, seed=int(noise_seed),
                   temperature=temperature, cosmic_rays=cosmic_rays, date_obs=date_obs,
                   imagetyp=imagetyp, stars=stars, sky=field.sky)
