"""HDF5 and NeXus reading through h5py, with the compressions of hdf5plugin.

Beamline detectors (Eiger, Pilatus, Jungfrau, through their own writers, LIMA
or BLISS) write their frames as a stack ``(n, ny, nx)`` in an HDF5 file,
usually laid out after the NeXus conventions and often compressed with
bitshuffle-LZ4.  The detector data are found in this order:

1. ``dataset=``, a path in the file (a group stands for its NeXus signal or
   its ``data`` dataset);
2. the NeXus default chain: the file's ``default`` attribute names an
   NXentry, whose ``default`` names an NXdata, whose ``signal`` names the data;
3. in each entry (NXentry, else any top-level group): an NXdata group with a
   ``signal``, ``data/data`` and the Eiger master's ``data/data_000001``,
   ``data/data_000002``... (read as one series), the ``data`` of an
   NXdetector in ``instrument``, an image in ``measurement`` (LIMA, BLISS);
4. the only image dataset in the file.

The detector group (the NXdetector holding the data, or the one of the same
name) gives the exposure (``count_time``, LIMA's ``acquisition/exposure_time``,
BLISS's ``acq_parameters/acq_expo_time``), the frame time, the pixel mask
(``pixel_mask``, any non-zero value is a bad pixel, into the frame's mask),
the saturation value and the gain where the file has them; the entry's
``start_time`` gives DATE-OBS.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import FrameReadError, UnsupportedFormatError
from ..metadata import mapping_to_header
from ._common import Loaded, exact_float_dtype, integer_full_scale

log = logging.getLogger(__name__)

#: The first bytes of an HDF5 file (at offset 0, 512, 1024... with a user block).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

_FIX_DATASET = "pass dataset= with the path of the detector data in the file"
# Exposure fields of a detector group, in order, and where LIMA and BLISS keep theirs.
_EXPOSURE_FIELDS = ("count_time", "acquisition/exposure_time", "acq_parameters/acq_expo_time",
                    "exposure_time", "acquisition_time")
_FRAME_TIME_FIELDS = ("frame_time", "acquisition/latency_time", "acq_parameters/acq_expo_time")
_SATURATION_FIELDS = ("saturation_value", "detectorSpecific/countrate_correction_count_cutoff",
                      "detectorSpecific/saturation_value")
_MASK_FIELDS = ("pixel_mask", "detectorSpecific/pixel_mask", "mask")
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
               "us": 1e-6, "µs": 1e-6, "microsecond": 1e-6, "ns": 1e-9}


def _import_h5py():
    import h5py

    try:
        import hdf5plugin  # noqa: F401 - registers bitshuffle, LZ4, Blosc... with HDF5
    except ImportError:   # pragma: no cover - hdf5plugin is a dependency
        log.debug("hdf5plugin is not installed: only HDF5's own compressions are read")
    return h5py


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _attr(obj, name: str) -> str | None:
    try:
        value = obj.attrs.get(name)
    except (OSError, RuntimeError, TypeError, KeyError):
        return None
    return None if value is None else _text(value)


def _nx_class(obj) -> str | None:
    return _attr(obj, "NX_class")


@dataclass
class _Stack:
    """The detector data found in a file: one dataset, or the Eiger master's parts."""

    name: str                       # the path in the file, for messages
    parts: list                     # h5py datasets, in frame order
    counts: list[int] = field(default_factory=list)
    frame_shape: tuple[int, int] = (0, 0)
    detector: object = None         # the detector group, or None
    entry: object = None            # the entry group, or None

    @property
    def nframes(self) -> int:
        return int(sum(self.counts))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.parts[0].dtype)

    def locate(self, frame: int):
        """The dataset holding ``frame`` and the index (tuple) of the frame in it."""
        for part, count in zip(self.parts, self.counts, strict=True):
            if frame < count:
                lead = part.shape[:-2]
                return part, (np.unravel_index(frame, lead) if lead else ())
            frame -= count
        raise IndexError(frame)  # pragma: no cover - callers check the range


def _is_image(obj) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset) and len(obj.shape) >= 2 \
        and obj.dtype.kind in "biuf" and min(obj.shape[-2:]) > 1


def _get(group, name: str):
    """``group[name]``, or None when absent or unreachable (a dangling external link)."""
    try:
        return group.get(name)
    except (KeyError, OSError, RuntimeError, ValueError):
        return None


