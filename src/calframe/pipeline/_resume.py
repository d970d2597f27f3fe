"""Resuming a run: the key of each output, and whether an output on disk is whole."""

from __future__ import annotations

import hashlib
import json
import math
import os
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
            raw: dict[str, bytes] = {}   # keyword -> its first card, read when needed
            header_sum, end = 0, False
            start = b"SIMPLE  " if index == 0 else b"XTENSION"
            while not end:
                block = handle.read(_BLOCK)
                if len(block) < _BLOCK:
                    return f"HDU {index}: the header is cut short", value
                if not raw and not block.startswith(start):
                    return f"HDU {index}: no FITS header where one should start", value
                header_sum = _ones_sum(block, header_sum)
                offset += _BLOCK
                for i in range(0, _BLOCK, 80):
                    key = block[i:i + 8].decode("ascii", "replace").rstrip()
                    if key == "END":
                        end = True
                        break
                    if key and key not in raw:
                        raw[key] = block[i:i + 80]

            def card(key: str, raw=raw) -> str | None:
                return _card_value(raw[key]) if key in raw else None

            if index == 0:
                value = card(keyword)
            try:
                naxis = int(card("NAXIS") or "")
                count = math.prod(int(card(f"NAXIS{n}") or "") for n in range(1, naxis + 1))
                nbytes = (abs(int(card("BITPIX") or "")) // 8 * int(card("GCOUNT") or 1)
                          * (int(card("PCOUNT") or 0) + (count if naxis else 0)))
                datasum = int(card("DATASUM") or "")
                if not card("CHECKSUM"):
                    raise ValueError("no CHECKSUM")
            except ValueError:
                return (f"HDU {index}: no valid data size, CHECKSUM or DATASUM in its "
                        "header"), value
            padded = -(-nbytes // _BLOCK) * _BLOCK
            if offset + padded > size:
                return f"HDU {index}: the data are cut short", value
            data_sum, left = 0, padded
            while left:
                chunk = handle.read(min(_CHUNK, left))
                data_sum = _ones_sum(chunk, data_sum)
                left -= len(chunk)
            offset += padded
            if data_sum != datasum:
                return f"HDU {index}: the data do not match their DATASUM", value
            if _ones_sum(data_sum.to_bytes(4, "big"), header_sum) != 0xFFFFFFFF:
                return f"HDU {index}: the HDU does not match its CHECKSUM", value
            last = card("EXTNAME")
            index += 1
    if last != "PROVENANCE":
        return "the file ends before its PROVENANCE table", value
    return None, value
