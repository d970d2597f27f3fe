"""TIFF reading through tifffile.

A mono TIFF gives a 2-D frame; a multi-page mono TIFF (or a 3-D mono stack)
gives one frame per page (``frame=``, :func:`calframe.iter_frames`).  An RGB
TIFF gives a ``(3, ny, nx)`` cube (R, G, B planes), the layout calframe uses
for demosaiced colour, with the values as stored: an RGB TIFF written by a
camera or a raw converter is usually gamma-encoded and white-balanced, so it
is not linear data and should not be calibrated with linear masters.  Pixel
values are not rescaled (8-bit data stay 0-255 ADU).
"""

from __future__ import annotations

import zlib

import numpy as np

from ..errors import FrameReadError, UnsupportedFormatError
from ..metadata import mapping_to_header
from ._common import Loaded, exact_float_dtype, integer_full_scale


def _errors() -> tuple[type[Exception], ...]:
    import tifffile

    return (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError,
            ZeroDivisionError, zlib.error, NotImplementedError)


#: The TIFF tags kept in the header.
_TAGS = ("ImageDescription", "Make", "Model", "DateTime", "Software", "Artist")


class TiffStack:
    """An open TIFF file, checked once, whose frames are decoded one at a time.

    A mono stack of pages gives one frame per page, and only that page is
    decoded (``TiffFile.asarray(key=k)``); an RGB image or a stack stored as
    one page is decoded whole.  ``page`` (a frame index) limits the check of
    the strips or tiles to that page's (the others are checked when read).
    """

    def __init__(self, path, *, page: int | None = None):
        import tifffile

        self.path = path
        self._page = page
        try:
            self.tif = tifffile.TiffFile(path)
        except FrameReadError:
            raise
        except _errors() as err:
            raise _tiff_error(path, err) from err
        try:
            self._inspect()
        except FrameReadError:
            self.tif.close()
            raise
        except _errors() as err:
            self.tif.close()
            raise _tiff_error(path, err) from err
        except BaseException:
            self.tif.close()
            raise

    def _inspect(self) -> None:
        tif, path = self.tif, self.path
        if len(tif.pages) == 0:
            raise FrameReadError(path, "the TIFF file holds no image (no page)",
                                 "the file is damaged or empty; copy it again")
        page = tif.pages.first
        _check_page_layout(page, 0, path)
        series = tif.series[0]
        _check_decodable(series, path)
        self.series = series
        pages = series.pages
        indices = range(len(pages)) if self._page is None or len(pages) == 1 \
            else [self._page] if 0 <= self._page < len(pages) else []
        for index in indices:
            self._check_page(index)
        self._checked = set(indices)
        _check_series(series, tif.filehandle.size, path)
        self.shape = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)
        self.photometric = getattr(page.photometric, "name", str(page.photometric))
        self.tags = {tag.name: tag.value for tag in page.tags.values() if tag.name in _TAGS}
        self.axes = series.axes
        # the frames' layout, from a stand-in of the data that holds no bytes
        stand_in = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), self.shape,
                                                   (0,) * len(self.shape))
        layout = _frames(stand_in, self.photometric, self.axes, path)
        self.nframes = layout.shape[0]
        self.frame_shape = tuple(layout.shape[1:])
        self.by_page = self.photometric != "RGB" and self.nframes > 1 \
            and len(series.pages) == self.nframes
        self._whole = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.tif.close()

    def check_frame(self, frame: int) -> None:
        """Refuse a frame index the file does not have."""
        if not 0 <= frame < self.nframes:
            raise ValueError(f"frame={frame}: {self.path} has {self.nframes} frame(s)")

    def _check_page(self, index: int) -> None:
        series = self.series
        one = series.pages[index]
        if one is None:
            raise FrameReadError(self.path, f"page {index} of the image is missing",
                                 "the file is damaged; copy it again")
        _check_segments(one, series.keyframe, index, self.tif.filehandle.size, self.path)

    def raw(self, frame: int) -> np.ndarray:
        """Frame ``frame`` as stored."""
        self.check_frame(frame)
        try:
            if self.by_page:
                if frame not in self._checked:
                    self._check_page(frame)
                    self._checked.add(frame)
                return self.tif.asarray(key=frame, series=0)
            if self._whole is None:
                self._whole = _frames(self.series.asarray(), self.photometric, self.axes,
                                      self.path)
            return self._whole[frame]
        except FrameReadError:
            raise
        except _errors() as err:
            raise _tiff_error(self.path, err) from err

    def header(self, frame: int):
        """The header of frame ``frame``."""
        return _header(dict(self.tags), self.photometric, self.nframes, frame)

    def loaded(self, frame: int, dtype=np.float32) -> Loaded:
        """Frame ``frame`` as :func:`calframe.read_frame` finishes it."""
        raw = self.raw(frame)
        header = self.header(frame)
        target = exact_float_dtype(raw, dtype, header)
        return Loaded(data=raw.astype(target), header=header, location={"frame": frame},
                      row_order="TOP-DOWN", saturation=integer_full_scale(raw.dtype),
                      integer=raw.dtype.kind in "iu")


