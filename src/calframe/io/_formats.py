"""The format registry: one table of the file formats calframe reads.

Every part of calframe that looks at a file goes through this table: the
name endings a folder scan takes (:data:`FRAME_SUFFIXES`), the format of a
file (:func:`detect_format`), the reader that decodes its pixels and the one
that reads only its header (:func:`calframe.io.read_header`).  So the
inventory, the provenance, the combine engine's block readers and
``calframe info`` see the same shape, type and metadata for a file.
"""

from __future__ import annotations

import importlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FrameReadError, UnsupportedFormatError

if TYPE_CHECKING:
    import numpy as np
    from astropy.io import fits

__all__ = ["FORMATS", "FRAME_SUFFIXES", "FileFormat", "HeaderRead", "detect_format",
           "format_from_name"]


@dataclass
class HeaderRead:
    """What a format's header reader hands to :func:`calframe.io.read_header`.

    The header is the one its pixel reader gives (before normalisation), and
    ``shape`` is the shape of the frame :func:`calframe.read_frame` returns.
    """

    header: fits.Header
    shape: tuple[int, ...]
    #: the stored sample type (e.g. uint16 for BITPIX 16 with BZERO 32768)
    dtype: np.dtype
    #: frames in the file (EDF and TIFF frames; FITS image HDUs count as one each)
    nframes: int = 1
    location: dict = field(default_factory=dict)
    row_order: str | None = None


@dataclass(frozen=True)
class FileFormat:
    """One format calframe reads.

    Attributes
    ----------
    name : str
        Short name ('fits', 'raw', 'edf', 'tiff', 'hdf5', 'image').
    description : str
        What it is, for messages and documentation.
    suffixes : tuple of str
        Lower-case name endings (without a compression ending).
    module : str
        The reader module in :mod:`calframe.io`.
    loader : str
        Its function that decodes one frame into a ``Loaded``.
    header : str
        Its function that reads a frame's header and shape, not its pixels.
    calibration : bool
        Whether frames of this format can be raw calibration frames (PNG and
        JPEG are display images: 8 bits, gamma-encoded, lossy for JPEG).
    """

    name: str
    description: str
    suffixes: tuple[str, ...]
    module: str
    loader: str
    header: str
    calibration: bool = True

    def load(self, *args, **kwargs):
        """Decode one frame with this format's reader."""
        return getattr(importlib.import_module(self.module, __package__), self.loader)(
            *args, **kwargs)

    def read_header(self, *args, **kwargs):
        """Read one frame's header and shape with this format's reader."""
        return getattr(importlib.import_module(self.module, __package__), self.header)(
            *args, **kwargs)


