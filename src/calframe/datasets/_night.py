"""A whole synthetic night written to disk as FITS, with its truth."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..errors import OutputExistsError
from ._camera import SyntheticCamera
from ._frames import (
    StarField,
    SyntheticFrame,
    bias_frame,
    dark_frame,
    flat_frame,
    light_frame,
)

__all__ = ["DEFAULT_LAYOUT", "Night", "NightFrame", "NightTruth", "make_night"]

log = logging.getLogger(__name__)

#: Folder of each frame type in a night, as camera software commonly lays it out.
DEFAULT_LAYOUT = {"bias": "bias", "dark": "darks", "flat": "flats", "light": "lights",
                  "darkflat": "darkflats"}

_READOUT = 2.0  # seconds between the end of one exposure and the start of the next


@dataclass(frozen=True)
class NightFrame:
    """One file of a synthetic night and how to make it again.

    Attributes
    ----------
    path : pathlib.Path
        The file (the night's ``path`` joined with its folder and name).
    frametype : str
        'bias', 'dark', 'flat', 'light' or 'darkflat'.
    exptime : float
        Exposure time in seconds.
    date_obs : str
        DATE-OBS written in the header.
    seed : int
        Seed of the frame's noise.
    cosmic_rays : int
        Number of cosmic-ray hits in the frame.
    shift : tuple of float
        ``(dy, dx)`` dither of a light (0 otherwise).
    temperature : float or None
        Sensor temperature (deg C); None means the camera's.
    """

    path: Path
    frametype: str
    exptime: float
    date_obs: str
    seed: int
    cosmic_rays: int = 0
    shift: tuple[float, float] = (0.0, 0.0)
    temperature: float | None = None


@dataclass
class NightTruth:
    """The truth behind a synthetic night.

    Attributes
    ----------
    bias_level : tuple of float
        Bias level of each position of the 2x2 cell (ADU).
    bias : numpy.ndarray
        True bias of every pixel (ADU), including column/row structure.
    read_noise : float
        Read noise (e-).
    gain : float
        Gain (e-/ADU).
    dark_current : numpy.ndarray
        True dark current of every pixel (e-/s) at the night's temperature.
    hot_pixels : numpy.ndarray
        Hot pixels (``y``, ``x``, ``current`` in e-/s).
    flat : numpy.ndarray
        True response of every pixel (with the colour response for CFA).
    flat_normalised : numpy.ndarray
        ``flat`` normalised to a mean of 1 (per CFA colour).
    stars : numpy.ndarray
        Stars of the field before dithering (``x``, ``y``, ``flux`` in e-/s).
    field : StarField
        PSF and sky of the lights.
    flat_level : float
        ADU above bias of a flat for a pixel of response 1.
    temperature : float
        Sensor temperature (deg C).
    """

    bias_level: tuple[float, float, float, float]
    bias: np.ndarray
    read_noise: float
    gain: float
    dark_current: np.ndarray
    hot_pixels: np.ndarray
    flat: np.ndarray
    flat_normalised: np.ndarray
    stars: np.ndarray
    field: StarField
    flat_level: float
    temperature: float


@dataclass
class Night:
    """A synthetic night on disk: its camera, its files and its truth.

    Attributes
    ----------
    path : pathlib.Path
        The folder holding the night (as given to :func:`make_night`).
    camera : SyntheticCamera
        The detector.
    frames : list of NightFrame
        Every file written, in order.
    truth : NightTruth
        What the frames were made from.
    """

    path: Path
    camera: SyntheticCamera
    frames: list[NightFrame]
    truth: NightTruth
    _imagetyp: dict[str, str] | None = field(default=None, repr=False)

    @property
    def files(self) -> dict[str, list[Path]]:
        """Files by frame type ('bias', 'dark', 'flat', 'light', 'darkflat')."""
        out: dict[str, list[Path]] = {}
        for frame in self.frames:
            out.setdefault(frame.frametype, []).append(frame.path)
        return out

    def files_of(self, frametype: str, exptime: float | None = None) -> list[Path]:
        """Files of one frame type (and exposure time, when given).

        Examples
        --------
        >>> import tempfile
        >>> night = make_night(tempfile.mkdtemp(), seed=1, camera=SyntheticCamera(
        ...     shape=(16, 16)), n_bias=2, n_dark=1, n_flat=1, n_light=1)
        >>> [p.name for p in night.files_of("dark", 300.0)]
        ['dark_300s_0001.fits']
        """
        return [f.path for f in self.frames if f.frametype == frametype
                and (exptime is None or f.exptime == exptime)]

    @property
    def dark_exptimes(self) -> list[float]:
        """The exposure times of the darks, sorted."""
        return sorted({f.exptime for f in self.frames if f.frametype == "dark"})

    def frame(self, path: str | os.PathLike) -> SyntheticFrame:
        """Make again the frame written to ``path``, with its full per-pixel truth.

        Raises
        ------
        KeyError
            If ``path`` is not a file of this night.
        """
        for rec in self.frames:
            given = Path(path)
            if given == rec.path or (given.name == rec.path.name
                                     and given.parent.name == rec.path.parent.name):
                return _make_frame(self.camera, self.truth, rec, self._imagetyp)
        raise KeyError(f"{path} is not a file of the synthetic night in {self.path}")


def _make_frame(camera: SyntheticCamera, truth: NightTruth, rec: NightFrame,
                imagetyp: dict[str, str] | None) -> SyntheticFrame:
    temp = truth.temperature if rec.temperature is None else rec.temperature
    common = dict(seed=rec.seed, cosmic_rays=rec.cosmic_rays, date_obs=rec.date_obs,
                  imagetyp=imagetyp, temperature=temp)
    if rec.frametype == "bias":
        return bias_frame(camera, **common)
    if rec.frametype in ("dark", "darkflat"):
        return dark_frame(camera, rec.exptime, frametype=rec.frametype, **common)
    if rec.frametype == "flat":
        return flat_frame(camera, truth.flat_level, rec.exptime, **common)
    return light_frame(camera, rec.exptime, field=truth.field, stars=truth.stars,
                       shift=rec.shift, **common)


def make_night(path: str | os.PathLike, *, seed: int = 0,
               camera: SyntheticCamera | None = None,
               n_bias: int = 10, n_dark: int = 5,
               dark_exptimes: Sequence[float] = (60.0, 300.0),
               n_flat: int = 10, flat_level: float = 20000.0, flat_exptime: float = 1.0,
               n_darkflat: int = 0,
               n_light: int = 5, light_exptime: float = 60.0,
               field: StarField | None = None, dither: float = 0.0,
               cosmic_rate: float = 1.0,
               layout: Mapping[str, str] | None = None,
               imagetyp: Mapping[str, str] | None = None,
               temperatures: Mapping[str, float] | None = None,
               start: str = "2026-03-14T19:00:00",
               overwrite: bool = False) -> Night:
    """Write a synthetic night of FITS frames to ``path`` and return it with its truth.

    Files are unsigned 16-bit integers stored with ``BZERO = 32768``, as most
    camera drivers write them, with MaxIm-style IMAGETYP spellings, EXPTIME,
    CCD-TEMP, SET-TEMP, EGAIN, RDNOISE, DATE-OBS, INSTRUME and, for a CFA
    camera, BAYERPAT / XBAYROFF / YBAYROFF / ROWORDER.  The layout is one
    folder per type (:data:`DEFAULT_LAYOUT`): ``bias/bias_0001.fits``,
    ``darks/dark_300s_0001.fits``, ``flats/flat_0001.fits``,
    ``lights/light_0001.fits``.

    Every frame has its own seed drawn from ``seed``, so the same arguments
    give byte-identical pixel data, and adding lights does not change the biases.

    Parameters
    ----------
    path : str or path-like
        Folder to write into (created if missing).
    seed : int
        Seed of the whole night (star field, dithers, cosmic rays, noise).
    camera : SyntheticCamera, optional
        The detector (default: a 256x256 monochrome :class:`SyntheticCamera`).
    n_bias, n_dark, n_flat, n_darkflat, n_light : int
        Numbers of frames; ``n_dark`` darks are made for each of ``dark_exptimes``,
        and ``n_darkflat`` darks with the flats' exposure.
    dark_exptimes : sequence of float
        Exposure times of the darks (s).
    flat_level : float
        ADU above the bias of a flat for a pixel of response 1.
    flat_exptime, light_exptime : float
        Exposure times of flats and lights (s).
    field : StarField, optional
        Stars, PSF and sky of the lights (default :class:`StarField`).
    dither : float
        Standard deviation (pixels) of a random shift of each light after the first.
    cosmic_rate : float
        Cosmic-ray hits per second of exposure per million pixels (Poisson).
    layout : mapping, optional
        Folder of each frame type, overriding :data:`DEFAULT_LAYOUT`
        (``''`` writes into ``path`` itself).
    imagetyp : mapping, optional
        IMAGETYP spellings overriding the MaxIm ones (e.g. ``{'bias': 'zero'}``).
    temperatures : mapping, optional
        Sensor temperature (deg C) of the frames of some types, e.g.
        ``{'dark': -5.0}`` for darks taken warmer than the lights; the dark
        current scales with it (:meth:`SyntheticCamera.dark_current_map`).
        Other types are at the camera's temperature.
    start : str
        DATE-OBS of the first frame (UTC, ISO format).
    overwrite : bool
        Replace existing files instead of raising.

    Returns
    -------
    Night

    Raises
    ------
    calframe.OutputExistsError
        If a file to write exists and ``overwrite`` is False.
    ValueError
        For negative counts or exposure times.

    Examples
    --------
    >>> import tempfile
    >>> night = make_night(tempfile.mkdtemp(), seed=3, camera=SyntheticCamera(
    ...     shape=(32, 32), cfa="GRBG"), n_bias=3, n_dark=2, n_flat=2, n_light=1)
    >>> {k: len(v) for k, v in night.files.items()}
    {'bias': 3, 'dark': 4, 'flat': 2, 'light': 1}
    >>> from astropy.io import fits
    >>> hdr = fits.getheader(night.files["flat"][0])
    >>> hdr["IMAGETYP"], hdr["BAYERPAT"], hdr["BZERO"]
    ('Flat Field', 'GRBG', 32768)
    """
    for name, value in (("n_bias", n_bias), ("n_dark", n_dark), ("n_flat", n_flat),
                        ("n_darkflat", n_darkflat), ("n_light", n_light)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name}={value!r} must be a whole number, 0 or more")
    dark_exptimes = [float(t) for t in dark_exptimes]
    if any(t < 0 for t in (*dark_exptimes, flat_exptime, light_exptime)):
        raise ValueError("exposure times must not be negative: got dark_exptimes="
                         f"{dark_exptimes}, flat_exptime={flat_exptime}, "
                         f"light_exptime={light_exptime}")
    if cosmic_rate < 0:
        raise ValueError(f"cosmic_rate={cosmic_rate!r} must not be negative")
    unknown = set(temperatures or {}) - set(DEFAULT_LAYOUT)
    if unknown:
        raise ValueError(f"temperatures has unknown frame types {sorted(unknown)}; use "
                         f"{', '.join(DEFAULT_LAYOUT)}")
    camera = SyntheticCamera() if camera is None else camera
    field = StarField() if field is None else field
    folders = {**DEFAULT_LAYOUT, **(layout or {})}
    imagetyp = dict(imagetyp) if imagetyp else None
    root = Path(path)

    seeds = np.random.SeedSequence(seed)
    ss_field, ss_bias, ss_dark, ss_flat, ss_light, ss_darkflat = seeds.spawn(6)
    field_rng = np.random.default_rng(ss_field)
    stars = field.draw(camera.shape, seed=field_rng)
    npix_mp = camera.shape[0] * camera.shape[1] / 1e6

    truth = NightTruth(
        bias_level=camera.bias_levels, bias=camera.bias_map(), read_noise=camera.read_noise,
        gain=camera.gain, dark_current=camera.dark_current_map(), hot_pixels=camera.hot_pixels,
        flat=camera.flat_map(), flat_normalised=camera.flat_map_normalised(), stars=stars,
        field=field, flat_level=float(flat_level), temperature=camera.temperature)

    plan: list[tuple[str, float, str, np.random.SeedSequence, tuple[float, float]]] = []
    plan += [("bias", 0.0, f"bias_{i + 1:04d}.fits", s, (0.0, 0.0))
             for i, s in enumerate(ss_bias.spawn(int(n_bias)))]
    dark_seeds = ss_dark.spawn(int(n_dark) * len(dark_exptimes))
    for k, t in enumerate(dark_exptimes):
        plan += [("dark", t, f"dark_{_tname(t)}_{i + 1:04d}.fits",
                  dark_seeds[k * int(n_dark) + i], (0.0, 0.0)) for i in range(int(n_dark))]
    plan += [("flat", float(flat_exptime), f"flat_{i + 1:04d}.fits", s, (0.0, 0.0))
             for i, s in enumerate(ss_flat.spawn(int(n_flat)))]
    plan += [("darkflat", float(flat_exptime), f"darkflat_{i + 1:04d}.fits", s, (0.0, 0.0))
             for i, s in enumerate(ss_darkflat.spawn(int(n_darkflat)))]
    shifts = field_rng.normal(0.0, dither, (int(n_light), 2)) if dither else \
        np.zeros((int(n_light), 2))
    if len(shifts):
        shifts[0] = 0.0
    plan += [("light", float(light_exptime), f"light_{i + 1:04d}.fits", s,
              (float(shifts[i, 0]), float(shifts[i, 1])))
             for i, s in enumerate(ss_light.spawn(int(n_light)))]

    when = datetime.fromisoformat(start)
    records: list[NightFrame] = []
    for frametype, exptime, name, ss, shift in plan:
        rng = np.random.default_rng(ss)
        frame_seed = int(rng.integers(0, 2**63 - 1))
        n_cr = int(rng.poisson(cosmic_rate * exptime * npix_mp)) if exptime else 0
        target = root / folders[frametype] / name
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target} exists; choose an empty folder for the "
                                    "synthetic night or pass overwrite=True")
        temp = (temperatures or {}).get(frametype)
        records.append(NightFrame(path=target, frametype=frametype, exptime=exptime,
                                  date_obs=when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                                  seed=frame_seed, cosmic_rays=n_cr, shift=shift,
                                  temperature=None if temp is None else float(temp)))
        when += timedelta(seconds=exptime + _READOUT)

    for rec in records:
        frame = _make_frame(camera, truth, rec, imagetyp)
        rec.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = rec.path.with_name(rec.path.name + ".part")
        frame.to_hdu().writeto(tmp, overwrite=True)
        os.replace(tmp, rec.path)
    log.info("wrote a synthetic night of %d frames to %s", len(records), root)
    return Night(path=root, camera=camera, frames=records, truth=truth, _imagetyp=imagetyp)


def _tname(exptime: float) -> str:
    """'300s', '0.5s'."""
    return f"{exptime:g}s"
