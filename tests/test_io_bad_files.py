"""Bad files: every reader either returns a correct frame or raises a calframe error.

Each test builds one kind of damaged or malformed file in ``tmp_path`` and
checks that :func:`calframe.read_frame` refuses it with a one-line message
that names the file, says what is wrong and how to fix it, or, for files that
are odd but whose pixels are intact, that it reads them correctly.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import os
import zlib

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_array_equal

from calframe import read_frame
from calframe.errors import CalframeError, FrameReadError, UnsupportedFormatError

NOISE = {"gain": 1.0, "read_noise": 1.0}
IMAGE = np.arange(20 * 30, dtype=np.int16).reshape(20, 30)


def _refused(path, error=FrameReadError, match=""):
    """Read ``path``, expecting ``error`` with a one-line message naming the file."""
    with pytest.raises(error, match=match) as info:
        read_frame(path, **NOISE)
    message = str(info.value)
    assert isinstance(info.value, CalframeError)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- FITS


def _fits_bytes(data=IMAGE, **cards) -> bytes:
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    out = io.BytesIO()
    hdu.writeto(out)
    return out.getvalue()


def _with_card(raw: bytes, key: str, value: str) -> bytes:
    """``raw`` with the value of header card ``key`` replaced by the text ``value``.

    Cards are written as text so that values astropy would refuse to write
    (``BITPIX = 17``, ``NAXIS1 = -10``) can be made.  A card that is not there
    is added before END.
    """
    image = f"{key:<8}= {value:>20}".encode("ascii").ljust(80)
    for start in range(0, 2880, 80):
        name = raw[start:start + 8].decode("ascii").strip()
        if name == key:
            return raw[:start] + image + raw[start + 80:]
        if name == "END":
            return raw[:start] + image + b"END".ljust(80) + raw[start + 160:]
    raise AssertionError(f"no END card in the first header block for {key}")


def test_corrupt_fits_gz_is_refused(tmp_path):
    """A valid gzip magic with a broken deflate stream: zlib.error escaped."""
    packed = gzip.compress(_fits_bytes())
    path = tmp_path / "flat.fits.gz"
    path.write_bytes(packed[:20] + bytes(b ^ 0x55 for b in packed[20:200]) + packed[200:])
    _refused(path, match=r"the gzip-compressed data are damaged or truncated \(.*\); "
             r"copy or download the file again")


def test_fits_gz_with_a_wrong_crc_is_refused(tmp_path):
    """A byte changed in the deflate stream decodes to other pixels; only the CRC tells."""
    rng = np.random.default_rng(5)
    packed = bytearray(gzip.compress(_fits_bytes(rng.integers(0, 30000, (100, 120),
                                                                 dtype=np.int16))))
    packed[len(packed) // 2] ^= 0x10
    path = tmp_path / "light.fits.gz"
    path.write_bytes(bytes(packed))
    _refused(path, match=r"the gzip-compressed data are damaged or truncated")


def test_truncated_fits_gz_is_refused(tmp_path):
    packed = gzip.compress(_fits_bytes())
    path = tmp_path / "cut.fits.gz"
    path.write_bytes(packed[:len(packed) // 2])
    _refused(path, match=r"gzip-compressed data are damaged or truncated \(Compressed file "
             r"ended before the end-of-stream marker")


def test_corrupt_fits_bz2_is_refused(tmp_path):
    packed = bz2.compress(_fits_bytes())
    path = tmp_path / "flat.fits.bz2"
    path.write_bytes(packed[:30] + bytes(b ^ 0x55 for b in packed[30:200]) + packed[200:])
    _refused(path, match=r"the bzip2-compressed data are damaged or truncated")


def test_good_compressed_fits_still_read(tmp_path):
    for name, pack in (("a.fits.gz", gzip.compress), ("a.fits.bz2", bz2.compress)):
        path = tmp_path / name
        path.write_bytes(pack(_fits_bytes()))
        assert_array_equal(read_frame(path, **NOISE).data, IMAGE)


def test_string_exposure_reads_as_unknown(tmp_path, caplog):
    """EXPTIME = 'sixty' crashed the provenance record (float('sixty'))."""
    path = tmp_path / "dark.fits"
    path.write_bytes(_fits_bytes(EXPTIME="sixty"))
    with caplog.at_level(logging.WARNING, logger="calframe.metadata"):
        ccd = read_frame(path, **NOISE)
    assert "EXPTIME" not in ccd.meta
    assert ccd.meta["EXPSRC"] == "none"
    assert_array_equal(ccd.data, IMAGE)
    assert "EXPTIME = 'sixty' is not an exposure in seconds" in caplog.text


def test_negative_exposure_reads_as_unknown(tmp_path):
    path = tmp_path / "dark.fits"
    path.write_bytes(_fits_bytes(EXPTIME=-5.0))
    ccd = read_frame(path, **NOISE)
    assert "EXPTIME" not in ccd.meta
    assert ccd.meta["EXPSRC"] == "none"


def test_invalid_bitpix_is_refused(tmp_path):
    """BITPIX = 17: astropy's KeyError(17) escaped."""
    path = tmp_path / "bitpix.fits"
    path.write_bytes(_with_card(_fits_bytes(), "BITPIX", "17"))
    _refused(path, match=r"BITPIX = 17, which is not a FITS data type \(8, 16, 32, 64, -32 "
             r"or -64\); the header is damaged")


