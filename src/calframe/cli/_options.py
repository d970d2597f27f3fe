"""Options shared by several sub-commands, and library messages in command-line words.

Output rule, the same for every command: ``-o/--output FILE`` names the one
file a command writes (``master``, ``stack``, ``demosaic``); ``-o/--output-dir
FOLDER`` names the folder of a command that writes several files
(``calibrate``, ``run``, ``demo``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

import click

from ..combining import GESD, MinMaxClip, Rejection

# The rejection algorithms by name, with their default limits: the library's table.
from ..combining._names import ALIASES as _ALIASES
from ..combining._names import REJECTIONS, rejection_from_name
from ..errors import CalframeError


def parse_frame_types(items, base: dict[str, str] | None = None) -> dict[str, str]:
    """``--type GLOB=TYPE`` values (repeatable) as a ``{glob: type}`` mapping."""
    types = dict(base or {})
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not GLOB=TYPE (e.g. '*data.edf=light')",
                                     param_hint="--type")
        glob, ftype = item.rsplit("=", 1)
        types[glob] = ftype
    return types


# --------------------------------------------------------------------------- outputs

def output_file_option(help_text: str) -> Callable:
    """``-o/--output FILE``: the one file a command writes."""
    return click.option("-o", "--output", required=True, metavar="FILE",
                        type=click.Path(dir_okay=False), help=help_text)


def output_dir_option(help_text: str, **kwargs) -> Callable:
    """``-o/--output-dir FOLDER``: the folder of a command that writes several files.

    ``--output`` is still accepted (hidden) for scripts written before the
    option was renamed.
    """

    def decorator(f):
        f = click.option("--output", "output_alias", default=None, hidden=True,
                         type=click.Path(file_okay=False))(f)
        return click.option("-o", "--output-dir", "output", metavar="FOLDER",
                            type=click.Path(file_okay=False), help=help_text, **kwargs)(f)

    return decorator


def output_dir(output: str | None, alias: str | None) -> str | None:
    """The folder given with ``-o/--output-dir`` or the old ``--output``."""
    if output is not None and alias is not None and output != alias:
        raise click.UsageError("give the output folder once, with -o/--output-dir")
    return alias if output is None else output


# --------------------------------------------------------------------------- numbers

#: Gain: a positive number of e-/ADU.
GAIN = click.FloatRange(min=0, min_open=True)
#: Read noise: electrons, zero or more.
READ_NOISE = click.FloatRange(min=0)
#: Bayer patterns at pixel [0, 0].
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def gain_option(help_text: str = "Gain in e-/ADU (overrides the header's EGAIN).") -> Callable:
    """``--gain``."""
    return click.option("--gain", type=GAIN, default=None, metavar="FLOAT", help=help_text)


def read_noise_option(help_text: str = "Read noise in e- (overrides the header's RDNOISE)."
                      ) -> Callable:
    """``--read-noise``."""
    return click.option("--read-noise", type=READ_NOISE, default=None, metavar="FLOAT",
                        help=help_text)


class _UpperChoice(click.Choice):
    """``click.Choice`` of upper-case names that also takes them in lower case."""

    def convert(self, value, param, ctx):
        return super().convert(str(value).upper(), param, ctx)


def pattern_option(help_text: str) -> Callable:
    """``--pattern RGGB|BGGR|GRBG|GBRG``."""
    return click.option("--pattern", type=_UpperChoice(PATTERNS), default=None,
                        help=help_text)


# --------------------------------------------------------------------------- rejection

class RejectionType(click.Choice):
    """``click.Choice`` of rejection names that also takes Siril's short names."""

    def convert(self, value, param, ctx):
        value = _ALIASES.get(str(value).lower(), value)
        return super().convert(value, param, ctx)


def rejection_help(names: Collection[str]) -> str:
    """The ``--low``/``--high`` defaults of each algorithm, for help texts."""
    parts = []
    for name in names:
        r = REJECTIONS[name]
        if r.build is not None:
            parts.append(f"{name} {r.low:g}/{r.high:g}")
    return ", ".join(parts)


