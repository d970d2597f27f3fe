"""Progress bars for long steps (tqdm), off unless the command line turns them on.

The library never prints on its own: :func:`progress` returns the iterable
unchanged until :func:`enable_progress` is called (the ``calframe`` command
does so unless ``-q`` is given).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["echo", "enable_progress", "progress", "progress_enabled"]

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

    Examples
    --------
    >>> list(progress([1, 2, 3], desc="counting"))
    [1, 2, 3]
    """
    if not _ENABLED:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                leave=False, dynamic_ncols=True)


def echo(text: str) -> None:
    """Print a line on standard error without breaking a progress bar."""
    if _ENABLED:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)