def test_missing_bitpix_is_refused(tmp_path):
    path = tmp_path / "nobitpix.fits"
    path.write_bytes(_fits_bytes().replace(b"BITPIX  =", b"BITPIZ  =", 1))
    _refused(path, match=r"the primary header has no BITPIX keyword")


def test_negative_axis_is_refused(tmp_path):
    path = tmp_path / "negative.fits"
    path.write_bytes(_with_card(_fits_bytes(), "NAXIS1", "-10"))
    _refused(path, match=r"NAXIS1 = -10, which is not an axis length")


def test_negative_axes_whose_product_is_positive_are_refused(tmp_path):
    path = tmp_path / "negative2.fits"
    path.write_bytes(_with_card(_with_card(_fits_bytes(), "NAXIS1", "-30"), "NAXIS2", "-20"))
    _refused(path, match=r"NAXIS1 = -30, which is not an axis length")


def test_text_naxis_is_refused(tmp_path):
    path = tmp_path / "naxis.fits"
    path.write_bytes(_with_card(_fits_bytes(), "NAXIS", "'two'"))
    _refused(path, match=r"NAXIS = 'two', which is not a number of axes")


def test_non_standard_axis_card_is_refused(tmp_path):
    path = tmp_path / "naxis1.fits"
    path.write_bytes(_with_card(_fits_bytes(), "NAXIS1", "x0"))
    _refused(path, match=r"the primary header has NAXIS1 = \"'x0      '\", which is not an "
             r"axis length")


def test_zero_length_axis_with_data_is_refused(tmp_path):
    path = tmp_path / "empty_axis.fits"
    path.write_bytes(_with_card(_fits_bytes(), "NAXIS2", "0"))
    _refused(path, match=r"axes \[30, 0\] \(no pixels\), yet data follow the header")


def test_cube_with_a_zero_length_axis_is_refused(tmp_path):
    path = tmp_path / "empty_cube.fits"
    path.write_bytes(_fits_bytes(np.zeros((3, 0, 4), np.float32)))
    _refused(path, UnsupportedFormatError,
             match=r"HDU 0 is an image of shape \(3, 0, 4\), which holds no pixels")


def test_header_without_end_is_refused(tmp_path):
    raw = _fits_bytes()
    end = raw.index(b"END" + b" " * 77)
    path = tmp_path / "noend.fits"
    path.write_bytes(raw[:end] + b" " * 80 + raw[end + 80:])
    _refused(path, match=r"not a readable FITS file \(Header missing END card\.\)")


