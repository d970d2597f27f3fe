"""Camera RAW reading through rawpy (LibRaw) and exifread.

The frame is the CFA mosaic of LibRaw's *visible* area
(``raw_image_visible``: the sensor without the masked margins LibRaw knows
of), as stored, in ADU.  The Bayer pattern is read from
``raw_colors_visible`` at pixels (0, 0)..(1, 1) of that same array, so
BAYERPAT names the colours of the returned array's first two rows and
XBAYROFF = YBAYROFF = 0.  A crop the camera recommends (DNG DefaultCrop,
e.g. 4096x2160 at x=16, y=8 in a Blackmagic DNG) is recorded as DATASEC but
not applied, so the pattern does not move; a crop at an odd offset would
change the pattern, which :mod:`calframe.bayer` accounts for.

Black level: rawpy's ``black_level_per_channel`` (LibRaw's common black plus
per-colour ``cblack``, with a 1x1 or 2x2 per-position pattern folded in by
LibRaw) is recorded per CFA position as BLKLEV0..BLKLEV3 (positions (0, 0),
(0, 1), (1, 0), (1, 1) in row order) with their mean as BLKLEVEL; it is not
subtracted unless ``subtract_black=True``.  White level (per channel when the
file has one) -> WHITELEV and the saturation mask.

Monochrome RAW files (no CFA, one colour) are read the same way without
BAYERPAT and with one black level (BLKLEVEL).  RAW files with another colour
filter array (Fuji X-Trans, Foveon, CMYG sensors) or already demosaiced
(linear DNG) are refused with :class:`~calframe.UnsupportedFormatError`.
"""

from __future__ import annotations

import logging
import struct

import exifread
import numpy as np
import rawpy

from ..errors import FrameReadError, UnsupportedFormatError
from ..metadata import mapping_to_header
from ._common import Loaded, open_for_reading
from ._formats import HeaderRead

log = logging.getLogger(__name__)

_EXIF_KEYS = (
    "Image Make", "Image Model", "EXIF ExposureTime", "EXIF ISOSpeedRatings",
    "EXIF PhotographicSensitivity", "EXIF DateTimeOriginal", "EXIF OffsetTimeOriginal",
    "Image DateTime",
    "EXIF ImageDescription", "Image ImageDescription", "EXIF BodySerialNumber",
    "MakerNote CameraTemperature", "MakerNote SensorTemperature",
    "MakerNote AmbientTemperature", "Image Tag 0xC614",
)


def _exif(path) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            tags = exifread.process_file(handle, details=True, extract_thumbnail=False)
    except Exception as err:  # exifread raises many kinds; EXIF is optional
        log.debug("%s: EXIF not readable (%s)", path, err)
        return {}
    out = {}
    for key in _EXIF_KEYS:
        if key in tags:
            text = str(tags[key]).strip()
            if text:
                out[key] = text
    return out


def _cfa_name(raw) -> tuple[str, np.ndarray]:
    """The 2x2 pattern at (0, 0) of the visible area, and colour indices there."""
    desc = raw.color_desc.decode("ascii", "replace")
    colors = np.asarray(raw.raw_colors_visible[:2, :2])
    name = "".join(desc[int(c)] for c in colors.ravel())
    return name, colors


def _open(path, *, unpack: bool):
    """A rawpy object for ``path``: opened only (header) or with its data unpacked."""
    raw = None
    try:
        if unpack:
            raw = rawpy.imread(str(path))
        else:
            raw = rawpy.RawPy()
            raw.open_file(str(path))
    except rawpy.LibRawFileUnsupportedError as err:
        if raw is not None:
            raw.close()
        raise UnsupportedFormatError(path, f"LibRaw does not read this file ({err})",
                                     "convert it to DNG or FITS") from err
    except (rawpy.LibRawError, OSError) as err:
        if raw is not None:
            raw.close()
        raise FrameReadError(path, f"not a readable camera RAW file ({err})",
                             "check that the file is complete") from err
    return raw


