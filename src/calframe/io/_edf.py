"""EDF (ESRF data format) reading through fabio: single and multi-frame files.

Signed integer EDF data from photon-counting detectors (Pilatus, Eiger...)
mark detector gaps and bad pixels with negative values (-1 gap, -2 bad on a
Pilatus); those pixels are masked.  A ``Dummy`` header value (pyFAI
convention, with ``DDummy`` as its tolerance) is masked too.
"""

from __future__ import annotations

import logging
import os
import re
import zlib

import numpy as np

from ..errors import FrameReadError, UnsupportedFormatError
from ..metadata import mapping_to_header
from ._common import Loaded, exact_float_dtype, integer_full_scale, open_for_reading

log = logging.getLogger(__name__)

# What fabio raises for a header it cannot use: KeyError for an unknown
# DataType or a missing ByteOrder, UnboundLocalError (a NameError) for a
# Dim_1 that is not a number, ValueError, OSError ('Invalid first header')...
_FABIO_ERRORS = (OSError, ValueError, RuntimeError, TypeError, IndexError, KeyError,
                 NameError, ZeroDivisionError, EOFError)
_FIX_DAMAGED = "copy the file again, or check what wrote it"


def _open(path):
    import fabio

    try:
        image = fabio.open(str(path))
    except _FABIO_ERRORS as err:
        problem = _first_header_problem(path)
        if problem is not None:
            raise FrameReadError(path, f"not a valid EDF file: {problem}",
                                 _FIX_DAMAGED) from err
        text = " ".join(str(err).split()) or type(err).__name__
        raise FrameReadError(path, f"not a readable EDF file ({text})",
                             "check that the file is complete and really is EDF") from err
    from fabio.edfimage import EdfImage

    if not isinstance(image, EdfImage):
        # fabio recognises formats by their bytes: a TIFF or JPEG named .edf.
        kind = type(image).__name__.removesuffix("Image") or "other"
        image.close()
        raise UnsupportedFormatError(path, f"named as EDF but holds a {kind} image",
                                     "rename it with the ending of its real format")
    if image.incomplete_file and not any(f.incomplete_data for f in image._frames):
        # fabio stops at a header it cannot parse and keeps the frames before it.
        log.warning("%s: the bytes after frame %d are not a valid EDF header (a truncated "
                    "or damaged file?); only %d frame(s) are read", path,
                    image.nframes - 1, image.nframes)
    return image


def _get(header: dict, key: str):
    """A header value by EDF key, whatever its case (fabio keeps the file's case)."""
    for name, value in header.items():
        if name.upper() == key.upper():
            return str(value).strip()
    return None


def _header_problem(header: dict) -> str | None:
    """What in an EDF frame header makes its data unreadable, or None."""
    from fabio.edfimage import DATA_TYPES

    data_type = _get(header, "DataType")
    if data_type is not None and data_type not in DATA_TYPES:
        return f"DataType = {data_type!r} is not an EDF data type"
    dims = sorted((int(m.group(1)), key) for key in header
                  if (m := re.fullmatch(r"DIM_(\d+)", key.upper())))
    if _get(header, "Dim_1") is None:
        return "the header has no Dim_1 (the image width)"
    for _, key in dims:
        value = _get(header, key)
        if not re.fullmatch(r"\+?\d+", value or "") or int(value) <= 0:
            return f"{key} = {value!r} is not an image size (an integer > 0)"
    size = _get(header, "Size")
    if size is not None and not re.fullmatch(r"\+?\d+", size):
        return f"Size = {size!r} is not a number of bytes"
    itemsize = np.dtype(DATA_TYPES.get(data_type, np.uint16)).itemsize
    order = _get(header, "ByteOrder")
    if itemsize > 1 and order not in ("LowByteFirst", "HighByteFirst"):
        return (f"ByteOrder = {order!r}, not LowByteFirst or HighByteFirst" if order
                else "the header has no ByteOrder") + f" (needed for {data_type} data)"
    return None


