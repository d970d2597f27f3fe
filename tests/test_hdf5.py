"""HDF5/NeXus reading: the layouts detectors write, compression, masks and bad files."""

import h5py
import numpy as np
import pytest

from calframe import FrameReadError, InvalidSettingsError, UnsupportedFormatError
from calframe.cli import main
from calframe.io import detect_format, frame_count, iter_frames, read_frame, read_header
from hdf5_layouts import (
    EIGER_GAP,
    write_bliss,
    write_eiger,
    write_lima,
    write_nexus_default,
)

OPTS = {"gain": 1.0, "read_noise": 0.0}


def _frames(n, shape=(12, 10), seed=1, dtype=np.uint32, high=1000):
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, size=(n, *shape)).astype(dtype)


@pytest.mark.parametrize("compression", [None, "bslz4"])
def test_eiger_master_with_data_files(tmp_path, compression):
    frames = _frames(10)
    frames[:, 5, :] = EIGER_GAP                 # a module gap
    mask = np.zeros(frames.shape[1:], np.uint32)
    mask[5, :] = 1                               # gap
    mask[2, 3] = 8                               # a noisy pixel
    master = write_eiger(tmp_path, "scan_17", frames, count_time=0.1, frame_time=0.1002,
                         pixel_mask=mask, cutoff=5000, per_file=4, compression=compression)
    assert detect_format(master) == "hdf5"
    assert frame_count(master) == 10
    info = read_header(master)
    assert info.format == "hdf5" and info.nframes == 10
    assert info.shape == (12, 10) and info.dtype == np.uint32
    assert info.exptime == pytest.approx(0.1)
    for k in (0, 3, 4, 9):                       # in the first, a middle and the last file
        ccd = read_frame(master, frame=k, **OPTS)
        assert ccd.meta["EXPTIME"] == pytest.approx(0.1)
        assert ccd.meta["EXPSRC"] == "count_time"
        assert ccd.meta["FRAMETIM"] == pytest.approx(0.1002)
        assert ccd.meta["H5FRAME"] == k and ccd.meta["H5NFRAME"] == 10
        assert ccd.meta["DATE-OBS"].startswith("2026-03-14T09:26:53")
        assert ccd.meta["SATURATE"] == 5000
        good = mask == 0
        np.testing.assert_array_equal(ccd.data[good], frames[k][good].astype(np.float32))
        np.testing.assert_array_equal(ccd.mask, mask != 0)
        assert ccd.meta["NPIXMASK"] == int((mask != 0).sum())
        assert ccd.data.dtype == np.float32     # gaps at the integer maximum do not count
    assert [int(c.meta["H5FRAME"]) for c in iter_frames(master, **OPTS)] == list(range(10))


def test_eiger_missing_data_file(tmp_path):
    master = write_eiger(tmp_path, "scan_2", _frames(6), per_file=4, compression=None)
    for part in tmp_path.glob("scan_2_data_*.h5"):
        part.unlink()
    with pytest.raises(FrameReadError, match=r"scan_2_master.h5: .*data_000001 is a link to "
                       r"a data file that is not there; copy the data files"):
        read_frame(master, **OPTS)


@pytest.mark.parametrize("compression", [None, "bslz4", "gzip"])
def test_lima_layout(tmp_path, compression):
    frames = _frames(7, dtype=np.uint16, high=4000)
    path = write_lima(tmp_path / "dark_0001.h5", frames, exposure_time=0.5,
                      compression=compression)
    assert frame_count(path) == 7
    ccd = read_frame(path, frame=6, **OPTS)
    np.testing.assert_array_equal(ccd.data, frames[6].astype(np.float32))
    assert ccd.meta["EXPTIME"] == 0.5 and ccd.meta["FRAMETYP"] == "dark"
    assert ccd.meta["H5DSET"] == "/entry_0000/basler/data"
    assert ccd.meta["SATURATE"] == 65535
    assert not ccd.mask.any()


