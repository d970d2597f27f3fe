"""Temporary files, their journal, and the lock of an output folder.

An output folder is shared with its user, so calframe touches only files it
created there.  Every file calframe writes goes first to a temporary name made
by :func:`temporary_path`::

    .calframe-<pid>-<12 hex digits>-<final name>.tmp

in the folder of the final file, and is then renamed over it.  While a run
holds the lock of its output folder (:func:`lock_output`), each temporary name
is first written to the run's journal, ``<folder>/.calframe/journal-<pid>``,
and only then created.  The journal is removed when the run ends.

A run killed (``kill -9``, power cut) leaves its journal, its lock file and
perhaps a few temporaries.  The next run that takes the lock removes the
temporaries listed in such a journal, and only those: a listed name that does
not match calframe's naming with the journal's process id, or that lies
outside the folder, is left alone.  Any other file in the folder belongs to
its user, whatever its name.

The lock is ``<folder>/.calframe/lock``: an ``flock`` lock (released by the
kernel when its process dies, however it dies) on a file that says who holds
it (process id, host, start time).  A second run refuses at once and names
the holder.  A lock left by a dead process of this host is taken over; one
left by a process of another host cannot be checked from here, and is taken
over only when the user says so (``break_lock=True``, ``--break-lock``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import socket
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .errors import CalframeError

try:  # pragma: no cover - Windows has no fcntl
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "TEMPORARY_PATTERN",
    "OutputLock",
    "OutputLockedError",
    "is_temporary",
    "journal_temporaries",
    "lock_output",
    "temporary_path",
]

log = logging.getLogger(__name__)

#: Folder of calframe's own bookkeeping inside an output folder.
STATE_FOLDER = ".calframe"
_PREFIX = ".calframe-"
#: The name of a temporary file calframe writes (see :func:`temporary_path`).
TEMPORARY_PATTERN = re.compile(r"\.calframe-(?P<pid>[0-9]+)-[0-9a-f]{12}-.+\.tmp", re.DOTALL)
# room left in a 255-byte file name for the prefix, pid, token and suffix
_NAME_ROOM = 200


class OutputLockedError(CalframeError, BlockingIOError):
    """An output folder is in use by another calframe run (or its lock cannot be checked).

    Attributes
    ----------
    folder : str
        The output folder.
    holder : dict
        What the lock file says of its holder (``pid``, ``host``, ``started``),
        empty when it says nothing.
    """

    def __init__(self, message: str, *, folder: str = "", holder: dict | None = None):
        super().__init__(message)
        self.folder = folder
        self.holder = dict(holder or {})


def temporary_path(path: str | os.PathLike) -> Path:
    """A new temporary name beside ``path``, listed in the journal of the run.

    The name is ``.calframe-<pid>-<random>-<name>.tmp`` in the folder of
    ``path``.  When this process holds the lock of an output folder that
    contains it, the name is written to the run's journal before this
    function returns, that is before the caller creates the file.

    Parameters
    ----------
    path : str or path-like
        The final file.

    Returns
    -------
    pathlib.Path
        Where to write before renaming over ``path``.

    Examples
    --------
    >>> tmp = temporary_path("out/lights/light_0001.fits")
    >>> is_temporary(tmp.name), tmp.name.endswith("-light_0001.fits.tmp")
    (True, True)
    """
    path = Path(path)
    name = path.name[:_NAME_ROOM]
    tmp = path.parent / f"{_PREFIX}{os.getpid()}-{secrets.token_hex(6)}-{name}.tmp"
    with _REGISTRY_LOCK:
        for held in [*_HELD.values(), *_JOURNALS.values()]:
            held.journal_entry(tmp)
    return tmp


def is_temporary(name: str, pid: int | None = None) -> bool:
    """Whether a file name is one of calframe's temporary names (of process ``pid``)."""
    match = TEMPORARY_PATTERN.fullmatch(name)
    return match is not None and (pid is None or int(match["pid"]) == pid)


# --------------------------------------------------------------------------
# the lock


_REGISTRY_LOCK = threading.RLock()
#: locks held by this process, by the real path of their folder
_HELD: dict[str, OutputLock] = {}
#: journals of folders whose lock another process holds (see journal_temporaries)
_JOURNALS: dict[str, _WorkerJournal] = {}