def test_text_bzero_is_refused(tmp_path):
    path = tmp_path / "bzero.fits"
    path.write_bytes(_with_card(_fits_bytes(), "BZERO", "'abc'"))
    _refused(path, match=r"BZERO = 'abc' is not a number, so the pixel values cannot be "
             r"computed; fix or remove BZERO")


def test_zero_bscale_is_refused(tmp_path):
    path = tmp_path / "bscale.fits"
    path.write_bytes(_with_card(_fits_bytes(), "BSCALE", "0"))
    _refused(path, match=r"BSCALE = 0 would make every pixel equal to BZERO")


def test_text_blank_is_ignored_and_logged(tmp_path, caplog):
    path = tmp_path / "blank.fits"
    path.write_bytes(_with_card(_fits_bytes(), "BLANK", "'x'"))
    with caplog.at_level(logging.WARNING, logger="calframe.io._fits"):
        ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, IMAGE)
    assert "BLANK = 'x' is not an integer" in caplog.text


def test_unknown_unit_is_refused(tmp_path):
    path = tmp_path / "unit.fits"
    path.write_bytes(_fits_bytes(BUNIT="furlongs"))
    _refused(path, match=r"unit 'furlongs' \(BUNIT\) is not understood")


@pytest.mark.parametrize(("kind", "hdus"), [
    ("no-data", lambda: [fits.PrimaryHDU()]),
    ("table-only", lambda: [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.arange(3.0))])]),
    ("one-axis", lambda: [fits.PrimaryHDU(np.arange(10, dtype=np.float32))]),
])
def test_fits_without_a_frame_is_refused(tmp_path, kind, hdus):
    path = tmp_path / f"{kind}.fits"
    fits.HDUList(hdus()).writeto(path)
    _refused(path, UnsupportedFormatError, match=r"no image HDU with two or more axes")


def test_four_axis_image_is_refused(tmp_path):
    path = tmp_path / "fourd.fits"
    path.write_bytes(_fits_bytes(np.zeros((2, 2, 3, 4), np.float32)))
    _refused(path, UnsupportedFormatError,
             match=r"HDU 0 is an image of 4 axes \(2, 2, 3, 4\); calframe reads 2-D frames")


def test_header_announcing_more_data_than_the_file_holds_is_refused(tmp_path):
    path = tmp_path / "huge.fits"
    path.write_bytes(_with_card(_with_card(_fits_bytes(), "NAXIS1", "100000"), "NAXIS2",
                                "100000"))
    _refused(path, match=r"the FITS file is truncated")


def test_truncated_tile_compressed_fits_is_refused(tmp_path):
    data = (np.arange(200 * 300, dtype=np.int32).reshape(200, 300) * 7)
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(out)
    path = tmp_path / "cut.fits.fz"
    path.write_bytes(out.getvalue()[:2880 * 3 + 100])
    _refused(path, match=r"the FITS file is truncated")


def test_bytes_after_the_last_hdu_are_logged(tmp_path, caplog):
    """The image is intact: it is read, and the extra bytes are logged as a warning."""
    path = tmp_path / "tail.fits"
    path.write_bytes(_fits_bytes() + np.random.default_rng(3).bytes(1000))
    with caplog.at_level(logging.WARNING, logger="calframe.io._fits"):
        ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, IMAGE)
    assert "only the first 1 HDU(s) are read" in caplog.text


def test_fits_cut_inside_an_extension_header_is_refused(tmp_path):
    """astropy stops at the cut header and the first HDUs were read as if complete."""
    hdus = fits.HDUList([fits.PrimaryHDU(IMAGE), fits.ImageHDU(IMAGE, name="UNCERT"),
                         fits.ImageHDU(IMAGE, name="MASK")])
    out = io.BytesIO()
    hdus.writeto(out)
    path = tmp_path / "master_bias.fits"
    path.write_bytes(out.getvalue()[:4 * 2880 + 500])    # 2 HDUs and part of a header
    _refused(path, match=r"truncated: the file ends inside the header of HDU 2 \(an "
             r"extension cut short\)")


