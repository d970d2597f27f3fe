"""``calframe provenance --verify`` and :func:`calframe.provenance.verify_output`.

Exit 0 only when the file is what calframe wrote (its digest and checksums),
its provenance lists its inputs, and every input is there with its recorded
SHA-256; every way of fooling it is a problem line of its own kind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from calframe import write_frame
from calframe.cli import main
from calframe.datasets import SyntheticCamera, make_night
from calframe.errors import CalframeWarning, FrameReadError
from calframe.io import _mef
from calframe.provenance import (
    PROBLEM_KINDS,
    InputRecord,
    get_provenance,
    verify_output,
)
from calframe.provenance._tree import _locate

CAMERA = SyntheticCamera(shape=(32, 48), n_hot_pixels=4, n_dust=1)
LIGHT = "out/lights/light_0001.fits"
RAW_LIGHT = "night/lights/light_0001.fits"
MASTER_BIAS = "out/masters/bias_-10C_g0.fits"
RAW_BIAS = "night/bias/bias_0002.fits"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small night and its run (masters and calibrated lights), made once."""
    root = tmp_path_factory.mktemp("verify")
    with contextlib.chdir(root):
        make_night("night", camera=CAMERA, n_bias=3, n_dark=3, n_flat=3, n_light=2,
                   dark_exptimes=(60.0,), light_exptime=60.0, seed=11)
        assert main(["-q", "run", "night", "-o", "out", "--no-report"]) == 0
    assert (root / LIGHT).is_file() and (root / MASTER_BIAS).is_file()
    return root


@pytest.fixture
def night(built, tmp_path, monkeypatch):
    """A private copy of the night and its outputs; the current folder is its root."""
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def verify(capsys, *args, path=LIGHT) -> tuple[int, list[str], list[str]]:
    """(exit code, problem lines, all lines after the tree) of ``provenance --verify``."""
    code = main(["provenance", str(path), "--verify", *args])
    out = capsys.readouterr().out.splitlines()
    tail = [line for line in out if not line.startswith((" ", "│", "├", "└", str(path)))]
    problems = [line for line in tail if line.startswith(PROBLEM_KINDS)]
    return code, problems, tail


def kinds(lines: list[str]) -> list[str]:
    return [next(k for k in PROBLEM_KINDS if line.startswith(k)) for line in lines]


def rewrite(path, edit, *, checksum=True) -> None:
    """Open with astropy, edit, write the whole file again (re-checksummed)."""
    with fits.open(path) as hdulist:
        edit(hdulist)
        hdulist.writeto(f"{path}.new", checksum=checksum)
    os.replace(f"{path}.new", path)


# --- a clean run --------------------------------------------------------------------

def test_clean_run_verifies(night, capsys):
    code, problems, tail = verify(capsys)
    assert (code, problems) == (0, [])
    # 3 biases, darks and flats, the raw light and the 3 masters: each file once
    assert tail == [f"verified {LIGHT}: calframe's digest and the checksums match; "
                    "13 input files present and unchanged"]
    report = verify_output(LIGHT)
    assert report.ok and report.digest == "ok" and report.ninputs == 13
    assert str(report) == tail[0]
    for output in (LIGHT, MASTER_BIAS):
        with fits.open(output) as hdulist:
            assert all(hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1
                       for hdu in hdulist)
            header = hdulist[0].header
            assert len(header["CFDIGEST"]) == 64 and header["CFDIGVER"] == 1
            assert header["CFDNHDU"] == len(hdulist)


@pytest.mark.skipif(shutil.which("fitsverify") is None, reason="fitsverify not installed")
def test_run_outputs_pass_fitsverify(night):
    for output in sorted(Path("out").rglob("*.fits")):
        result = subprocess.run(["fitsverify", "-q", str(output)], capture_output=True,
                                text=True, check=False)
        assert result.stdout.startswith("verification OK"), result.stdout


def test_verified_after_a_resave_that_changes_nothing(night, capsys):
    # astropy reads and writes every card and byte back unchanged: still what calframe wrote
    rewrite(LIGHT, lambda hdulist: None)
    assert verify(capsys)[0] == 0


# --- the output itself changed ---------------------------------------------------------

