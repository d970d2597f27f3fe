"""``read_frame`` and ``iter_frames``: one entry point for every supported format."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from .. import metadata
from .._detector import as_tile, detector_sigma, warn_uncertainty_unknown
from ..contract import calframe_output
from ..errors import (
    FrameReadError,
    IncompatibleFramesError,
    InvalidSettingsError,
    MissingMetadataError,
)
from ..provenance import InputRecord, get_provenance
from ._common import Loaded
from ._edf import edf_frame_count, iter_edf
from ._fits import attach_fits_extras, image_hdus
from ._formats import FORMATS, HeaderRead, detect_format
from ._hdf5 import hdf5_frame_count, iter_hdf5
from ._kernels import mask_levels
from ._tiff import iter_tiff, tiff_frame_count

__all__ = ["FrameInfo", "detect_format", "frame_count", "iter_frames", "read_frame",
           "read_header"]

log = logging.getLogger(__name__)



def _loader(kind: str):
    return FORMATS[kind].load


def _default_unit(header) -> str:
    """The unit of a file whose header gives none: a camera's ADU, except for a file
    calframe wrote, which leaves ``BUNIT`` out only for dimensionless data (a
    normalised flat), as astropy does."""
    return "" if calframe_output(header) is not None else "adu"


def _parse_unit(value, path) -> u.UnitBase:
    if isinstance(value, u.UnitBase):
        return value
    text = str(value).strip()
    if text.lower() in ("adu", "count", "counts", "dn", "adus"):
        return u.adu
    if text.lower() in ("e", "e-", "electron", "electrons"):
        return u.electron
    if text.lower() in ("", "dimensionless", "none"):
        return u.dimensionless_unscaled
    try:
        return u.Unit(text)
    except ValueError as err:
        raise FrameReadError(path, f"unit {text!r} (BUNIT) is not understood",
                             "you can pass in a valid `unit` argument explicitly") from err


def _bad_pixel_mask(bad_pixel_mask, shape, path) -> np.ndarray:
    if isinstance(bad_pixel_mask, str | os.PathLike):
        kind = detect_format(bad_pixel_mask)
        values = _loader(kind)(bad_pixel_mask).data
        bpm = np.asarray(values) != 0
        where = f"bad_pixel_mask={os.fspath(bad_pixel_mask)!r}"
    else:
        bpm = np.asarray(bad_pixel_mask)
        if bpm.dtype != bool:
            bpm = bpm != 0
        where = "bad_pixel_mask"
    if bpm.shape != tuple(shape):
        raise IncompatibleFramesError(
            f"{where} has shape {bpm.shape} but {path} has shape {tuple(shape)}; "
                         "pass a mask of the frame's shape")
    return bpm


def _json_value(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    return str(value)


@dataclass(frozen=True)
class ReadOptions:
    """How :func:`read_frame` turns a frame into a CCDData, whichever frame it is.

    The keyword arguments of :func:`read_frame` other than ``hdu`` and
    ``frame``, with the same meaning and defaults; :func:`iter_frames` reads
    every frame of a file with one of them.

    Raises
    ------
    InvalidSettingsError
        A ``dtype`` other than float32 or float64.
    """

    unit: str | u.UnitBase | None = None
    gain: float | None = None
    read_noise: float | None = None
    saturation: float | None = None
    bad_pixel_mask: np.ndarray | str | os.PathLike | None = None
    subtract_black: bool = False
    pedestal: float | np.ndarray | None = None
    frametype: str | None = None
    require_exposure: bool = False
    dtype: type | np.dtype = np.float32

    def __post_init__(self) -> None:
        if np.dtype(self.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InvalidSettingsError(
                f"dtype={np.dtype(self.dtype).name}: frames are read as float32 or float64")


def read_frame(path: str | os.PathLike, *, hdu: int | str | None = None,
               frame: int | None = None, dataset: str | None = None,
               unit: str | u.UnitBase | None = None,
               gain: float | None = None, read_noise: float | None = None,
               saturation: float | None = None,
               bad_pixel_mask: np.ndarray | str | os.PathLike | None = None,
               subtract_black: bool = False, pedestal: float | None = None,
               frametype: str | None = None, require_exposure: bool = False,
               dtype: type | np.dtype = np.float32) -> CCDData:
    """Read one frame of a FITS, camera RAW, EDF, TIFF, PNG or JPEG file.

    Parameters
    ----------
    path : str or path-like
        The file.  Its format comes from the name's ending (checked against
        the first bytes) or, for other names, from the first bytes.
    hdu : int or str, optional
        FITS only: the image HDU to read (default: the first image HDU with
        two or more axes).
    frame : int, optional
        EDF, multi-page TIFF and HDF5: the frame to read (default 0).  Only
        that frame is decoded.
    dataset : str, optional
        HDF5 only: the path of the detector data in the file (default: found
        by NeXus convention, see :doc:`/guide/beamline`).
    unit : str or `~astropy.units.UnitBase`, optional
        The data unit (default: BUNIT of a FITS header, an empty BUNIT being
        dimensionless; for a calframe file without BUNIT, the unit of its
        UNCERT extension, else dimensionless, since calframe leaves BUNIT out
        only for dimensionless data; else ``adu``).
    gain, read_noise : float, optional
        Gain in e-/ADU and read noise in e-; they override the header
        (EGAIN / GAIN / RDNOISE and aliases, see :mod:`calframe.metadata`)
        and are written to EGAIN / RDNOISE.
    saturation : float, optional
        Level (in the file's ADU, before any black subtraction) at and above
        which pixels are masked as saturated.  Default: RAW white level, FITS
        SATURATE, else the full scale of an integer file (65535 for 16 bits).
    bad_pixel_mask : array or path, optional
        Known bad pixels (True or non-zero = bad), same shape as the frame.
    subtract_black : bool, optional
        Subtract the black level per CFA position (camera RAW).  By default the
        black level is only recorded (BLKLEV0..3, BLKLEVEL); a bias removes it.
    pedestal : float or array, optional
        Level (ADU) that carries no photon noise, for the noise model: one
        number, a 2x2 CFA tile or a map of the frame's shape.  Default: the
        black level of a RAW, else 0; for a bias frame the whole signal (its
        uncertainty is the read noise alone).
    frametype : str, optional
        Frame type to record (FTSOURCE = 'user') instead of inferring it.
    require_exposure : bool, optional
        Raise :class:`~calframe.MissingMetadataError` when no exposure time
        is found.
    dtype : numpy dtype, optional
        ``float32`` (default) or ``float64``.

    Returns
    -------
    astropy.nddata.CCDData
        Data as read (ADU), mask (saturated, non-finite, detector gaps, BLANK,
        bad pixels), uncertainty from the detector model when gain and read
        noise are known (else None, with a warning once per process), meta
        with the normalised keywords of :mod:`calframe.metadata` and the
        numbers of masked pixels (NSATUR, NNONFIN, NGAPPIX, NBADPIX), and
        provenance with this file and a 'read' step.

    Raises
    ------
    FileNotFoundError
        No such file.
    FrameReadError
        Empty, truncated or unreadable file, or a file whose bytes do not
        match its name.
    UnsupportedFormatError
        A format or RAW kind calframe does not read (X-Trans, non-Bayer).
    MissingMetadataError
        ``require_exposure=True`` and no exposure time; ``subtract_black``
        without a known black level.
    ValueError
        ``hdu``/``frame`` that the file does not have or its format does not
        use; a ``bad_pixel_mask`` or ``pedestal`` of another shape.

    Warns
    -----
    UncertaintyUnknownWarning
        Gain or read noise unknown (once per process).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "flat_001.fits"
    >>> data = np.full((4, 6), 1000, dtype=np.uint16)
    >>> fits.PrimaryHDU(data, header=fits.Header({"EGAIN": 2.0, "RDNOISE": 4.0})).writeto(path)
    >>> ccd = read_frame(path)
    >>> ccd.data.dtype, ccd.unit, ccd.meta["FRAMETYP"], ccd.meta["FTSOURCE"]
    (dtype('float32'), Unit("adu"), 'flat', 'filename')
    >>> round(float(ccd.uncertainty.array[0, 0]), 4)  # sqrt(1000 / 2 + (4 / 2)**2)
    22.4499
    """
    options = ReadOptions(unit=unit, gain=gain, read_noise=read_noise, saturation=saturation,
                          bad_pixel_mask=bad_pixel_mask, subtract_black=subtract_black,
                          pedestal=pedestal, frametype=frametype,
                          require_exposure=require_exposure, dtype=dtype)
    kind = detect_format(path)
    loaded = _load(kind, path, hdu=hdu, frame=frame, dtype=options.dtype, dataset=dataset)
    return _finish(loaded, path, kind, options)


def _load(kind, path, *, hdu, frame, dtype, dataset=None) -> Loaded:
    loader = _loader(kind)
    if dataset is not None and kind != "hdf5":
        raise InvalidSettingsError(
            f"dataset={dataset!r} applies to HDF5 only, and {path} is {kind}")
    if kind == "fits":
        if frame not in (None, 0):
            raise InvalidSettingsError(f"frame={frame!r}: FITS frames are chosen with hdu=")
        return loader(path, hdu=hdu, dtype=dtype)
    if hdu is not None:
        raise InvalidSettingsError(f"hdu={hdu!r} applies to FITS only, and {path} is {kind}")
    if kind == "hdf5":
        return loader(path, frame=frame or 0, dataset=dataset, dtype=dtype)
    if kind == "raw":
        if frame not in (None, 0):
            raise InvalidSettingsError(f"frame={frame!r}: a camera RAW holds one frame")
        return loader(path, dtype=dtype)
    return loader(path, frame=frame or 0, dtype=dtype)


def _normalised(header, row_order, path, frametype):
    """The normalised keywords of :mod:`calframe.metadata` added to a reader's header."""
    meta = metadata.normalize_header(header, path=path, frametype=frametype)
    if row_order and "ROWORDER" not in meta:
        meta["ROWORDER"] = (row_order, "order of the rows")
    return meta


@dataclass(frozen=True)
class FrameInfo:
    """What a file says about one of its frames, read without decoding pixels.

    Attributes
    ----------
    path : str
        The file.
    format : str
        Its format in the registry ('fits', 'raw', 'edf', 'tiff', 'image').
    header : astropy.io.fits.Header
        The header :func:`read_frame` would give the frame: the file's cards
        with the normalised keywords of :mod:`calframe.metadata` (FRAMETYP,
        EXPTIME, BAYERPAT...).
    shape : tuple of int
        The shape of the frame :func:`read_frame` returns: ``(ny, nx)``, or
        ``(3, ny, nx)`` for an RGB image.
    dtype : numpy.dtype
        The stored sample type (``uint16`` for BITPIX 16 with BZERO 32768,
        ``uint8`` for an 8-bit image).
    nframes : int
        Frames in the file (EDF frames, TIFF pages; 1 for FITS and RAW).
    location : dict
        Which frame of the file (``{'hdu': 0}``, ``{'frame': 2}``).
    """

    path: str
    format: str
    header: fits.Header
    shape: tuple[int, ...]
    dtype: np.dtype
    nframes: int = 1
    location: dict = field(default_factory=dict)

    @property
    def frametype(self) -> str:
        """The normalised frame type (FRAMETYP)."""
        return str(self.header.get("FRAMETYP", "unknown"))

    @property
    def exptime(self) -> float | None:
        """The exposure in seconds, or None when the file does not say."""
        value = self.header.get("EXPTIME")
        return None if value is None else float(value)

    @property
    def bits(self) -> int:
        """Bits per stored sample (8 for an 8-bit image)."""
        return self.dtype.itemsize * 8


def read_header(path: str | os.PathLike, *, hdu: int | str | None = None,
                frame: int | None = None, frametype: str | None = None,
                dataset: str | None = None) -> FrameInfo:
    """The header, shape and sample type of a frame, without decoding its pixels.

    The same readers as :func:`read_frame` read the header, so both agree on
    shape, frame type, exposure and CFA pattern for every file.

    Parameters
    ----------
    path : str or path-like
        The file.
    hdu, frame, dataset : optional
        Which frame, as in :func:`read_frame`.
    frametype : str, optional
        Frame type to record instead of inferring it (FTSOURCE = 'user').

    Returns
    -------
    FrameInfo

    Raises
    ------
    FileNotFoundError, FrameReadError, UnsupportedFormatError
        As :func:`read_frame`, for a file that cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dark_300s.fits"
    >>> header = fits.Header({"IMAGETYP": "Dark Frame", "EXPTIME": 300.0})
    >>> fits.PrimaryHDU(np.zeros((4, 6), np.uint16), header=header).writeto(path)
    >>> info = read_header(path)
    >>> info.format, info.shape, info.dtype.name, info.frametype, info.exptime
    ('fits', (4, 6), 'uint16', 'dark', 300.0)
    """
    kind = detect_format(path)
    fmt = FORMATS[kind]
    if kind == "fits":
        if frame not in (None, 0):
            raise InvalidSettingsError(f"frame={frame!r}: FITS frames are chosen with hdu=")
        read: HeaderRead = fmt.read_header(path, hdu=hdu)
    else:
        if hdu is not None:
            raise InvalidSettingsError(f"hdu={hdu!r} applies to FITS only, and {path} is {kind}")
        if dataset is not None and kind != "hdf5":
            raise InvalidSettingsError(f"dataset={dataset!r} applies to HDF5 only, and "
                                       f"{path} is {kind}")
        read = fmt.read_header(path) if kind == "raw" else \
            fmt.read_header(path, frame=frame or 0, dataset=dataset) if kind == "hdf5" \
            else fmt.read_header(path, frame=frame or 0)
    if len(read.shape) < 2 or min(read.shape) <= 0:
        raise FrameReadError(path, f"the file announces an image of shape {read.shape}",
                             "the header is damaged or holds no image; rewrite the file")
    header = _normalised(read.header, read.row_order, path, frametype)
    return FrameInfo(path=os.fsdecode(path), format=kind, header=header,
                     shape=tuple(int(n) for n in read.shape), dtype=np.dtype(read.dtype),
                     nframes=int(read.nframes), location=dict(read.location))


def frame_count(path: str | os.PathLike, *, dataset: str | None = None) -> int:
    """How many frames a file holds (EDF, TIFF and HDF5 frames, FITS image HDUs).

    Parameters
    ----------
    path : str or path-like
        The file.
    dataset : str, optional
        HDF5: the path of the detector data (as in :func:`read_frame`).

    Returns
    -------
    int
        EDF frames, TIFF pages, HDF5 frames or FITS image HDUs; 1 for a
        camera RAW or an image.

    Raises
    ------
    FileNotFoundError, FrameReadError, UnsupportedFormatError
        As :func:`read_frame`, for a file that cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "three.fits"
    >>> fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2), np.float32))]
    ...              + [fits.ImageHDU(np.ones((2, 2), np.float32)) for _ in range(2)]
    ...              ).writeto(path)
    >>> frame_count(path)
    3
    """
    kind = detect_format(path)
    if kind == "hdf5":
        return hdf5_frame_count(path, dataset=dataset)
    if kind == "edf":
        return edf_frame_count(path)
    if kind == "tiff":
        return tiff_frame_count(path)
    if kind == "fits":
        return len(image_hdus(path))
    return 1


def iter_frames(path: str | os.PathLike, **kwargs) -> Iterator[CCDData]:
    """Yield every frame of a file: EDF, TIFF and HDF5 frames, FITS image HDUs.

    Keyword arguments are those of :func:`read_frame` (except ``frame`` and
    ``hdu``).  A single-frame file yields one frame.  Frames are read one at
    a time, so memory does not grow with the number of frames.

    Parameters
    ----------
    path : str or path-like
        The file.
    **kwargs
        The keyword arguments of :func:`read_frame` other than ``hdu`` and
        ``frame``, applied to every frame.

    Yields
    ------
    CCDData
        Each frame in the file's order, as :func:`read_frame` reads it.

    Raises
    ------
    TypeError
        ``hdu=`` or ``frame=`` given, or a keyword :func:`read_frame` does
        not take.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "two.fits"
    >>> hdus = [fits.PrimaryHDU(np.zeros((2, 2), np.float32)),
    ...         fits.ImageHDU(np.ones((2, 2), np.float32))]
    >>> fits.HDUList(hdus).writeto(path)
    >>> [float(f.data.sum()) for f in iter_frames(path, gain=1.0, read_noise=1.0)]
    [0.0, 4.0]
    """
    for key in ("frame", "hdu"):
        if key in kwargs:
            raise TypeError(f"iter_frames() got {key}=; it yields every frame")
    kind = detect_format(path)
    if kind == "hdf5":
        options = ReadOptions(**{k: v for k, v in kwargs.items() if k != "dataset"})
        for loaded in iter_hdf5(path, dataset=kwargs.get("dataset"), dtype=options.dtype):
            yield _finish(loaded, path, kind, options)
        return
    if kind == "fits":
        for index in image_hdus(path):
            yield read_frame(path, hdu=index, **kwargs)
        return
    if kind in ("edf", "tiff"):
        iterate = iter_edf if kind == "edf" else iter_tiff
        options = ReadOptions(**kwargs)
        for loaded in iterate(path, dtype=options.dtype):
            yield _finish(loaded, path, kind, options)
        return
    for index in range(frame_count(path)):
        yield read_frame(path, frame=index, **kwargs)


def _subtract_tile(data: np.ndarray, tile: np.ndarray) -> None:
    """Subtract a repeating tile (one level, a CFA tile or a full map) in place."""
    ty, tx = tile.shape
    if (ty, tx) == data.shape[-2:]:
        data -= tile.astype(data.dtype)
        return
    for dy in range(ty):
        for dx in range(tx):
            data[..., dy::ty, dx::tx] -= data.dtype.type(tile[dy, dx])


def _frame_unit(loaded: Loaded, unit, path) -> u.UnitBase:
    """The unit given, else the file's, else that of a file without one."""
    if unit is None:
        unit = _default_unit(loaded.header) if loaded.unit is None else loaded.unit
    return _parse_unit(unit, path)


def _mask(loaded: Loaded, data: np.ndarray, meta, options: ReadOptions, path) -> np.ndarray:
    """Saturated, non-finite, gap, BLANK and known bad pixels, counted in ``meta``.

    The levels are in the file's ADU, before any black subtraction.
    """
    mask = np.zeros(data.shape, dtype=bool) if loaded.mask is None else loaded.mask.copy()
    level = options.saturation if options.saturation is not None else loaded.saturation
    nsat, nonfinite = mask_levels(data, level, check_finite=not loaded.integer, mask=mask)
    meta["NNONFIN"] = (nonfinite, "non-finite pixels (masked)")
    if level is not None:
        meta["NSATUR"] = (nsat, "saturated pixels (masked)")
        if np.ndim(level) == 0:
            meta["SATURATE"] = (float(level), "[adu] saturation level as read")
    gaps = loaded.masks.get("gap")
    if gaps is not None:
        mask |= gaps
        meta["NGAPPIX"] = (int(gaps.sum()), "detector gap / bad marker pixels (masked)")
    blank = loaded.masks.get("blank")
    if blank is not None:
        mask |= blank
        meta["NBLANK"] = (int(blank.sum()), "FITS BLANK pixels (masked)")
    if options.bad_pixel_mask is not None:
        bpm = _bad_pixel_mask(options.bad_pixel_mask, data.shape, path)
        mask |= bpm
        meta["NBADPIX"] = (int(bpm.sum()), "known bad pixels (masked)")
    return mask


def _black_level(loaded: Loaded, data: np.ndarray, meta, options: ReadOptions, path,
                 kind: str):
    """Subtract the black level in place when asked; the pedestal left in the data."""
    pedestal = options.pedestal if options.pedestal is not None else loaded.pedestal
    if not options.subtract_black:
        return pedestal
    if pedestal is None:
        raise MissingMetadataError(
            f"{path}: subtract_black=True but no black level is known for this {kind} "
            "file; pass pedestal= or subtract a master bias instead")
    _subtract_tile(data, as_tile(pedestal, data.shape))
    meta["BLKSUB"] = (True, "black level subtracted when read")
    return 0.0


def _noise_model(meta, options: ReadOptions) -> tuple[float | None, float | None]:
    """Gain and read noise, as given (then written to the header) or from the header."""
    g = options.gain if options.gain is not None else metadata.gain(meta)[0]
    rn = options.read_noise if options.read_noise is not None else \
        metadata.read_noise(meta, gain_e_per_adu=g)[0]
    if options.gain is not None:
        meta["EGAIN"] = (float(options.gain), "[e-/ADU] gain (given when read)")
    if options.read_noise is not None:
        meta["RDNOISE"] = (float(options.read_noise), "[e-] read noise (given when read)")
    return g, rn


def _uncertainty(loaded: Loaded, data: np.ndarray, meta, unit: u.UnitBase, pedestal,
                 options: ReadOptions, path) -> tuple[np.ndarray | None, str]:
    """The standard deviation of the data (the file's, or the detector model's) and
    where it came from; ``UNCSRC`` says which."""
    g, rn = _noise_model(meta, options)
    uncertainty = None
    source = "none"
    if options.pedestal is None and meta["FRAMETYP"] == "bias":
        # A bias has no photon signal: its noise is the read noise alone.
        pedestal = np.inf
    if loaded.uncertainty is not None:
        uncertainty = loaded.uncertainty
        source = "file"
    elif unit == u.electron and rn is not None:
        uncertainty = detector_sigma(data, gain=1.0, read_noise=float(rn),
                                     pedestal=0.0 if pedestal is None else pedestal)
        source = "detector model"
    elif unit == u.adu and g is not None and rn is not None:
        uncertainty = detector_sigma(data, gain=float(g), read_noise=float(rn),
                                     pedestal=0.0 if pedestal is None else pedestal)
        source = "detector model"
    else:
        if unit in (u.adu, u.electron):
            missing = " and ".join(name for name, v in (("gain", g), ("read noise", rn))
                                   if v is None)
        else:
            missing = f"a noise model for unit {unit.to_string() or 'dimensionless'!r}"
        # stacklevel: warn, this function, _finish, read_frame (or iter_frames), its caller
        warn_uncertainty_unknown(path, missing, stacklevel=5)
    meta["UNCSRC"] = (source, "where the uncertainty came from")
    return uncertainty, source


def _record_read(ccd: CCDData, loaded: Loaded, path, kind: str, options: ReadOptions,
                 source: str) -> None:
    """The file as an input of the frame's provenance, and a 'read' step."""
    prov = get_provenance(ccd)
    meta = ccd.meta
    ftype = meta["FRAMETYP"]
    exptime = meta.get("EXPTIME")
    record = InputRecord.from_file(
        path, role=ftype, frametype=ftype,
        exptime=None if exptime is None else float(exptime),
        date_obs=str(meta.get("DATE-OBS", "")), shape=ccd.data.shape)
    prov.add_input(record)
    # the file read (its digest, as the input table has it): two reads of one file
    # with the same parameters are one step wherever they are merged
    parameters = {"file": record.sha256[:16], "format": kind,
                  **{k: _json_value(v) for k, v in loaded.location.items()},
                  "unit": ccd.unit.to_string(), "dtype": np.dtype(options.dtype).name,
                  "uncertainty": source, "subtract_black": bool(options.subtract_black)}
    for name in ("gain", "read_noise", "saturation", "bad_pixel_mask", "pedestal",
                 "frametype"):
        value = getattr(options, name)
        if value is not None:
            parameters[name] = _json_value(value)
    prov.add_step("read", **parameters)


def _finish(loaded: Loaded, path, kind: str, options: ReadOptions) -> CCDData:
    """A loaded frame as calframe hands it out: header, mask, uncertainty, provenance."""
    meta = _normalised(loaded.header, loaded.row_order, path, options.frametype)
    if options.require_exposure:
        metadata.require_exposure(meta, path=path)
    data = np.ascontiguousarray(loaded.data)
    unit = _frame_unit(loaded, options.unit, path)
    mask = _mask(loaded, data, meta, options, path)
    pedestal = _black_level(loaded, data, meta, options, path, kind)
    uncertainty, source = _uncertainty(loaded, data, meta, unit, pedestal, options, path)
    ccd = CCDData(data, unit=unit, meta=meta, mask=mask,
                  uncertainty=None if uncertainty is None
                  else StdDevUncertainty(uncertainty, copy=False))
    if loaded.has_extras:
        attach_fits_extras(ccd, path)
    _record_read(ccd, loaded, path, kind, options, source)
    log.debug("read %s (%s, %s, %s)", path, kind, data.shape, meta["FRAMETYP"])
    return ccd