def _with_provenance_table() -> bytes:
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.arange(3.0))], name="PROVENANCE")
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(IMAGE), table]).writeto(out)
    return out.getvalue()


def test_damaged_provenance_table_is_refused(tmp_path):
    """astropy's VerifyError escaped from the provenance of a calframe file."""
    raw = _with_provenance_table()
    at = raw.index(b"TFORM1  = ")
    path = tmp_path / "master_dark.fits"
    path.write_bytes(raw[:at] + b"TFORM1  = E         " + raw[at + 20:])
    _refused(path, match=r"the PROVENANCE, NCOMBINE or REJECTED extension cannot be read "
             r"\(Unparsable card \(TFORM1\)")


def test_unreadable_extension_name_is_refused(tmp_path):
    raw = _with_provenance_table()
    at = raw.index(b"EXTNAME = ")
    path = tmp_path / "master_flat.fits"
    path.write_bytes(raw[:at] + b"EXTNAME = PROV\x00NANCE" + raw[at + 20:])
    _refused(path, match=r"not a valid FITS file: the EXTNAME card of HDU 1 cannot be read")


def test_name_that_is_not_utf8_reads(tmp_path):
    name = os.fsdecode(b"flat_\xff\xfe.fits")
    path = tmp_path / name
    path.write_bytes(_fits_bytes())
    ccd = read_frame(path, **NOISE)
    assert_array_equal(ccd.data, IMAGE)
    assert ccd.meta["FRAMETYP"] == "flat"
    # The name as bytes: the frame type from the name failed (PurePath of bytes).
    ccd = read_frame(os.fsencode(path), **NOISE)
    assert_array_equal(ccd.data, IMAGE)
    assert ccd.meta["FRAMETYP"] == "flat"


# ---------------------------------------------------------------- EDF

EDF_HEADER = {"HeaderID": "EH:000001:000000:000000", "Image": 1,
              "ByteOrder": "LowByteFirst", "DataType": "UnsignedShort",
              "Dim_1": 30, "Dim_2": 20, "Size": IMAGE.nbytes}


def _edf_bytes(data: bytes | None = None, **changes) -> bytes:
    """One EDF frame: a 512-byte header block (entries changed or removed) and ``data``."""
    header = {**EDF_HEADER, **changes}
    text = "{\n" + "".join(f"{key} = {value} ;\n" for key, value in header.items()
                           if value is not None)
    text += " " * (510 - len(text)) + "}\n"
    return text.encode("ascii") + (IMAGE.astype("<u2").tobytes() if data is None else data)


def test_good_edf_reads(tmp_path):
    path = tmp_path / "good.edf"
    path.write_bytes(_edf_bytes())
    assert_array_equal(read_frame(path, **NOISE).data, IMAGE)


def test_edf_of_unknown_data_type_is_refused(tmp_path):
    """DataType = Banana: fabio's KeyError escaped."""
    path = tmp_path / "banana.edf"
    path.write_bytes(_edf_bytes(DataType="Banana"))
    _refused(path, match=r"not a valid EDF file: DataType = 'Banana' is not an EDF data type")


def test_truncated_edf_is_refused(tmp_path):
    """fabio pads the missing bytes with zeros and the frame was 'read'."""
    path = tmp_path / "cut.edf"
    path.write_bytes(_edf_bytes()[:512 + 500])
    _refused(path, match=r"truncated: the header announces 1200 bytes of data, the file "
             r"holds 500; copy or download the file again")


def test_edf_whose_size_promises_more_than_the_file_holds_is_refused(tmp_path):
    path = tmp_path / "size.edf"
    path.write_bytes(_edf_bytes(Size=2 * IMAGE.nbytes))
    _refused(path, match=r"truncated: the header announces 2400 bytes of data, the file "
             r"holds 1200")