def _host() -> str:
    return socket.gethostname() or "unknown host"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (True when it cannot be told)."""
    if os.name == "nt":  # pragma: no cover - os.kill would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:  # pragma: no cover - no way to know: assume it runs
        return True
    return True


def _describe(holder: dict) -> str:
    if not holder:
        return "another calframe run"
    return (f"calframe run pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}")


class OutputLock:
    """The lock of one output folder, with the journal of the run that holds it.

    Use :func:`lock_output` rather than this class directly.

    Parameters
    ----------
    folder : str or path-like
        The output folder (created if missing).
    break_lock : bool
        Take over a lock that a process of another host left, which cannot be
        checked from here.
    """

    def __init__(self, folder: str | os.PathLike, *, break_lock: bool = False):
        self.folder = Path(folder)
        self.break_lock = break_lock
        self.state = self.folder / STATE_FOLDER
        self.path = self.state / "lock"
        self.journal_path = self.state / f"journal-{os.getpid()}"
        self._fd: int | None = None
        self._journal: int | None = None
        self._root = ""
        self.depth = 0

    # -- taking and giving back ------------------------------------------
    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputLockedError`.

        Raises
        ------
        OutputLockedError
            Another process holds it, or a process of another host left it
            and ``break_lock`` is false.
        """
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            kernel = self._flock(fd)
            holder = _read_holder(fd)
            if kernel is False:  # another process holds it now
                raise OutputLockedError(
                    f"{self.folder}: in use by {_describe(holder)}; wait for that run to "
                    "end, or write to another folder", folder=str(self.folder), holder=holder)
            self._check_left(holder, kernel)
            started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            me = {"pid": os.getpid(), "host": _host(), "started": started}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(me) + "\n").encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._root = os.path.realpath(self.folder)
        removed = self._remove_stale_temporaries()
        if holder:
            log.warning("%s: took over the lock of %s, which ended without giving it back; "
                        "removed %d temporary file%s it left", self.folder, _describe(holder),
                        removed, "s" * (removed != 1))
        self._journal = os.open(self.journal_path,
                                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                                | getattr(os, "O_CLOEXEC", 0), 0o666)
        os.write(self._journal, (json.dumps(me) + "\n").encode())

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: locked; False: another process holds it; None: no OS lock here."""
        if fcntl is None:  # pragma: no cover
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as err:  # pragma: no cover - file systems without flock
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        return True

    def _check_left(self, holder: dict, kernel: bool | None) -> None:
        """Refuse a lock file that names a holder who may still run."""
        if not holder:
            return
        where = f"{self.folder}: locked by {_describe(holder)}"
        if holder.get("host") != _host():
            if self.break_lock:
                return
            raise OutputLockedError(
                f"{where}; calframe cannot tell from this host whether it still runs; if "
                f"it does not, rerun with --break-lock (or remove {self.path})",
                folder=str(self.folder), holder=holder)
        if kernel is None:  # no OS lock on this file system: the process id tells
            try:
                pid = int(holder.get("pid", -1))
            except (TypeError, ValueError):
                pid = -1
            if pid > 0 and _pid_alive(pid) and pid != os.getpid():
                raise OutputLockedError(f"{where}; wait for that run to end, or write to "
                                        "another folder", folder=str(self.folder),
                                        holder=holder)

    def release(self) -> None:
        """Remove the journal (and any temporary of this run it lists), give the lock back."""
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
            self._remove_listed(self.journal_path, os.getpid())
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing gives the flock back
            self._fd = None

    # -- the journal ------------------------------------------------------
    def journal_entry(self, tmp: Path) -> None:
        """List ``tmp`` in the journal when it lies in this lock's folder."""
        if self._journal is None:
            return
        where = os.path.realpath(tmp.parent)
        if where != self._root and not where.startswith(self._root + os.sep):
            return
        rel = os.path.relpath(os.path.join(where, tmp.name), self._root)
        os.write(self._journal, (json.dumps(rel) + "\n").encode())

    def _remove_stale_temporaries(self) -> int:
        """Remove what the journals of runs that are gone list (the lock is ours)."""
        removed = 0
        for journal in sorted(self.state.glob("journal-*")):
            if journal.name == self.journal_path.name or not journal.is_file():
                continue
            try:
                head = journal.read_text(encoding="utf-8").splitlines()[:1]
                pid = int(json.loads(head[0])["pid"]) if head else -1
            except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError):
                pid = -1
            if pid < 0 or journal.name != f"journal-{pid}":
                log.info("left alone: %s is not a journal calframe wrote", journal)
                continue
            removed += self._remove_listed(journal, pid)
        return removed

    def _remove_listed(self, journal: Path, pid: int) -> int:
        """Remove the temporaries of process ``pid`` that ``journal`` lists, then it."""
        removed = 0
        try:
            lines = journal.read_text(encoding="utf-8").splitlines()[1:]
        except (OSError, UnicodeDecodeError):
            return 0
        for line in lines:
            try:
                rel = json.loads(line)
            except ValueError:  # a line cut by the kill
                continue
            if not isinstance(rel, str) or os.path.isabs(rel):
                continue
            full = os.path.normpath(os.path.join(self._root, rel))
            parent = os.path.realpath(os.path.dirname(full))
            if parent != self._root and not parent.startswith(self._root + os.sep):
                continue
            full = os.path.join(parent, os.path.basename(full))
            if not is_temporary(os.path.basename(full), pid):
                continue
            try:
                if not stat.S_ISREG(os.lstat(full).st_mode):
                    continue
                os.unlink(full)
            except OSError:
                continue
            removed += 1
            log.info("removed %s, left by an interrupted calframe run", full)
        with contextlib.suppress(OSError):
            journal.unlink()
        return removed


