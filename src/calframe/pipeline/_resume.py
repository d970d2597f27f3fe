"""Resuming a run: the key of each output, and whether an output on disk is whole."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import CalframeError
from ..provenance import sha256_file
from ._plan import MASTER_KINDS, Plan, Task

__all__ = ["HASH_KEYWORD"]


#: Header keyword holding an output's task hash.
HASH_KEYWORD = "PIPEHASH"


class TaskKeys:
    """The key of each output of a run, and the SHA-256 of the files behind it.

    A task's key is the SHA-256 of its kind, parameters, the SHA-256 of every
    input file, the keys of the tasks it uses, the SHA-256 of the master
    files it uses as they are on disk, and calframe's version.  Each file is
    hashed once per run (:meth:`forget` a file written again).
    """

    def __init__(self, plan: Plan, out: Path):
        self.plan = plan
        self.out = out
        self.hashes: dict[str, str] = {}   # input path -> sha256
        self.keys: dict[str, str] = {}     # task name -> task hash

    def sha(self, path: str) -> str:
        """The SHA-256 of a file, hashed once per run."""
        if path not in self.hashes:
            self.hashes[path] = sha256_file(path)
        return self.hashes[path]

    def forget(self, path: str) -> None:
        """A file written again: its digest is computed again when asked."""
        self.hashes.pop(path, None)

    def key(self, task: Task, inputs: list[str]) -> str:
        """The key of ``task`` made from ``inputs`` (kept for the tasks that use it)."""
        payload = {"kind": task.kind, "parameters": task.parameters,
                   "inputs": [self.sha(p) for p in inputs],
                   "uses": {r: self.keys.get(n, "missing") for r, n in task.uses.items()},
                   "masters": self.master_digests(task),
                   "version": __version__}
        text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        key = hashlib.sha256(text.encode()).hexdigest()
        self.keys[task.name] = key
        return key

    def master_digests(self, task: Task) -> dict[str, str]:
        """The SHA-256 of each master file a task uses, as it is now on disk.

        A master made again (settings, inputs, or damage) is a new file, so
        what was made from it is made again too; the provenance of every
        output names master files that exist.
        """
        digests = {}
        for role, name in task.uses.items():
            used = self.plan.task(name)
            if used.kind not in MASTER_KINDS:
                continue
            path = self.out / used.output
            try:
                digests[role] = self.sha(str(path))
            except (OSError, CalframeError):
                digests[role] = "missing"
        return digests


_BLOCK = 2880
_CHUNK = _BLOCK * 2048  # bytes summed at a time: whole blocks, whole 32-bit words


def _ones_sum(buffer, total: int = 0) -> int:
    """The FITS checksum sum: one's complement sum of big-endian 32-bit words."""
    total += int(np.frombuffer(buffer, dtype=">u4").sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _card_value(card: bytes) -> str | None:
    """The value of a header card as text (a string without its quotes)."""
    if card[8:10] != b"= ":
        return None
    text = card[10:].decode("ascii", "replace").lstrip()
    if not text.startswith("'"):
        return text.split("/", 1)[0].strip()
    out, i = [], 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1:i + 2] != "'":
                break
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out).rstrip()


def _check_output(path: str | os.PathLike, keyword: str) -> tuple[str | None, str | None]:
    """What is wrong with a calframe output file, and the value of ``keyword``.

    Every HDU must carry ``CHECKSUM`` and ``DATASUM`` that match its bytes
    (computed here on the raw blocks, without astropy: a rerun checks every
    output it skips), the file must end where its last HDU ends, and that
    HDU must be the ``PROVENANCE`` table that :func:`calframe.write_frame`
    writes last (a file cut at an HDU boundary is refused too).

    Returns
    -------
    problem : str or None
        None when the file is whole.
    value : str or None
        The primary header's ``keyword`` (None when missing or unreadable).
    """
    value = None
    size = os.path.getsize(path)
    last = None
    with open(path, "rb") as handle:
        offset = index = 0
        while offset < size:
            header = _read_header(handle, index)
            if isinstance(header, str):
                return f"HDU {index}: {header}", value
            offset += header.nbytes
            if index == 0:
                value = header.value(keyword)
            problem, padded = _check_data(handle, header, size - offset)
            if problem:
                return f"HDU {index}: {problem}", value
            offset += padded
            last = header.value("EXTNAME")
            index += 1
    if last != "PROVENANCE":
        return "the file ends before its PROVENANCE table", value
    return None, value


@dataclass
class _Header:
    """A header read block by block: its cards and its checksum sum."""

    cards: dict[str, bytes]   # keyword -> its first card, decoded when asked for
    checksum: int             # one's complement sum of the header blocks
    nbytes: int               # bytes of the header blocks

    def value(self, key: str) -> str | None:
        """The value of the first card of ``key`` as text (None when it has none)."""
        return _card_value(self.cards[key]) if key in self.cards else None


def _read_header(handle, index: int) -> _Header | str:
    """The header of HDU ``index`` at the position of ``handle``, or what is wrong."""
    cards: dict[str, bytes] = {}
    checksum = nbytes = 0
    start = b"SIMPLE  " if index == 0 else b"XTENSION"
    while True:
        block = handle.read(_BLOCK)
        if len(block) < _BLOCK:
            return "the header is cut short"
        if not cards and not block.startswith(start):
            return "no FITS header where one should start"
        checksum = _ones_sum(block, checksum)
        nbytes += _BLOCK
        for i in range(0, _BLOCK, 80):
            key = block[i:i + 8].decode("ascii", "replace").rstrip()
            if key == "END":
                return _Header(cards, checksum, nbytes)
            if key and key not in cards:
                cards[key] = block[i:i + 80]


def _data_size(header: _Header) -> tuple[int, int]:
    """The bytes of data an HDU's header announces, and its ``DATASUM``.

    Raises ValueError when the header does not say them or has no ``CHECKSUM``.
    """
    naxis = int(header.value("NAXIS") or "")
    count = math.prod(int(header.value(f"NAXIS{n}") or "") for n in range(1, naxis + 1))
    nbytes = (abs(int(header.value("BITPIX") or "")) // 8 * int(header.value("GCOUNT") or 1)
              * (int(header.value("PCOUNT") or 0) + (count if naxis else 0)))
    datasum = int(header.value("DATASUM") or "")
    if not header.value("CHECKSUM"):
        raise ValueError("no CHECKSUM")
    return nbytes, datasum


def _check_data(handle, header: _Header, room: int) -> tuple[str | None, int]:
    """Read the data of an HDU (``room``: bytes left in the file): what is wrong with
    them and the HDU's sums (None when they match), and the bytes read."""
    try:
        nbytes, datasum = _data_size(header)
    except ValueError:
        return "no valid data size, CHECKSUM or DATASUM in its header", 0
    padded = -(-nbytes // _BLOCK) * _BLOCK
    if padded > room:
        return "the data are cut short", 0
    data_sum, left = 0, padded
    while left:
        chunk = handle.read(min(_CHUNK, left))
        data_sum = _ones_sum(chunk, data_sum)
        left -= len(chunk)
    if data_sum != datasum:
        return "the data do not match their DATASUM", padded
    if _ones_sum(data_sum.to_bytes(4, "big"), header.checksum) != 0xFFFFFFFF:
        return "the HDU does not match its CHECKSUM", padded
    return None, padded
