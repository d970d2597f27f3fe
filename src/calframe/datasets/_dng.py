"""A night of camera RAW flats and lights, written as DNG files built from a real DNG.

The files keep the template's TIFF tags value for value (camera model, CFA
pattern, black and white levels, default crop, colour matrices...), so LibRaw
reads them with the real camera's layout; only the image data are new.

Why the files are rebuilt rather than patched in place: a camera DNG usually
stores its mosaic compressed (the Blackmagic Pocket Cinema Camera 4K writes
lossless JPEG, Compression 7, at 12 bits through a 4096-entry
LinearizationTable that maps the codes to 16-bit values).  Compressed tiles
have no fixed place per pixel, and a 12-bit code through a non-linear table
cannot hold a linear value with its photon noise.  So the new mosaic is
written as uncompressed 16-bit tiles (or strips) of the template's geometry,
``Compression`` becomes 1 and ``BitsPerSample`` 16, the
``LinearizationTable`` is dropped (the new values are linear already), and an
EXIF IFD records the exposure time, ISO and date of each frame, as a camera
does.  The template's own pixels are not copied.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import OutputExistsError
from ._frames import StarField, render_stars

__all__ = ["DngNight", "DngNightTruth", "make_dng_night"]

log = logging.getLogger(__name__)

_CHANNELS = ("R", "G1", "G2", "B")
_COLOUR = {"R": "R", "G1": "G", "G2": "G", "B": "B"}
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4}
_LINEARIZATION_TABLE = 50712
_EXIF_IFD = 34665
_STRIP_TAGS = (273, 279)      # StripOffsets, StripByteCounts
_TILE_TAGS = (324, 325)       # TileOffsets, TileByteCounts
_READOUT = 2.0                # seconds between two exposures

#: The stars of :func:`make_dng_night`'s lights by default (fluxes in e-/s).
DEFAULT_STARS = StarField(n_stars=25, flux=(200.0, 8000.0))


@dataclass(frozen=True)
class DngNightTruth:
    """What a :func:`make_dng_night` night was made from.

    Electrons in a pixel of colour ``c`` at radius ``r`` are ``rate * t *
    response[c] * v_c(r)`` (Poisson), with the vignetting ``v_c(r) = (1 + k_c^2
    r^2)^-2`` (the cos^4 law, ``r = 1`` at the corners of the camera's default
    crop, ``v_c(0) = 1``), and the file holds ``black_level + electrons / gain +
    read noise``, rounded.

    Attributes
    ----------
    black_level : float
        The camera's black level in ADU (from the template).
    gain : float
        Gain in e-/ADU.
    read_noise : float
        Read noise in e-.
    response : dict
        Relative response of the R, G and B pixels (the flat's colour).
    corner : dict
        ``v_c(1)``: the illumination at the crop's corners relative to the
        centre, per colour R, G, B.
    centre : tuple of float
        ``(y, x)`` of the optical axis in array pixels.
    radius : float
        The distance from the centre that ``r = 1`` stands for (half the
        diagonal of the default crop), in pixels.
    flat_rate : float
        Electrons per second in a green pixel at the centre of a flat.
    flat_exptimes : tuple of float
        Exposure time of each flat.
    sky_rate : float
        Electrons per second in a green pixel at the centre of a light (sky only).
    light_exptime : float
        Exposure time of the lights.
    stars : tuple of numpy.ndarray
        The stars of each light (``x``, ``y``, ``flux`` in e-/s before the
        response and vignetting; the same field in every light), empty without
        stars.
    shape : tuple of int
        Shape of the mosaic LibRaw reads (the visible area).
    pattern : str
        The CFA pattern at pixel ``[0, 0]``.
    """

    black_level: float
    gain: float
    read_noise: float
    response: dict[str, float]
    corner: dict[str, float]
    centre: tuple[float, float]
    radius: float
    flat_rate: float
    flat_exptimes: tuple[float, ...]
    sky_rate: float
    light_exptime: float
    stars: tuple[np.ndarray, ...]
    shape: tuple[int, int]
    pattern: str

    def colour_map(self) -> np.ndarray:
        """The colour ('R', 'G' or 'B') of each pixel of the mosaic, as a string array."""
        cell = np.array(list(self.pattern)).reshape(2, 2)
        ny, nx = self.shape
        return np.tile(cell, ((ny + 1) // 2, (nx + 1) // 2))[:ny, :nx]

    def vignetting(self) -> np.ndarray:
        """The illumination of each pixel relative to the centre (each colour its own law).

        Returns
        -------
        numpy.ndarray
            float64 array of :attr:`shape`, 1 on the optical axis.
        """
        ny, nx = self.shape
        y, x = np.ogrid[:ny, :nx]
        r2 = ((y - self.centre[0]) ** 2 + (x - self.centre[1]) ** 2) / self.radius**2
        colours = self.colour_map()
        out = np.empty(self.shape)
        for colour in "RGB":
            k2 = self.corner[colour] ** -0.5 - 1.0
            sites = colours == colour
            out[sites] = (1.0 + k2 * np.broadcast_to(r2, self.shape)[sites]) ** -2
        return out

    def response_map(self) -> np.ndarray:
        """The response of each pixel (its colour's), times the vignetting."""
        colours = self.colour_map()
        resp = np.select([colours == c for c in "RGB"], [self.response[c] for c in "RGB"])
        return resp * self.vignetting()

    def flat_signal(self, exptime: float) -> np.ndarray:
        """Expected ADU above the black level of a flat of ``exptime`` seconds."""
        return self.flat_rate * exptime * self.response_map() / self.gain

    def light_signal(self, index: int = 0) -> np.ndarray:
        """Expected ADU above the black level of light ``index`` (sky and stars)."""
        sky = np.full(self.shape, self.sky_rate)
        if len(self.stars[index]):
            sky = sky + render_stars(self.shape, self.stars[index], StarField())
        return sky * self.light_exptime * self.response_map() / self.gain

    def corner_centre(self, *, size: float = 0.1) -> dict[str, float]:
        """Corner/centre of the illumination per CFA channel, as ``calframe cfa-stats`` boxes.

        The median of the noise-free vignetting of each channel in the four
        corner boxes of :func:`calframe.bayer.standard_regions` (averaged),
        divided by its median in the centre box.

        Returns
        -------
        dict
            ``{'R': ..., 'G1': ..., 'G2': ..., 'B': ...}``.
        """
        # deferred: calframe.bayer adds 0.2 s to ``import calframe.datasets``
        from ..bayer import channel_slices, standard_regions

        vig = self.vignetting()
        regions = standard_regions(self.shape, size=size)
        out = {}
        for name, sl in channel_slices(self.pattern).items():
            med = {region: float(np.median(vig[box][sl])) for region, box in regions.items()}
            corners = [v for region, v in med.items() if region != "centre"]
            out[name] = float(np.mean(corners) / med["centre"])
        return out


@dataclass(frozen=True)
class DngNight:
    """A folder of DNG flats and lights written by :func:`make_dng_night`.

    Attributes
    ----------
    path : pathlib.Path
        The night's folder (``flats/`` and ``lights/`` inside).
    flats, lights : tuple of pathlib.Path
        The files, in the order they were taken.
    truth : DngNightTruth
        What they were made from.
    """

    path: Path
    flats: tuple[Path, ...]
    lights: tuple[Path, ...]
    truth: DngNightTruth = field(repr=False)


def make_dng_night(folder: str | os.PathLike, template: str | os.PathLike, *,
                   n_flat: int = 5, n_light: int = 3,
                   flat_exptimes: Sequence[float] = (0.5, 1.0, 2.0),
                   flat_rate: float = 15000.0,
                   light_exptime: float = 60.0, sky_rate: float = 40.0,
                   stars: StarField | None = DEFAULT_STARS,
                   response: Mapping[str, float] | None = None,
                   corner: Mapping[str, float] | None = None,
                   gain: float = 1.5, read_noise: float = 3.0, iso: int = 400,
                   start: datetime = datetime(2024, 3, 9, 19, 30, 0),
                   seed: int | None = 0, overwrite: bool = False) -> DngNight:
    """Write a night of RAW flats and lights (no bias, no dark) as DNG files.

    Each file is the ``template`` DNG (its tags, so LibRaw reads the real
    camera's layout, black level, crop and CFA pattern) with a new mosaic:
    ``black level + Poisson(electrons) / gain + read noise``, rounded to
    16-bit integers (see the module notes for how the file is rebuilt).
    Flats are a uniform light through a colour-dependent cos^4 vignetting
    times a per-colour response, at the exposures ``flat_exptimes`` (cycled);
    lights are a uniform sky (and stars) through the same optics.

    Parameters
    ----------
    folder : path-like
        The night's folder; ``flats/`` and ``lights/`` are made inside.
    template : path-like
        A camera DNG whose raw mosaic is in its first IFD (tiled or in strips),
        little-endian, one sample per pixel.
    n_flat, n_light : int
        Number of flats and lights.
    flat_exptimes : sequence of float
        Exposures of the flats in seconds, used in turn.
    flat_rate : float
        Electrons per second in a green pixel at the centre of a flat.
    light_exptime : float
        Exposure of the lights in seconds.
    sky_rate : float
        Electrons per second of the sky in a green pixel at the centre.
    stars : StarField or None
        Stars of the lights, one field seen in every light (its ``sky`` is
        ignored: ``sky_rate`` is used); None for a sky without stars.
    response : mapping, optional
        Relative response of the R, G and B pixels; default ``{'R': 0.42,
        'G': 1.0, 'B': 0.62}``, about the colour of the template's own frame.
    corner : mapping, optional
        Illumination at the corners of the default crop relative to the
        centre, per colour; default ``{'R': 0.70, 'G': 0.62, 'B': 0.55}``.
    gain : float
        e-/ADU.
    read_noise : float
        e- rms.
    iso : int
        ISO written in the EXIF.
    start : datetime
        DateTimeOriginal of the first flat.
    seed : int or None
        Seed of the noise and the stars.
    overwrite : bool
        Replace files that exist.

    Returns
    -------
    DngNight
        The files and their :class:`DngNightTruth`.

    Raises
    ------
    ValueError
        If the template is not a DNG this function can rebuild (BigTIFF,
        big-endian, mosaic not in the first IFD), or a parameter is out of range.
    calframe.errors.OutputExistsError
        If a file exists and ``overwrite`` is False.

    Examples
    --------
    The template is a real camera DNG (4128x2176, about 18 MB per written
    file), so the example is not run with the documentation:

    >>> from calframe.datasets import make_dng_night
    >>> night = make_dng_night("night", "Blackmagic.dng", seed=1)  # doctest: +SKIP
    >>> [p.name for p in night.lights]  # doctest: +SKIP
    ['light_0001.dng', 'light_0002.dng', 'light_0003.dng']
    >>> night.truth.corner_centre()["R"]  # doctest: +SKIP
    0.7...
    """
    if n_flat < 0 or n_light < 0:
        raise ValueError(f"n_flat={n_flat} and n_light={n_light} must be 0 or more")
    if n_flat and not len(flat_exptimes):
        raise ValueError("flat_exptimes is empty; give at least one exposure for the flats")
    if gain <= 0 or read_noise < 0:
        raise ValueError(f"gain={gain} must be > 0 and read_noise={read_noise} >= 0")
    response = dict(response or {"R": 0.42, "G": 1.0, "B": 0.62})
    corner = dict(corner or {"R": 0.70, "G": 0.62, "B": 0.55})
    for name, values in (("response", response), ("corner", corner)):
        if sorted(values) != ["B", "G", "R"] or not all(v > 0 for v in values.values()):
            raise ValueError(f"{name}={values!r} needs positive values for 'R', 'G' and 'B'")
    if not all(v <= 1 for v in corner.values()):
        raise ValueError(f"corner={corner!r}: a vignetting darkens the corners; give values "
                         "in (0, 1]")

    layout = _read_template(Path(template))
    ny, nx = layout.shape
    rng = np.random.default_rng(seed)
    # one star field, seen in every light (as a sequence of one target is)
    drawn = (stars.draw(layout.shape, seed=rng.integers(2**32)) if stars is not None
             else np.zeros(0, dtype=[("x", float), ("y", float), ("flux", float)]))
    field_stars = [drawn] * n_light
    x0, y0, cw, ch = layout.crop
    truth = DngNightTruth(
        black_level=layout.black, gain=float(gain), read_noise=float(read_noise),
        response=response, corner=corner,
        centre=(y0 + (ch - 1) / 2.0, x0 + (cw - 1) / 2.0),
        radius=float(np.hypot(cw / 2.0, ch / 2.0)),
        flat_rate=float(flat_rate),
        flat_exptimes=tuple(float(flat_exptimes[i % len(flat_exptimes)])
                            for i in range(n_flat)),
        sky_rate=float(sky_rate), light_exptime=float(light_exptime),
        stars=tuple(field_stars), shape=(ny, nx), pattern=layout.pattern)

    root = Path(folder)
    plan = [(root / "flats" / f"flat_{i + 1:04d}.dng", "flat", i) for i in range(n_flat)]
    plan += [(root / "lights" / f"light_{i + 1:04d}.dng", "light", i) for i in range(n_light)]
    for path, _, _ in plan:
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; choose an empty folder for the night "
                                    "or pass overwrite=True")
    when = start
    written: dict[str, list[Path]] = {"flat": [], "light": []}
    for path, kind, i in plan:
        if kind == "flat":
            exptime = truth.flat_exptimes[i]
            mean = truth.flat_signal(exptime) * gain
        else:
            exptime = truth.light_exptime
            mean = truth.light_signal(i) * gain
        electrons = rng.poisson(mean).astype(np.float64)
        electrons += rng.normal(0.0, read_noise, size=mean.shape)
        adu = np.clip(np.rint(layout.black + electrons / gain), 0, 65535).astype("<u2")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_dng(path, layout, adu, exptime=exptime, iso=iso, date=when)
        log.info("wrote %s (%s, %g s)", path, kind, exptime)
        written[kind].append(path)
        when = when + timedelta(seconds=exptime + _READOUT)
    return DngNight(path=root, flats=tuple(written["flat"]), lights=tuple(written["light"]),
                    truth=truth)


# --------------------------------------------------------------------------- TIFF


@dataclass(frozen=True)
class _Template:
    """The tags of a template DNG's raw IFD and what the mosaic needs."""

    tags: dict[int, tuple[int, int, bytes]]      # code -> (type, count, value bytes)
    shape: tuple[int, int]                       # (rows, columns) of the stored mosaic
    tile: tuple[int, int] | None                 # (TileLength, TileWidth) or None
    rows_per_strip: int
    black: float
    crop: tuple[int, int, int, int]              # x0, y0, width, height
    pattern: str


def _read_template(path: Path) -> _Template:
    import tifffile  # deferred: only DNG nights need it (20 ms)

    with open(path, "rb") as handle:
        blob = handle.read()
    if blob[:4] != b"II*\x00":
        raise ValueError(f"{path}: not a little-endian classic TIFF/DNG (starts with "
                         f"{blob[:4]!r}); give a DNG written little-endian, as cameras do")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if page.photometric != 32803 or page.samplesperpixel != 1:
            raise ValueError(f"{path}: the first IFD is not a CFA mosaic (photometric "
                             f"{int(page.photometric)}, {page.samplesperpixel} samples); "
                             "give a DNG whose raw image is its first IFD")
        if page.subifds:
            log.debug("%s: SubIFDs are dropped from the rebuilt files", path)
        tags = {}
        for tag in page.tags.values():
            size = _TYPE_SIZE.get(int(tag.dtype))
            if size is None:
                raise ValueError(f"{path}: tag {tag.code} has TIFF type {int(tag.dtype)}, "
                                 "which this rebuild does not copy")
            start = int(tag.valueoffset)
            tags[int(tag.code)] = (int(tag.dtype), int(tag.count),
                                   blob[start:start + size * int(tag.count)])
        shape = (int(page.imagelength), int(page.imagewidth))
        tile = (int(page.tilelength), int(page.tilewidth)) if page.is_tiled else None
        rows = int(page.rowsperstrip) if not page.is_tiled else 0
        black = page.tags.get("BlackLevel")
        origin = page.tags.get("DefaultCropOrigin")
        size_tag = page.tags.get("DefaultCropSize")
        cfa = page.tags.get("CFAPattern")
        dims = page.tags.get("CFARepeatPatternDim")
    if cfa is None or dims is None or tuple(dims.value) != (2, 2):
        raise ValueError(f"{path}: no 2x2 CFAPattern; give the DNG of a Bayer camera")
    black_values = np.atleast_1d(black.value if black is not None else 0).astype(float)
    if np.ptp(black_values):
        raise ValueError(f"{path}: black levels differ per position ({black_values}); "
                         "this rebuild writes one black level")
    x0, y0 = (int(v) for v in origin.value) if origin is not None else (0, 0)
    cw, ch = ((int(v) for v in size_tag.value) if size_tag is not None
              else (shape[1] - x0, shape[0] - y0))
    pattern = "".join("RGB"[int(c)] for c in bytes(cfa.value))
    return _Template(tags=tags, shape=shape, tile=tile, rows_per_strip=rows,
                     black=float(black_values[0]), crop=(x0, y0, cw, ch), pattern=pattern)


def _chunks(layout: _Template, data: np.ndarray) -> list[bytes]:
    """The mosaic cut as the template stores it: tiles (padded) or strips, row-major."""
    ny, nx = layout.shape
    if layout.tile is not None:
        tl, tw = layout.tile
        out = []
        for ty in range(0, ny, tl):
            for tx in range(0, nx, tw):
                block = np.zeros((tl, tw), dtype="<u2")
                part = data[ty:ty + tl, tx:tx + tw]
                block[:part.shape[0], :part.shape[1]] = part
                out.append(block.tobytes())
        return out
    rows = min(layout.rows_per_strip or ny, ny)
    return [np.ascontiguousarray(data[y:y + rows]).tobytes() for y in range(0, ny, rows)]


def _ifd(entries: dict[int, tuple[int, int, bytes]], at: int) -> tuple[bytes, int]:
    """One IFD at offset ``at`` followed by its out-of-line values; returns (bytes, next)."""
    head = struct.pack("<H", len(entries))
    values = b""
    table = b""
    start = at + 2 + 12 * len(entries) + 4
    for code in sorted(entries):
        kind, count, raw = entries[code]
        if len(raw) <= 4:
            table += struct.pack("<HHI", code, kind, count) + raw.ljust(4, b"\x00")
        else:
            offset = start + len(values)
            table += struct.pack("<HHII", code, kind, count, offset)
            values += raw + (b"\x00" if len(raw) % 2 else b"")
    block = head + table + struct.pack("<I", 0) + values
    return block, at + len(block)


def _rational(value: float) -> bytes:
    frac = Fraction(value).limit_denominator(100000)
    return struct.pack("<II", frac.numerator, frac.denominator)


def _write_dng(path: Path, layout: _Template, data: np.ndarray, *, exptime: float, iso: int,
               date: datetime) -> None:
    chunks = _chunks(layout, data)
    stamp = date.strftime("%Y:%m:%d %H:%M:%S").encode("ascii") + b"\x00"
    exif = {33434: (5, 1, _rational(exptime)),                 # ExposureTime
            34855: (3, 1, struct.pack("<H", min(int(iso), 65535))),   # ISOSpeedRatings
            36867: (2, len(stamp), stamp)}                     # DateTimeOriginal
    entries = {code: value for code, value in layout.tags.items()
               if code not in (_LINEARIZATION_TABLE, 330)}     # 330: SubIFDs
    entries[258] = (3, 1, struct.pack("<H", 16))               # BitsPerSample
    entries[259] = (3, 1, struct.pack("<H", 1))                # Compression: none
    entries[306] = (2, len(stamp), stamp)                      # DateTime
    offsets_tag, counts_tag = _TILE_TAGS if layout.tile is not None else _STRIP_TAGS
    n = len(chunks)
    # Sizes first, with placeholder offsets: the IFDs' length does not depend on them.
    entries[offsets_tag] = (4, n, bytes(4 * n))
    entries[counts_tag] = (4, n, struct.pack(f"<{n}I", *(len(c) for c in chunks)))
    entries[_EXIF_IFD] = (4, 1, bytes(4))
    ifd0, end = _ifd(entries, 8)
    exif_at = end
    exif_block, end = _ifd(exif, exif_at)
    data_at = (end + 15) // 16 * 16
    offsets, pos = [], data_at
    for chunk in chunks:
        offsets.append(pos)
        pos += len(chunk)
    entries[offsets_tag] = (4, n, struct.pack(f"<{n}I", *offsets))
    entries[_EXIF_IFD] = (4, 1, struct.pack("<I", exif_at))
    ifd0, _ = _ifd(entries, 8)
    with open(path, "wb") as handle:
        handle.write(b"II*\x00" + struct.pack("<I", 8))
        handle.write(ifd0)
        handle.write(exif_block)
        handle.write(bytes(data_at - end))
        for chunk in chunks:
            handle.write(chunk)
