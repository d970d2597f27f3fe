"""The times calframe records: now, or the time ``SOURCE_DATE_EPOCH`` fixes."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta

from ..errors import InvalidSettingsError

__all__ = ["restart_step_clock", "source_date", "utc_now"]


def source_date() -> datetime | None:
    """The time fixed by ``SOURCE_DATE_EPOCH`` (seconds since 1970), or None.

    The reproducible-builds convention: with it set, every time calframe
    records (step times, the ``DATE`` card) is that time, so that two runs of
    the same inputs and settings give byte-identical files.

    Raises
    ------
    InvalidSettingsError
        ``SOURCE_DATE_EPOCH`` is set but is not a whole number of seconds.

    Returns
    -------
    datetime.datetime or None
        The fixed time (UTC), or None when ``SOURCE_DATE_EPOCH`` is not set.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError) as err:
        raise InvalidSettingsError(
            f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds since "
            "1970-01-01; set it to e.g. the output of 'date +%s', or unset it") from err


def utc_now() -> datetime:
    """Now, in UTC, or the time ``SOURCE_DATE_EPOCH`` fixes (see :func:`source_date`).

    Returns
    -------
    datetime.datetime
        A time-zone-aware UTC time.
    """
    return source_date() or datetime.now(UTC)


#: Steps made since the clock was restarted: with SOURCE_DATE_EPOCH, the n-th step
#: is stamped n microseconds after that time, so that steps stay distinct (two steps
#: with the same name, parameters and time are one, see Provenance.extend) and the
#: stamps are the same in every run that makes the same steps.
_STEP_CLOCK = itertools.count()


def restart_step_clock() -> None:
    """Restart the step stamps of ``SOURCE_DATE_EPOCH`` (at the start of each output).

    A run calls it before each output it makes, so that an output's step times
    do not depend on which other outputs were made (or found up to date) first.
    """
    global _STEP_CLOCK
    _STEP_CLOCK = itertools.count()


def _utc_now() -> str:
    """The current UTC time as ISO 8601 with microseconds (no time-zone suffix).

    Microseconds: two steps with the same parameters stay two steps.  With
    ``SOURCE_DATE_EPOCH``, the fixed time plus one microsecond per step.
    """
    fixed = source_date()
    if fixed is not None:
        fixed = fixed + timedelta(microseconds=next(_STEP_CLOCK))
    return (fixed or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")