def _stack(path, name: str, parts: list, group=None) -> _Stack:
    shapes = {tuple(p.shape[-2:]) for p in parts}
    if len(shapes) > 1:
        raise FrameReadError(path, f"the datasets of {name} hold frames of different shapes "
                             f"{sorted(shapes)}", _FIX_DATASET)
    counts = [int(np.prod(p.shape[:-2], dtype=np.int64)) for p in parts]
    return _Stack(name=name, parts=parts, counts=counts, frame_shape=shapes.pop(),
                  entry=group)


def _eiger_parts(data_group) -> list:
    """The Eiger master's ``data_000001``, ``data_000002``... in order (present ones)."""
    names = sorted(n for n in data_group if re.fullmatch(r"data_\d{6}", n))
    parts = []
    for name in names:
        obj = _get(data_group, name)
        if obj is None:
            continue
        parts.append(obj)
    return parts


def _signal(group):
    """The NXdata ``signal`` dataset of a group, or None.

    The group's ``signal`` attribute names it; in files of the older NeXus
    convention, the dataset itself carries ``signal = 1``.
    """
    import h5py

    name = _attr(group, "signal")
    if name is not None:
        return _get(group, name)
    for key in group:
        obj = _get(group, key)
        if isinstance(obj, h5py.Dataset) and _attr(obj, "signal") in ("1", "1.0"):
            return obj
    return None


def _in_entry(path, entry) -> _Stack | None:
    """The detector data of one entry by NeXus convention and the usual layouts."""
    import h5py

    groups = [entry[k] for k in entry if isinstance(_get(entry, k), h5py.Group)]
    for group in groups:
        if _nx_class(group) == "NXdata":
            signal = _signal(group)
            if signal is not None and _is_image(signal):
                return _stack(path, signal.name, [signal], entry)
    data_group = _get(entry, "data")
    if isinstance(data_group, h5py.Group):
        data = _get(data_group, "data")
        if data is not None and _is_image(data):
            return _stack(path, data.name, [data], entry)
        parts = [p for p in _eiger_parts(data_group) if _is_image(p)]
        if parts:
            return _stack(path, f"{data_group.name}/data_*", parts, entry)
        if any(re.fullmatch(r"data_\d{6}", n) for n in data_group):
            missing = sorted(n for n in data_group if re.fullmatch(r"data_\d{6}", n))
            raise FrameReadError(path, f"the detector data {data_group.name}/{missing[0]} "
                                 "is a link to a data file that is not there",
                                 "copy the data files (..._data_000001.h5 ...) next to the "
                                 "master file")
    instrument = _get(entry, "instrument")
    if isinstance(instrument, h5py.Group):
        for key in instrument:
            det = _get(instrument, key)
            if isinstance(det, h5py.Group) and (_nx_class(det) == "NXdetector"
                                                or key == "detector"):
                data = _get(det, "data")
                if data is not None and _is_image(data):
                    return _stack(path, data.name, [data], entry)
    measurement = _get(entry, "measurement")
    if isinstance(measurement, h5py.Group):
        images = [_get(measurement, k) for k in measurement]
        images = [obj for obj in images if obj is not None and _is_image(obj)]
        if len(images) == 1:
            return _stack(path, images[0].name, images, entry)
    return None


def _all_images(f) -> list[str]:
    found = []

    def visit(name, obj):
        if _is_image(obj):
            found.append("/" + name)

    f.visititems(visit)
    return found


def _by_path(f, path, dataset: str) -> _Stack:
    import h5py

    obj = _get(f, dataset)
    if obj is None:
        images = _all_images(f)
        listed = ", ".join(images[:8]) or "none"
        raise FrameReadError(path, f"dataset={dataset!r} is not in the file (image datasets: "
                             f"{listed})", "pass one of the paths listed")
    if isinstance(obj, h5py.Group):
        inner = _signal(obj) or _get(obj, "data")
        if inner is None:
            raise FrameReadError(path, f"dataset={dataset!r} is a group with no NeXus signal "
                                 "and no 'data' dataset", "pass the path of a dataset")
        obj = inner
    if not isinstance(obj, h5py.Dataset) or len(obj.shape) < 2:
        shape = getattr(obj, "shape", None)
        raise FrameReadError(path, f"dataset={dataset!r} is not an image (shape {shape})",
                             "pass a dataset of two or more axes (ny, nx) or (n, ny, nx)")
    if obj.dtype.kind not in "biuf":
        raise UnsupportedFormatError(path, f"dataset={dataset!r} holds {obj.dtype} values, "
                                     "not numbers", "pass a dataset of integers or reals")
    entry = obj.parent
    while entry.name != "/" and entry.parent.name != "/":
        entry = entry.parent
    return _stack(path, obj.name, [obj], entry if entry.name != "/" else None)


