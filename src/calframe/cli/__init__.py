"""The ``calframe`` command.

The command line holds no science: each sub-command parses its arguments,
calls the library and prints.  :func:`main` is what the console script and
``python -m calframe`` run, and what the tests call directly.

Exit codes: 0 success, 1 a requested output could not be made, 2 usage error,
130 interrupted.  Results go to standard output; progress bars, warnings and
errors to standard error.  Every error is one line, ``error: ...``, without a
traceback (``--debug`` shows it): a :class:`calframe.CalframeError` or an
``OSError`` says what is wrong and how to fix it; any other exception is a
calframe bug and says so.  Every warning is one line, ``warning: ...``.
Library messages that give Python advice (``pattern='RGGB'``) are reworded
with the options of the command that was run (``--pattern RGGB``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from typing import ClassVar

import click

from .. import __version__
from .._progress import echo, enable_progress
from ..errors import CalframeError
from ._options import cli_message

__all__ = ["cli", "main"]

_BUG = "this is a calframe bug; rerun with --debug for the traceback and report it"


class _State:
    debug = False
    #: names of the command being run (``["master"]``, ``["distortion", "fit"]``)
    names: ClassVar[list[str]] = []
    #: the click command being run (None before it is known)
    command: click.Command | None = None
    #: the warning lines already printed by this command (each is printed once,
    #: although the same file's header may be read by several steps)
    said: ClassVar[set[str]] = set()


def _say(line: str) -> None:
    if line not in _State.said:
        _State.said.add(line)
        echo(line)


class _Group(click.Group):
    """A click group that remembers which command it runs (for error messages)."""

    group_class = type  # sub-groups (``distortion``) are _Group too

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _State.names.append(command.name or name or "")
            _State.command = command
        return name, command, rest


def command_options() -> set[str]:
    """The option names of the command being run."""
    command = _State.command
    if command is None:
        return set()
    return {opt for p in command.params if isinstance(p, click.Option)
            for opt in (*p.opts, *p.secondary_opts)}


def _label() -> str:
    return " ".join(["calframe", *_State.names])


def one_line(text: object) -> str:
    """``text`` on one line (runs of white space, newlines included, become one space)."""
    return " ".join(str(text).split())


def error_line(exc: BaseException, where: str | None = None) -> str:
    """The ``error: ...`` line for an exception raised by the command being run.

    ``where`` (a file) is named when the exception is a calframe bug; calframe
    errors name their file themselves.
    """
    if isinstance(exc, CalframeError | OSError):
        return f"error: {cli_message(str(exc), command_options())}"
    where = where or getattr(exc, "filename", None) or _label()
    message = one_line(exc)
    what = type(exc).__name__ + (f": {message}" if message else "")
    return f"error: {where}: {what} ({_BUG})"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command: one ``warning: ...`` line, no source."""
    _say(f"warning: {cli_message(str(message), command_options())}")


class _Handler(logging.Handler):
    """Log records as ``warning: ...`` lines on standard error (through the bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = cli_message(record.getMessage(), command_options())
            level = record.levelname.lower()
            if record.levelno < logging.WARNING:
                text = f"{record.name}: {text}"
            _say(f"{level}: {text}")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


_HANDLER = _Handler()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="calframe")
@click.option("-q", "--quiet", is_flag=True,
              help="Print only problems and results (no progress bars).")
@click.option("-v", "--verbose", count=True, help="More detail (repeat for debug logs).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int, debug: bool) -> None:
    """Calibrate CCD/CMOS and camera RAW frames with uncertainties and provenance.

    Results go to standard output; progress, warnings and errors (one line
    each) to standard error.  -o/--output names the file a command writes,
    -o/--output-dir the folder of a command that writes several files.
    """
    _State.debug = debug
    level = logging.WARNING if quiet else (logging.INFO if verbose == 1 else
                                           logging.DEBUG if verbose > 1 else logging.WARNING)
    _HANDLER.setLevel(level)
    logging.getLogger().setLevel(level)  # put back when the command ends
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["verbose"] = verbose


def _register() -> None:
    # Each sub-command lives in its own module (cli/_<name>.py) that defines
    # a click command decorated with ``@cli.command``; importing registers it.
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}._{name}")


# Sub-command modules, one per line (cli/_<name>.py).
_COMMANDS: list[str] = [
    "info",
    "inventory",
    "master",
    "calibrate",
    "run",
    "provenance",
    "demo",
    "stack",
    "cfa",
    "distortion",
]


class _Output:
    """Warnings and log records of a command as single lines; put back afterwards."""

    def __enter__(self):
        root = logging.getLogger()
        self.root_level = root.level
        root.addHandler(_HANDLER)
        _HANDLER.setLevel(logging.WARNING)
        # astropy's logger prints with its own handler and also propagates to
        # the root logger: each of its records would be printed twice
        astropy_log = logging.getLogger("astropy")
        self.astropy_handlers = list(astropy_log.handlers)
        for handler in self.astropy_handlers:
            astropy_log.removeHandler(handler)
        # astropy also replaces warnings.showwarning to log its warnings (with
        # calframe's, which are astropy warnings); one printer for all of them
        self.showwarning = warnings.showwarning
        warnings.showwarning = _show_warning
        return self

    def __exit__(self, *exc) -> None:
        enable_progress(False)
        warnings.showwarning = self.showwarning
        astropy_log = logging.getLogger("astropy")
        for handler in self.astropy_handlers:
            astropy_log.addHandler(handler)
        root = logging.getLogger()
        root.removeHandler(_HANDLER)
        root.setLevel(self.root_level)


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that is not UTF-8 written ``\\xff``.

    Such a name holds lone surrogates (:func:`os.fsdecode`), which no terminal
    or UTF-8 stream can print.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class _PrintableStream:
    """A text stream whose writes never fail on names that are not UTF-8."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if isinstance(text, str):
            text = printable(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _PrintableStreams:
    """Standard output and error made safe for any file name while a command runs."""

    def __enter__(self):
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _PrintableStream(sys.stdout), _PrintableStream(sys.stderr)
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout, sys.stderr = self.saved


def _silence_stdout() -> None:
    """After a broken pipe: send what is left of standard output nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code instead of exiting, so that tests can call it.

    Parameters
    ----------
    argv : list of str, optional
        The arguments, without the program name.

    Returns
    -------
    int
        The exit code: 0 success, 1 a requested output could not be made, 2 a
        usage error, 130 interrupted.
    """
    with _PrintableStreams():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    _register()
    _State.debug = False
    _State.names = []
    _State.command = None
    _State.said = set()
    try:
        with _Output():
            try:
                result = cli.main(args=argv, prog_name="calframe", standalone_mode=False)
            finally:
                sys.stdout.flush()
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort as exc:
        if _State.debug:
            raise
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        if _State.debug:
            raise
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        # the reader of standard output went away (``calframe ... | head``)
        if _State.debug:
            raise
        _silence_stdout()
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        if _State.debug:
            raise
        click.echo(error_line(exc), err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
