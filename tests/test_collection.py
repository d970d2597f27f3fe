"""ccdproc's ImageFileCollection wherever calframe takes a list of paths."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from numpy.testing import assert_array_equal

import calframe
from calframe._collection import collection_paths
from calframe.errors import InvalidSettingsError, NoFramesError, WrongFrameTypeError
from calframe.pipeline import PipelineConfig, make_plan

ccdproc = pytest.importorskip("ccdproc")

SHAPE = (24, 32)
#: frame type -> (IMAGETYP, EXPTIME, mean level in ADU, number of frames)
KINDS = {"bias": ("Bias Frame", 0.0, 1000.0, 5), "dark": ("Dark Frame", 60.0, 1100.0, 3),
         "flat": ("Flat Field", 2.0, 20000.0, 3), "light": ("Light Frame", 60.0, 3000.0, 2)}


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One folder of uint16 FITS written by astropy: name -> data of every frame."""
    folder = tmp_path_factory.mktemp("night")
    rng = np.random.default_rng(17)
    frames = {}
    for kind, (imagetyp, exptime, level, n) in KINDS.items():
        for i in range(n):
            data = rng.normal(level, 8.0, SHAPE).round().astype(np.uint16)
            header = fits.Header({"IMAGETYP": imagetyp, "EXPTIME": exptime,
                                  "GAIN": 1.5, "RDNOISE": 6.0, "CCD-TEMP": -10.0})
            name = f"{kind}_{i}.fits"
            fits.writeto(folder / name, data, header)
            frames[name] = data
    return folder, frames


def _paths(folder, kind):
    return sorted(str(folder / f"{kind}_{i}.fits") for i in range(KINDS[kind][3]))


def test_paths_of_a_collection_and_of_its_filtered_copies(night):
    folder, frames = night
    ic = ccdproc.ImageFileCollection(str(folder))
    assert sorted(collection_paths(ic, "test")) == sorted(str(folder / n) for n in frames)
    # a filtered collection holds only the files that matched
    biases = ic.filter(imagetyp="bias frame")
    assert sorted(collection_paths(biases, "test")) == _paths(folder, "bias")
    darks_and_flats = ic.filter(regex_match=True, imagetyp="dark|flat")
    assert sorted(collection_paths(darks_and_flats, "test")) == sorted(
        _paths(folder, "dark") + _paths(folder, "flat"))
    # files_filtered gives names; the collection itself is left as it was
    assert sorted(ic.files_filtered(imagetyp="light frame")) == ["light_0.fits",
                                                                  "light_1.fits"]
    assert len(collection_paths(ic, "test")) == len(frames)
    # rows masked in the summary (as ccdproc's own iterators mask the files that do
    # not match while they run) are left out
    column = ic.summary["file"]
    column.mask = [not name.startswith("dark") for name in column]
    assert sorted(collection_paths(ic, "test")) == _paths(folder, "dark")
    column.mask = False
    # the table's order, after a sort
    ic.sort(["exptime", "file"])
    exptimes = [fits.getheader(p)["EXPTIME"] for p in collection_paths(ic, "test")]
    assert exptimes == sorted(exptimes)
    # a collection of some files of a folder, named relative to it
    some = ccdproc.ImageFileCollection(str(folder), filenames=["flat_1.fits", "bias_3.fits"])
    assert collection_paths(some, "test") == [str(folder / "flat_1.fits"),
                                              str(folder / "bias_3.fits")]
    # anything else passes through, without importing ccdproc when it is not there
    listed = ["a.fits", "b.fits"]
    assert collection_paths(listed, "test") is listed


def test_combine_a_filtered_collection(night):
    folder, frames = night
    ic = ccdproc.ImageFileCollection(str(folder), keywords=["imagetyp", "exptime"])
    biases = ic.filter(imagetyp="bias frame")
    out = calframe.combine(biases, method="median")
    truth = np.median(np.stack([frames[os.path.basename(p)] for p in _paths(folder, "bias")]),
                      axis=0)
    assert_array_equal(out.data, truth.astype(np.float32))
    assert out.meta["NCOMBINE"] == 5
    by_paths = calframe.combine(_paths(folder, "bias"), method="median")
    assert_array_equal(out.data, by_paths.data)
    assert_array_equal(out.uncertainty.array, by_paths.uncertainty.array)


