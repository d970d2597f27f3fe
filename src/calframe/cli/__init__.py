"""The ``calframe`` command.

The command line holds no science: each sub-command parses its arguments,
calls the library and prints.  :func:`main` is what the console script and
``python -m calframe`` run, and what the tests call directly.

Exit codes: 0 success, 1 a requested output could not be made, 2 usage error.
User errors (any :class:`calframe.CalframeError`) are printed as one line
without a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..errors import CalframeError

__all__ = ["cli", "main"]


class _State:
    debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="calframe")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems and results.")
@click.option("-v", "--verbose", count=True, help="More detail (repeat for debug logs).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int, debug: bool) -> None:
    """Calibrate CCD/CMOS and camera RAW frames with uncertainties and provenance."""
    _State.debug = debug
    level = logging.WARNING if quiet else (logging.INFO if verbose == 1 else
                                           logging.DEBUG if verbose > 1 else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["verbose"] = verbose


def _register() -> None:
    # Each sub-command lives in its own module (cli/_<name>.py) that defines
    # a click command decorated with ``@cli.command``; importing registers it.
    import importlib

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


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code instead of exiting, so that tests can call it.
    """
    _register()
    _State.debug = False
    try:
        result = cli.main(args=argv, prog_name="calframe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CalframeError as exc:
        if _State.debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return 1
    except OSError as exc:
        if _State.debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
