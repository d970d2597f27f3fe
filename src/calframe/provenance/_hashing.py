"""The SHA-256 of a file, computed once per process while the file is unchanged."""

from __future__ import annotations

import collections
import hashlib
import os
import stat
import threading

from ..errors import FrameReadError

__all__ = ["sha256_file"]


#: digests computed in this process, by the identity and state of the file
#: (device, inode, size, modification and change times in ns), newest last
_DIGESTS: collections.OrderedDict[tuple, str] = collections.OrderedDict()
_DIGESTS_LOCK = threading.Lock()
_DIGESTS_MAX = 8192


def _file_state(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 22,
                reuse: bool = True) -> str:
    """Return the hexadecimal SHA-256 of the bytes of a file.

    A whole-folder run hashes its inputs for its resume keys and again for
    each output's provenance; the second time costs nothing: the digest is
    kept, for the rest of the process, with the file's device, inode, size
    and modification and change times (to the nanosecond), and reused while
    all of them are unchanged.  Any write to the file changes its change
    time, which no program can set back.

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk_size : int
        Bytes read at a time.
    reuse : bool
        False reads the file again whatever is known of it (to verify it).

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FrameReadError(path, "is not a regular file (a folder, FIFO or device)",
                             "give the file itself")
    if reuse:
        state = _file_state(info)
        with _DIGESTS_LOCK:
            known = _DIGESTS.get(state)
            if known is not None:
                _DIGESTS.move_to_end(state)
                return known
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        before = _file_state(os.fstat(handle.fileno()))
        while size := handle.readinto(buffer):
            digest.update(view[:size])  # large updates release the GIL
        after = _file_state(os.fstat(handle.fileno()))
    value = digest.hexdigest()
    if before == after:  # (not written to while it was read)
        with _DIGESTS_LOCK:
            _DIGESTS[after] = value
            _DIGESTS.move_to_end(after)
            while len(_DIGESTS) > _DIGESTS_MAX:
                _DIGESTS.popitem(last=False)
    return value