def test_edf_whose_dimensions_promise_more_than_the_file_holds_is_refused(tmp_path):
    path = tmp_path / "dims.edf"
    path.write_bytes(_edf_bytes(Dim_2=40, Size=None))
    _refused(path, match=r"truncated: the header announces 2400 bytes of data, the file "
             r"holds 1200")


def test_edf_header_alone_is_refused(tmp_path):
    path = tmp_path / "header.edf"
    path.write_bytes(_edf_bytes(b""))
    _refused(path, match=r"truncated: the header announces 1200 bytes of data, the file "
             r"holds 0")


def test_edf_whose_size_is_smaller_than_its_pixels_is_refused(tmp_path):
    path = tmp_path / "small.edf"
    path.write_bytes(_edf_bytes(Size=100))
    _refused(path, match=r"its Size \(100 bytes\) is smaller than its 30x20 UnsignedShort "
             r"pixels need \(1200 bytes\)")


@pytest.mark.parametrize(("kind", "changes", "match"), [
    ("negative-dim", {"Dim_1": -30}, r"Dim_1 = '-30' is not an image size"),
    ("zero-dim", {"Dim_1": 0, "Size": 0}, r"Dim_1 = '0' is not an image size"),
    ("text-dim", {"Dim_1": "abc"}, r"Dim_1 = 'abc' is not an image size"),
    ("no-dim", {"Dim_1": None}, r"the header has no Dim_1"),
    ("byte-order", {"ByteOrder": "Sideways"},
     r"ByteOrder = 'Sideways', not LowByteFirst or HighByteFirst"),
    ("text-size", {"Size": "lots"}, r"Size = 'lots' is not a number of bytes"),
])
def test_edf_with_a_bad_header_value_is_refused(tmp_path, kind, changes, match):
    path = tmp_path / f"{kind}.edf"
    path.write_bytes(_edf_bytes(**changes))
    _refused(path, match=match)


def test_edf_header_not_closed_is_refused(tmp_path):
    path = tmp_path / "open.edf"
    path.write_bytes(_edf_bytes(b"")[:-2].replace(b"}", b" "))
    _refused(path, match=r"the first header is not closed by '}'")


def test_edf_of_damaged_compressed_data_is_refused(tmp_path):
    path = tmp_path / "packed.edf"
    data = np.random.default_rng(2).bytes(100)
    path.write_bytes(_edf_bytes(data, Compression="gzip", Size=100))
    _refused(path, match=r"truncated: frame 0's data are incomplete")


def test_other_image_named_edf_is_refused(tmp_path):
    """fabio opened a TIFF named .edf as a TIFF, which had no EDF frames to check."""
    path = tmp_path / "frame.edf"
    path.write_bytes(_tiff_bytes())
    _refused(path, UnsupportedFormatError, match=r"named as EDF but holds a Tif image")


def test_truncated_second_edf_frame_is_refused_when_read(tmp_path):
    path = tmp_path / "two.edf"
    path.write_bytes(_edf_bytes() + _edf_bytes()[:600])
    assert_array_equal(read_frame(path, **NOISE).data, IMAGE)
    with pytest.raises(FrameReadError, match=r"two\.edf: truncated: the header announces "
                       r"1200 bytes of data for frame 1, the file holds 88"):
        read_frame(path, frame=1, **NOISE)


# ---------------------------------------------------------------- TIFF


def _tiff_bytes(data=IMAGE, **options) -> bytes:
    import tifffile

    out = io.BytesIO()
    tifffile.imwrite(out, data, **options)
    return out.getvalue()