class _WorkerJournal(OutputLock):
    """The journal of a process that writes into a folder whose lock another process
    holds (a worker of a run on a cluster): its temporaries are listed as a run's are,
    so that the run that next takes the lock removes those a killed worker left."""

    def acquire(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self._root = os.path.realpath(self.folder)
        self._journal = os.open(self.journal_path,
                                os.O_WRONLY | os.O_CREAT | os.O_APPEND
                                | getattr(os, "O_CLOEXEC", 0), 0o666)
        if os.fstat(self._journal).st_size == 0:
            started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            me = {"pid": os.getpid(), "host": _host(), "started": started}
            os.write(self._journal, (json.dumps(me) + "\n").encode())


@contextlib.contextmanager
def journal_temporaries(folder: str | os.PathLike) -> Iterator[None]:
    """List the temporaries this process writes into ``folder`` while the block runs.

    For a process that writes into an output folder whose lock another
    process holds: a worker of a run on a cluster, whose coordinating process
    took the lock.  Each temporary name is listed in
    ``<folder>/.calframe/journal-<pid>`` before it is created; the journal is
    removed when the block ends, and a journal left by a killed process is
    read by the run that next takes the lock, which removes the temporaries it
    lists (see the top of this module).  Nothing is done when this process
    holds the folder's lock itself.  Blocks may nest and run in several threads.

    Parameters
    ----------
    folder : str or path-like
        The output folder (it must exist).

    Examples
    --------
    >>> import os, tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> journal = out / ".calframe" / f"journal-{os.getpid()}"
    >>> with journal_temporaries(out):
    ...     tmp = temporary_path(out / "a.fits")
    ...     listed = journal.read_text()
    >>> tmp.name in listed, journal.exists()
    (True, False)
    """
    key = os.path.realpath(folder)
    with _REGISTRY_LOCK:
        if key in _HELD:
            journal = None
        else:
            journal = _JOURNALS.get(key)
            if journal is None:
                journal = _WorkerJournal(folder)
                journal.acquire()
                _JOURNALS[key] = journal
            journal.depth += 1
    try:
        yield
    finally:
        if journal is not None:
            with _REGISTRY_LOCK:
                journal.depth -= 1
                if journal.depth == 0:
                    _JOURNALS.pop(key, None)
                    journal.release()


def _read_holder(fd: int) -> dict:
    """What a lock file says of its holder ({} when it is empty)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        text = "?"
    try:
        holder = json.loads(text) if text else {}
    except ValueError:
        holder = None
    if not isinstance(holder, dict):  # not what calframe writes: still a holder
        return {"pid": "?", "host": "?", "started": "?"}
    return holder


@contextlib.contextmanager
def lock_output(folder: str | os.PathLike, *, break_lock: bool = False
                ) -> Iterator[OutputLock]:
    """Hold the lock of an output folder while the block runs.

    The lock is re-entrant within one process: a run that already holds it
    (the command line takes it before planning) takes it again for free.

    Parameters
    ----------
    folder : str or path-like
        The output folder (created if missing).
    break_lock : bool
        Take over a lock that a process of another host left.

    Yields
    ------
    OutputLock

    Raises
    ------
    OutputLockedError
        Another run holds the folder, or a process of another host left its
        lock and ``break_lock`` is false.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> with lock_output(out) as lock:
    ...     tmp = temporary_path(f"{out}/a.fits")
    >>> lock.depth
    0
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    with _REGISTRY_LOCK:
        lock = _HELD.get(key)
        if lock is None:
            lock = OutputLock(folder, break_lock=break_lock)
            lock.acquire()
            _HELD[key] = lock
        lock.depth += 1
    try:
        yield lock
    finally:
        with _REGISTRY_LOCK:
            lock.depth -= 1
            if lock.depth == 0:
                _HELD.pop(key, None)
                lock.release()