#: The formats calframe reads, by name.
FORMATS: dict[str, FileFormat] = {f.name: f for f in (
    FileFormat("fits", "FITS (any image HDU, tile-compressed, gzip or bzip2)",
               (".fits", ".fit", ".fts", ".fz"), "._fits", "load_fits", "fits_header"),
    FileFormat("raw", "camera RAW (through LibRaw)",
               (".3fr", ".ari", ".arw", ".bay", ".cr2", ".cr3", ".crw", ".dcr", ".dng",
                ".erf", ".fff", ".iiq", ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef",
                ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl", ".sr2", ".srf",
                ".srw", ".x3f"), "._raw", "load_raw", "raw_header"),
    FileFormat("edf", "EDF (ESRF data format, through fabio)", (".edf",),
               "._edf", "load_edf", "edf_header"),
    FileFormat("tiff", "TIFF (through tifffile)", (".tif", ".tiff"),
               "._tiff", "load_tiff", "tiff_header"),
    FileFormat("hdf5", "HDF5 / NeXus detector data (through h5py and hdf5plugin)",
               (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi"), "._hdf5", "load_hdf5",
               "hdf5_header"),
    FileFormat("image", "PNG or JPEG display image (through Pillow)",
               (".png", ".jpg", ".jpeg"), "._image", "load_image", "image_header",
               calibration=False),
)}

#: Compression endings a FITS file may carry (``frame.fits.gz``).
COMPRESSED_SUFFIXES = (".gz", ".bz2")

#: Name endings (lower case) of files a folder scan takes as frames.
FRAME_SUFFIXES: frozenset[str] = frozenset(
    s for f in FORMATS.values() if f.calibration for s in f.suffixes)

_FITS_MAGIC = b"SIMPLE  ="
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES and len(suffixes) > 1:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def format_from_name(path: str | os.PathLike) -> str | None:
    """The format a file's name announces, or None (no file is opened).

    Parameters
    ----------
    path : str or path-like
        The file's name or path.

    Returns
    -------
    str or None
        'fits', 'raw', 'edf', 'tiff' or 'image'; None for a name no format claims.

    Examples
    --------
    >>> format_from_name("night/flat_001.FIT"), format_from_name("bias.fits.gz")
    ('fits', 'fits')
    >>> format_from_name("IMG_0001.CR3"), format_from_name("notes.txt") is None
    ('raw', True)
    """
    path = Path(os.fsdecode(path))
    suffix = _suffix(path)
    if path.name.lower().endswith(COMPRESSED_SUFFIXES) and suffix not in (".fits", ".fit",
                                                                             ".fts", ".edf"):
        return None     # only FITS and EDF readers decompress gzip and bzip2
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt.name
    return None


def check_regular_file(path: str | os.PathLike) -> int:
    """The size of ``path``, which must be an existing regular file.

    FIFOs, sockets and devices are refused before anything opens them (a
    FIFO named ``.fits`` would block a reader forever).

    Raises
    ------
    FileNotFoundError
        If nothing is there (or a symbolic link points nowhere).
    IsADirectoryError
        If it is a folder.
    FrameReadError
        If it is not a regular file, or it is empty.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FrameReadError(path, "is a symbolic link to a file that does not exist",
                                 "fix or remove the link") from None
        raise FileNotFoundError(f"{os.fsdecode(path)}: no such file") from None
    except OSError as err:
        raise FrameReadError(path, f"cannot be opened ({err.strerror})",
                             "check the path and its permissions") from err
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"{os.fsdecode(path)}: is a folder, not a frame; pass a file "
                                "(calframe.inventory scans folders)")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "a device")
        raise FrameReadError(path, f"is {kind}, not a regular file",
                             "pass a frame file; calframe does not read from pipes or devices")
    if info.st_size == 0:
        raise FrameReadError(path, "the file is empty (0 bytes)",
                             "copy or download it again, or remove it from the input")
    return info.st_size


def detect_format(path: str | os.PathLike) -> str:
    """The format of a file: 'fits', 'raw', 'edf', 'tiff', 'hdf5' or 'image' (PNG/JPEG).

    The name's ending decides, checked against the first bytes for FITS;
    files with another ending are recognised from their first bytes.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    str
        The format's name.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FrameReadError
        If the file is empty or not a regular file (a FIFO, a socket), or its
        bytes contradict its name.
    UnsupportedFormatError
        If the format is not one calframe reads.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "frame.dat"
    >>> fits.PrimaryHDU(np.zeros((2, 2), np.uint16)).writeto(path)
    >>> detect_format(path)
    'fits'
    """
    p = Path(os.fsdecode(path))
    check_regular_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as err:
        raise FrameReadError(path, f"cannot be opened ({err.strerror})",
                             "check the path and its permissions") from err
    compressed = head[:2] == b"\x1f\x8b" or head[:3] == b"BZh"
    named = format_from_name(p)
    suffix = _suffix(p)
    if named == "fits":
        if not compressed and not head.startswith(_FITS_MAGIC):
            raise FrameReadError(path, "named as FITS but does not start with 'SIMPLE  ='"
                                 f" (starts with {head[:16]!r})",
                                 "it is not a FITS file; check what wrote it")
        return "fits"
    if head.startswith(_FITS_MAGIC):
        return "fits"       # whatever the name says (e.g. a FITS named .mef)
    if named is not None:
        return named
    if head.lstrip().startswith(b"{") and b"=" in head:
        return "edf"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return "image"
    raise UnsupportedFormatError(
        path, f"not a format calframe reads (name ending {suffix or 'none'!r}, "
        f"first bytes {head[:8]!r})",
        "calframe reads FITS, camera RAW (through LibRaw), EDF, TIFF, HDF5/NeXus, PNG "
        "and JPEG")
