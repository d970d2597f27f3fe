"""Series larger than memory: open_series over every multi-frame format, band sums,
streaming in flat memory, and running_mean past 32767 frames."""

import pickle
import tracemalloc

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile
from astropy.io import fits

from calframe import (
    FrameSeries,
    IncompatibleFramesError,
    InvalidSettingsError,
    iter_frames,
    open_series,
    read_frame,
    running_mean,
)
from calframe.errors import NoFramesError
from hdf5_layouts import write_eiger, write_lima


def _cube(n=9, shape=(6, 5), seed=3, high=3000, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, size=(n, *shape)).astype(dtype)


def _write_edf(path, frames, count_time=0.5):
    import fabio.edfimage

    header = {"count_time": str(count_time)}
    image = fabio.edfimage.EdfImage(data=frames[0], header=header)
    for frame in frames[1:]:
        image.append_frame(data=frame, header=header)
    image.write(str(path))
    return path


def _write_fits_cube(path, frames, exptime=2.0):
    hdu = fits.PrimaryHDU(frames.astype(np.uint16))     # BITPIX 16, BZERO 32768
    hdu.header["EXPTIME"] = exptime
    fits.HDUList([hdu]).writeto(path)
    return path


@pytest.mark.parametrize("kind", ["hdf5", "tiff", "edf", "fits"])
def test_open_series_every_format(tmp_path, kind):
    frames = _cube()
    if kind == "hdf5":
        path = write_eiger(tmp_path, "s", frames.astype(np.uint32), per_file=4)
    elif kind == "tiff":
        path = tmp_path / "stack.tif"
        tifffile.imwrite(path, frames)
    elif kind == "edf":
        path = _write_edf(tmp_path / "scan.edf", frames)
    else:
        path = _write_fits_cube(tmp_path / "cube.fits", frames)
    series = open_series(path)
    assert isinstance(series, FrameSeries)
    assert len(series) == 9 and series.shape == (9, 6, 5)
    assert series.data.chunks[0] == (1,) * 9
    np.testing.assert_array_equal(series.data.compute(), frames.astype(np.float32))
    np.testing.assert_array_equal(series.frame(-1), frames[-1])
    assert series[4].meta["SERFRAME"] == 4
    assert series.exptime == {"hdf5": 0.1, "tiff": None, "edf": 0.5, "fits": 2.0}[kind]
    total = series.band_sum(2, 7)
    np.testing.assert_array_equal(total.data, frames[2:7].sum(axis=0, dtype=np.float64))
    assert total.meta["NCOMBINE"] == 5 and total.meta["BANDHI"] == 6
    # a copy sent to another process opens the files itself
    again = pickle.loads(pickle.dumps(series.data))
    np.testing.assert_array_equal(again[3].compute(), frames[3])
    series.close()


def test_folder_and_list_of_files(tmp_path):
    frames = _cube(n=4)
    for k, frame in enumerate(frames):
        fits.PrimaryHDU(frame, header=fits.Header({"EXPTIME": 1.0})).writeto(
            tmp_path / f"f_{k:03d}.fits")
    lima = write_lima(tmp_path / "more.h5", frames[:2], exposure_time=1.0)
    series = open_series(tmp_path)              # 4 FITS then the HDF5 file, by name
    assert len(series) == 6 and len(series.paths) == 5
    np.testing.assert_array_equal(series.data[:4].compute(), frames)
    series = open_series([lima, tmp_path / "f_002.fits"])
    np.testing.assert_array_equal(series.data.compute(), frames[[0, 1, 2]])


def test_series_masks_and_errors(tmp_path):
    frames = _cube(n=5).astype(np.uint32)
    frames[3, 1, 1] = 4000                      # at the cut-off: saturated
    mask = np.zeros(frames.shape[1:], np.uint32)
    mask[0, 4] = 2
    path = write_eiger(tmp_path, "m", frames, pixel_mask=mask, cutoff=4000)
    series = open_series(path)
    np.testing.assert_array_equal(series.mask, mask != 0)
    assert series.saturation == 4000
    assert series[3].mask[1, 1] and series[3].mask[0, 4] and not series[2].mask[1, 1]
    band = series.band_sum(0, 5)
    assert band.mask[1, 1] and band.mask[0, 4] and band.mask.sum() == 2
    assert not series.band_sum(0, 3).mask[1, 1]
    with pytest.raises(InvalidSettingsError, match=r"band_sum\(3, 3\): the series has 5"):
        series.band_sum(3, 3)
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((2, 7, 7), np.uint16))
    with pytest.raises(IncompatibleFramesError, match=r"other.tif: frames of 7x7, the "
                       r"series' first file has 6x5"):
        open_series([path, other])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoFramesError, match="the folder holds no frame file"):
        open_series(empty)


def test_multipage_tiff_reads_only_the_page_asked(tmp_path, monkeypatch):
    frames = _cube(n=30)
    path = tmp_path / "cube.tif"
    tifffile.imwrite(path, frames)
    decoded = []
    original = tifffile.TiffPage.asarray

    def spy(self, *args, **kwargs):
        decoded.append(self.index)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", spy)
    ccd = read_frame(path, frame=17, gain=1.0, read_noise=1.0)
    np.testing.assert_array_equal(ccd.data, frames[17])
    assert decoded == [17]
    decoded.clear()
    seen = [int(c.data[0, 0]) for c in iter_frames(path, gain=1.0, read_noise=1.0)]
    assert seen == list(frames[:, 0, 0]) and decoded == list(range(30))


def test_fits_cube_planes_on_demand(tmp_path):
    frames = _cube(n=6)
    path = _write_fits_cube(tmp_path / "cube.fits", frames)
    series = open_series(path)
    np.testing.assert_array_equal(series.frame(5), frames[5])
    assert series.saturation == 65535


@pytest.mark.slow
def test_200_frames_of_1024_stream_in_flat_memory(tmp_path):
    n, shape = 200, (1024, 1024)
    ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])).astype(np.uint16)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", shape=(n, *shape), dtype=np.uint16,
                              chunks=(1, *shape), **hdf5plugin.Bitshuffle(cname="lz4"))
        for k in range(n):
            ds[k] = ramp + k
    series = open_series(path)
    frame_bytes = shape[0] * shape[1] * 4
    tracemalloc.start()
    checks = 0
    for k, ccd in enumerate(series):
        checks += int(ccd.data[10, 20] == 30 + k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert checks == n
    assert peak < 6 * frame_bytes           # a few frames, not 200 (800 MB)
    tracemalloc.start()
    band = series.band_sum(0, n)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert band.data[10, 20] == sum(30 + k for k in range(n))
    assert peak < 6 * frame_bytes


def test_running_mean_count_is_not_int16():
    steps = list(running_mean(np.full((2, 2), float(v)) for v in range(3)))
    assert steps[-1].ncombine.dtype == np.int32
    assert int(steps[-1].ncombine[0, 0]) == 3


@pytest.mark.slow
def test_running_mean_over_33000_frames_does_not_wrap(tmp_path):
    n = 33_000
    path = tmp_path / "long.h5"
    values = np.arange(n, dtype=np.uint16) % 50
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", shape=(n, 2, 3), dtype=np.uint16,
                              chunks=(1000, 2, 3))
        ds[:] = values[:, None, None]
    *_, step = running_mean(open_series(path))
    assert step.meta["NCOMBINE"] == n
    assert step.ncombine.min() == n                       # not -32536
    np.testing.assert_allclose(step.data, values.mean(), rtol=1e-6)