def test_data_bytes_edited_in_place(night, capsys):
    with fits.open(LIGHT) as hdulist:
        start = hdulist.fileinfo(0)["datLoc"]
    raw = bytearray(Path(LIGHT).read_bytes())
    raw[start + 100] ^= 0x01
    Path(LIGHT).write_bytes(bytes(raw))
    code, problems, tail = verify(capsys)
    assert code == 1
    assert problems == [
        f"TAMPERED  {LIGHT}: HDU 0 PRIMARY: data changed since calframe wrote them",
        f"TAMPERED  {LIGHT}: HDU 0 PRIMARY: DATASUM does not match the data",
        f"TAMPERED  {LIGHT}: HDU 0 PRIMARY: CHECKSUM does not match the bytes"]
    assert tail[-1] == f"NOT verified {LIGHT}: 3 problems (3 TAMPERED)"


def _set_exptime(header):
    header["EXPTIME"] = 61.0


def _set_calstat(header):
    header["CALSTAT"] = "BDFC"


def _add_history(header):
    header.add_history("calframe 2026-01-01T00:00:00 cosmetic: all fixed")


@pytest.mark.parametrize("edit", [_set_exptime, _set_calstat, _add_history])
@pytest.mark.parametrize("how", ["update", "update-add_checksum", "writeto-checksum"])
def test_header_cards_edited(night, capsys, edit, how):
    if how == "writeto-checksum":
        rewrite(LIGHT, lambda hdulist: edit(hdulist[0].header))
    else:
        with fits.open(LIGHT, mode="update") as hdulist:
            edit(hdulist[0].header)
            if how == "update-add_checksum":
                hdulist[0].add_checksum()
    with fits.open(LIGHT, checksum=True) as hdulist:  # the checksums say all is well
        assert all(hdu.verify_checksum() == 1 for hdu in hdulist)
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert problems == [f"TAMPERED  {LIGHT}: HDU 0 PRIMARY: header cards changed since "
                        "calframe wrote them (its CHECKSUM and DATASUM were made again to "
                        "match)"]


def test_header_card_edited_without_checksums(night, capsys):
    # an edit of the bytes (a text editor, a hex editor): no checksum made again
    raw = bytearray(Path(LIGHT).read_bytes())
    card = fits.Card("EXPTIME", 61.0).image.encode("ascii")
    start = raw.index(b"EXPTIME =")
    raw[start:start + 80] = card
    Path(LIGHT).write_bytes(bytes(raw))
    assert fits.getheader(LIGHT)["EXPTIME"] == 61.0
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert problems == [
        f"TAMPERED  {LIGHT}: HDU 0 PRIMARY: header cards changed since calframe wrote them",
        f"TAMPERED  {LIGHT}: HDU 0 PRIMARY: CHECKSUM does not match the bytes"]


def test_data_edited_and_checksummed_again(night, capsys):
    with fits.open(LIGHT, mode="update") as hdulist:
        hdulist["UNCERT"].data[0, 0] *= 2
        for hdu in hdulist:
            hdu.add_checksum()
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert problems == [f"TAMPERED  {LIGHT}: HDU 2 UNCERT: data changed since calframe "
                        "wrote them (its CHECKSUM and DATASUM were made again to match)"]


def test_checksums_removed(night, capsys):
    def strip(hdulist):
        for hdu in hdulist:
            del hdu.header["CHECKSUM"]
            del hdu.header["DATASUM"]

    rewrite(LIGHT, strip, checksum=False)
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert problems == [f"TAMPERED  {LIGHT}: HDU {i} {name}: CHECKSUM and DATASUM removed"
                        for i, name in enumerate(["PRIMARY", "MASK", "UNCERT", "PROVENANCE"])]


def test_provenance_extension_removed(night, capsys):
    def drop(hdulist):
        del hdulist["PROVENANCE"]

    rewrite(LIGHT, drop)
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert kinds(problems) == ["TAMPERED", "NO PROVENANCE"]
    assert problems[0] == f"TAMPERED  {LIGHT}: HDU PROVENANCE was removed after writing"


def test_digest_card_removed_or_hdu_added(night, capsys):
    shutil.copy(LIGHT, "copy.fits")
    with fits.open(LIGHT, mode="update") as hdulist:
        del hdulist[0].header["CFDIGEST"]
    code, problems, _tail = verify(capsys)
    assert code == 1 and kinds(problems) == ["TAMPERED"]
    assert problems[0].endswith("the CFDIGEST card was removed")
    shutil.copy("copy.fits", LIGHT)
    rewrite(LIGHT, lambda hdulist: hdulist.append(fits.ImageHDU(np.zeros(3), name="EXTRA")))
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert problems == [f"TAMPERED  {LIGHT}: HDU EXTRA was added after writing"]