def _find(f, path, dataset: str | None) -> _Stack:
    """The detector data of an open file (see the module's search order)."""
    import h5py

    if dataset is not None:
        stack = _by_path(f, path, dataset)
    else:
        stack = None
        entries = []
        default = _attr(f, "default")
        if default is not None and isinstance(_get(f, default), h5py.Group):
            entry = f[default]
            nxdata = _get(entry, _attr(entry, "default") or "")
            signal = _signal(nxdata) if isinstance(nxdata, h5py.Group) else None
            if signal is not None and _is_image(signal):
                stack = _stack(path, signal.name, [signal], entry)
            entries.append(entry)
        if stack is None:
            tops = [_get(f, k) for k in f]
            tops = [g for g in tops if isinstance(g, h5py.Group)]
            entries += [g for g in tops if _nx_class(g) == "NXentry"]
            entries += [g for g in tops if _nx_class(g) != "NXentry"]
            for entry in entries:
                stack = _in_entry(path, entry)
                if stack is not None:
                    break
        if stack is None:
            images = _all_images(f)
            if len(images) == 1:
                stack = _by_path(f, path, images[0])
            elif not images:
                raise UnsupportedFormatError(path, "the HDF5 file holds no image dataset "
                                             "(no numeric dataset of two or more axes)",
                                             "this file holds no detector frames")
            else:
                listed = ", ".join(images[:8])
                raise FrameReadError(path, "the HDF5 file holds several image datasets and "
                                     f"none is marked as the detector data ({listed})",
                                     f"{_FIX_DATASET}, e.g. dataset={images[0]!r}")
    stack.detector = _detector_group(stack)
    if stack.nframes == 0:
        raise FrameReadError(path, f"the detector data {stack.name} hold no frame "
                             f"(shape {stack.parts[0].shape})", "the acquisition wrote nothing")
    return stack


def _detector_group(stack: _Stack):
    """The detector group that describes the data: the NXdetector that holds them,
    else the one of the same name (BLISS ``measurement/<det>``), else the only one."""
    import h5py

    parent = stack.parts[0].parent
    if _nx_class(parent) == "NXdetector":
        return parent
    entry = stack.entry
    instrument = _get(entry, "instrument") if entry is not None else None
    if not isinstance(instrument, h5py.Group):
        return None
    detectors = {}
    for key in instrument:
        group = _get(instrument, key)
        if isinstance(group, h5py.Group) and (_nx_class(group) == "NXdetector"
                                              or key == "detector"):
            detectors[key] = group
    base = stack.parts[0].name.rsplit("/", 1)[-1]
    if base in detectors:
        return detectors[base]
    return next(iter(detectors.values())) if len(detectors) == 1 else None


def _value(group, name: str, frame: int, nframes: int):
    """A scalar field of a group (the frame's element of a per-frame array)."""
    import h5py

    obj = _get(group, name) if group is not None else None
    if not isinstance(obj, h5py.Dataset):
        return None, None
    try:
        value = obj[()]
    except (OSError, RuntimeError, TypeError, ValueError):
        return None, None
    units = _attr(obj, "units")
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None, units
        flat = value.reshape(-1)
        value = flat[frame] if flat.size == nframes else flat[0]
    if isinstance(value, bytes | np.bytes_ | str):
        return _text(value), units
    if isinstance(value, np.generic):
        value = value.item()
    return value, units


def _seconds(value, units) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    factor = _TIME_UNITS.get((units or "s").strip(), None)
    if factor is None:
        log.debug("time unit %r not understood; taken as seconds", units)
        factor = 1.0
    return float(value) * factor


def _first(group, names, frame, nframes):
    for name in names:
        value, units = _value(group, name, frame, nframes)
        if value is not None:
            return name, value, units
    return None, None, None


