"""Dask back end: the same row blocks and kernels, run as tasks on a dask.distributed cluster.

Each task combines a band of rows of every frame and returns the band of
the result; the client writes the bands into the output as they complete,
so the client holds the output and only the bands in flight.  Results are
identical to the local back end: every pixel is computed by the same kernel
from the same values, whatever the band boundaries.

On a real cluster the workers must be able to read the input files at the
paths given (a shared file system); frames passed in memory are shipped to
the workers with the plan.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import InvalidSettingsError

__all__ = ["run_dask"]

log = logging.getLogger(__name__)

#: rows of one Dask task (several kernel blocks): large enough that the
#: scheduler's per-task overhead (about 1 ms) is negligible
_TASK_ROWS = 128


def _task(plan, r0: int, r1: int):
    n = r1 - r0
    nx = plan.shape[1]
    data = np.empty((n, nx), np.float32)
    unc = np.empty((n, nx), np.float32)
    count = np.empty((n, nx), np.int16)
    rej = np.empty((n, nx), np.int16)
    for a in range(r0, r1, plan.rows):
        b = min(a + plan.rows, r1)
        plan.run_block(a, b, data[a - r0:b - r0], unc[a - r0:b - r0], count[a - r0:b - r0],
                       rej[a - r0:b - r0])
    return r0, r1, data, unc, count, rej


def _client(scheduler):
    # dask.distributed is imported here, not at the top: it takes about 0.65 s to
    # import, and only combine(scheduler=...) needs it
    try:
        from dask.distributed import Client
    except ImportError as err:  # pragma: no cover - distributed is a dependency
        raise InvalidSettingsError(
            "scheduler= needs dask.distributed; install it with 'pip install "
            "dask[distributed]'") from err
    if isinstance(scheduler, Client):
        return scheduler, False
    if isinstance(scheduler, str):
        return Client(scheduler), True
    raise InvalidSettingsError(
        f"scheduler={scheduler!r}: pass a dask.distributed.Client or a scheduler address "
        "such as 'tcp://host:8786'")


def run_dask(plan, scheduler, out_data, out_unc, out_n, out_rej) -> None:
    """Run every row band of ``plan`` on ``scheduler`` and fill the outputs."""
    from dask.distributed import as_completed  # deferred: see _client

    client, own = _client(scheduler)
    try:
        ny = plan.shape[0]
        rows = max(plan.rows, _TASK_ROWS // plan.rows * plan.rows)
        starts = list(range(0, ny, rows))
        ends = [min(r + rows, ny) for r in starts]
        (remote_plan,) = client.scatter([plan], broadcast=True)
        futures = client.map(_task, [remote_plan] * len(starts), starts, ends, pure=False)
        log.info("combine: %d Dask tasks of %d rows", len(futures), rows)
        for future, (r0, r1, data, unc, count, rej) in as_completed(futures, with_results=True):
            out_data[r0:r1] = data
            out_unc[r0:r1] = unc
            out_n[r0:r1] = count
            out_rej[r0:r1] = rej
            future.release()
        del remote_plan
    finally:
        if own:
            client.close()