def rejection_options(default: str, names: Collection[str] | None = None) -> Callable:
    """``--reject NAME``, ``--low`` and ``--high``, whose defaults depend on NAME."""
    names = tuple(names or REJECTIONS)

    def decorator(f):
        f = click.option("--high", type=click.FloatRange(min=0), default=None, metavar="FLOAT",
                         help="Upper rejection limit (default: the algorithm's, see "
                              "--low).")(f)
        f = click.option("--low", type=click.FloatRange(min=0), default=None, metavar="FLOAT",
                         help="Lower rejection limit; by default, per --reject: "
                              f"{rejection_help(names)}.")(f)
        return click.option(
            "--reject", "rejection", default=default, show_default=True,
            type=RejectionType(names),
            help="Rejection before combining (Siril's names; minmax rejects a number of "
                 "values).")(f)

    return decorator


def rejection_limits(name: str, low: float | None, high: float | None
                     ) -> tuple[float | None, float | None]:
    """``--low``/``--high`` checked for the algorithm ``name`` (None: its default)."""
    choice = REJECTIONS[name]
    for option, value in (("--low", low), ("--high", high)):
        if value is None:
            continue
        if choice.whole and value != int(value):
            raise click.BadParameter(f"{value:g} is not a whole number of values (--reject "
                                     "minmax rejects that many lowest/highest values)",
                                     param_hint=option)
        if name == "generalized" and not 0 < value < 1:
            raise click.BadParameter(f"{value:g} must be between 0 and 1 for --reject "
                                     "generalized", param_hint=option)
        if name not in ("none", "minmax") and value == 0:
            raise click.BadParameter(f"must be more than 0 for --reject {name}",
                                     param_hint=option)
    if choice.whole and (low, high) == (0, 0):
        raise click.BadParameter("--low 0 --high 0 rejects nothing; use --reject none",
                                 param_hint="--low/--high")
    return low, high


def rejection_object(name: str, low: float | None, high: float | None):
    """The :mod:`calframe.combining` rejection settings for ``--reject name``.

    Examples
    --------
    >>> rejection_object("minmax", None, 2)
    MinMaxClip(nlow=1, nhigh=2)
    >>> rejection_object("none", None, None) is None
    True
    """
    low, high = rejection_limits(name, low, high)
    return rejection_from_name(name, low, high)


#: The settings that ``--low`` and ``--high`` set, where they are not ``low``/``high``.
_LIMIT_FIELDS: dict[type, tuple[str, str]] = {MinMaxClip: ("nlow", "nhigh"),
                                              GESD: ("outliers_fraction", "significance")}


def rejection_name(rejection: Rejection | None) -> str | None:
    """The ``--reject`` name of a settings object (None: not one of the named ones).

    Examples
    --------
    >>> from calframe.combining import SigmaClip
    >>> rejection_name(SigmaClip(low=4, scale="mad")), rejection_name(None)
    ('mad', 'none')
    """
    if rejection is None:
        return "none"
    for name, choice in REJECTIONS.items():
        if choice.build is None:
            continue
        named = choice.build(choice.low, choice.high)
        if type(named) is type(rejection) and \
                getattr(named, "scale", None) == getattr(rejection, "scale", None):
            return name
    return None


def rejection_override(current: Rejection | None, name: str | None, low: float | None,
                       high: float | None) -> Rejection | None:
    """The rejection after ``--reject``/``--low``/``--high`` change ``current`` (a config's).

    ``--reject`` with another algorithm than ``current`` replaces it (with the
    algorithm's default limits where ``--low``/``--high`` are not given);
    otherwise ``--low``/``--high`` change the limits of ``current`` and keep
    its other settings.

    Examples
    --------
    >>> from calframe.combining import SigmaClip
    >>> rejection_override(SigmaClip(low=4, maxiters=3), None, None, 2)
    SigmaClip(low=4.0, high=2.0, center='median', scale='std', maxiters=3)
    >>> rejection_override(SigmaClip(low=4), "linear", None, None)
    LinearFitClip(low=5.0, high=2.5, maxiters=10)
    """
    named = rejection_name(current)
    if name is not None and name != named:
        return rejection_object(name, low, high)
    if named is None:
        raise click.BadParameter(f"the configuration's rejection {current!r} has no "
                                 "--reject name; give --reject with --low/--high",
                                 param_hint="--low/--high")
    if current is None:
        return rejection_object("none", low, high)
    low, high = rejection_limits(named, low, high)
    fields = _LIMIT_FIELDS.get(type(current), ("low", "high"))
    whole = REJECTIONS[named].whole
    changes = {field: int(value) if whole else value
               for field, value in zip(fields, (low, high), strict=True) if value is not None}
    return dataclasses.replace(current, **changes)


# --------------------------------------------------------------------------- messages

