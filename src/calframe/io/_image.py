"""PNG and JPEG reading through Pillow (e.g. grid-target images for distortion).

A grey image (modes ``L``, ``I;16``, ``I``, ``F``) gives a 2-D frame; an RGB
image a ``(3, ny, nx)`` cube.  Values are as stored (0-255 for 8 bits), which
for JPEG means lossy and usually gamma-encoded: fine for geometry (grid
detection), not for photometric calibration.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib

import numpy as np
from astropy.io import fits
from PIL import Image, UnidentifiedImageError

from ..errors import FrameReadError, UnsupportedFormatError
from ._common import Loaded, integer_full_scale, open_for_reading
from ._formats import HeaderRead

log = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: What Pillow identifies in files this reader takes (MPO: a camera's multi-picture JPEG).
_FORMATS = ("PNG", "JPEG", "MPO")


def _check_png(content: bytes, path) -> None:
    """Refuse a PNG whose chunks are cut short, fail their CRC or lack the IEND chunk.

    Pillow checks neither the CRC of the image data chunks nor that the file
    reaches its IEND chunk.
    """
    pos = len(_PNG_MAGIC)
    while pos + 8 <= len(content):
        length, kind = struct.unpack(">I4s", content[pos:pos + 8])
        end = pos + 12 + length
        name = kind.decode("ascii", "backslashreplace")
        if end > len(content):
            raise FrameReadError(path, f"truncated: the PNG chunk {name!r} at byte {pos} "
                                 f"announces {length} bytes, the file ends at byte "
                                 f"{len(content)}", "copy or download the file again")
        stored = struct.unpack(">I", content[end - 4:end])[0]
        if zlib.crc32(content[pos + 4:end - 4]) != stored:
            raise FrameReadError(path, f"the PNG chunk {name!r} at byte {pos} fails its CRC "
                                 "check (damaged data)", "copy or download the file again")
        if kind == b"IEND":
            return
        pos = end
    raise FrameReadError(path, f"truncated: the PNG ends at byte {len(content)} before its "
                         "IEND chunk", "copy or download the file again")


def _read_checked(path, frame: int) -> bytes:
    """The bytes of a one-frame image file, a PNG's chunks checked first."""
    if frame != 0:
        raise ValueError(f"frame={frame}: {path} holds one frame")
    with open_for_reading(path) as handle:
        content = handle.read()
    if content.startswith(_PNG_MAGIC):
        _check_png(content, path)
    return content


def load_image(path, *, frame: int = 0, dtype=np.float32) -> Loaded:
    """Read a PNG or JPEG file."""
    content = _read_checked(path, frame)
    try:
        with warnings.catch_warnings():
            # Large images (above Pillow's MAX_IMAGE_PIXELS) are frames too;
            # twice that limit is an error, refused below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                mode = image.mode
                image_format = image.format
                if image_format not in _FORMATS:
                    raise UnsupportedFormatError(
                        path, f"named as PNG or JPEG but holds a {image_format} image",
                        "convert it to PNG, JPEG, TIFF or FITS, or rename it")
                if mode in ("1", "P", "LA", "PA"):
                    image = image.convert("L" if mode != "P" else "RGB")
                    mode = image.mode
                if mode in ("RGBA", "CMYK", "YCbCr"):
                    image = image.convert("RGB")
                    mode = "RGB"
                raw = np.asarray(image)
    except Image.DecompressionBombError as err:
        raise UnsupportedFormatError(path, f"the image is too large for Pillow ({err})",
                                     "convert it to TIFF or FITS, or raise "
                                     "PIL.Image.MAX_IMAGE_PIXELS") from err
    except UnidentifiedImageError as err:
        raise FrameReadError(path, "not an image Pillow recognises (first bytes "
                             f"{content[:8]!r})", "check that the file is complete and "
                             "really is PNG or JPEG") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        if isinstance(err, FrameReadError):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        raise FrameReadError(path, f"not a readable image file ({text})",
                             "check that the file is complete") from err
    if mode == "RGB":
        raw = np.moveaxis(raw, -1, 0)
    elif raw.ndim != 2:
        raise UnsupportedFormatError(path, f"image mode {mode!r} of shape {raw.shape}",
                                     "calframe reads grey and RGB PNG/JPEG images")
    header = fits.Header()
    header["IMGFMT"] = (str(image_format), "file format (read with Pillow)")
    header["IMGMODE"] = (mode, "Pillow image mode")
    if mode == "RGB":
        header["COLORSP"] = ("RGB", "planes R, G, B as stored (not linearised)")
    return Loaded(data=raw.astype(dtype), header=header, row_order="TOP-DOWN",
                  saturation=integer_full_scale(raw.dtype),
                  integer=raw.dtype.kind in "iu")


def image_header(path, *, frame: int = 0):
    """The header and shape :func:`load_image` gives, without decoding the pixels."""
    _read_checked(path, frame)
    try:
        with Image.open(path) as image:
            mode, image_format, (nx, ny) = image.mode, image.format, image.size
    except (UnidentifiedImageError, OSError) as err:
        raise FrameReadError(path, f"not a readable image file ({err})",
                             "check that the file is complete") from err
    grey = {"1": "L", "L": "L", "LA": "L", "PA": "L", "I;16": "I;16", "I;16B": "I;16",
            "I;16L": "I;16", "I": "I",
            "F": "F"}
    mode = grey.get(mode, "RGB")
    dtype = np.dtype({"L": np.uint8, "RGB": np.uint8, "I;16": np.uint16, "I": np.int32,
                      "F": np.float32}[mode])
    header = fits.Header()
    header["IMGFMT"] = (str(image_format), "file format (read with Pillow)")
    header["IMGMODE"] = (mode, "Pillow image mode")
    if mode == "RGB":
        header["COLORSP"] = ("RGB", "planes R, G, B as stored (not linearised)")
    return HeaderRead(header=header, shape=(3, ny, nx) if mode == "RGB" else (ny, nx),
                      dtype=dtype, row_order="TOP-DOWN")