def test_bliss_layout_counters_are_not_frames(tmp_path):
    frames = _frames(5)
    path = write_bliss(tmp_path / "sample_0001.h5", frames, expo=0.2)
    ccd = read_frame(path, frame=2, **OPTS)
    np.testing.assert_array_equal(ccd.data, frames[2].astype(np.float32))
    assert ccd.meta["EXPTIME"] == pytest.approx(0.2)
    assert ccd.meta["H5DSET"] == "/1.1/instrument/pilatus/data"
    assert ccd.meta["DATE-OBS"] == "2026-03-15T08:00:00+01:00"


def test_nexus_default_chain_and_units(tmp_path):
    frames = _frames(3, dtype=np.int32)
    path = write_nexus_default(tmp_path / "run.nxs", frames, count_time=1.5)
    ccd = read_frame(path, frame=1, **OPTS)
    np.testing.assert_array_equal(ccd.data, frames[1].astype(np.float32))
    assert ccd.meta["EXPTIME"] == pytest.approx(1.5)     # 1500 ms
    assert ccd.meta["H5DSET"] == "/scan/plot/counts"          # the NXdata signal
    flat = read_frame(path, dataset="/scan/instrument/cam/flatfield", **OPTS)
    assert flat.shape == frames.shape[1:] and float(flat.data.sum()) == frames[0].size
    assert read_header(path, dataset="/scan/plot").nframes == 3   # a group: its signal


def test_dataset_option_errors(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a/img"] = np.zeros((2, 4, 4), np.uint16)
        f["b/img"] = np.ones((4, 4), np.float32)
        f["b/names"] = np.array([b"x", b"y"])
        f["b/table"] = np.zeros((4, 4), dtype=[("x", "f4"), ("y", "f4")])
    with pytest.raises(FrameReadError, match=r"two.h5: the HDF5 file holds several image "
                       r"datasets and none is marked .*/a/img, /b/img.*pass dataset="):
        read_frame(path, **OPTS)
    assert read_frame(path, dataset="b/img", **OPTS).data.sum() == 16
    assert frame_count(path, dataset="/a/img") == 2
    with pytest.raises(FrameReadError, match=r"dataset='/c' is not in the file \(image "
                       r"datasets: /a/img, /b/img\); pass one of the paths listed"):
        read_frame(path, dataset="/c")
    with pytest.raises(FrameReadError, match=r"dataset='/b/names' is not an image"):
        read_frame(path, dataset="/b/names")
    with pytest.raises(UnsupportedFormatError, match=r"dataset='/b/table' holds"):
        read_frame(path, dataset="/b/table")
    with pytest.raises(ValueError, match=r"frame=2: .*has 2 frame\(s\)"):
        read_frame(path, dataset="/a/img", frame=2)
    fits_path = tmp_path / "x.fits"
    from astropy.io import fits
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(fits_path)
    with pytest.raises(InvalidSettingsError, match="applies to HDF5 only"):
        read_frame(fits_path, dataset="/a")


def test_no_image_and_empty_stack(tmp_path):
    path = tmp_path / "counters.h5"
    with h5py.File(path, "w") as f:
        f["1.1/measurement/diode"] = np.arange(10.0)
    with pytest.raises(UnsupportedFormatError, match=r"counters.h5: the HDF5 file holds no "
                       r"image dataset"):
        read_frame(path)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("entry/data/data", shape=(0, 4, 4), dtype=np.uint16,
                         maxshape=(None, 4, 4), chunks=(1, 4, 4))
    with pytest.raises(FrameReadError, match=r"empty.h5: the detector data "
                       r"/entry/data/data hold no frame"):
        read_frame(empty)


def test_damaged_files(tmp_path):
    good = write_lima(tmp_path / "good.h5", _frames(4, shape=(64, 64)), compression="gzip")
    raw = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FrameReadError, match=r"cut.h5: not a readable HDF5 file \(.*"
                       r"truncated.*check that the file is complete"):
        read_frame(cut)
    notes = tmp_path / "notes.h5"
    notes.write_text("not hdf5")
    with pytest.raises(FrameReadError, match=r"notes.h5: not a readable HDF5 file"):
        read_header(notes)