def test_truncated_output(night, capsys):
    data = Path(LIGHT).read_bytes()
    Path(LIGHT).write_bytes(data[:len(data) // 2])
    with pytest.raises(FrameReadError, match="is truncated or damaged"):
        verify_output(LIGHT)
    assert main(["provenance", LIGHT, "--verify"]) == 1
    assert f"error: {LIGHT}: is truncated or damaged" in capsys.readouterr().err


# --- no digest, no provenance ----------------------------------------------------------

def test_file_without_provenance(tmp_path, capsys):
    path = tmp_path / "plain.fits"
    fits.writeto(path, np.zeros((3, 3), np.float32))
    code, problems, _tail = verify(capsys, path=path)
    assert code == 1
    assert kinds(problems) == ["UNVERIFIABLE", "NO PROVENANCE"]
    assert "no digest of calframe in its header (not written by calframe?)" in problems[0]


def test_output_whose_provenance_lists_no_input(tmp_path, capsys):
    ccd = CCDData(np.ones((3, 4), np.float32), unit="adu")
    get_provenance(ccd).add_step("combine", method="median")
    path = write_frame(ccd, tmp_path / "made.fits")
    code, problems, _tail = verify(capsys, path=path)
    assert code == 1
    assert problems == [f"NO PROVENANCE  {path}: its PROVENANCE table lists no input files: "
                        "what the file was made from cannot be checked"]


def test_output_written_before_the_digest(tmp_path, capsys, monkeypatch):
    raw = tmp_path / "bias_1.fits"
    fits.writeto(raw, np.zeros((3, 4), np.float32))
    ccd = CCDData(np.ones((3, 4), np.float32), unit="adu")
    get_provenance(ccd).add_input(InputRecord.from_file(raw, role="bias"))
    # calframe before the digest: the same file without the digest cards
    monkeypatch.setattr(_mef, "_digest_placeholders", lambda hdulist: None)
    monkeypatch.setattr(_mef, "_seal", lambda tmp, handle, known=None: None)
    path = write_frame(ccd, tmp_path / "old.fits")
    assert "CFDIGEST" not in fits.getheader(path)
    code, problems, tail = verify(capsys, path=path)
    assert code == 1
    assert problems == [f"UNVERIFIABLE  {path}: written before calframe stored a digest of "
                        "its output: whether its data and header are what calframe wrote "
                        "cannot be checked"]
    assert tail[-1] == f"NOT verified {path}: 1 problem (1 UNVERIFIABLE)"
    assert verify_output(path).digest == "absent"


# --- the inputs -----------------------------------------------------------------------

def test_deleted_raw_light_is_missing_not_changed(night, capsys):
    # the calibrated light has the raw light's name: it must not be taken for it
    assert Path(RAW_LIGHT).name == Path(LIGHT).name
    os.remove(RAW_LIGHT)
    code, problems, _tail = verify(capsys)
    assert code == 1
    assert problems == [f"MISSING  {RAW_LIGHT}: not found, at its recorded place or beside "
                        f"that file (input of {LIGHT})"]
    code, problems, tail = verify(capsys, "--allow-missing")
    assert (code, problems) == (0, [])
    assert tail == [
        f"missing (allowed)  {RAW_LIGHT}: raw input not found, at its recorded place or "
        f"beside that file (input of {LIGHT}); accepted, as raw inputs may be missing",
        f"verified {LIGHT}: calframe's digest and the checksums match; 12 input files "
        "present and unchanged, 1 raw input files not found (allowed)"]


def test_deleted_master_is_missing_even_when_missing_inputs_are_allowed(night, capsys):
    os.remove(MASTER_BIAS)
    for args in ((), ("--allow-missing",)):
        code, problems, _tail = verify(capsys, *args)
        assert code == 1
        assert kinds(problems) == ["MISSING"]
        assert problems[0].startswith(f"MISSING  {MASTER_BIAS}: not found")
    assert problems[0].endswith("made by calframe, so allowing missing raw inputs does not "
                                "cover it")


def test_modified_input(night, capsys):
    with fits.open(RAW_BIAS, mode="update") as hdulist:
        hdulist[0].header["OBSERVER"] = "someone"
    code, problems, _tail = verify(capsys, "--allow-missing")
    assert code == 1
    assert kinds(problems) == ["CHANGED"]
    assert problems[0].startswith(f"CHANGED  {RAW_BIAS}: sha256 now ")
    assert problems[0].endswith(f"(input of {MASTER_BIAS})")


def test_a_file_of_the_input_s_name_with_other_bytes_is_not_the_input(night, capsys):
    # a master moved away, another file of its name left beside the light
    os.replace(MASTER_BIAS, "elsewhere.fits")
    shutil.copy("out/masters/flat_-10C_g2.fits", "out/lights/bias_-10C_g0.fits")
    report = verify_output(LIGHT)
    assert [kind for kind, _p, _d in report.problems] == ["MISSING"]
    assert "out/lights/bias_-10C_g0.fits has its name but other bytes" in \
        report.problems[0][2]


def test_locate_never_gives_the_file_being_verified(tmp_path):
    owner = tmp_path / "out" / "light_0001.fits"
    owner.parent.mkdir()
    owner.write_bytes(b"output")
    record = InputRecord(str(tmp_path / "raw" / "light_0001.fits"), "0" * 64)
    assert _locate(record, str(owner)) == ""
    (tmp_path / "raw").mkdir()
    Path(record.path).write_bytes(b"raw")
    assert _locate(record, str(owner)) == record.path


def test_allow_missing_needs_verify(night, capsys):
    assert main(["provenance", LIGHT, "--allow-missing"]) == 2
    assert "--allow-missing is an option of --verify" in capsys.readouterr().err


# --- distortion models ------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    from calframe.datasets._grid import GridDistortion, make_grid_image
    from calframe.distortion import DistortionModel

    shape = (192, 224)
    field = GridDistortion(shape, radial=2.0, smooth=2.0, seed=3)
    image, _truth = make_grid_image(shape, pitch=24, distortion=field, seed=2)
    return DistortionModel.fit(image)


def test_distortion_model_is_one_verified_write(tmp_path, model):
    path = tmp_path / "model.fits"
    model.to_fits(path)
    assert _mef.check_digest(path) == ("ok", [])
    with fits.open(path) as hdulist:
        names = [hdu.name for hdu in hdulist]
        assert all(hdu.verify_checksum() == 1 for hdu in hdulist)
    assert names[-1] == "PROVENANCE" and "DISTPAR" in names
    assert [p.name for p in tmp_path.iterdir()] == ["model.fits"]  # no temporary left
    if shutil.which("fitsverify"):
        result = subprocess.run(["fitsverify", "-q", str(path)], capture_output=True,
                                text=True, check=False)
        assert result.stdout.startswith("verification OK"), result.stdout


def test_distortion_model_with_unreadable_provenance_says_so(tmp_path, model):
    from calframe.distortion import DistortionModel

    path = tmp_path / "model.fits"
    model.to_fits(path)

    def damage(hdulist):
        hdulist["PROVENANCE"].data["VERSIONS"][:] = "{broken"

    rewrite(path, damage)
    with pytest.warns(CalframeWarning, match=r"model\.fits: its PROVENANCE table cannot be "
                                             r"read \(JSONDecodeError: .*fit it again"):
        back = DistortionModel.from_fits(path)
    assert back.meta["provenance"].steps == []
    assert back.rms == pytest.approx(model.rms)


def test_compressed_output_verifies(night, capsys):
    import gzip

    Path(f"{LIGHT}.gz").write_bytes(gzip.compress(Path(LIGHT).read_bytes()))
    assert _mef.check_digest(f"{LIGHT}.gz") == ("ok", [])
    os.remove(LIGHT)
    code, problems, _tail = verify(capsys, path=f"{LIGHT}.gz")
    assert (code, problems) == (0, [])


def test_no_follow_says_the_masters_inputs_were_not_checked(night, capsys):
    os.remove(RAW_BIAS)  # behind the master bias: not seen without following it
    code, problems, tail = verify(capsys, "--no-follow")
    assert (code, problems) == (0, [])
    assert tail[-1].endswith("(the inputs of its masters were not checked: not followed)")
    assert verify(capsys)[0] == 1