def _with_tiff_tag(raw: bytes, code: int, value: int) -> bytes:
    """``raw`` (a little-endian classic TIFF) with tag ``code`` of its first IFD set."""
    import struct

    ifd = struct.unpack("<I", raw[4:8])[0]
    out = bytearray(raw)
    for entry in range(struct.unpack("<H", raw[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * entry
        tag, kind = struct.unpack("<HH", raw[at:at + 4])
        if tag == code:
            out[at + 8:at + 12] = struct.pack("<HH", value, 0) if kind == 3 else \
                struct.pack("<I", value)
            return bytes(out)
    raise AssertionError(f"no tag {code}")


def test_good_tiff_stack_reads(tmp_path):
    path = tmp_path / "stack.tif"
    path.write_bytes(_tiff_bytes(np.stack([IMAGE, IMAGE + 1]), photometric="minisblack"))
    assert_array_equal(read_frame(path, frame=1, **NOISE).data, IMAGE + 1)


@pytest.mark.parametrize(("kind", "options", "keep", "match"), [
    ("one-strip", {}, 700, r"truncated: strip 0 of the image ends at byte 1472, the file "
     r"holds 700 bytes"),
    ("strips", {"rowsperstrip": 2}, 1000, r"truncated: strip \d+ of the image ends at byte "
     r"\d+, the file holds 1000 bytes"),
    ("tiles", {"tile": (16, 16)}, 2000, r"truncated: tile \d+ of the image ends at byte \d+, "
     r"the file holds 2000 bytes"),
    ("zlib", {"compression": "zlib", "rowsperstrip": 4}, 400, r"truncated: strip \d+ of the "
     r"image ends at byte \d+, the file holds 400 bytes"),
])
def test_truncated_tiff_is_refused(tmp_path, kind, options, keep, match):
    path = tmp_path / f"{kind}.tif"
    path.write_bytes(_tiff_bytes(**options)[:keep])
    _refused(path, match=match + r"; copy or download the file again")


def test_truncated_tiff_stack_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    stack = np.stack([IMAGE] * 3)
    path.write_bytes(_tiff_bytes(stack, photometric="minisblack")[:2000])
    _refused(path, match=r"truncated: the TIFF describes 3 pages of 30x20, the file holds 1")


@pytest.mark.parametrize(("kind", "tag", "value", "error", "match"), [
    ("offset-past-end", 273, 10 ** 7, FrameReadError,
     r"truncated: strip 0 of the image ends at byte 10001200, the file holds \d+ bytes"),
    ("count-past-end", 279, 10 ** 7, FrameReadError,
     r"truncated: strip 0 of the image ends at byte 10000\d+, the file holds"),
    ("offset-zero", 273, 0, FrameReadError,
     r"strip 0 of the image has no data \(offset 0, 1200 bytes\)"),
    ("count-zero", 279, 0, FrameReadError, r"strip 0 of the image has no data"),
    ("width-zero", 256, 0, FrameReadError,
     r"page 0 is an image of 0x20 pixels \(shape \(20, 0\)\), so it holds no pixels"),
    ("wider-than-stored", 256, 100000, FrameReadError,
     r"the TIFF's strips hold 1200 bytes, its uncompressed uint16 image needs 4000000"),
    ("lzw", 259, 5, UnsupportedFormatError,
     r"compressed with LZW, which tifffile decodes only with the imagecodecs package"),
    ("12-bit", 258, 12, UnsupportedFormatError,
     r"a TIFF that tifffile cannot decode \(packints_decode of 12-bit integers"),
])
def test_tiff_with_a_bad_tag_is_refused(tmp_path, kind, tag, value, error, match):
    path = tmp_path / f"{kind}.tif"
    path.write_bytes(_with_tiff_tag(_tiff_bytes(IMAGE.astype(np.uint16)), tag, value))
    _refused(path, error, match=match)


def test_tiff_without_pages_is_refused(tmp_path):
    path = tmp_path / "nopage.tif"
    path.write_bytes(b"II*\x00" + bytes(4))
    _refused(path, match=r"the TIFF file holds no image \(no page\)")


def test_tiff_with_an_empty_ifd_is_refused(tmp_path):
    path = tmp_path / "empty_ifd.tif"
    path.write_bytes(b"II*\x00\x08\x00\x00\x00" + bytes(6))
    _refused(path, match=r"the TIFF lists no image data")


def test_complex_tiff_is_refused(tmp_path):
    """astype(float) warned (ComplexWarning) and dropped the imaginary part."""
    path = tmp_path / "complex.tif"
    path.write_bytes(_tiff_bytes(np.zeros((20, 30), np.complex64)))
    _refused(path, UnsupportedFormatError,
             match=r"TIFF samples of format COMPLEXIEEEFP with 64 bits \(type complex64\)")


def test_palette_tiff_is_refused(tmp_path):
    path = tmp_path / "palette.tif"
    path.write_bytes(_tiff_bytes(np.zeros((20, 30), np.uint8), photometric="palette",
                                 colormap=np.zeros((3, 256), np.uint16)))
    _refused(path, UnsupportedFormatError, match=r"a palette \(indexed colour\) TIFF")


def test_damaged_zlib_tiff_is_refused(tmp_path):
    """zlib.error from a damaged compressed strip escaped."""
    import tifffile

    raw = bytearray(_tiff_bytes(compression="zlib"))
    with tifffile.TiffFile(io.BytesIO(bytes(raw))) as tif:
        start = tif.pages.first.dataoffsets[0]
    raw[start + 10] ^= 0xFF
    path = tmp_path / "zlib.tif"
    path.write_bytes(bytes(raw))
    _refused(path, match=r"not a readable TIFF file \(Error -\d while decompressing data")


def test_rgb_and_8_bit_tiff_still_read(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 255, (20, 30, 3)).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    path.write_bytes(_tiff_bytes(rgb, photometric="rgb"))
    assert_array_equal(read_frame(path, **NOISE).data, np.moveaxis(rgb, -1, 0))
    path = tmp_path / "grey8.tif"
    path.write_bytes(_tiff_bytes(rgb[..., 0]))
    assert_array_equal(read_frame(path, **NOISE).data, rgb[..., 0])


# ---------------------------------------------------------------- PNG and JPEG

GREY8 = (np.arange(40 * 60) % 251).astype(np.uint8).reshape(40, 60)


def _pillow_bytes(data, kind, **options) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(data).save(out, kind, **options)
    return out.getvalue()


def _png_chunks(raw: bytes) -> dict[bytes, int]:
    """Where each PNG chunk (first of its type) starts."""
    import struct

    where, pos = {}, 8
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        where.setdefault(kind, pos)
        pos += 12 + length
    return where


def test_png_and_jpeg_still_read(tmp_path):
    path = tmp_path / "grey.png"
    path.write_bytes(_pillow_bytes(GREY8, "PNG"))
    assert_array_equal(read_frame(path, **NOISE).data, GREY8)
    path = tmp_path / "colour.jpg"
    path.write_bytes(_pillow_bytes(np.stack([GREY8] * 3, -1), "JPEG"))
    assert read_frame(path, **NOISE).shape == (3, 40, 60)


def test_truncated_png_is_refused(tmp_path):
    raw = _pillow_bytes(GREY8, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(raw[:_png_chunks(raw)[b"IDAT"] + 100])
    _refused(path, match=r"truncated: the PNG chunk 'IDAT' at byte \d+ announces \d+ bytes, "
             r"the file ends at byte \d+; copy or download the file again")


def test_png_without_iend_is_refused(tmp_path):
    """The image data are complete but the file is cut: it was read."""
    raw = _pillow_bytes(GREY8, "PNG")
    path = tmp_path / "noend.png"
    path.write_bytes(raw[:_png_chunks(raw)[b"IEND"]])
    _refused(path, match=r"truncated: the PNG ends at byte \d+ before its IEND chunk")


def test_png_with_a_bad_crc_is_refused(tmp_path):
    """Pillow does not check the CRC of the image data: the damaged image was read."""
    raw = bytearray(_pillow_bytes(GREY8, "PNG"))
    raw[_png_chunks(bytes(raw))[b"IDAT"] + 8 + 30] ^= 0x01
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(raw))
    _refused(path, match=r"the PNG chunk 'IDAT' at byte \d+ fails its CRC check")


def test_png_larger_than_pillow_allows_is_refused(tmp_path):
    import struct

    raw = bytearray(_pillow_bytes(GREY8, "PNG"))
    raw[16:24] = struct.pack(">II", 100000, 100000)      # IHDR width, height
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(raw))
    _refused(path, UnsupportedFormatError, match=r"the image is too large for Pillow")


@pytest.mark.parametrize(("kind", "content", "match"), [
    ("soi-only.jpg", b"\xff\xd8\xff", r"not an image Pillow recognises \(first bytes "),
    ("magic-only.png", b"\x89PNG\r\n\x1a\n", r"truncated: the PNG ends at byte 8 before its "
     r"IEND chunk"),
])
def test_image_of_a_few_bytes_is_refused(tmp_path, kind, content, match):
    path = tmp_path / kind
    path.write_bytes(content)
    _refused(path, match=match)


def test_truncated_jpeg_is_refused(tmp_path):
    raw = _pillow_bytes(np.stack([GREY8] * 3, -1), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(raw[:len(raw) // 2])
    _refused(path, match=r"not a readable image file \(image file is truncated")


@pytest.mark.parametrize("kind", ["GIF", "TIFF", "BMP"])
def test_other_image_named_png_is_refused(tmp_path, kind):
    path = tmp_path / "grid.png"
    path.write_bytes(_pillow_bytes(GREY8, kind))
    _refused(path, UnsupportedFormatError,
             match=rf"named as PNG or JPEG but holds a {kind} image")


# ---------------------------------------------------------------- camera RAW


def test_text_named_as_raw_is_refused(tmp_path):
    path = tmp_path / "IMG_0001.cr2"
    path.write_text("hello, this is not a raw file\n" * 10)
    _refused(path, UnsupportedFormatError, match=r"LibRaw does not read this file")


@pytest.mark.realdata
@pytest.mark.parametrize("keep", [100_000, 2000])
def test_truncated_dng_is_refused(tmp_path, real_data, keep):
    """Cut before its image data, a DNG was 'read' with whatever LibRaw's buffer held."""
    dng = (real_data / "camera-raw" / "Blackmagic.dng").read_bytes()
    path = tmp_path / "cut.dng"
    path.write_bytes(dng[:keep])
    _refused(path, match=rf"truncated: the RAW's image data end at byte {len(dng) - 58}, "
             rf"the file holds {keep} bytes; copy or download the file again")


# ---------------------------------------------------------------- any format


@pytest.mark.parametrize(("suffix", "match"), [
    (".fits", r"named as FITS but does not start with 'SIMPLE  ='"),
    (".fz", r"named as FITS but does not start with 'SIMPLE  ='"),
    (".fits.gz", r"named as FITS but does not start with 'SIMPLE  ='"),
    (".edf", r"not a valid EDF file: the file does not start with an EDF header"),
    (".tif", r"not a readable TIFF file \(not a TIFF file"),
    (".png", r"not an image Pillow recognises \(first bytes"),
    (".jpg", r"not an image Pillow recognises \(first bytes"),
    (".cr2", r"LibRaw does not read this file"),
    (".nef", r"LibRaw does not read this file"),
    (".dng", r"LibRaw does not read this file"),
])
def test_random_bytes_with_each_name_are_refused(tmp_path, suffix, match):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(len(suffix)).bytes(5000))
    _refused(path, match=match)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files without read permission")
def test_file_without_read_permission_is_refused(tmp_path):
    path = tmp_path / "locked.fits"
    path.write_bytes(_fits_bytes())
    path.chmod(0)
    try:
        _refused(path, match=r"Permission denied")
    finally:
        path.chmod(0o644)


def test_symlink_loop_is_refused(tmp_path):
    path = tmp_path / "loop.fits"
    path.symlink_to(path)
    _refused(path, match=r"symbolic links")
