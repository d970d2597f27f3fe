"""A corpus of bad input files, built on demand in a temporary folder.

:func:`build_corpus` writes one file (or link, folder, FIFO) per kind of bad
input that a user may feed to calframe: empty and random files with every
supported name ending, truncated and malformed FITS, EDF, TIFF, PNG and DNG
files, files of another kind named as frames, links that lead nowhere, a name
that is not valid UTF-8 and frames that are valid but not what they claim.

Each entry is a :class:`BadFile`: the path, a short kind used as a test id,
and whether a command may legitimately read it (``readable``: the file is a
valid image, only odd).
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = [
    "EMPTY_SUFFIXES",
    "KINDS",
    "BadFile",
    "build_corpus",
    "names_in",
    "small_night",
    "write_good_frame",
]

#: Name endings written as an empty file and as a file of random bytes.
EMPTY_SUFFIXES = (".fits", ".fit", ".fz", ".fits.gz", ".cr2", ".nef", ".dng", ".edf",
                  ".tif", ".png", ".jpg")

_SHAPE = (24, 32)
_DNG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / \
    "camera-raw" / "Blackmagic.dng"


@dataclass(frozen=True)
class BadFile:
    """One entry of the corpus.

    Attributes
    ----------
    kind : str
        Short name of the kind of defect (the test id).
    path : str or bytes
        Where it is (bytes for a name that is not valid UTF-8).
    readable : bool
        The file is a valid image that a command may read without error.
    """

    kind: str
    path: str | bytes
    readable: bool = False

    @property
    def basename(self) -> str | bytes:
        """The file's own name."""
        return os.path.basename(self.path)


def names_in(bad: BadFile) -> list[str]:
    """The ways a message may spell the file's name (all of them are fine)."""
    name = bad.basename
    if isinstance(name, str):
        return [name]
    from urllib.parse import quote

    return [os.fsdecode(name), name.decode("utf-8", "backslashreplace"),
            name.decode("utf-8", "replace"), quote(name, safe="._-"),
            quote(name, safe="._-").replace("%FF", "%ff").replace("%FE", "%fe"),
            ascii(os.fsdecode(name))[1:-1]]


# ----------------------------------------------------------------- FITS helpers


def _card(key: str, value: str = "", comment: str = "") -> bytes:
    if key in ("END", "COMMENT", "HISTORY", ""):
        text = f"{key:<8}{value}"
    else:
        text = f"{key:<8}= {value:>20}" + (f" / {comment}" if comment else "")
    raw = text.encode("latin-1")
    return raw[:80].ljust(80, b" ")


def _pad(block: bytes, fill: bytes = b"\0") -> bytes:
    return block + fill * (-len(block) % 2880)


def _fits_bytes(cards: list[tuple[str, str]], data: bytes = b"") -> bytes:
    header = b"".join(_card(k, v) for k, v in cards) + _card("END")
    return _pad(header, b" ") + (_pad(data) if data else b"")


def _image_cards(bitpix: int = 16, shape=_SHAPE, **extra: str) -> list[tuple[str, str]]:
    cards = [("SIMPLE", "T"), ("BITPIX", str(bitpix)), ("NAXIS", str(len(shape)))]
    cards += [(f"NAXIS{i + 1}", str(n)) for i, n in enumerate(reversed(shape))]
    cards += [("IMAGETYP", "'Bias Frame'"), ("EXPTIME", "0.0")]
    cards += list(extra.items())
    return cards


def _pixels(shape=_SHAPE, dtype=">i2", value=1000) -> bytes:
    return np.full(shape, value, dtype=dtype).tobytes()


def good_fits_bytes(imagetyp: str = "Bias Frame", exptime: float = 0.0,
                    shape=_SHAPE, seed: int = 0) -> bytes:
    """A small valid FITS frame (noisy uint16 data) as bytes."""
    rng = np.random.default_rng(seed)
    data = (1000 + rng.normal(0, 5, shape)).astype(np.uint16)
    header = fits.Header()
    header["IMAGETYP"] = imagetyp
    header["EXPTIME"] = exptime
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buffer)
    return buffer.getvalue()


