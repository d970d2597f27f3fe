"""What a run takes as the failure of one file, and how it says it in one line."""

from __future__ import annotations

import struct
import zlib

import rawpy

from ..errors import CalframeError
from ..inventory import Problem

__all__ = ["PipelineProblemError"]


#: What reading one damaged file may raise besides calframe's own errors (a
#: reader that leaks them): corrupt compressed data, truncation, malformed
#: header values, LibRaw's errors for camera RAW files.  A run takes any of them
#: as a problem of that file.
_FILE_FAILURES: tuple[type[BaseException], ...] = (
    CalframeError, OSError, ValueError, EOFError, KeyError, IndexError, TypeError,
    zlib.error, struct.error, rawpy.LibRawError)


class PipelineProblemError(CalframeError, ValueError):
    """A problem with the inputs, raised when the run is strict."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(f"{problem} (stopped because the run is strict)")


def _oneline(err: BaseException | str) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _oneline_of(err: BaseException) -> str:
    """The first line of an error, with its type when it is not calframe's own."""
    text = _oneline(err)
    if isinstance(err, CalframeError) or text == type(err).__name__:
        return text
    kind = type(err)
    module = kind.__module__.split(".")[0]
    if module != "builtins":  # zlib.error, struct.error, rawpy.LibRawIOError...
        return f"{module}.{kind.__name__}: {text}"
    if isinstance(err, KeyError | IndexError | TypeError):
        return f"{kind.__name__}: {text}"
    return text