def _tiff_error(path, err: Exception) -> Exception:
    """The calframe error for what tifffile raised."""
    if isinstance(err, NotImplementedError):   # e.g. 12-bit packed samples, no imagecodecs
        return UnsupportedFormatError(path, f"a TIFF that tifffile cannot decode ({err})",
                                      "install imagecodecs, or save the image as 8 or 16-bit "
                                      "uncompressed TIFF")
    text = " ".join(str(err).split()) or type(err).__name__
    return FrameReadError(path, f"not a readable TIFF file ({text})",
                          "check that the file is complete and really is TIFF")


def _check_page_layout(page, index: int, path) -> None:
    """Refuse a page whose size or sample format cannot make an image."""
    if 0 in page.shape:
        raise FrameReadError(path, f"page {index} is an image of {page.imagewidth}x"
                             f"{page.imagelength} pixels (shape {page.shape}), so it holds "
                             "no pixels", "the file is damaged; copy it again")


def _check_decodable(series, path) -> None:
    """Refuse sample formats and compressions that cannot be read as numbers."""
    import tifffile

    page = series.keyframe
    photometric = getattr(page.photometric, "name", str(page.photometric))
    if photometric == "PALETTE":
        raise UnsupportedFormatError(path, "a palette (indexed colour) TIFF: its values are "
                                     "colour-table indices, not intensities",
                                     "convert it to a grey or RGB TIFF")
    if series.dtype is None or np.dtype(series.dtype).kind not in "biuf":
        sample = getattr(page.sampleformat, "name", page.sampleformat)
        raise UnsupportedFormatError(path, f"TIFF samples of format {sample} with "
                                     f"{page.bitspersample} bits (type {series.dtype})",
                                     "calframe reads integer and real TIFF samples")
    if page.compression != 1:
        try:
            tifffile.TIFF.DECOMPRESSORS[page.compression]
        except KeyError as err:
            name = getattr(page.compression, "name", page.compression)
            raise UnsupportedFormatError(path, f"the TIFF is compressed with {name}, which "
                                         "tifffile decodes only with the imagecodecs package",
                                         "install imagecodecs, or save the TIFF uncompressed"
                                         ) from err


def _check_series(series, file_size: int, path) -> None:
    """Refuse a series (e.g. a stack of pages) that the file does not hold in full."""
    pages = len(series.pages)
    needed = series.size // max(series.keyframe.size, 1)
    if pages < needed:
        raise FrameReadError(path, f"truncated: the TIFF describes {needed} pages of "
                             f"{series.keyframe.imagewidth}x{series.keyframe.imagelength}, "
                             f"the file holds {pages}", "copy or download the file again")
    offset = series.dataoffset
    if offset is not None and offset + series.nbytes > file_size:
        raise FrameReadError(path, f"truncated: the TIFF's image data end at byte "
                             f"{offset + series.nbytes}, the file holds {file_size} bytes",
                             "copy or download the file again")