def _first_header_problem(path) -> str | None:
    """What is wrong in the first header of an EDF file fabio refused, if it can be told."""
    try:
        with open_for_reading(path) as handle:
            head = handle.read(65536)
    except (OSError, FrameReadError):
        return None
    if head.startswith((b"\x1f\x8b", b"BZh")):
        return None     # compressed: fabio's own message says more than a guess
    start = len(head) - len(head.lstrip())
    if head[start:start + 1] != b"{":
        return "the file does not start with an EDF header ('{')"
    end = head.find(b"}", start + 1)
    if end < 0:
        return "the first header is not closed by '}'"
    text = head[start + 1:end].decode("latin-1")
    header = {}
    for entry in text.split(";"):
        key, sep, value = entry.partition("=")
        if sep and key.strip():
            header[key.strip()] = value.strip()
    return _header_problem(header)


def _check_frame(image, path, frame: int) -> None:
    """Refuse frame ``frame`` when its header is unusable or its data are not all there.

    fabio pads missing data with zeros (logging an error): the bytes the
    header announces (``Size``, and Dim_1 x Dim_2 x bytes per pixel) are
    compared with those the file holds after the header block.
    """
    edf = image._frames[frame]   # fabio's parsed frame: header, start, blobsize
    problem = _header_problem(edf.header)
    if problem is not None:
        raise FrameReadError(path, f"frame {frame} is not valid EDF: {problem}", _FIX_DAMAGED)
    shape = tuple(int(n) for n in edf.shape)
    needed = int(np.prod(shape)) * np.dtype(edf.dtype).itemsize
    compression = (_get(edf.header, "Compression") or "none").upper()
    compressed_data = not (compression == "NONE" or compression.startswith("NO"))
    blob = edf.blobsize
    if not compressed_data and blob is not None and blob < needed:
        raise FrameReadError(path, f"frame {frame} is not valid EDF: its Size ({blob} "
                             f"bytes) is smaller than its {'x'.join(map(str, shape[::-1]))} "
                             f"{_get(edf.header, 'DataType')} pixels need ({needed} bytes)",
                             _FIX_DAMAGED)
    announced = (blob or 0) if compressed_data else max(needed, blob or 0)
    where = "" if frame == 0 else f" for frame {frame}"
    with open_for_reading(path) as handle:
        packed = handle.read(3).startswith((b"\x1f\x8b", b"BZh"))
        size = os.fstat(handle.fileno()).st_size
    if packed:
        # A gzip or bzip2 EDF: fabio noted whether the decompressed stream ended early.
        if edf.incomplete_data:
            raise FrameReadError(path, f"truncated: the header announces {announced} bytes "
                                 f"of data{where}, the decompressed file holds fewer",
                                 "copy or download the file again")
        return
    held = max(size - int(edf.start), 0)
    if held < announced:
        raise FrameReadError(path, f"truncated: the header announces {announced} bytes of "
                             f"data{where}, the file holds {held}",
                             "copy or download the file again")


