"""Where a run's tasks run: this process (threads), a local Dask cluster, or a scheduler.

``scheduler`` in :class:`~calframe.pipeline.PipelineConfig` (``--scheduler`` of
``calframe run``, ``scheduler = ...`` in the TOML file) takes one of:

``"threads"``
    Everything in this process (the default).
``"processes:N"``
    A ``dask.distributed.LocalCluster`` of ``N`` worker processes of one
    thread each, started for the run and stopped after it.
``ADDRESS``
    A running ``dask scheduler``: ``tcp://host:port`` (or ``host:port``),
    ``tls://...``, ``ws://...``, ``ucx://...``, ``inproc://...``.

dask.distributed is imported only when a cluster is used.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import CalframeError, InvalidSettingsError

__all__ = ["SchedulerUnreachableError", "parse_scheduler"]

log = logging.getLogger(__name__)

#: Seconds to wait for a running scheduler to answer.
CONNECT_TIMEOUT = 10.0

_FORMS = ("'threads' (this process, the default), 'processes:N' (a local cluster of N "
          "worker processes), or the address of a running dask scheduler "
          "(tcp://host:8786 or host:8786)")
_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
_HOST_PORT = re.compile(r"[A-Za-z0-9._\-\[\]:]*[A-Za-z0-9.\]\-_]:[0-9]{1,5}")


class SchedulerUnreachableError(CalframeError, OSError):
    """The Dask scheduler a run was given cannot be reached."""


@dataclass(frozen=True)
class Scheduler:
    """A parsed ``scheduler`` setting.

    Attributes
    ----------
    kind : {'threads', 'processes', 'address'}
    workers : int
        Worker processes of a local cluster (0 otherwise).
    address : str
        The scheduler's address ('' otherwise).
    """

    kind: str
    workers: int = 0
    address: str = ""


def parse_scheduler(value) -> Scheduler:
    """Check a ``scheduler`` setting and say what it asks for.

    Parameters
    ----------
    value : str
        ``'threads'``, ``'processes:N'`` or a scheduler's address.

    Returns
    -------
    Scheduler

    Raises
    ------
    InvalidSettingsError
        Any other value; the message names it and the accepted forms.

    Examples
    --------
    >>> parse_scheduler("processes:2")
    Scheduler(kind='processes', workers=2, address='')
    >>> parse_scheduler("10.0.0.5:8786").address
    'tcp://10.0.0.5:8786'
    """
    if not isinstance(value, str):
        raise InvalidSettingsError(f"scheduler={value!r} is not a text; give {_FORMS}")
    text = value.strip()
    if text == "threads":
        return Scheduler("threads")
    if text.startswith("processes"):
        count = text[len("processes"):]
        if count.startswith(":") and count[1:].isdigit() and int(count[1:]) >= 1:
            return Scheduler("processes", workers=int(count[1:]))
        raise InvalidSettingsError(
            f"scheduler={value!r}: the number of worker processes must be a whole number "
            f"of at least 1 (e.g. 'processes:2'); give {_FORMS}")
    protocol, sep, rest = text.partition("://")
    if sep:
        if protocol in _PROTOCOLS and rest and not any(c.isspace() for c in rest):
            return Scheduler("address", address=text)
    elif _HOST_PORT.fullmatch(text) and int(text.rsplit(":", 1)[1]) <= 65535:
        return Scheduler("address", address=f"tcp://{text}")
    raise InvalidSettingsError(f"scheduler={value!r} is not known; give {_FORMS}")


@contextlib.contextmanager
def open_client(scheduler: Scheduler, *, memory_limit: str | None = None,
                announce=None) -> Iterator:
    """A ``dask.distributed.Client`` for ``scheduler`` while the block runs.

    A local cluster is started here and closed after the block; a running
    scheduler is only connected to.  ``announce(text)`` is called with the
    dashboard link.

    Raises
    ------
    SchedulerUnreachableError
        The scheduler does not answer within :data:`CONNECT_TIMEOUT` seconds.
    """
    from distributed import Client, LocalCluster

    if scheduler.kind == "processes":
        with LocalCluster(n_workers=scheduler.workers, threads_per_worker=1,
                          processes=True, dashboard_address=":0",
                          memory_limit=memory_limit or "auto") as cluster, \
                Client(cluster) as client:
            _announce(client, announce)
            yield client
        return
    try:
        client = Client(scheduler.address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as err:
        raise SchedulerUnreachableError(
            f"cannot reach the dask scheduler at {scheduler.address} within "
            f"{CONNECT_TIMEOUT:g} s ({type(err).__name__}); start one with `dask scheduler` "
            "(and workers with `dask worker ADDRESS`), or check the address") from None
    with client:
        _announce(client, announce)
        yield client


def _announce(client, announce) -> None:
    import importlib.util

    link = getattr(client, "dashboard_link", None)
    text = f"Dask dashboard: {link}" if link else "Dask dashboard: not available"
    if link and importlib.util.find_spec("bokeh") is None:
        text += " (served only where the bokeh package is installed)"
    log.info(text)
    if announce is not None:
        announce(text)
