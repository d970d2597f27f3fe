"""Provenance records, the PROVENANCE table, the chain across files, the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from hypothesis import given, settings
from hypothesis import strategies as st

from calframe import read_provenance, write_frame
from calframe.cli import main
from calframe.errors import FrameReadError
from calframe.provenance import (
    InputRecord,
    Provenance,
    StepRecord,
    get_provenance,
    path_for_output,
    path_from_file,
    provenance_tree,
    set_provenance,
    software_versions,
    verify_inputs,
)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_raw(path: Path, frametype: str, level: float, exptime: float, seed: int) -> str:
    """A raw camera frame on disk, with gain and read noise so it reads silently."""
    rng = np.random.default_rng(seed)
    header = fits.Header()
    header["IMAGETYP"] = frametype.upper()
    header["EXPTIME"] = exptime
    header["EGAIN"] = 2.0
    header["RDNOISE"] = 5.0
    header["DATE-OBS"] = f"2026-01-01T00:00:{seed:02d}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.writeto(path, (level + rng.normal(0, 3, (16, 20))).astype(np.float32), header)
    return os.fspath(path.relative_to(Path.cwd()))


@pytest.fixture(scope="module")
def built_night(tmp_path_factory):
    """Raw biases, darks, flats and a light on disk; masters and a calibrated light
    written by the library itself (built once, copied for each test)."""
    import contextlib

    from calframe.calibration import calibrate
    from calframe.masters import make_master_bias, make_master_dark, make_master_flat

    root = tmp_path_factory.mktemp("night")
    with contextlib.chdir(root):
        biases = [write_raw(root / "raw" / f"bias_{i}.fits", "bias", 100, 0.0, i)
                  for i in range(3)]
        darks = [write_raw(root / "raw" / f"dark_{i}.fits", "dark", 130, 30.0, 30 + i)
                 for i in range(3)]
        flats = [write_raw(root / "raw" / f"flat_{i}.fits", "flat", 10000, 1.0, 10 + i)
                 for i in range(3)]
        light = write_raw(root / "raw" / "light.fits", "light", 500, 30.0, 20)
        write_frame(make_master_bias(biases), "masters/master_bias.fits")
        write_frame(make_master_dark(darks, bias="masters/master_bias.fits"),
                    "masters/master_dark.fits")
        write_frame(make_master_flat(flats, bias="masters/master_bias.fits"),
                    "masters/master_flat.fits")
        out = calibrate(light, bias="masters/master_bias.fits",
                        dark="masters/master_dark.fits", flat="masters/master_flat.fits")
        write_frame(out, "out/light_cal.fits")
    return root, {"biases": biases, "darks": darks, "flats": flats, "light": light,
                  "master_bias": "masters/master_bias.fits",
                  "master_dark": "masters/master_dark.fits",
                  "master_flat": "masters/master_flat.fits", "out": "out/light_cal.fits"}


@pytest.fixture
def night(built_night, tmp_path, monkeypatch):
    """A private copy of the night; the current folder is its root."""
    import shutil

    root, names = built_night
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return names


def test_chain_hashes_match_files_on_disk(night):
    outputs = [night["master_bias"], night["master_dark"], night["master_flat"],
               night["out"]]
    # Every SHA-256 in every table is the hash of the file it names.
    for output in outputs:
        table = fits.getdata(output, "PROVENANCE")
        rows = table[table["KIND"] == "input"]
        assert len(rows) > 0
        folder = Path(output).parent
        for row in rows:
            assert not os.path.isabs(row["PATH"])
            assert row["SHA256"] == sha(folder / row["PATH"])
    # The master bias lists its raw biases.
    bias_prov = read_provenance(night["master_bias"])
    assert {(r.path, r.sha256) for r in bias_prov.inputs} == \
        {(p, sha(p)) for p in night["biases"]}
    # The master dark and flat list their raw frames and the master bias used.
    for kind in ("dark", "flat"):
        paths = {r.path: r.sha256 for r in read_provenance(night[f"master_{kind}"]).inputs}
        for p in [*night[f"{kind}s"], night["master_bias"]]:
            assert paths[p] == sha(p)
    # The light lists the three masters by name and hash, and its own raw file.
    light_prov = read_provenance(night["out"])
    own = {r.path: r.sha256 for r in light_prov.inputs
           if r.origin == night["out"]}
    assert own == {night["light"]: sha(night["light"]),
                   night["master_bias"]: sha(night["master_bias"]),
                   night["master_dark"]: sha(night["master_dark"]),
                   night["master_flat"]: sha(night["master_flat"])}
    header = fits.getheader(night["out"])
    assert header["CALSTAT"] == "BDF"
    assert fits.getheader(night["master_bias"])["CALSTAT"] == ""


def test_tree_follows_masters(night):
    node = provenance_tree(night["out"], verify=True)
    assert node.calstat == "BDF"
    followed = {child.path for child in node.children.values()}
    assert followed == {night["master_bias"], night["master_dark"], night["master_flat"]}
    flat_node = next(c for c in node.children.values() if c.path == night["master_flat"])
    assert {c.path for c in flat_node.children.values()} == {night["master_bias"]}
    checks = list(node.iter_checks())
    assert checks and all(c.status == "ok" for c in checks)
    text = node.render()
    for p in night["biases"] + night["darks"] + night["flats"]:
        assert p in text
    assert "make_master_flat" in text and "calibrate" in text


def test_cli_tree_and_verify(night, capsys):
    assert main(["provenance", night["out"], "--verify"]) == 0
    out = capsys.readouterr().out
    assert "master_flat.fits" in out and "bias_2.fits" in out
    # 3 biases, darks and flats, the light and 3 masters (each file once, although
    # the master bias is seen three times: directly and through the dark and flat)
    assert out.splitlines()[-1] == (f"verified {night['out']}: calframe's digest and the "
                                    "checksums match; 13 input files present and unchanged")
    # Change a raw bias and remove a raw flat: both are problems, one line each.
    recorded = sha(night["biases"][1])
    Path(night["biases"][1]).write_bytes(b"changed")
    os.remove(night["flats"][2])
    assert main(["provenance", night["out"], "--verify"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "CHANGED" in captured.out and "missing" in captured.out
    assert [line for line in lines if line.startswith(("CHANGED", "MISSING"))] == [
        f"CHANGED  {night['biases'][1]}: sha256 now {sha(night['biases'][1])[:16]}..., "
        f"recorded {recorded[:16]}... (input of {night['master_bias']})",
        f"MISSING  {night['flats'][2]}: not found, at its recorded place or beside that "
        f"file (input of {night['master_flat']})"]
    assert lines[-1] == f"NOT verified {night['out']}: 2 problems (1 CHANGED, 1 MISSING)"
    assert main(["provenance", night["out"], "--no-follow"]) == 0
    out = capsys.readouterr().out
    assert "bias_2.fits" not in out.split("recorded from")[0]
    assert "recorded from masters/master_bias.fits\n" in out
    os.remove(night["master_bias"])
    assert main(["provenance", night["out"]]) == 0
    assert "recorded from masters/master_bias.fits (not found)" in capsys.readouterr().out


def test_cli_finds_masters_beside_the_file(night, tmp_path, capsys):
    moved = tmp_path / "archive"
    moved.mkdir()
    for key in ("out", "master_bias", "master_dark", "master_flat"):
        os.replace(night[key], moved / Path(night[key]).name)
    assert main(["provenance", "archive/light_cal.fits", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "archive/master_flat.fits  CALSTAT B" in out
    assert out.splitlines()[-1].startswith("verified archive/light_cal.fits: ")


def test_cli_prov_json(night, capsys):
    from prov.model import ProvDocument

    assert main(["provenance", night["out"], "--prov-json", "prov.json"]) == 0
    assert "PROV-JSON written to prov.json" in capsys.readouterr().out
    text = Path("prov.json").read_text()
    doc = ProvDocument.deserialize(content=text, format="json")
    entities = json.loads(text)["entity"]
    assert f"sha256:{sha(night['master_flat'])}" in entities
    assert f"sha256:{sha(night['out'])}" in entities
    assert len(doc.get_records()) > 10
    assert main(["provenance", night["out"], "--prov-json", "prov.json"]) == 1
    assert "prov.json: file exists; give --overwrite" in capsys.readouterr().err
    assert main(["provenance", night["out"], "--prov-json", "prov.json",
                 "--overwrite"]) == 0


def test_cli_warns_on_damaged_file(night, capsys):
    path = Path(night["out"])
    with fits.open(path) as hdulist:
        start = hdulist.fileinfo(0)["datLoc"]
    raw = bytearray(path.read_bytes())
    raw[start + 8] ^= 0x01
    path.write_bytes(bytes(raw))
    assert main(["provenance", night["out"]]) == 0
    assert "warning: out/light_cal.fits: checksum mismatch" in capsys.readouterr().err


def test_table_round_trip_odd_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prov = Provenance()
    prov.inputs.append(InputRecord(path="données/100% flat é.fits  ", sha256="a" * 64,
                                   role="flat", frametype="flat", exptime=None,
                                   date_obs="", shape=()))
    prov.inputs.append(InputRecord(path="raw/x.fits", sha256="b" * 64, role="light",
                                   exptime=1e-4, shape=(3, 4, 5)))
    prov.steps.append(StepRecord("combine", {"sigma": float("nan"), "names": ["é"],
                                             "nested": {"a": [1, 2.5, None]}}))
    prov.steps.append(StepRecord("empty"))
    hdu = prov.to_fits_table(out_dir="out")
    back = Provenance.from_fits_table(hdu)
    assert [r.path for r in back.inputs] == ["../données/100% flat é.fits  ",
                                             "../raw/x.fits"]
    back = Provenance.from_fits_table(hdu, file_path="out/file.fits")
    assert [r.path for r in back.inputs] == ["données/100% flat é.fits  ", "raw/x.fits"]
    assert back.inputs[0].exptime is None and back.inputs[0].shape == ()
    assert back.inputs[1].exptime == 1e-4 and back.inputs[1].shape == (3, 4, 5)
    assert back.steps[0].parameters == {"sigma": "nan", "names": ["é"],
                                        "nested": {"a": [1, 2.5, None]}}
    assert back.steps[1].parameters == {}
    assert back.steps[0].versions == prov.steps[0].versions
    assert back.steps[0].time == prov.steps[0].time
    assert {r.origin for r in back.inputs} == {"out/file.fits"}
    empty = Provenance.from_fits_table(Provenance().to_fits_table())
    assert empty == Provenance()


_segment = st.text(alphabet="abcxyz_-.é ", min_size=1, max_size=6).filter(
    lambda s: s.strip(". ") == s and s not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(st.lists(_segment, min_size=1, max_size=4), st.lists(_segment, max_size=3))
def test_paths_round_trip(parts, out_parts):
    path = "/".join(parts)
    out_dir = "/".join(out_parts) or "."
    stored = path_for_output(path, out_dir)
    assert not os.path.isabs(stored)
    assert path_from_file(stored, out_dir) == os.path.normpath(path)


def test_extend_and_add_input_do_not_repeat():
    a = Provenance()
    a.inputs.append(InputRecord("x.fits", "1" * 64, role="bias"))
    a.add_step("read")
    b = Provenance()
    b.extend(a)
    b.extend(a)
    b.add_input(InputRecord("x.fits", "1" * 64, role="bias"))
    b.add_input(InputRecord("x.fits", "1" * 64, role="master"))
    assert len(b.inputs) == 2 and len(b.steps) == 1
    b.add_step("read")  # a later step with the same parameters is kept
    assert len(b.steps) == 2
    assert Provenance.from_dict(json.loads(json.dumps(b.to_dict()))) == b


def test_calstat_rules():
    prov = Provenance()
    prov.add_step("read")
    prov.add_step("subtract_bias")
    prov.add_step("subtract_dark", scale=1.0)
    prov.add_step("flat_correct")
    assert prov.calstat() == "BDF"
    prov = Provenance()
    prov.add_step("calibrate", bias="b.fits", dark=None, flat="f.fits")
    prov.add_step("demosaic")
    prov.add_step("odd", calstat="w")
    assert prov.calstat() == "BFMW"
    assert prov.calstat(current="OTBF") == "OTBFMW"
    # Steps that came with a master do not count for the frame using it.
    prov = Provenance()
    prov.inputs.append(InputRecord("m/master_flat.fits", "f" * 64, role="flat",
                                   frametype="flat"))
    prov.steps.append(StepRecord("subtract_bias", origin="m/master_flat.fits"))
    prov.add_step("flat_correct")
    assert prov.calstat("light") == "F"
    assert prov.calstat("flat") == "BF"
    prov.inputs[0].role = "master"
    assert prov.calstat() == "F"


def test_history_lines_plain_and_short():
    prov = Provenance()
    prov.add_step("combine", method="median", frames=[f"raw/long_name_{i}.fits"
                                                      for i in range(50)])
    (line,) = prov.history_lines()
    assert line.startswith("calframe 20") and " combine: method=median, frames=" in line
    assert len(line) <= 72 and line.isascii()


def test_long_provenance_round_trip(tmp_path):
    ccd = CCDData(np.zeros((4, 4), np.float32), unit="adu")
    prov = Provenance()
    for i in range(300):
        prov.inputs.append(InputRecord(f"raw/frame_{i:04d}.fits", f"{i:064x}",
                                       role="light", exptime=float(i), shape=(4, 4)))
    prov.add_step("combine", frames=[r.path for r in prov.inputs])
    set_provenance(ccd, prov)
    path = write_frame(ccd, tmp_path / "long.fits")
    back = read_provenance(path)
    assert [r.sha256 for r in back.inputs] == [r.sha256 for r in prov.inputs]
    assert back.steps[0].parameters["frames"][-1] == "raw/frame_0299.fits"


def test_verify_inputs(tmp_path):
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    records = [InputRecord.from_file(a), InputRecord.from_file(b),
               InputRecord(str(tmp_path / "gone.fits"), "0" * 64)]
    b.write_bytes(b"B")
    checks = verify_inputs(records)
    assert [c.status for c in checks] == ["ok", "changed", "missing"]
    assert checks[1].sha256 == sha(b)


def test_get_provenance_is_attached():
    ccd = CCDData(np.zeros((2, 2)), unit="adu")
    get_provenance(ccd).add_step("x")
    assert get_provenance(ccd).steps[0].step == "x"
    versions = software_versions()
    assert {"calframe", "astropy", "numpy", "LibRaw"} <= set(versions)


def test_cli_on_a_file_without_provenance(tmp_path, capsys):
    path = tmp_path / "plain.fits"
    fits.writeto(path, np.zeros((3, 3), np.float32))
    assert main(["provenance", str(path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "no provenance recorded" in out
    assert f"NO PROVENANCE  {path}: no PROVENANCE table" in out
    assert f"UNVERIFIABLE  {path}: no digest of calframe in its header" in out
    assert main(["provenance", str(tmp_path / "absent.fits")]) == 2
    assert "does not exist" in capsys.readouterr().err
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file\n")
    assert main(["provenance", str(text)]) == 1
    assert "notes.fits: cannot be read as FITS" in capsys.readouterr().err
    with pytest.raises(FrameReadError, match="give a FITS file written by calframe"):
        read_provenance(text)


def test_long_parameters_continue_on_more_rows(monkeypatch):
    from urllib.parse import unquote

    import calframe.provenance._table as provenance_module

    prov = Provenance()
    prov.add_step("combine", frames=[f"dossier é/100% {i}.fits" for i in range(40)],
                  method="median")
    prov.add_step("read", format="fits", note="  spaces   " + " " * 30)
    text = prov.steps[0].parameters_json()
    for chunk in (7, 8, 9, 100):  # pieces cut inside percent-escapes too
        monkeypatch.setattr(provenance_module, "PARAMS_CHUNK", chunk)
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), prov.to_fits_table()]).writeto(buffer)
        buffer.seek(0)
        hdu = fits.open(buffer)["PROVENANCE"]
        kinds = list(hdu.data["KIND"])
        assert kinds[0] == "step" and kinds.count("step") == 2 and "more" in kinds
        cells = ["".join(cell) for cell in hdu.data["PARAMS"]]
        assert max(len(cell) for cell in cells) <= chunk
        # What the file-layout page tells archive users to do gives it back.
        texts: list[str] = []
        for cell, kind in zip(cells, kinds, strict=True):
            if kind == "step":
                texts.append(cell)
            elif kind == "more":
                texts[-1] += cell
        assert [json.loads(unquote(t)) for t in texts] == \
            [s.parameters for s in prov.steps]
        back = Provenance.from_fits_table(hdu)
        assert [s.parameters for s in back.steps] == [s.parameters for s in prov.steps]
        assert back.steps[0].parameters_json() == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" ab%é\\\"", max_size=60), st.integers(3, 12))
def test_pieces_round_trip(text, size):
    from urllib.parse import unquote

    from calframe.provenance._cells import _encode_text, _pieces

    pieces = _pieces(_encode_text(text), size)
    assert all(len(p) <= size and not p.endswith(" ") for p in pieces)
    assert unquote("".join(pieces)) == text


def test_history_groups_runs_of_steps():
    prov = Provenance()
    for i in range(500):
        prov.add_step("read", index=i)
    prov.add_step("combine", method="median")
    prov.add_step("subtract_bias")
    prov.add_step("subtract_bias")
    lines = [line.split(" ", 2)[2] for line in prov.history_lines()]
    assert lines == ["read x500", "combine: method=median", "subtract_bias",
                     "subtract_bias"]


def test_tree_shortens_runs_of_steps(tmp_path):
    ccd = CCDData(np.zeros((2, 2), np.float32), unit="adu")
    prov = get_provenance(ccd)
    for i in range(30):
        prov.add_step("read", index=i)
    prov.add_step("combine", method="mean")
    path = write_frame(ccd, tmp_path / "s.fits")
    short = provenance_tree(path).render()
    assert "read x30" in short and short.count(" read ") == 1
    assert provenance_tree(path).render(full=True).count("  read  ") == 30


def test_sha256_file_reuses_a_digest_while_the_file_is_unchanged(tmp_path, monkeypatch):
    from calframe import provenance
    from calframe.provenance import _hashing

    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(_hashing, "open", counting_open, raising=False)
    path = tmp_path / "frame.fits"
    path.write_bytes(b"x" * 5000)
    first = provenance.sha256_file(path)
    assert first == hashlib.sha256(b"x" * 5000).hexdigest()
    assert provenance.sha256_file(path) == first and len(opened) == 1  # not read again
    assert provenance.sha256_file(path, reuse=False) == first and len(opened) == 2
    # the same size, other bytes: the change time moves, so the file is read again
    path.write_bytes(b"y" * 5000)
    assert provenance.sha256_file(path) == hashlib.sha256(b"y" * 5000).hexdigest()
    assert len(opened) == 3
    # a file put in its place (another inode) is read, whatever its times
    other = tmp_path / "other.fits"
    other.write_bytes(b"z" * 5000)
    st = os.stat(path)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    assert provenance.sha256_file(path) == hashlib.sha256(b"z" * 5000).hexdigest()
    assert len(opened) == 4
