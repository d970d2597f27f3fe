"""The Dask back end gives exactly the local result."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_array_equal

from calframe import SigmaClip, combine
from calframe.errors import InvalidSettingsError

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as cl:
        yield cl


def _frames(tmp_path, n=7, shape=(300, 90)):
    rng = np.random.default_rng(7)
    data = rng.normal(1000, 15, size=(n, *shape))
    data[2, 40:45] += 5000
    paths = []
    for i, frame in enumerate(data):
        path = tmp_path / f"f{i}.fits"
        fits.PrimaryHDU(np.rint(frame).astype(np.uint16)).writeto(path)
        paths.append(path)
    return paths, list(data)


@pytest.mark.parametrize("method,rejection", [("median", None), ("mean", SigmaClip()),
                                              ("sum", None)])
def test_dask_equals_local(tmp_path, client, method, rejection):
    paths, arrays = _frames(tmp_path)
    for frames in (paths, arrays):
        local = combine(frames, method=method, rejection=rejection, memory_limit="4MB")
        remote = combine(frames, method=method, rejection=rejection, memory_limit="4MB",
                         scheduler=client)
        assert_array_equal(remote.data, local.data)
        assert_array_equal(remote.uncertainty.array, local.uncertainty.array)
        assert_array_equal(remote.ncombine, local.ncombine)
        assert_array_equal(remote.rejected, local.rejected)
        assert_array_equal(remote.mask, local.mask)


def test_dask_by_address(tmp_path, client):
    paths, _ = _frames(tmp_path, n=3, shape=(20, 10))
    out = combine(paths, scheduler=client.scheduler.address)
    assert_array_equal(out.data, combine(paths).data)


def test_bad_scheduler():
    with pytest.raises(InvalidSettingsError, match="scheduler=42"):
        combine([np.zeros((2, 2))], scheduler=42)


@pytest.mark.slow
def test_dask_worker_processes(tmp_path):
    # separate worker processes: the plan (open files, caches) must pickle
    paths, arrays = _frames(tmp_path, n=5, shape=(150, 40))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as cl:
        for frames in (paths, arrays, iter(arrays)):
            remote = combine(frames, method="mean", rejection=SigmaClip(), memory_limit="2MB",
                             scheduler=cl)
            local = combine(paths, method="mean", rejection=SigmaClip())
            if frames is not paths:
                local = combine(arrays, method="mean", rejection=SigmaClip())
            assert_array_equal(remote.data, local.data)
            assert_array_equal(remote.uncertainty.array, local.uncertainty.array)