def _describe(raw, path):
    """Header, black and white levels of an opened RAW (its pixels are not read)."""
    try:
        raw_type = raw.raw_type
        pattern = raw.raw_pattern
    except rawpy.LibRawError as err:
        raise FrameReadError(path, f"the RAW data cannot be decoded ({err})",
                             "the file is probably truncated; copy it again") from err
    if raw_type != rawpy.RawType.Flat:
        raise UnsupportedFormatError(
            path, f"the RAW holds {raw_type.name} (already demosaiced or linear) data, "
            "not a CFA mosaic", "calibrate the camera's CFA RAW files instead")
    mono = int(getattr(raw, "num_colors", 3)) == 1
    if mono:
        name, colors = None, np.zeros((1, 1), dtype=np.uint8)
    elif pattern is None or np.asarray(pattern).shape != (2, 2):
        shape = None if pattern is None else np.asarray(pattern).shape
        raise UnsupportedFormatError(
            path, f"the sensor's colour filter array is not a 2x2 Bayer pattern "
            f"(LibRaw pattern {shape}, e.g. Fuji X-Trans 6x6)",
            "calframe calibrates 2x2 Bayer and mono sensors only")
    else:
        name, colors = _cfa_name(raw)
    if not mono and sorted(name) != ["B", "G", "G", "R"]:
        raise UnsupportedFormatError(
            path, f"the CFA colours are {name!r}, not a red/green/blue Bayer pattern",
            "calframe calibrates RGGB/BGGR/GRBG/GBRG sensors only")
    per_channel = list(raw.black_level_per_channel)
    black = np.array([[per_channel[int(c)] for c in row] for row in colors],
                     dtype=np.float64)
    white_channels = raw.camera_white_level_per_channel
    if not white_channels or min(white_channels) <= 0:
        white_channels = [raw.white_level] * 4      # no usable per-channel levels
    white = np.array([[white_channels[int(c)] for c in row] for row in colors],
                     dtype=np.float64)
    sizes = raw.sizes

    exif = _exif(path)
    mapping: dict[str, object] = {}
    make = exif.get("Image Make", "")
    model = exif.get("Image Model", "") or exif.get("Image Tag 0xC614", "")
    instrument = " ".join(part for part in (make, model) if part and part not in ("[]",))
    if make and model.startswith(make):
        instrument = model
    if instrument:
        mapping["INSTRUME"] = instrument
    for key, value in exif.items():
        if key not in ("Image Make", "Image Model", "Image Tag 0xC614"):
            mapping[key] = value
    header = mapping_to_header(mapping)
    if name is not None:
        header["BAYERPAT"] = (name, "CFA pattern at pixel (0, 0) of the visible area")
        header["XBAYROFF"] = (0, "CFA x offset")
        header["YBAYROFF"] = (0, "CFA y offset")
    header["ROWORDER"] = ("TOP-DOWN", "row 0 is the top of the sensor readout")
    if name is not None:
        for i, value in enumerate(black.ravel()):
            header[f"BLKLEV{i}"] = (float(value), f"[adu] black level at CFA position "
                                    f"({i // 2}, {i % 2})")
    header["BLKLEVEL"] = (float(black.mean()), "[adu] mean black level (not subtracted)")
    header["WHITELEV"] = (float(white.min()), "[adu] white level (saturation)")
    header["RAWFLIP"] = (int(sizes.flip), "LibRaw orientation flag (data not rotated)")
    if sizes.crop_width and sizes.crop_height:
        x0, y0 = int(sizes.crop_left_margin), int(sizes.crop_top_margin)
        header["DATASEC"] = (f"[{x0 + 1}:{x0 + sizes.crop_width},"
                             f"{y0 + 1}:{y0 + sizes.crop_height}]",
                             "camera's default crop (not applied)")
    return header, black, white


def raw_header(path):
    """The header and shape :func:`load_raw` gives, without decoding the pixels."""
    _check_tiff_layout(path)
    raw = _open(path, unpack=False)
    try:
        header, _, _ = _describe(raw, path)
        shape = (int(raw.sizes.height), int(raw.sizes.width))  # raw_image_visible's shape
    finally:
        raw.close()
    if min(shape) <= 0:
        raise FrameReadError(path, f"the RAW announces an image of {shape[1]}x{shape[0]} "
                             "pixels", "the file is probably damaged; copy it again")
    return HeaderRead(header=header, shape=shape, dtype=np.dtype(np.uint16),
                      row_order="TOP-DOWN")


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class _Silence(logging.Filter):
    """Drops tifffile's complaints about the maker tags it does not know, while walking a RAW."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _furthest_data_end(pages, depth: int = 0) -> int:
    """The largest offset + byte count of the strips/tiles of ``pages`` and their SubIFDs."""
    end = 0
    for page in pages:
        pairs = zip(page.dataoffsets, page.databytecounts, strict=False)
        ends = [int(o) + int(c) for o, c in pairs if o > 0 and c > 0]
        end = max([end, *ends])
        sub = getattr(page, "pages", None)
        if sub is not None and depth < 4:
            end = max(end, _furthest_data_end(sub, depth + 1))
    return end


def _check_tiff_layout(path) -> None:
    """Refuse a TIFF-based RAW (DNG, NEF, CR2, ARW...) whose image data reach past its end.

    LibRaw decodes a file cut before its image data without an error, leaving
    the mosaic as whatever its buffer held (even the pixels of a file read
    before).  Files that tifffile cannot walk are left to LibRaw.
    """
    with open_for_reading(path) as handle:
        if not handle.read(4).startswith(_TIFF_MAGIC):
            return
    import tifffile  # only TIFF-based RAW files need it (30 ms to import)

    silence = _Silence()
    tiff_log = logging.getLogger("tifffile")
    tiff_log.addFilter(silence)
    try:
        with tifffile.TiffFile(path) as tif:
            size = tif.filehandle.size
            end = _furthest_data_end(tif.pages)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError, TypeError,
            struct.error) as err:
        log.debug("%s: TIFF structure not checked (%s)", path, err)
        return
    finally:
        tiff_log.removeFilter(silence)
    if end > size:
        raise FrameReadError(path, f"truncated: the RAW's image data end at byte {end}, the "
                             f"file holds {size} bytes", "copy or download the file again")


def load_raw(path, *, dtype=np.float32) -> Loaded:
    """Read the CFA mosaic of a camera RAW file (see the module notes)."""
    _check_tiff_layout(path)
    raw = _open(path, unpack=True)
    try:
        header, black, white = _describe(raw, path)
        try:
            visible = raw.raw_image_visible
        except rawpy.LibRawError as err:
            raise FrameReadError(path, f"the RAW data cannot be decoded ({err})",
                                 "the file is probably truncated; copy it again") from err
        data = visible.astype(dtype)  # a copy: rawpy's buffer dies with `raw`
    finally:
        raw.close()
    # Levels per CFA position, as 2x2 tiles that repeat over the mosaic.
    saturation = white if np.ptp(white) else float(white[0, 0])
    pedestal = black if np.ptp(black) else float(black[0, 0])
    return Loaded(data=data, header=header, pedestal=pedestal, saturation=saturation,
                  row_order="TOP-DOWN", integer=True)
