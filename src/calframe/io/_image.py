"""PNG and JPEG reading through Pillow (e.g. grid-target images for distortion).

A grey image (modes ``L``, ``I;16``, ``I``, ``F``) gives a 2-D frame; an RGB
image a ``(3, ny, nx)`` cube.  Values are as stored (0-255 for 8 bits), which
for JPEG means lossy and usually gamma-encoded: fine for geometry (grid
detection), not for photometric calibration.
"""

from __future__ import annotations

import numpy as np

from ..errors import FrameReadError, UnsupportedFormatError
from ._common import Loaded, integer_full_scale


def load_image(path, *, frame: int = 0, dtype=np.float32) -> Loaded:
    """Read a PNG or JPEG file."""
    from astropy.io import fits
    from PIL import Image, UnidentifiedImageError

    if frame != 0:
        raise ValueError(f"frame={frame}: {path} holds one frame")
    try:
        with Image.open(path) as image:
            mode = image.mode
            image_format = image.format
            if mode in ("1", "P", "LA", "PA"):
                image = image.convert("L" if mode != "P" else "RGB")
                mode = image.mode
            if mode in ("RGBA", "CMYK", "YCbCr"):
                image = image.convert("RGB")
                mode = "RGB"
            raw = np.asarray(image)
    except (UnidentifiedImageError, OSError) as err:
        raise FrameReadError(path, f"not a readable image file ({err})",
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
