"""Progress bars for long steps (tqdm), off unless the command line turns them on.

The library never prints on its own: :func:`progress` returns the iterable
unchanged until :func:`enable_progress` is called (the ``calframe`` command
does so unless ``-q`` is given).

Bars go to standard error, and only when it is a terminal.  While a bar is
shown, a line printed with ``print`` or ``click.echo`` would be written after
the bar, on the same terminal line; :func:`echo` (messages, standard error)
and :func:`result` (results, standard output) clear the bar, print a whole
line and draw the bar again below it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["echo", "enable_progress", "progress", "progress_enabled", "result"]

T = TypeVar("T")

_ENABLED = False


def enable_progress(enabled: bool = True) -> None:
    """Turn progress bars on (``True``) or off."""
    global _ENABLED
    _ENABLED = bool(enabled)


def progress_enabled() -> bool:
    """Whether progress bars are shown."""
    return _ENABLED


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None,
             unit: str = "frame") -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in a progress bar on standard error when enabled.

    The bar is drawn only when standard error is a terminal, and is removed
    when the iteration ends.

    Examples
    --------
    >>> list(progress([1, 2, 3], desc="counting"))
    [1, 2, 3]
    """
    if not _ENABLED:
        return iterable
    from tqdm.auto import tqdm  # deferred: 40 ms on every call of the command line

    # disable=None: no bar when standard error is not a terminal (a log file
    # would fill with carriage-return redraws)
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                leave=False, dynamic_ncols=True, disable=None)


def _write(text: str, stream) -> None:
    if _ENABLED:
        from tqdm.auto import tqdm  # (deferred: see progress)

        # clears every bar on stdout or stderr, writes the line, redraws the bars
        tqdm.write(text, file=stream)
    else:
        print(text, file=stream)


def echo(text: str) -> None:
    """Print a message line on standard error without breaking a progress bar."""
    _write(text, sys.stderr)


def result(text: str) -> None:
    """Print a result line on standard output without breaking a progress bar."""
    _write(text, sys.stdout)