def test_masters_from_collections(night):
    folder, _ = night
    ic = ccdproc.ImageFileCollection(str(folder))
    bias = calframe.make_master_bias(ic.filter(imagetyp="bias frame"))
    assert_array_equal(bias.data, calframe.make_master_bias(_paths(folder, "bias")).data)
    dark = calframe.make_master_dark(ic.filter(imagetyp="dark frame"), bias=bias)
    assert_array_equal(dark.data, calframe.make_master_dark(_paths(folder, "dark"),
                                                            bias=bias).data)
    flat = calframe.make_master_flat(ic.filter(imagetyp="flat field"), bias=bias)
    assert_array_equal(flat.data, calframe.make_master_flat(_paths(folder, "flat"),
                                                            bias=bias).data)
    assert flat.meta["NCOMBINE"] == 3
    # the whole folder is not one kind of frame: the filter is what makes it a bias set
    with pytest.raises(WrongFrameTypeError, match="8 of the frames are not biases"):
        calframe.make_master_bias(ic)


def test_inventory_of_a_collection(night):
    folder, frames = night
    ic = ccdproc.ImageFileCollection(str(folder))
    inv = calframe.take_inventory(ic)
    assert sorted(inv.frames["path"]) == sorted(str(folder / n) for n in frames)
    assert sorted(inv.frames["frametype"]) == sorted(
        k for k, (_, _, _, n) in KINDS.items() for _ in range(n))
    lights = calframe.take_inventory(ic.filter(imagetyp="light frame"))
    assert sorted(lights.frames["path"]) == _paths(folder, "light")
    assert set(lights.frames["frametype"]) == {"light"}


def test_pipeline_inputs_from_a_collection(night, tmp_path):
    folder, _ = night
    ic = ccdproc.ImageFileCollection(str(folder))
    config = PipelineConfig(inputs=ic, output=str(tmp_path / "out"))
    assert sorted(config.inputs) == sorted(collection_paths(ic, "test"))
    assert config.to_dict()["inputs"] == config.inputs
    plan = make_plan(config)
    by_folder = make_plan(PipelineConfig(inputs=[str(folder)], output=str(tmp_path / "out")))
    assert [t.kind for t in plan.tasks] == [t.kind for t in by_folder.tasks]
    assert [t.kind for t in plan.tasks] == ["bias", "dark", "flat", "light", "light"]
    # a filtered collection: no flats, so only the bias and the dark are made
    no_flats = ic.filter(regex_match=True, imagetyp="bias|dark|light")
    plan = make_plan(PipelineConfig(inputs=no_flats, output=str(tmp_path / "out")))
    assert sorted(plan.inventory.frames["path"]) == sorted(
        _paths(folder, "bias") + _paths(folder, "dark") + _paths(folder, "light"))
    assert "flat" not in [t.kind for t in plan.tasks]


def test_stack_a_collection(night):
    folder, _ = night
    ic = ccdproc.ImageFileCollection(str(folder))
    lights = ic.filter(imagetyp="light frame")
    out = calframe.stack(lights, align=None, method="mean")
    assert_array_equal(out.data, calframe.stack(_paths(folder, "light"), align=None,
                                                 method="mean").data)
    assert out.meta["NCOMBINE"] == 2


def test_empty_collection_is_refused_with_its_location(night, tmp_path):
    folder, _ = night
    ic = ccdproc.ImageFileCollection(str(folder))
    with warnings.catch_warnings():
        # ccdproc warns that the filtered collection holds no FITS files
        warnings.simplefilter("ignore", AstropyUserWarning)
        none = ic.filter(imagetyp="sky flat")
    with pytest.raises(NoFramesError, match=r"combine: the ImageFileCollection .* holds no "
                                            r"files; check its location"):
        calframe.combine(none)
    with pytest.raises(NoFramesError, match=r"make_master_flat: .* holds no files"):
        calframe.make_master_flat(none)
    with pytest.raises(NoFramesError, match=r"take_inventory: .* holds no files"):
        calframe.take_inventory(none)
    with pytest.warns(AstropyUserWarning, match="no FITS files"):
        empty = ccdproc.ImageFileCollection(str(tmp_path))
    with pytest.raises(NoFramesError, match=f"combine: .*{tmp_path.name}'? holds no files"):
        calframe.combine(empty)


def test_collection_of_another_hdu_is_refused(tmp_path):
    # a file with its image in HDU 1, summarised from that HDU
    path = tmp_path
    hdul = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(np.ones(SHAPE, np.uint16),
                                       fits.Header({"IMAGETYP": "Bias Frame"}))])
    hdul.writeto(path / "b.fits", overwrite=True)
    ic = ccdproc.ImageFileCollection(str(path), ext=1)
    with pytest.raises(InvalidSettingsError, match=r"combine: .* reads the headers of HDU "
                                                   r"ext=1.*make the collection with ext=0"):
        calframe.combine(ic)