class _IncompleteData(logging.Handler):
    """Collects fabio's 'Data stream is incomplete' errors (it pads the data with zeros)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "incomplete" in message:
            self.messages.append(message)


def edf_frame_count(path) -> int:
    """Number of frames in an EDF file."""
    image = _open(path)
    try:
        return int(image.nframes)
    finally:
        image.close()


def load_edf(path, *, frame: int = 0, dtype=np.float32) -> Loaded:
    """Read frame ``frame`` of an EDF file."""
    image = _open(path)
    try:
        nframes = int(image.nframes)
        if not 0 <= frame < nframes:
            raise ValueError(f"frame={frame}: {path} has {nframes} frame(s) (0..{nframes - 1})")
        return _frame(image, path, frame, nframes, dtype)
    finally:
        image.close()


def iter_edf(path, *, dtype=np.float32):
    """Yield every frame of an EDF file, opening it once."""
    image = _open(path)
    try:
        nframes = int(image.nframes)
        for frame in range(nframes):
            yield _frame(image, path, frame, nframes, dtype)
    finally:
        image.close()


def _frame(image, path, frame: int, nframes: int, dtype) -> Loaded:
    _check_frame(image, path, frame)
    fabio_log = logging.getLogger("fabio.edfimage")
    incomplete = _IncompleteData()
    fabio_log.addHandler(incomplete)
    try:
        one = image if frame == 0 else image.getframe(frame)
        raw = one.data
        header_dict = dict(one.header)
    except (*_FABIO_ERRORS, zlib.error) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise FrameReadError(path, f"frame {frame} cannot be read ({text})",
                             "the file is probably truncated; copy it again") from err
    finally:
        fabio_log.removeHandler(incomplete)
    if raw is None:
        raise FrameReadError(path, f"frame {frame} holds no data",
                             "the file is probably truncated; copy it again")
    if incomplete.messages:
        raise FrameReadError(path, f"truncated: frame {frame}'s data are incomplete "
                             f"({incomplete.messages[0]})", "copy or download the file again")
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise FrameReadError(path, f"frame {frame} has {raw.ndim} axes, not 2",
                             "calframe reads 2-D EDF frames")
    header = mapping_to_header(header_dict)
    _add_date_obs(header, header_dict)
    header["EDFFRAME"] = (frame, "frame index in the EDF file")
    header["EDFNFRAM"] = (nframes, "frames in the EDF file")
    data = raw.astype(exact_float_dtype(raw, dtype, header))
    loaded = Loaded(data=data, header=header, location={"frame": frame},
                    row_order="TOP-DOWN", saturation=integer_full_scale(raw.dtype),
                    integer=raw.dtype.kind in "iu")
    gaps = np.zeros(raw.shape, dtype=bool)
    if raw.dtype.kind == "i":
        gaps |= raw < 0
    dummy = _number(header_dict.get("Dummy"))
    if dummy is not None and dummy != 0:
        ddummy = _number(header_dict.get("DDummy")) or 0.0
        gaps |= np.abs(data - dummy) <= ddummy
    if gaps.any():
        loaded.masks["gap"] = gaps
    return loaded


def edf_date(value) -> str | None:
    """ISO 8601 text of an EDF ``date`` (SPEC's ``'Mon Jun 13 09:29:46 2016'``, or ISO).

    Examples
    --------
    >>> edf_date("Mon Jun 13 09:29:46 2016"), edf_date("2024-03-13 15:02:45.5")
    ('2016-06-13T09:29:46', '2024-03-13T15:02:45.5')
    >>> edf_date("yesterday") is None
    True
    """
    from datetime import datetime

    text = " ".join(str(value).split())
    for pattern in ("%a %b %d %H:%M:%S %Y", "%b %d %H:%M:%S %Y", "%d-%b-%Y %H:%M"):
        try:
            return datetime.strptime(text, pattern).isoformat()
        except ValueError:
            pass
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d+)?)"
                         r"([+-]\d{2}:?\d{2}|Z)?", text)
    if match:
        return f"{match.group(1)}T{match.group(2)}{match.group(3) or ''}"
    return None


def _add_date_obs(header, header_dict: dict) -> None:
    """DATE-OBS from the EDF ``date`` (the detector computer's local time)."""
    if "DATE-OBS" in header:
        return
    value = _get(header_dict, "date")
    date = edf_date(value) if value is not None else None
    if date is not None:
        header["DATE-OBS"] = (date, "from the EDF date (local time of the writer)")


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def edf_header(path, *, frame: int = 0):
    """The header and shape :func:`load_edf` gives, with the same checks of the file."""
    from ._formats import HeaderRead

    image = _open(path)
    try:
        nframes = int(image.nframes)
        if not 0 <= frame < nframes:
            raise ValueError(f"frame={frame}: {path} has {nframes} frame(s) "
                             f"(0..{nframes - 1})")
        _check_frame(image, path, frame)
        edf = image._frames[frame]
        header = mapping_to_header(dict(edf.header))
        _add_date_obs(header, dict(edf.header))
        shape = tuple(int(n) for n in edf.shape)
        dtype = np.dtype(edf.dtype)
    finally:
        image.close()
    header["EDFFRAME"] = (frame, "frame index in the EDF file")
    header["EDFNFRAM"] = (nframes, "frames in the EDF file")
    return HeaderRead(header=header, shape=shape, dtype=dtype, nframes=nframes,
                      location={"frame": frame}, row_order="TOP-DOWN")
