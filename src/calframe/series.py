"""Series of frames larger than memory: a lazy array over multi-frame files and folders.

:func:`open_series` opens an HDF5 dataset, a multi-page TIFF, a multi-frame
EDF, a FITS cube, a folder of frames, or a list of any of them, as one
:class:`FrameSeries`: a `dask.array.Array` of shape ``(n, ny, nx)`` whose
frames are read from the files only when a computation needs them, with the
metadata of the series (exposure, frame time, the detector's mask).

Iterating over a series yields one :class:`~astropy.nddata.CCDData` at a
time, so :func:`calframe.running_mean` and loops over the frames run in flat
memory whatever the length; :meth:`FrameSeries.band_sum` sums a range of
frames (the energy-band maps of an X-ray fluorescence cube) chunk by chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import IncompatibleFramesError, InvalidSettingsError, NoFramesError

if TYPE_CHECKING:
    import dask.array
    from astropy.io import fits
    from astropy.nddata import CCDData

__all__ = ["FrameSeries", "open_series"]


class _Reader:
    """One open file of a series: its frames as stored values, one at a time."""

    def __init__(self, kind: str, path: str, dataset: str | None):
        self.kind, self.path = kind, path
        self.mask = None
        self.saturation = None
        if kind == "hdf5":
            from .io._hdf5 import Hdf5File
            from .io._hdf5 import _saturation as _hdf5_saturation

            self.handle = Hdf5File(path, dataset)
            self.nframes = self.handle.nframes
            self.frame_shape = self.handle.stack.frame_shape
            self.mask = self.handle.mask
            self.saturation = _hdf5_saturation(self.handle.stack, 0, self.handle.stack.dtype)
        elif kind == "tiff":
            from .io._tiff import TiffStack

            self.handle = TiffStack(path)
            self.nframes, self.frame_shape = self.handle.nframes, self.handle.frame_shape
            if self.handle.dtype.kind in "iu":
                self.saturation = float(np.iinfo(self.handle.dtype).max)
        elif kind == "fits":
            from .io._fits import FitsCube

            self.handle = FitsCube(path)
            self.nframes, self.frame_shape = self.handle.nframes, self.handle.frame_shape
            self.saturation = self.handle.saturation
        elif kind == "edf":
            from .io._edf import _open

            self.handle = _open(path)
            self.nframes = int(self.handle.nframes)
            first = self._edf(0)
            self.frame_shape = first.data.shape
            self.mask = first.masks.get("gap")
            self.saturation = first.saturation
        else:  # a single-frame format (RAW, PNG/JPEG are refused before)
            from .io._formats import FORMATS

            self.handle = None
            self._single = FORMATS[kind].load(path)
            self.nframes, self.frame_shape = 1, self._single.data.shape[-2:]
            self.saturation = self._single.saturation
        if len(self.frame_shape) != 2:
            self.close()
            raise IncompatibleFramesError(
                f"{path}: frames of shape {self.frame_shape}; a series is made of 2-D frames")

    def _edf(self, frame: int):
        from .io._edf import _frame

        return _frame(self.handle, self.path, frame, self.nframes, np.float32)

    def values(self, frame: int, dtype) -> np.ndarray:
        """Frame ``frame`` as physical values in ``dtype``."""
        if self.kind in ("hdf5", "tiff"):
            return self.handle.raw(frame).astype(dtype)
        if self.kind == "fits":
            return self.handle.values(frame, dtype)
        if self.kind == "edf":
            return self._edf(frame).data.astype(dtype, copy=False)
        return np.asarray(self._single.data, dtype)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@dataclass(frozen=True)
class _Part:
    kind: str
    path: str
    dataset: str | None
    start: int      # index of its first frame in the series
    nframes: int


class _LazyFrames:
    """The array-like dask reads: ``(n, ny, nx)``, frames read on demand.

    Files are opened on first use in each process and kept open; reads are
    serialised by a lock (HDF5 and TIFF handles are not thread-safe).  A copy
    sent to another process (dask.distributed) opens its own files.
    """

    def __init__(self, parts: list[_Part], frame_shape, dtype):
        self.parts = parts
        self.shape = (sum(p.nframes for p in parts), *frame_shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self._starts = np.array([p.start for p in parts])
        self._readers: dict[int, _Reader] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"parts": self.parts, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state):
        self.__init__(state["parts"], state["shape"][1:], state["dtype"])

    def reader(self, index: int) -> _Reader:
        reader = self._readers.get(index)
        if reader is None:
            part = self.parts[index]
            reader = self._readers[index] = _Reader(part.kind, part.path, part.dataset)
        return reader

    def frame(self, k: int) -> np.ndarray:
        index = int(np.searchsorted(self._starts, k, side="right") - 1)
        part = self.parts[index]
        with self._lock:
            return self.reader(index).values(k - part.start, self.dtype)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, slice):
            frames = range(*first.indices(self.shape[0]))
            out = np.empty((len(frames), *self.shape[1:]), self.dtype)
            for i, k in enumerate(frames):
                out[i] = self.frame(k)
            return out[(slice(None), *rest)]
        k = int(first) + (self.shape[0] if int(first) < 0 else 0)
        return self.frame(k)[rest]

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()

    def __del__(self):
        # files opened on demand are closed with the array that opened them
        for reader in getattr(self, "_readers", {}).values():
            reader.close()


class FrameSeries:
    """A series of 2-D frames read on demand from one or more files.

    Made by :func:`open_series`, which finds the parts of the files.

    Parameters
    ----------
    parts : list
        Where each frame is: a file, and the frame's place in it.
    frame_shape : tuple of int
        ``(ny, nx)`` of every frame.
    dtype : numpy.dtype
        The type of the values given (float32 unless asked otherwise).
    header, mask, saturation
        As the attributes below.

    Attributes
    ----------
    data : dask.array.Array
        The frames, shape ``(n, ny, nx)``, physical values as float32 (or
        the ``dtype`` asked), one chunk per frame; nothing is read until it
        is computed.
    mask : numpy.ndarray of bool
        Pixels that are bad in every frame: the detector's ``pixel_mask`` of
        an HDF5 file, the gap markers of an EDF frame (negative values).
    header : astropy.io.fits.Header
        The first frame's header with calframe's normalised keywords
        (FRAMETYP, EXPTIME...), as :func:`calframe.read_header` gives it.
    paths : list of str
        The files, in the order of their frames.
    saturation : float or None
        Values at or above it are saturated (the detector's count cut-off,
        SATURATE, or the full scale of integer data).
    """

    def __init__(self, parts: list[_Part], *, frame_shape, dtype, header, mask, saturation):
        import dask.array as da

        self._frames = _LazyFrames(parts, frame_shape, dtype)
        self.data: dask.array.Array = da.from_array(
            self._frames, chunks=(1, *frame_shape), asarray=False, fancy=False,
            meta=np.empty((0, 0, 0), dtype), name=f"calframe-series-{id(self):x}")
        self.header: fits.Header = header
        self.mask: np.ndarray = mask
        self.saturation = saturation
        self.paths = list(dict.fromkeys(p.path for p in parts))

    def __repr__(self) -> str:
        n, ny, nx = self.shape
        return (f"<FrameSeries {n} frames of {ny}x{nx} from {len(self.paths)} file(s), "
                f"exposure {self.exptime} s>")

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n, ny, nx)``."""
        return self._frames.shape

    @property
    def exptime(self) -> float | None:
        """The exposure of a frame in seconds (EXPTIME of the first), or None."""
        value = self.header.get("EXPTIME")
        return None if value is None else float(value)

    @property
    def frame_time(self) -> float | None:
        """The time from one frame to the next in seconds (FRAMETIM), or None."""
        value = self.header.get("FRAMETIM")
        return None if value is None else float(value)

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` as an array (read now)."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"frame {k}: the series has {len(self)} frames")
        return self._frames[k]

    def frame_mask(self, values: np.ndarray) -> np.ndarray:
        """The mask of a frame of this series: the detector's, saturated, not finite."""
        mask = ~np.isfinite(values)
        if self.mask is not None:
            mask |= self.mask
        if self.saturation is not None:
            mask |= values >= self.saturation
        return mask

    def __getitem__(self, k: int) -> CCDData:
        """Frame ``k`` as CCDData (values, mask, the series' header; no uncertainty)."""
        from astropy import units as u
        from astropy.nddata import CCDData

        values = self.frame(k)
        meta = self.header.copy()
        meta["SERFRAME"] = (k % len(self), "frame index in the series")
        return CCDData(values, unit=u.adu, mask=self.frame_mask(values), meta=meta)

    def __iter__(self) -> Iterator[CCDData]:
        """The frames in order, one at a time (read as they are reached).

        Each frame's ``meta`` holds only its index (``SERFRAME``) and, when
        known, EXPTIME: the series' header is :attr:`header`.
        """
        from astropy import units as u
        from astropy.nddata import CCDData

        exptime = self.exptime
        for k in range(len(self)):
            values = self._frames.frame(k)
            meta = {"SERFRAME": k} if exptime is None else {"SERFRAME": k, "EXPTIME": exptime}
            yield CCDData(values, unit=u.adu, mask=self.frame_mask(values), meta=meta)

    def band_sum(self, start: int, stop: int) -> CCDData:
        """The sum of frames ``start`` to ``stop - 1``, read one frame at a time.

        Masked where the detector's mask says so or where a frame of the band
        is saturated or not finite.  ``NCOMBINE`` is the number of frames,
        ``BANDLO``/``BANDHI`` the first and last.

        Raises
        ------
        InvalidSettingsError
            An empty or out-of-range band.
        """
        from astropy import units as u
        from astropy.nddata import CCDData

        n = len(self)
        if not 0 <= start < stop <= n:
            raise InvalidSettingsError(f"band_sum({start}, {stop}): the series has {n} "
                                       f"frames; give 0 <= start < stop <= {n}")
        # one frame at a time into a float64 sum: two frames in memory at most
        total = np.zeros(self.shape[1:], np.float64)
        any_bad = np.zeros(self.shape[1:], bool)
        for k in range(start, stop):
            values = self._frames.frame(k)
            total += values
            any_bad |= ~np.isfinite(values)
            if self.saturation is not None:
                any_bad |= values >= self.saturation
        mask = any_bad if self.mask is None else any_bad | self.mask
        meta = self.header.copy()
        meta["NCOMBINE"] = (stop - start, "frames summed")
        meta["BANDLO"] = (start, "first frame of the band")
        meta["BANDHI"] = (stop - 1, "last frame of the band")
        return CCDData(total, unit=u.adu, mask=mask, meta=meta)

    def band_sums(self, edges: Sequence[int]) -> list[CCDData]:
        """:meth:`band_sum` of each band ``edges[i]:edges[i + 1]``."""
        return [self.band_sum(int(a), int(b)) for a, b in pairwise(edges)]

    def close(self) -> None:
        """Close the files (they are opened again when needed)."""
        self._frames.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _files(source) -> list[str]:
    """The files a path, a folder or a list of them stand for, in order."""
    from .io import FRAME_SUFFIXES

    if isinstance(source, str | os.PathLike):
        sources = [source]
    else:
        sources = list(source)
    files = []
    for item in sources:
        path = Path(os.fsdecode(item))
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and
                           "".join(p.suffixes[-2:]).lower().endswith(tuple(FRAME_SUFFIXES)))
            if not found:
                raise NoFramesError(f"{path}: the folder holds no frame file "
                                    f"({', '.join(sorted(FRAME_SUFFIXES)[:6])}...)")
            files.extend(os.fspath(p) for p in found)
        else:
            files.append(os.fspath(path))
    if not files:
        raise NoFramesError("open_series was given no file")
    return files


def open_series(source: str | os.PathLike | Sequence[str | os.PathLike], *,
                dataset: str | None = None, dtype=np.float32) -> FrameSeries:
    """Open frames of one or more files as one lazy series.

    Parameters
    ----------
    source : path or sequence of path
        An HDF5/NeXus file (its detector data, see :func:`calframe.read_frame`),
        a multi-page TIFF, a multi-frame EDF, a FITS cube ``(n, ny, nx)`` or
        image, a folder (its frame files in name order), or a list of any of
        these (their frames one after the other).
    dataset : str, optional
        HDF5: the path of the detector data in each file.
    dtype : numpy dtype
        float32 (default) or float64.

    Returns
    -------
    FrameSeries
        ``series.data`` is the dask array; ``len(series)``, iteration,
        ``series[k]`` and :meth:`FrameSeries.band_sum` read only the frames
        they need.

    Raises
    ------
    IncompatibleFramesError
        Files whose frames differ in shape.
    NoFramesError
        An empty folder or list.
    FrameReadError, UnsupportedFormatError
        A file that cannot be read (see :func:`calframe.read_frame`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.tif"
    >>> tifffile.imwrite(path, np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6))
    >>> series = open_series(path)
    >>> series.shape, float(series.data[2].sum().compute())
    ((5, 4, 6), 1428.0)
    >>> float(series.band_sum(1, 3).data[0, 0])   # frames 1 and 2: 24 + 48
    72.0
    """
    from .io import detect_format, read_header

    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InvalidSettingsError(f"dtype={np.dtype(dtype).name}: series are float32 or "
                                   "float64")
    parts: list[_Part] = []
    frame_shape = mask = saturation = None
    start = 0
    for path in _files(source):
        kind = detect_format(path)
        if kind == "image":
            raise InvalidSettingsError(f"{path}: PNG and JPEG are display images, not "
                                       "detector frames; a series is made of raw frames")
        reader = _Reader(kind, path, dataset if kind == "hdf5" else None)
        try:
            if frame_shape is None:
                frame_shape, mask, saturation = reader.frame_shape, reader.mask, \
                    reader.saturation
            elif tuple(reader.frame_shape) != tuple(frame_shape):
                raise IncompatibleFramesError(
                    f"{path}: frames of {reader.frame_shape[0]}x{reader.frame_shape[1]}, "
                    f"the series' first file has {frame_shape[0]}x{frame_shape[1]}; open "
                    "files of one detector area together")
            parts.append(_Part(kind, path, dataset if kind == "hdf5" else None, start,
                               reader.nframes))
            start += reader.nframes
        finally:
            reader.close()
    first = parts[0]
    header = read_header(first.path, dataset=first.dataset).header \
        if first.kind == "hdf5" else read_header(first.path).header
    return FrameSeries(parts, frame_shape=tuple(frame_shape), dtype=dtype, header=header,
                       mask=mask, saturation=saturation)
