"""Tests of calframe.inventory: scanning, grouping with tolerances, matching, problems."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from calframe.datasets import SyntheticCamera, make_night
from calframe.inventory import (
    Problem,
    Tolerances,
    scan_paths,
    take_inventory,
)

SMALL = SyntheticCamera(shape=(24, 32), n_hot_pixels=2, n_dust=0)


def _write(path, *, imagetyp, exptime=None, temp=-10.0, shape=(24, 32), extra=None):
    header = fits.Header()
    header["IMAGETYP"] = imagetyp
    if exptime is not None:
        header["EXPTIME"] = exptime
    if temp is not None:
        header["CCD-TEMP"] = temp
    for key, value in (extra or {}).items():
        header[key] = value
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fits.writeto(path, np.full(shape, 1000, dtype=np.uint16), header)


@pytest.fixture
def night(tmp_path):
    return make_night(tmp_path / "night", camera=SMALL, n_bias=3, n_dark=3, n_flat=3,
                      n_light=2, dark_exptimes=(60.0, 300.0), light_exptime=60.0)


def _group_of(inv, path_part):
    rows = [r for r in inv.frames if path_part in r["path"]]
    return {int(r["group"]) for r in rows}


def test_night_types_groups_and_matches(night):
    inv = take_inventory(night.path)
    assert len(inv.frames) == 3 + 6 + 3 + 2
    counts = {t: int(np.sum(inv.frames["frametype"] == t)) for t in
              ("bias", "dark", "flat", "light")}
    assert counts == {"bias": 3, "dark": 6, "flat": 3, "light": 2}
    assert set(inv.frames["ftsource"]) == {"header"}
    # darks split by exposure, everything else one group per type
    assert sorted(inv.groups["frametype"].tolist()) == ["bias", "dark", "dark", "flat",
                                                        "light"]
    assert len(_group_of(inv, "dark_60s")) == 1
    assert _group_of(inv, "dark_60s") != _group_of(inv, "dark_300s")
    light = inv.matches[inv.matches["frametype"] == "light"][0]
    assert light["bias"] == next(iter(_group_of(inv, "bias_")))
    assert light["dark"] == next(iter(_group_of(inv, "dark_60s")))
    assert light["flat"] == next(iter(_group_of(inv, "flat_")))
    assert not light["dark_scaled"]
    # the spare 300 s darks are a dark library, not a problem
    assert inv.problems == []
    text = inv.summary()
    assert "calibration of each light and flat group" in text
    assert "light_60s" in text


def test_dark_scaled_when_no_exposure_matches(tmp_path):
    night = make_night(tmp_path / "n", camera=SMALL, n_bias=2, n_dark=2, n_flat=2,
                       n_light=1, dark_exptimes=(300.0,), light_exptime=60.0)
    inv = take_inventory(night.path)
    light = inv.matches[inv.matches["frametype"] == "light"][0]
    assert light["dark_scaled"]
    assert "dark scaled from 300 s to 60 s" in light["note"]


def test_no_scaling_without_bias(tmp_path):
    night = make_night(tmp_path / "n", camera=SMALL, n_bias=0, n_dark=2, n_flat=2,
                       n_light=1, dark_exptimes=(300.0,), light_exptime=60.0)
    inv = take_inventory(night.path)
    light = inv.matches[inv.matches["frametype"] == "light"][0]
    assert light["dark"] == -1 and light["bias"] == -1
    assert any("no matching bias or dark" in p.what for p in inv.problems)


def test_exposure_tolerance(tmp_path):
    for i, t in enumerate((60.0, 60.2, 60.4, 63.0)):
        _write(str(tmp_path / f"d{i}.fits"), imagetyp="Dark Frame", exptime=t)
    inv = take_inventory(tmp_path, tolerances=Tolerances(exptime_rel=0.01))
    groups = [int(g) for g in inv.frames["group"]]
    assert groups[0] == groups[1] == groups[2] != groups[3]
    tight = take_inventory(tmp_path, tolerances=Tolerances(exptime_rel=0.001,
                                                           exptime_abs=0.0))
    assert len(set(tight.frames["group"].tolist())) == 4


def test_temperature_mismatch_is_a_problem(night):
    path = os.path.join(night.path, "darks", "warm_dark.fits")
    _write(path, imagetyp="Dark Frame", exptime=60.0, temp=5.0)
    inv = take_inventory(night.path)
    warm = next(r for r in inv.frames if r["path"].endswith("warm_dark.fits"))
    light = inv.matches[inv.matches["frametype"] == "light"][0]
    assert warm["group"] >= 0 and warm["group"] != light["dark"]
    assert len([p for p in inv.problems if "temperature 5 C" in p.what]) == 1


def test_bad_files_become_problems(night, tmp_path):
    bad = os.path.join(night.path, "lights")
    open(os.path.join(bad, "empty.fits"), "wb").close()
    with open(os.path.join(bad, "notes.fits"), "w") as handle:
        handle.write("this is not a FITS file\n" * 20)
    good = os.path.join(bad, "light_0001.fits")
    with open(good, "rb") as handle:
        data = handle.read()
    with open(os.path.join(bad, "truncated.fits"), "wb") as handle:
        handle.write(data[: len(data) - 2880 + 500])  # header and part of the data
    _write(os.path.join(bad, "small.fits"), imagetyp="Light Frame", exptime=60.0,
           shape=(12, 16))
    with open(os.path.join(bad, "readme.txt"), "w") as handle:
        handle.write("ignored: not a frame name")
    inv = take_inventory(night.path)
    by_file = {os.path.basename(p.path): p for p in inv.problems}
    assert "0 bytes" in by_file["empty.fits"].what
    assert "does not start with 'SIMPLE" in by_file["notes.fits"].what
    assert "truncated" in by_file["truncated.fits"].what
    assert by_file["empty.fits"].fix
    assert "readme.txt" not in " ".join(inv.frames["path"])
    skipped = {os.path.basename(p.path): p for p in inv.skipped}
    assert "not a frame format" in skipped["readme.txt"].what
    # the small light is its own group without calibration
    small_groups = [p for p in inv.problems if "12x16" in p.what]
    assert small_groups and "no matching" in small_groups[0].what
    # the good frames are untouched by the bad ones
    light = next(m for m in inv.matches if m["frametype"] == "light"
             and "24x32" in inv.group_row(int(m["group"]))["shape"])
    assert light["bias"] >= 0 and light["dark"] >= 0 and light["flat"] >= 0
    assert len(inv.members(int(light["group"]))) == 2


def test_unknown_type_from_filename_and_folder(tmp_path):
    _write(str(tmp_path / "Flats" / "a.fits"), imagetyp="", exptime=1.0)
    _write(str(tmp_path / "misc" / "bias_01.fits"), imagetyp="", exptime=0.0)
    _write(str(tmp_path / "misc" / "frame.fits"), imagetyp="", exptime=1.0)
    inv = take_inventory(tmp_path)
    row = {os.path.basename(r["path"]): r for r in inv.frames}
    assert (row["a.fits"]["frametype"], row["a.fits"]["ftsource"]) == ("flat", "folder")
    assert (row["bias_01.fits"]["frametype"], row["bias_01.fits"]["ftsource"]) == (
        "bias", "filename")
    assert row["frame.fits"]["frametype"] == "unknown"
    assert any("frame type unknown" in p.what and p.path.endswith("frame.fits")
               for p in inv.problems)


def test_user_frame_types(tmp_path):
    _write(str(tmp_path / "beam" / "data.fits"), imagetyp="", exptime=1.0)
    _write(str(tmp_path / "beam" / "other.fits"), imagetyp="", exptime=1.0)
    inv = take_inventory(tmp_path, frame_types={"*/beam/data.fits": "object"})
    row = {os.path.basename(r["path"]): r for r in inv.frames}
    assert (row["data.fits"]["frametype"], row["data.fits"]["ftsource"]) == ("light", "user")
    assert row["other.fits"]["frametype"] == "unknown"
    assert [os.path.basename(p.path) for p in inv.problems
            if "frame type unknown" in p.what] == ["other.fits"]
    by_name = take_inventory(tmp_path, frame_types={"other.fits": "Dark Frame"})
    assert "dark" in by_name.frames["frametype"].tolist()
    with pytest.raises(ValueError, match=r"'sky' \(for '\*'\) is not a frame type"):
        take_inventory(tmp_path, frame_types={"*": "sky"})


def test_flats_grouped_by_filter_not_exposure(tmp_path):
    for i, (flt, t) in enumerate([("R", 1.0), ("R", 2.5), ("G", 1.0)]):
        _write(str(tmp_path / f"f{i}.fits"), imagetyp="Flat Field", exptime=t,
               extra={"FILTER": flt})
    inv = take_inventory(tmp_path)
    groups = inv.frames["group"].tolist()
    assert groups[0] == groups[1] != groups[2]


def test_scan_paths(tmp_path):
    _write(str(tmp_path / "a" / "x.fits"), imagetyp="bias", exptime=0.0)
    _write(str(tmp_path / "a" / "sub" / "y.fit"), imagetyp="bias", exptime=0.0)
    _write(str(tmp_path / ".hidden" / "z.fits"), imagetyp="bias", exptime=0.0)
    (tmp_path / "a" / "notes.txt").write_text("x")
    found = scan_paths([tmp_path])
    assert [os.path.relpath(p, tmp_path) for p in found] == [
        os.path.join("a", "sub", "y.fit"), os.path.join("a", "x.fits")]
    flat = scan_paths([tmp_path / "a"], recursive=False)
    assert [os.path.basename(p) for p in flat] == ["x.fits"]
    excluded = scan_paths([tmp_path], exclude=[tmp_path / "a" / "sub"])
    assert [os.path.basename(p) for p in excluded] == ["x.fits"]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        scan_paths([tmp_path / "missing"])


def test_tolerances_and_problem_text():
    tol = Tolerances(exptime_rel=0.01, exptime_abs=0.0, temperature=1.0)
    assert tol.same_exposure(100.0, 100.9)
    assert not tol.same_exposure(100.0, 102.0)
    assert tol.same_exposure(float("nan"), float("nan"))
    assert not tol.same_exposure(float("nan"), 1.0)
    assert tol.same_temperature(float("nan"), 3.0)
    assert not tol.same_temperature(-10.0, -8.0)
    assert str(Problem("a.fits", "is empty", "remove it")) == "a.fits: is empty; remove it"
    assert str(Problem("a.fits", "is empty")) == "a.fits: is empty"


@pytest.mark.realdata
def test_real_files(real_data):
    inv = take_inventory(real_data)
    rows = {os.path.basename(r["path"]): r for r in inv.frames}
    st7 = [r for n, r in rows.items() if n.startswith("DarkBefore")]
    assert len(st7) == 9 and {r["frametype"] for r in st7} == {"dark"}
    assert len({int(r["group"]) for r in st7}) == 3
    assert {float(r["exptime"]) for r in st7} == {120.0, 300.0, 900.0}
    assert rows["Vega.fit"]["frametype"] == "light"
    vega = next(m for m in inv.matches if m["group"] == rows["Vega.fit"]["group"])
    dark = inv.group_row(int(vega["dark"]))
    assert dark["exptime"] == 120.0 and dark["nframes"] == 3
    dng = rows["Blackmagic.dng"]
    assert (dng["format"], dng["shape"], dng["bayerpat"]) == ("raw", "2176x4128", "RGGB")
    assert rows["dark.edf"]["frametype"] == "dark"
    assert rows["dark.edf"]["ftsource"] == "filename"
    assert rows["ID16B_diatomee.edf"]["shape"] == "6x540x640"
    assert rows["ID16B_diatomee.edf"]["exptime"] == 0.5
    assert rows["a8280271.fits"]["exptime"] == pytest.approx(150.04)