def _header(stack: _Stack, frame: int):
    """The frame's header: where the data are, exposure, frame time, date, detector."""
    det, n = stack.detector, stack.nframes
    cards = {"H5DSET": stack.name, "H5FRAME": frame, "H5NFRAME": n}
    key, value, units = _first(det, _EXPOSURE_FIELDS, frame, n)
    seconds = _seconds(value, units)
    if seconds is not None:
        cards["count_time"] = seconds
    _, value, units = _first(det, _FRAME_TIME_FIELDS, frame, n)
    seconds = _seconds(value, units)
    if seconds is not None:
        cards["FRAMETIM"] = seconds
    for name, card in (("description", "INSTRUME"), ("local_name", "DETNAM"),
                       ("gain_setting", "GAINSET"), ("sensor_material", "SENSMAT")):
        value, _ = _value(det, name, frame, n)
        if isinstance(value, str) and value.strip():
            cards[card] = value.strip()
    for name in ("x_pixel_size", "y_pixel_size"):
        value, units = _value(det, name, frame, n)
        if isinstance(value, int | float) and not isinstance(value, bool):
            scale = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0}.get((units or "m").strip())
            if scale is not None:
                cards["XPIXSZ" if name[0] == "x" else "YPIXSZ"] = float(value) * scale
    value, units = _value(det, "gain", frame, n)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        cards["GAIN"] = float(value)
    for where in (stack.entry, det):
        value, _ = _value(where, "start_time", frame, n)
        if isinstance(value, str) and value.strip():
            cards["DATE-OBS"] = value.strip()
            break
    header = mapping_to_header(cards)
    header.comments["H5DSET"] = "HDF5 dataset of the detector data"
    header.comments["H5FRAME"] = "frame index in the dataset"
    header.comments["H5NFRAME"] = "frames in the dataset"
    if "GAIN" in header:
        header.comments["GAIN"] = f"[{units or 'e-/ADU'}] gain (HDF5 detector group)"
    if "FRAMETIM" in header:
        header.comments["FRAMETIM"] = "[s] frame time (HDF5 detector group)"
    if key is not None:
        log.debug("exposure from %s/%s", getattr(det, "name", "?"), key)
    return header


def _saturation(stack: _Stack, frame: int, raw_dtype) -> float | None:
    _, value, _ = _first(stack.detector, _SATURATION_FIELDS, frame, stack.nframes)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return integer_full_scale(raw_dtype)


def _pixel_mask(stack: _Stack, path) -> np.ndarray | None:
    """The detector's mask of bad pixels (non-zero = bad), when it has one of the frame's shape."""
    import h5py

    for name in _MASK_FIELDS:
        obj = _get(stack.detector, name) if stack.detector is not None else None
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2:
            if tuple(obj.shape[-2:]) != stack.frame_shape:
                log.warning("%s: %s has shape %s, the frames %s; it is not used", path,
                            obj.name, obj.shape, stack.frame_shape)
                return None
            values = np.asarray(obj[()])
            while values.ndim > 2:
                values = values[0]
            return values != 0
    return None


