"""The calframe MEF writer: round trips, header safety, atomic writes, checksums."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty, VarianceUncertainty
from numpy.testing import assert_array_equal

from calframe import read_frame, write_frame
from calframe.errors import (
    ChecksumMismatchWarning,
    IncompatibleFramesError,
    InputOverwriteError,
    OutputExistsError,
    UncertaintyUnknownWarning,
)
from calframe.io import attach_extras
from calframe.provenance import InputRecord, Provenance, get_provenance, set_provenance


def make_frame(shape=(12, 17), dtype=np.float32, *, seed=0, unit="adu", mask="some",
               uncertainty=True, counts=False, meta=None) -> CCDData:
    """A synthetic frame with a known content and a small provenance."""
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 10.0, size=shape).astype(dtype)
    if mask == "some":
        mask_array = rng.random(shape) < 0.1
    elif mask == "none-true":
        mask_array = np.zeros(shape, bool)
    else:
        mask_array = None
    unc = StdDevUncertainty(rng.uniform(1, 3, size=shape).astype(dtype)) \
        if uncertainty else None
    ccd = CCDData(data, unit=unit, mask=mask_array, uncertainty=unc,
                  meta=fits.Header() if meta is None else meta)
    if counts:
        ccd.ncombine = rng.integers(5, 10, size=shape).astype(np.int16)
        ccd.rejected = (10 - ccd.ncombine).astype(np.int16)
        ccd.meta["NCOMBINE"] = 10
    prov = Provenance()
    prov.inputs.append(InputRecord(path="raw/b_001.fits", sha256="0" * 64, role="bias",
                                   frametype="bias", exptime=0.0,
                                   date_obs="2026-01-02T03:04:05", shape=shape))
    prov.add_step("combine", method="median", nframes=10, sigma=[3.0, 3.0])
    set_provenance(ccd, prov)
    return ccd


def read_back(path) -> CCDData:
    """CCDData.read plus attach_extras: what write_frame promises to restore."""
    with fits.open(path) as hdulist:
        return attach_extras(CCDData.read(path), hdulist)


def same_dtype(a, b) -> bool:
    """Same type and size (FITS arrays come back big-endian)."""
    return np.dtype(a).newbyteorder("=") == np.dtype(b).newbyteorder("=")


def assert_same_frame(back: CCDData, ccd: CCDData) -> None:
    assert_array_equal(back.data, ccd.data)
    assert same_dtype(back.data.dtype, ccd.data.dtype)
    assert back.unit == ccd.unit
    if ccd.uncertainty is None:
        assert back.uncertainty is None
    else:
        assert type(back.uncertainty) is type(ccd.uncertainty)
        assert_array_equal(back.uncertainty.array, ccd.uncertainty.array)
        assert same_dtype(back.uncertainty.array.dtype, ccd.uncertainty.array.dtype)
    if ccd.mask is None:
        assert back.mask is None
    else:
        assert back.mask.dtype == bool
        assert_array_equal(back.mask, ccd.mask)


CASES = {
    "mono-float32": {},
    "mono-float64": {"dtype": np.float64},
    "rgb-cube": {"shape": (3, 10, 13)},
    "mask-no-true": {"mask": "none-true"},
    "no-mask": {"mask": None},
    "no-uncertainty": {"uncertainty": False},
    "electron": {"unit": "electron"},
    "dimensionless": {"unit": ""},
    "counts": {"counts": True},
    "rgb-counts": {"shape": (3, 8, 9), "counts": True},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_ccddata_read(tmp_path, case):
    ccd = make_frame(**CASES[case])
    path = write_frame(ccd, tmp_path / "out.fits")
    assert_same_frame(CCDData.read(path), ccd)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_attach_extras(tmp_path, case):
    ccd = make_frame(**CASES[case])
    path = write_frame(ccd, tmp_path / "out.fits")
    back = read_back(path)
    assert_same_frame(back, ccd)
    for name in ("ncombine", "rejected"):
        if hasattr(ccd, name):
            assert getattr(back, name).dtype == np.int16
            assert_array_equal(getattr(back, name), getattr(ccd, name))
        else:
            assert not hasattr(back, name)
    prov, expected = get_provenance(back), get_provenance(ccd)
    assert len(prov.inputs) == 1 and len(prov.steps) == 1
    # Paths were relative to the current folder; read back relative to it again.
    got = prov.inputs[0]
    want = expected.inputs[0]
    assert (got.path, got.sha256, got.role, got.frametype, got.exptime, got.date_obs,
            got.shape) == (want.path, want.sha256, want.role, want.frametype,
                           want.exptime, want.date_obs, want.shape)
    step = prov.steps[0]
    assert (step.step, step.parameters, step.versions, step.time) == (
        "combine", {"method": "median", "nframes": 10, "sigma": [3.0, 3.0]},
        expected.steps[0].versions, expected.steps[0].time)


@pytest.mark.parametrize("case", ["mono-float32", "mono-float64", "rgb-cube", "counts",
                                  "mask-no-true", "dimensionless", "electron"])
def test_round_trip_read_frame(tmp_path, case):
    ccd = make_frame(**CASES[case])
    path = write_frame(ccd, tmp_path / "out.fits")
    back = read_frame(path, dtype=ccd.data.dtype)
    assert_same_frame(back, ccd)
    for name in ("ncombine", "rejected"):
        if hasattr(ccd, name):
            assert_array_equal(getattr(back, name), getattr(ccd, name))
    prov, expected = get_provenance(back), get_provenance(ccd)
    # The file's own record comes back whole (with the file as its origin),
    # then read_frame adds the file itself and its 'read' step.
    assert len(prov.inputs) == len(expected.inputs) + 1
    assert len(prov.steps) == len(expected.steps) + 1
    for got, want in zip(prov.inputs, expected.inputs, strict=False):
        assert dataclasses.replace(got, origin="") == want
        assert got.origin == os.fspath(path)
    for got, want in zip(prov.steps, expected.steps, strict=False):
        assert dataclasses.replace(got, origin="") == want
    assert prov.inputs[-1].path == os.fspath(path)
    assert prov.inputs[-1].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov.steps[-1].step == "read"


def test_round_trip_read_frame_without_uncertainty(tmp_path):
    ccd = make_frame(uncertainty=False)
    path = write_frame(ccd, tmp_path / "out.fits")
    with pytest.warns(UncertaintyUnknownWarning, match="out.fits"):
        back = read_frame(path)
    assert_array_equal(back.data, ccd.data)
    assert_array_equal(back.mask, ccd.mask)


def test_cfa_keywords_kept(tmp_path):
    meta = fits.Header()
    for key, value in (("BAYERPAT", "RGGB"), ("XBAYROFF", 1), ("YBAYROFF", 0),
                       ("ROWORDER", "TOP-DOWN"), ("FRAMETYP", "light"),
                       ("EXPTIME", 30.0), ("DATE-OBS", "2026-01-02T03:04:05")):
        meta[key] = value
    ccd = make_frame(shape=(8, 10), meta=meta)
    header = fits.getheader(write_frame(ccd, tmp_path / "cfa.fits"))
    assert (header["BAYERPAT"], header["XBAYROFF"], header["YBAYROFF"],
            header["ROWORDER"], header["EXPTIME"], header["DATE-OBS"]) == (
        "RGGB", 1, 0, "TOP-DOWN", 30.0, "2026-01-02T03:04:05")
    assert header["NAXIS"] == 2


def test_layout_and_summary_keywords(tmp_path):
    ccd = make_frame(counts=True)
    prov = get_provenance(ccd)
    prov.add_step("subtract_bias", master="master_bias.fits")
    prov.add_step("subtract_dark", scale=1.5)
    prov.add_step("flat_correct", master="master_flat.fits")
    path = write_frame(ccd, tmp_path / "m.fits")
    with fits.open(path) as hdulist:
        assert [h.name for h in hdulist] == ["PRIMARY", "MASK", "UNCERT", "NCOMBINE",
                                             "REJECTED", "PROVENANCE"]
        head = hdulist[0].header
        assert head["CALSTAT"] == "BDF"
        assert head["NCOMBINE"] == 10
        assert head["BUNIT"] == "adu"
        assert head["CREATOR"].startswith("calframe ")
        assert len(head["DATE"]) == 19
        history = [str(v) for v in head["HISTORY"]]
        steps = [line for line in history if "record:" not in line]
        assert len(steps) == 4  # one line per step
        assert "flat_correct: master=master_flat.fits" in steps[3]
        assert hdulist["UNCERT"].header["UTYPE"] == "StdDevUncertainty"
        assert hdulist["MASK"].data.dtype == np.uint8
        for hdu in hdulist:
            assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header
            assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1


def test_rewrite_does_not_duplicate_history(tmp_path):
    ccd = make_frame()
    first = write_frame(ccd, tmp_path / "a.fits")
    back = read_frame(first)
    second = write_frame(back, tmp_path / "b.fits")
    history = [str(v) for v in fits.getheader(second)["HISTORY"]]
    assert sum("combine" in line for line in history) == 1
    assert sum(" read" in line for line in history) == 1


def test_header_made_fits_legal(tmp_path):
    header = fits.Header()
    header["HIERARCH ESO DET CHIP NAME"] = "chip"
    header["LONGSTR"] = "x" * 150
    header["QUOTES"] = "it's " * 20
    header["BZERO"] = 32768
    header["COMMENT"] = "kept comment"
    ccd = make_frame(meta=header)
    ccd.meta["NOTFIN"] = 1.0
    ccd2 = make_frame(meta={"object": "Nébuleuse d'Orion", "lower": 3, "verylongkey": 1,
                            "NAN": float("nan"), "OBJ": object(), "EXPQ": 3 * u.s,
                            "LIST": [1, 2], "NPINT": np.int64(7), "NPBOOL": np.bool_(True),
                            "TUPLE": (2.5, "with comment é"),
                            "OBSERVER": ("Smith", "a comment " * 10)})
    for i, frame in enumerate((ccd, ccd2)):
        path = write_frame(frame, tmp_path / f"h{i}.fits")
        raw = path.read_bytes()
        assert b"CONTINUE" not in raw and b"HIERARCH" not in raw
        head = fits.getheader(path)
        for card in head.cards:
            assert len(card.image) == 80
    head = fits.getheader(tmp_path / "h0.fits")
    assert "BZERO" not in head
    assert head["LONGSTR"] == "x" * 68
    assert head["QUOTES"].startswith("it's it's")
    assert "kept comment" in [str(c) for c in head["COMMENT"]]
    head = fits.getheader(tmp_path / "h1.fits")
    assert head["OBJECT"] == "Nebuleuse d'Orion"
    assert head["LOWER"] == 3
    assert head["EXPQ"] == 3.0 and head.comments["EXPQ"] == "[s]"
    assert head["NPINT"] == 7 and head["NPBOOL"] is True
    assert head["TUPLE"] == 2.5 and head.comments["TUPLE"] == "with comment e"
    assert head["OBSERVER"] == "Smith"
    assert head.comments["OBSERVER"].startswith("a comment a comment")
    for gone in ("VERYLONGKEY", "NAN", "OBJ", "LIST"):
        assert gone not in head


def test_paths_relative_to_output_and_never_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "b1.fits").write_bytes(b"bias bytes")
    ccd = make_frame()
    prov = Provenance()
    prov.add_input(InputRecord.from_file("raw/b1.fits", role="bias"))
    prov.add_input(InputRecord.from_file(tmp_path / "raw" / "b1.fits", role="bias2"))
    set_provenance(ccd, prov)
    path = write_frame(ccd, "out/night/m.fits")
    table = fits.getdata(path, "PROVENANCE")
    assert list(table["PATH"]) == ["../../raw/b1.fits", "../../raw/b1.fits"]
    assert os.fsencode(str(tmp_path)) not in Path(path).read_bytes()
    # Read back: relative to the current folder again.
    assert [r.path for r in get_provenance(read_back(path)).inputs] == ["raw/b1.fits"] * 2
    path = write_frame(ccd, "out/abs.fits", absolute_paths=True)
    table = fits.getdata(path, "PROVENANCE")
    assert list(table["PATH"]) == [str(tmp_path / "raw" / "b1.fits")] * 2


def test_refuses_to_overwrite(tmp_path):
    ccd = make_frame()
    path = write_frame(ccd, tmp_path / "m.fits")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"m\.fits: file exists; pass overwrite"):
        write_frame(make_frame(seed=1), path)
    assert path.read_bytes() == before
    write_frame(make_frame(seed=1), path, overwrite=True)
    assert_array_equal(CCDData.read(path).data, make_frame(seed=1).data)
    with pytest.raises(OutputExistsError, match="is a folder"):
        write_frame(ccd, tmp_path)


def test_never_writes_over_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "light.fits"
    fits.writeto(raw, np.zeros((4, 4), np.float32))
    ccd = make_frame()
    get_provenance(ccd).add_input(InputRecord.from_file("light.fits", role="light"))
    for target in ("light.fits", str(raw), "./sub/../light.fits"):
        with pytest.raises(InputOverwriteError, match="is an input of this frame"):
            write_frame(ccd, target, overwrite=True)
    os.link(raw, tmp_path / "hardlink.fits")
    with pytest.raises(InputOverwriteError, match="role 'light'"):
        write_frame(ccd, "hardlink.fits", overwrite=True)
    assert fits.getdata(raw).shape == (4, 4)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_crash_before_rename_leaves_nothing(tmp_path, monkeypatch):
    def crash(src, dst):
        raise KeyboardInterrupt("simulated crash between write and rename")

    # A new file is linked into place (never over another), a replaced one renamed.
    monkeypatch.setattr(os, "link", crash)
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt, match="simulated crash"):
        write_frame(make_frame(), tmp_path / "m.fits")
    assert not (tmp_path / "m.fits").exists()
    assert _leftovers(tmp_path) == []


def test_file_appearing_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    target = tmp_path / "m.fits"
    real_fsync = os.fsync

    def someone_else_writes(fd):
        real_fsync(fd)
        if not target.exists():
            target.write_bytes(b"another writer's file")

    monkeypatch.setattr(os, "fsync", someone_else_writes)
    with pytest.raises(OutputExistsError, match="appeared while writing"):
        write_frame(make_frame(), target)
    assert target.read_bytes() == b"another writer's file"
    assert _leftovers(tmp_path) == []


def test_without_hard_links_a_new_file_is_renamed(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    path = write_frame(make_frame(), tmp_path / "m.fits")
    assert_same_frame(CCDData.read(path), make_frame())
    assert _leftovers(tmp_path) == []


def test_crash_keeps_previous_file(tmp_path, monkeypatch):
    path = write_frame(make_frame(), tmp_path / "m.fits")
    before = path.read_bytes()

    def crash(fd):
        raise OSError("simulated disk failure")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated disk failure"):
        write_frame(make_frame(seed=2), path, overwrite=True)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_killed_process_leaves_no_file(tmp_path):
    """A process killed between writing and renaming leaves no destination file."""
    script = textwrap.dedent("""
        import os, signal, sys
        import numpy as np
        from astropy.nddata import CCDData
        from calframe import write_frame

        def die(src, dst):
            assert os.path.getsize(src) > 0
            os.kill(os.getpid(), signal.SIGKILL)

        os.replace = os.link = die
        write_frame(CCDData(np.ones((64, 64), np.float32), unit="adu"), sys.argv[1])
    """)
    target = tmp_path / "killed.fits"
    result = subprocess.run([sys.executable, "-c", script, str(target)],
                            capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert not target.exists()
    # The temporary file of a killed writer stays hidden, beside the target, in
    # calframe's naming with the writer's process id (see calframe._atomic).
    left = _leftovers(tmp_path)
    assert len(left) == 1 and left[0].startswith(".calframe-")
    assert left[0].endswith("-killed.fits.tmp")


def test_checksum_mismatch_warns(tmp_path):
    path = write_frame(make_frame(), tmp_path / "m.fits")
    with fits.open(path) as hdulist:
        start = hdulist.fileinfo(0)["datLoc"]
    raw = bytearray(path.read_bytes())
    raw[start + 100] ^= 0xFF  # a byte of the primary data unit
    path.write_bytes(bytes(raw))
    with pytest.warns(ChecksumMismatchWarning, match=r"m\.fits: checksum mismatch in "
                                                     r"PRIMARY \(data\)"):
        read_back(path)
    with pytest.warns(ChecksumMismatchWarning, match="checksum mismatch"):
        read_frame(path)


def test_checksum_mismatch_in_a_header_warns(tmp_path):
    path = write_frame(make_frame(), tmp_path / "m.fits")
    raw = path.read_bytes()
    assert raw.count(b"NINPUTS =                    1") == 1
    path.write_bytes(raw.replace(b"NINPUTS =                    1",
                                 b"NINPUTS =                    2"))
    with pytest.warns(ChecksumMismatchWarning, match=r"PROVENANCE \(header\)"):
        read_back(path)


def test_checksum_can_be_left_out(tmp_path):
    path = write_frame(make_frame(), tmp_path / "m.fits", checksum=False)
    with fits.open(path) as hdulist:
        assert all("CHECKSUM" not in h.header for h in hdulist)
    read_back(path)  # no warning


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(TypeError, match="needs an astropy CCDData"):
        write_frame(np.zeros((2, 2)), tmp_path / "x.fits")
    ccd = make_frame(counts=True)
    ccd.ncombine = ccd.ncombine[:-1]
    with pytest.raises(IncompatibleFramesError, match="ncombine: per-pixel counts"):
        write_frame(ccd, tmp_path / "x.fits")
    ccd = make_frame(counts=True)
    ccd.rejected = ccd.rejected.astype(np.int32) + 40000
    with pytest.raises(IncompatibleFramesError, match=r"rejected: counts .* int16"):
        write_frame(ccd, tmp_path / "x.fits")
    assert not (tmp_path / "x.fits").exists()
    assert _leftovers(tmp_path) == []


def test_uncertainty_in_another_compatible_unit_is_converted(tmp_path):
    ccd = make_frame(uncertainty=False, unit="electron/s")
    ccd.uncertainty = StdDevUncertainty(np.full((12, 17), 120.0, np.float32),
                                        unit="electron/min")
    back = CCDData.read(write_frame(ccd, tmp_path / "x.fits"))
    np.testing.assert_allclose(back.uncertainty.array, 2.0, rtol=1e-6)
    assert back.unit == u.electron / u.s
    var = make_frame(uncertainty=False)
    var.uncertainty = VarianceUncertainty(np.full((12, 17), 4.0, np.float32))
    back = CCDData.read(write_frame(var, tmp_path / "v.fits"))
    assert isinstance(back.uncertainty, VarianceUncertainty)
    assert_array_equal(back.uncertainty.array, 4.0)


def test_reserved_keywords_get_their_standard_type(tmp_path):
    meta = {"EPOCH": 1950, "DATE-OBS": "2026-01-01 03:04:05", "DATE-END": "05/10/98",
            "DATE-BEG": "2026-01-01T03:04Z", "DATEBAD": "today", "DATE-AVG": 5,
            "OBJECT": 42, "MJD-OBS": "60000.5", "DATAMAX": "high", "TFORM1": "E",
            "PTYPE1": "U", "BLOCKED": True, "BLANK": -1}
    header = fits.getheader(write_frame(make_frame(meta=meta), tmp_path / "r.fits"))
    assert header["EQUINOX"] == 1950.0 and "EPOCH" not in header
    assert header["DATE-OBS"] == "2026-01-01T03:04:05"
    assert header["DATE-END"] == "1998-10-05"
    assert header["DATE-BEG"] == "2026-01-01T03:04:00"
    assert header["OBJECT"] == "42"
    assert header["MJD-OBS"] == 60000.5
    for gone in ("DATEBAD", "DATE-AVG", "DATAMAX", "TFORM1", "PTYPE1", "BLOCKED", "BLANK"):
        assert gone not in header
    meta = {"EPOCH": 1316695667.5, "EQUINOX": 2000.0}  # an EDF time stamp: dropped
    header = fits.getheader(write_frame(make_frame(meta=meta), tmp_path / "e.fits"))
    assert header["EQUINOX"] == 2000.0 and "EPOCH" not in header


def test_wcs_round_trip(tmp_path):
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [83.8, -5.4]
    wcs.wcs.crpix = [8.0, 6.0]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    ccd = make_frame()
    ccd.wcs = wcs
    back = CCDData.read(write_frame(ccd, tmp_path / "w.fits"))
    np.testing.assert_allclose(back.wcs.wcs.crval, [83.8, -5.4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.wcs.wcs.crpix, [8.0, 6.0], rtol=0, atol=1e-12)
    assert list(back.wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]


def test_a_dimensionless_frame_without_uncertainty_reads_back_dimensionless(tmp_path):
    """calframe leaves BUNIT out for dimensionless data (as astropy does): its own file
    without BUNIT reads back dimensionless, a camera's file without BUNIT in adu."""
    flat = CCDData(np.full((4, 5), 0.9, np.float32), unit="", meta={"FRAMETYP": "flat"})
    path = write_frame(flat, tmp_path / "flat.fits")
    with pytest.warns(UncertaintyUnknownWarning):
        assert read_frame(path).unit == u.dimensionless_unscaled
    with fits.open(path, mode="update") as hdul:     # as astropy writes it: no BUNIT
        del hdul[0].header["BUNIT"]
    assert read_frame(path).unit == u.dimensionless_unscaled   # (warned once, above)
    camera = tmp_path / "camera.fits"
    fits.PrimaryHDU(np.zeros((4, 5), np.uint16)).writeto(camera)
    assert read_frame(camera, gain=1.0, read_noise=1.0).unit == u.adu