#: Python keyword of a library message -> the command-line option that sets it.
KEYWORD_OPTIONS = {
    "gain": "--gain",
    "read_noise": "--read-noise",
    "pattern": "--pattern",
    "dark_scale": "--dark-scale",
    "bias": "--bias",
    "dark": "--dark",
    "flat": "--flat",
    "per_second": "--per-second",
    "overwrite": "--overwrite",
    "rejection": "--reject",
    "mask": "--mask",
    "method": "--method",
    "size": "--size",
    "order": "--order",
    "fwhm": "--fwhm",
    "reference": "--reference",
    "model": "--model",
    "allow_no_masters": "--allow-no-masters",
    "allow_mixed": "--allow-mixed",
    "assume_linear": "--assume-linear",
    "subtract_black": "--subtract-black",
}

# keyword=value in a library message: a value is 'quoted', a number or a name
_KEYWORD = re.compile(r"\b(?P<key>[a-z][a-z_]*)=(?P<value>'[^']*'|\"[^\"]*\"|[-+.\w]*)")


def _option_words(key: str, value: str, options: Collection[str]) -> str | None:
    option = KEYWORD_OPTIONS.get(key)
    if option is None or option not in options:
        return None
    value = value.strip("'\"")
    if value in ("", "True"):
        return option
    if value == "None":
        return f"{option} none"
    return f"{option} {value}"


def cli_message(text: str, options: Collection[str]) -> str:
    """A library message in the words of a command with ``options``, on one line.

    Python advice (``pass gain= and read_noise= to read_frame``,
    ``pattern='RGGB'``, ``dark_scale=None``) names the command's options
    instead; advice for a keyword the command has no option for is left as it
    is, except the header advice that goes with it.

    Examples
    --------
    >>> cli_message("no BAYERPAT; pass the pattern explicitly (e.g. pattern='RGGB')",
    ...             {"--pattern"})
    'no BAYERPAT; give the pattern with --pattern (e.g. --pattern RGGB)'
    >>> cli_message("x: use dark_scale=None", {"--dark-scale"})
    'x: use --dark-scale none'
    """
    text = " ".join(str(text).split())
    has = set(options)
    if {"--gain", "--read-noise"} <= has:
        text = text.replace("pass gain= and read_noise= to read_frame",
                            "give --gain and --read-noise")
    else:
        text = text.replace("pass gain= and read_noise= to read_frame, or write",
                            "write")
    if "--overwrite" in has:
        text = text.replace("pass overwrite=True (or --overwrite)", "pass --overwrite")
    if "--pattern" in has:
        text = text.replace("pass the pattern explicitly", "give the pattern with --pattern")
    # header advice that names a Python attribute
    text = re.sub(r"set (\w+)\.meta\['(\w+)'\] in seconds", r"write \2 (seconds) in its header",
                  text)
    text = text.replace("set meta['EXPTIME'] (seconds) on the frames",
                        "write EXPTIME (seconds) in their headers")

    def keyword(match: re.Match) -> str:
        words = _option_words(match["key"], match["value"], has)
        return match[0] if words is None else words

    text = _KEYWORD.sub(keyword, text)
    # a parameter named in backquotes: "check `fwhm`"
    text = re.sub(r"`([a-z][a-z_]*)`",
                  lambda m: KEYWORD_OPTIONS[m[1]] if KEYWORD_OPTIONS.get(m[1]) in has else m[0],
                  text)
    # "pass --bias" reads as an instruction to the command line: "give --bias"
    return re.sub(r"\bpass (--[a-z])", r"give \1", text)


@contextmanager
def about(path: str | os.PathLike) -> Iterator[None]:
    """Name ``path`` in a calframe error that a command's work on it raises.

    The library names the frame it reads, but not always the file a later step
    (a demosaic, channel statistics) works on: ``error: no BAYERPAT keyword``
    would not say which of the user's files has none.
    """
    try:
        yield
    except CalframeError as err:
        name = os.fsdecode(path)
        if name in str(err):
            raise
        # the same kind of error (a ValueError stays one), its message naming the file
        named = type(err).__new__(type(err))
        named.__dict__.update(err.__dict__)
        named.args = (f"{name}: {err}",)
        raise named from err


def black_level_option(help_text: str) -> Callable:
    """``--subtract-black/--keep-black``: the camera black level (default: decided)."""
    return click.option("--subtract-black/--keep-black", "subtract_black", default=None,
                        help=help_text)