def write_good_frame(path, **kw) -> str:
    """Write :func:`good_fits_bytes` to ``path``; return it as a string."""
    Path(path).write_bytes(good_fits_bytes(**kw))
    return os.fspath(path)


# ------------------------------------------------------------------- EDF helpers


def _edf(header: dict[str, str], data: bytes = b"", *, close: bool = True) -> bytes:
    lines = "".join(f"{k} = {v} ;\n" for k, v in header.items())
    text = ("{\n" + lines).encode("ascii")
    if close:
        text += b" " * (-(len(text) + 2) % 512) + b"}\n"
    return text + data


def _edf_header(size: int, datatype: str = "UnsignedShort") -> dict[str, str]:
    return {"HeaderID": "EH:000001:000000:000000", "Image": "1",
            "ByteOrder": "LowByteFirst", "DataType": datatype,
            "Dim_1": str(_SHAPE[1]), "Dim_2": str(_SHAPE[0]), "Size": str(size)}


# -------------------------------------------------------------- image helpers


def _png(mode: str = "L", *, shape=_SHAPE) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    if mode == "RGB":
        array = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    else:
        array = rng.integers(0, 255, shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    from PIL import Image

    array = np.random.default_rng(2).integers(0, 255, _SHAPE, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="JPEG")
    return buffer.getvalue()


def _tiff(pages: int = 1) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    data = np.full((pages, *_SHAPE), 1000, np.uint16)
    tifffile.imwrite(buffer, data if pages > 1 else data[0])
    return buffer.getvalue()


def corrupt_gzip_of(frame: bytes) -> bytes:
    """A gzip file whose deflate stream breaks after the FITS header (zlib.error).

    The magic, the gzip header and the first two FITS blocks are valid, so
    that a reader that stops after the header does not notice.
    """
    packed = bytearray(gzip.compress(frame, mtime=0))
    cut = 64
    for cut in range(64, len(packed), 16):
        try:
            inflated = zlib.decompressobj(31).decompress(bytes(packed[:cut]))
        except zlib.error:
            continue
        if len(inflated) > 2880 * 2:
            break
    packed[cut:cut + 64] = b"\xff" * 64
    return bytes(packed)


def _master_bias(folder: Path) -> bytes:
    """A calframe master bias (with its provenance table) as bytes."""
    from calframe import make_master_bias, write_frame

    raws = []
    for i in range(3):
        raws.append(write_good_frame(folder / f"raw_bias_{i}.fits", seed=10 + i))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ccd = make_master_bias(raws, rejection=None)
    out = write_frame(ccd, folder / "master.fits")
    data = Path(out).read_bytes()
    for p in raws:
        os.remove(p)
    os.remove(out)
    return data


# -------------------------------------------------------------------- the corpus


def _builders(scratch: Path) -> list[tuple[str, str, Callable[[], bytes], bool]]:
    """(kind, file name, bytes maker, readable) of every regular-file entry."""
    rng = np.random.default_rng(1234)

    def random_bytes() -> bytes:
        return rng.bytes(5000)

    good = good_fits_bytes()
    masters: list[bytes] = []

    def master() -> bytes:  # made once, when needed
        if not masters:
            masters.append(_master_bias(scratch))
        return masters[0]

    header_only = _fits_bytes(_image_cards())
    gz_corrupt = bytearray(gzip.compress(good))
    middle = len(gz_corrupt) // 2
    gz_corrupt[middle:middle + 64] = bytes(64)
    bz2_corrupt = bytearray(bz2.compress(good))
    bz2_corrupt[len(bz2_corrupt) // 2:len(bz2_corrupt) // 2 + 64] = b"\xff" * 64

    def fz_truncated() -> bytes:
        buffer = io.BytesIO()
        data = np.random.default_rng(3).integers(0, 4000, (64, 64)).astype(np.int16)
        fits.HDUList([fits.PrimaryHDU(),
                      fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(buffer)
        raw = buffer.getvalue()
        return raw[: 2880 * 2 + 700]

    def bintable() -> bytes:
        buffer = io.BytesIO()
        table = fits.BinTableHDU.from_columns([fits.Column("X", "E", array=np.arange(5.0))])
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
        return buffer.getvalue()

    entries: list[tuple[str, str, Callable[[], bytes], bool]] = []
    for suffix in EMPTY_SUFFIXES:
        tag = suffix.strip(".").replace(".", "-")
        entries.append((f"empty-{tag}", f"empty_{tag}{suffix}", lambda: b"", False))
        entries.append((f"random-{tag}", f"random_{tag}{suffix}", random_bytes, False))
    entries += [
        ("fits-header-only", "header_only.fits", lambda: header_only, False),
        ("fits-half-data", "half_data.fits", lambda: good[: 2880 + (len(good) - 2880) // 2],
         False),
        ("fits-bitpix17", "bitpix17.fits",
         lambda: _fits_bytes(_image_cards(17), _pixels()), False),
        ("fits-naxis1-negative", "naxis1_negative.fits",
         lambda: _fits_bytes(_image_cards(16, (_SHAPE[0], -10)), _pixels()), False),
        ("fits-exptime-text", "exptime_text.fits",
         lambda: _fits_bytes(_image_cards(16, EXPTIME="'sixty'"), _pixels()), True),
        ("fits-bzero-text", "bzero_text.fits",
         lambda: _fits_bytes(_image_cards(16, BZERO="'abc'"), _pixels()), False),
        ("fits-naxis0", "naxis0.fits",
         lambda: _fits_bytes([("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0")]), False),
        ("fits-bintable-only", "bintable_only.fits", bintable, False),
        ("fits-1d", "one_d.fits",
         lambda: _fits_bytes(_image_cards(16, (100,)), _pixels((100,))), False),
        ("fits-3d-cube", "cube.fits",
         lambda: _fits_bytes(_image_cards(16, (3, *_SHAPE)), _pixels((3, *_SHAPE))), True),
        ("fits-absurd-card", "absurd_card.fits",
         lambda: _fits_bytes(_image_cards(16, EXPTIME="1E999", GAIN="-0.0",
                                          RDNOISE="'\x01\x02'", DATE_OBS="'yesterday'"),
                             _pixels()), True),
        ("fitsgz-corrupt", "corrupt.fits.gz", lambda: bytes(gz_corrupt), False),
        ("fitsgz-corrupt-stream", "corrupt_stream.fits.gz",
         lambda: corrupt_gzip_of(good_fits_bytes(shape=(200, 200))), False),
        ("fitsbz2-corrupt", "corrupt.fits.bz2", lambda: bytes(bz2_corrupt), False),
        ("fz-truncated", "truncated.fits.fz", fz_truncated, False),
        ("edf-banana", "banana.edf",
         lambda: _edf(_edf_header(2 * _SHAPE[0] * _SHAPE[1], "Banana"),
                      _pixels(dtype="<u2")), False),
        ("edf-truncated", "truncated.edf",
         lambda: _edf(_edf_header(2 * _SHAPE[0] * _SHAPE[1]), close=False)[:60], False),
        ("edf-header-only", "header_only.edf",
         lambda: _edf(_edf_header(2 * _SHAPE[0] * _SHAPE[1])), False),
        ("edf-short-data", "short_data.edf",
         lambda: _edf(_edf_header(2 * _SHAPE[0] * _SHAPE[1]), b"\0" * 100), False),
        ("tiff-truncated", "truncated.tif", lambda: _tiff()[:300], False),
        ("tiff-zero-pages", "zero_pages.tif", lambda: b"II*\x00" + struct.pack("<I", 0),
         False),
        ("png-truncated", "truncated.png", lambda: _png()[:100], False),
        ("jpeg-as-bias", "bias_001.jpg", _jpeg, True),
        ("png-rgb", "rgb.png", lambda: _png("RGB"), True),
        ("text-as-fits", "notes.fits",
         lambda: b"observing log: clouds at 23:00, dome closed\n" * 50, False),
        ("html-as-fits", "download.fits",
         lambda: (b"<!DOCTYPE html><html><head><title>404 Not Found</title></head>"
                  b"<body><h1>Not Found</h1></body></html>\n" * 30), False),
        ("master-as-raw", "master_bias_as_raw.fits", master, True),
        ("master-truncated", "master_bias_truncated.fits",
         lambda: master()[: len(master()) - 2880 - 100], False),
    ]
    if _DNG.is_file():
        entries.append(("dng-truncated", "truncated.dng",
                        lambda: _DNG.read_bytes()[:100_000], False))
    return entries


#: The kinds of :func:`build_corpus` (without the FIFO), in order.
KINDS: list[str] = []


def build_corpus(folder, *, fifo: bool = False) -> dict[str, BadFile]:
    """Write every bad file into ``folder``; return them by kind.

    Parameters
    ----------
    folder : path
        An empty folder (created if needed).
    fifo : bool
        Also make a FIFO named ``bias.fits`` (kind ``fifo``): opening it for
        reading blocks until a writer comes, so only a process with a timeout
        should be given it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".scratch"
    scratch.mkdir(exist_ok=True)
    corpus: dict[str, BadFile] = {}
    for kind, name, make, readable in _builders(scratch):
        path = folder / name
        path.write_bytes(make())
        corpus[kind] = BadFile(kind, str(path), readable)
    scratch.rmdir()

    # a light frame (by its header) in a folder of darks
    darks = folder / "darks"
    darks.mkdir()
    light = darks / "dark_light.fits"
    light.write_bytes(good_fits_bytes(imagetyp="Light Frame", exptime=60.0))
    corpus["light-in-darks"] = BadFile("light-in-darks", str(light), True)

    loop = folder / "loop.fits"
    os.symlink(loop.name, loop)
    corpus["symlink-loop"] = BadFile("symlink-loop", str(loop))
    dangling = folder / "dangling.fits"
    os.symlink("no_such_target.fits", dangling)
    corpus["symlink-dangling"] = BadFile("symlink-dangling", str(dangling))
    directory = folder / "x.fits"
    directory.mkdir()
    corpus["directory-named-fits"] = BadFile("directory-named-fits", str(directory))

    undecodable = os.fsencode(str(folder)) + b"/bias_\xff\xfe.fits"
    with open(undecodable, "wb") as handle:
        handle.write(good_fits_bytes())
    corpus["name-not-utf8"] = BadFile("name-not-utf8", undecodable, True)

    if fifo:
        path = folder / "fifo" / "bias.fits"
        path.parent.mkdir()
        os.mkfifo(path)
        corpus["fifo"] = BadFile("fifo", str(path))
    return corpus


def _kinds() -> list[str]:
    return [*(kind for kind, *_ in _builders(Path("."))), "light-in-darks", "symlink-loop",
            "symlink-dangling", "directory-named-fits", "name-not-utf8"]


KINDS[:] = _kinds()


def small_night(path, *, n_light: int = 2):
    """A tiny synthetic night (biases, darks, flats, lights) of 24x32 frames."""
    from calframe.datasets import SyntheticCamera, make_night

    camera = SyntheticCamera(shape=_SHAPE, n_hot_pixels=3, n_dust=1)
    return make_night(path, camera=camera, n_bias=3, n_dark=3, n_flat=3, n_light=n_light,
                      dark_exptimes=(60.0,), light_exptime=60.0, seed=5)