def _check_segments(page, keyframe, index: int, file_size: int, path) -> None:
    """Refuse a page whose strips or tiles are missing or reach past the end of the file.

    tifffile fills a strip or tile without an offset or byte count with zeros,
    and reads an uncompressed image from its first offset whatever the byte
    counts say.
    """
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    expected = int(np.prod(keyframe.chunked))
    kind = "tile" if keyframe.is_tiled else "strip"
    where = f"page {index}: " if index else ""
    if len(offsets) == 0:
        raise FrameReadError(path, f"{where}the TIFF lists no image data (no StripOffsets or "
                             "TileOffsets)", "the file is damaged; copy it again")
    if len(offsets) != expected or len(counts) != expected:
        raise FrameReadError(path, f"{where}the TIFF lists {len(offsets)} {kind} offsets and "
                             f"{len(counts)} byte counts for {expected} {kind}s",
                             "the file is damaged; copy it again")
    empty = np.flatnonzero((offsets <= 0) | (counts <= 0))
    if empty.size:
        raise FrameReadError(path, f"{where}{kind} {empty[0]} of the image has no data "
                             f"(offset {offsets[empty[0]]}, {counts[empty[0]]} bytes)",
                             "the file is damaged; copy it again")
    ends = offsets + counts
    last = int(np.argmax(ends))
    if ends[last] > file_size:
        raise FrameReadError(path, f"truncated: {where}{kind} {last} of the image ends at "
                             f"byte {ends[last]}, the file holds {file_size} bytes",
                             "copy or download the file again")
    stored_bits = keyframe.bitspersample
    if keyframe.compression == 1 and stored_bits == 8 * keyframe.dtype.itemsize \
            and counts.sum() < keyframe.nbytes:
        raise FrameReadError(path, f"{where}the TIFF's {kind}s hold {counts.sum()} bytes, "
                             f"its uncompressed {keyframe.dtype} image needs "
                             f"{keyframe.nbytes}", "the file is damaged; copy it again")


def _frames(data: np.ndarray, photometric: str, axes: str, path) -> np.ndarray:
    """The file's frames as (n, ny, nx) for mono, or (1, 3, ny, nx) for RGB."""
    if photometric == "RGB":
        if data.ndim == 3 and data.shape[-1] in (3, 4):
            return np.moveaxis(data[..., :3], -1, 0)[None]
        if data.ndim == 3 and data.shape[0] in (3, 4):
            return data[None, :3]
        if data.ndim == 4 and data.shape[-1] in (3, 4):
            return np.moveaxis(data[..., :3], -1, 1)
        raise UnsupportedFormatError(path, f"RGB TIFF of shape {data.shape} (axes {axes!r})",
                                     "calframe reads RGB TIFF as (ny, nx, 3) or (3, ny, nx)")
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3 and not axes.endswith("S"):
        return data
    raise UnsupportedFormatError(path, f"TIFF of shape {data.shape} (axes {axes!r}, "
                                 f"photometric {photometric})",
                                 "calframe reads mono or RGB TIFF images and mono stacks")


def tiff_frame_count(path) -> int:
    """Number of frames in a TIFF file (pages of a mono stack)."""
    with TiffStack(path) as stack:
        return stack.nframes


def load_tiff(path, *, frame: int = 0, dtype=np.float32) -> Loaded:
    """Read frame ``frame`` of a TIFF file (only its page is decoded)."""
    with TiffStack(path, page=frame) as stack:
        return stack.loaded(frame, dtype)


def iter_tiff(path, *, dtype=np.float32):
    """Yield every frame of a TIFF file, one page at a time."""
    with TiffStack(path) as stack:
        for frame in range(stack.nframes):
            yield stack.loaded(frame, dtype)


def _header(info, photometric, nframes, frame):
    header = mapping_to_header({k.upper()[:8]: v for k, v in info.items()})
    header["TIFFPHOT"] = (photometric, "TIFF photometric interpretation")
    if nframes > 1:
        header["TIFFPAGE"] = (frame, "page in the TIFF file")
    if photometric == "RGB":
        header["COLORSP"] = ("RGB", "planes R, G, B as stored (not linearised)")
    return header


def tiff_header(path, *, frame: int = 0):
    """The header and shape :func:`load_tiff` gives, without decoding the pixels."""
    from ._formats import HeaderRead

    with TiffStack(path, page=frame) as stack:
        stack.check_frame(frame)
        return HeaderRead(header=stack.header(frame), shape=stack.frame_shape,
                          dtype=stack.dtype, nframes=stack.nframes,
                          location={"frame": frame}, row_order="TOP-DOWN")