def test_summed_counts_above_2_24_are_exact(tmp_path):
    frames = np.array([[[16777217, 5], [2**30 + 1, 7]]] * 2, np.int32)
    frames = np.tile(frames, (1, 2, 2))
    path = write_lima(tmp_path / "sum.h5", frames)
    ccd = read_frame(path, **OPTS)
    assert ccd.data.dtype == np.float64 and ccd.meta["RDDTYPE"] == "float64"
    np.testing.assert_array_equal(ccd.data, frames[0])
    small = write_lima(tmp_path / "small.h5", np.minimum(frames, 2**24))
    assert read_frame(small, **OPTS).data.dtype == np.float32


def test_info_command_on_hdf5(tmp_path, capsys):
    master = write_eiger(tmp_path, "s1", _frames(3), pixel_mask=np.eye(12, 10), cutoff=9000)
    assert main(["info", str(master)]) == 0
    out = capsys.readouterr().out
    assert "12 x 10 float32 [adu]" in out
    assert "exposure [s]       0.1 (from count_time)" in out
    assert "saturation [adu]   9000.0" in out
    assert "masked             10" in out and "10 detector mask" in out


def test_old_nexus_signal_attribute_and_per_frame_count_time(tmp_path):
    frames = _frames(4, dtype=np.uint16)
    path = tmp_path / "old.nxs"
    with h5py.File(path, "w") as f:
        entry = f.create_group("scan_1")
        entry.attrs["NX_class"] = "NXentry"
        plot = entry.create_group("plot")
        plot.attrs["NX_class"] = "NXdata"
        plot.create_dataset("monitor", data=np.ones((4, 12, 10)))
        ds = plot.create_dataset("frames", data=frames)
        ds.attrs["signal"] = 1
        det = entry.create_group("instrument/ccd")
        det.attrs["NX_class"] = "NXdetector"
        det["count_time"] = np.array([0.5, 0.5, 1.0, 0.5])
    ccd = read_frame(path, frame=2, **OPTS)
    np.testing.assert_array_equal(ccd.data, frames[2])
    assert ccd.meta["EXPTIME"] == 1.0 and read_frame(path, **OPTS).meta["EXPTIME"] == 0.5


def test_file_locked_by_its_writer(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "live.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time\n"
         f"f = h5py.File({str(path)!r}, 'w')\n"
         "f['entry/data/data'] = [[[1, 2], [3, 4]]]\nf.flush()\n"
         "print('open', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        try:
            read_frame(path, **OPTS)
        except FrameReadError as err:
            message = str(err)
        else:
            pytest.skip("this file system does not lock HDF5 files")
        assert "live.h5: the HDF5 file is locked" in message
        assert "HDF5_USE_FILE_LOCKING=FALSE" in message
    finally:
        writer.communicate("")


def test_unknown_compression_filter_and_mismatched_parts(tmp_path):
    path = tmp_path / "odd_filter.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", shape=(2, 4, 4), dtype=np.uint16,
                              chunks=(1, 4, 4), compression=31999, allow_unknown_filter=True)
        for k in range(2):
            ds.id.write_direct_chunk((k, 0, 0), b"\x00" * 32)
    assert read_header(path).nframes == 2          # the header needs no decoding
    with pytest.raises(UnsupportedFormatError, match=r"odd_filter.h5: frame 1 of "
                       r"/entry/data/data is compressed with a filter HDF5 cannot decode here "
                       r".*install hdf5plugin"):
        read_frame(path, frame=1, **OPTS)
    master = write_eiger(tmp_path, "mixed", _frames(4), per_file=2, compression=None)
    with h5py.File(tmp_path / "mixed_data_000002.h5", "r+") as g:
        del g["entry/data/data"]
        g["entry/data/data"] = np.zeros((2, 5, 5), np.uint32)
    with pytest.raises(FrameReadError, match=r"mixed_master.h5: the datasets of "
                       r"/entry/data/data_\* hold frames of different shapes"):
        read_frame(master, **OPTS)