class Hdf5File:
    """An open HDF5 file and its detector data, for reading frames one at a time.

    Parameters
    ----------
    path : path-like
        The file.
    dataset : str, optional
        The path of the detector data in the file (default: found by NeXus
        convention, see :mod:`calframe.io._hdf5`).
    """

    def __init__(self, path, dataset: str | None = None):
        h5py = _import_h5py()
        self.path = os.fsdecode(path)
        try:
            self.file = h5py.File(path, "r")
        except FileNotFoundError:
            raise
        except (OSError, RuntimeError, ValueError) as err:
            text = " ".join(str(err).split()) or type(err).__name__
            if re.search(r"\block\b|locking", text.lower()):
                raise FrameReadError(path, f"the HDF5 file is locked ({text})",
                                     "another program (the detector's writer?) has it open "
                                     "for writing; wait for the acquisition to end, or set "
                                     "HDF5_USE_FILE_LOCKING=FALSE to read it anyway") from err
            raise FrameReadError(path, f"not a readable HDF5 file ({text})",
                                 "check that the file is complete (a file still being "
                                 "written, or cut short, cannot be opened) and really is "
                                 "HDF5") from err
        try:
            self.stack = _find(self.file, path, dataset)
            self._mask = _pixel_mask(self.stack, path)
        except (OSError, RuntimeError, KeyError) as err:
            self.file.close()
            text = " ".join(str(err).split()) or type(err).__name__
            raise FrameReadError(path, f"the HDF5 file's structure cannot be read ({text})",
                                 "the file is damaged; copy it again") from err
        except BaseException:
            self.file.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    @property
    def nframes(self) -> int:
        """Frames in the detector data."""
        return self.stack.nframes

    @property
    def mask(self) -> np.ndarray | None:
        """The detector's pixel mask (True = bad), or None."""
        return self._mask

    def check_frame(self, frame: int) -> None:
        """Refuse a frame index the data do not have."""
        n = self.nframes
        if not 0 <= frame < n:
            raise ValueError(f"frame={frame}: {self.path} ({self.stack.name}) has {n} "
                             f"frame(s) (0..{n - 1})")

    def raw(self, frame: int) -> np.ndarray:
        """Frame ``frame`` as stored (the file's sample type)."""
        self.check_frame(frame)
        part, index = self.stack.locate(frame)
        try:
            return np.asarray(part[(*index, slice(None), slice(None))])
        except (OSError, RuntimeError, ValueError) as err:
            text = " ".join(str(err).split()) or type(err).__name__
            if "filter" in text.lower() or "plugin" in text.lower():
                raise UnsupportedFormatError(
                    self.path, f"frame {frame} of {self.stack.name} is compressed with a "
                    f"filter HDF5 cannot decode here ({text})",
                    "install hdf5plugin (pip install hdf5plugin), which brings the "
                    "bitshuffle, LZ4, Blosc and Zstandard filters detectors use") from err
            raise FrameReadError(self.path, f"frame {frame} of {self.stack.name} cannot be "
                                 f"read ({text})", "the file is probably truncated or "
                                 "damaged; copy it again") from err

    def header(self, frame: int):
        """The header of frame ``frame`` (see :func:`load_hdf5`)."""
        return _header(self.stack, frame)

    def loaded(self, frame: int, dtype=np.float32) -> Loaded:
        """Frame ``frame`` as :func:`calframe.read_frame` finishes it."""
        raw = self.raw(frame)
        header = self.header(frame)
        target = exact_float_dtype(raw, dtype, header)
        loaded = Loaded(data=raw.astype(target), header=header,
                        location={"dataset": self.stack.name, "frame": frame},
                        row_order="TOP-DOWN", integer=raw.dtype.kind in "iub",
                        saturation=_saturation(self.stack, frame, raw.dtype))
        if self._mask is not None:
            loaded.mask = self._mask.copy()
            header["NPIXMASK"] = (int(self._mask.sum()), "pixels masked by the detector's "
                                  "pixel_mask")
        return loaded


def is_hdf5(head: bytes) -> bool:
    """Whether the first bytes of a file are HDF5's signature."""
    return head.startswith(HDF5_MAGIC)


def hdf5_frame_count(path, *, dataset: str | None = None) -> int:
    """Number of frames in the detector data of an HDF5 file."""
    with Hdf5File(path, dataset) as h5:
        return h5.nframes


def load_hdf5(path, *, frame: int = 0, dataset: str | None = None, dtype=np.float32) -> Loaded:
    """Read frame ``frame`` of the detector data of an HDF5/NeXus file.

    Only that frame is read from the file (an HDF5 dataset is stored in
    chunks, one frame each for the detectors' writers).
    """
    with Hdf5File(path, dataset) as h5:
        return h5.loaded(frame, dtype)


def iter_hdf5(path, *, dataset: str | None = None, dtype=np.float32):
    """Yield every frame of an HDF5 file's detector data, opening it once."""
    with Hdf5File(path, dataset) as h5:
        for frame in range(h5.nframes):
            yield h5.loaded(frame, dtype)


def hdf5_header(path, *, frame: int = 0, dataset: str | None = None):
    """The header and shape :func:`load_hdf5` gives, without reading the pixels."""
    from ._formats import HeaderRead

    with Hdf5File(path, dataset) as h5:
        h5.check_frame(frame)
        header = h5.header(frame)
        return HeaderRead(header=header, shape=h5.stack.frame_shape, dtype=h5.stack.dtype,
                          nframes=h5.nframes,
                          location={"dataset": h5.stack.name, "frame": frame},
                          row_order="TOP-DOWN")
