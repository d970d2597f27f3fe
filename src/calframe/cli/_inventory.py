"""``calframe inventory``: what is in these folders, and what calibrates what."""

from __future__ import annotations

import click

from .._progress import enable_progress, progress
from . import cli
from ._options import parse_frame_types

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


def _progress_from(ctx: click.Context) -> None:
    obj = ctx.find_root().obj or {}
    enable_progress(not obj.get("quiet", False))


@cli.command("inventory")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--no-recursive", is_flag=True, help="Do not walk sub-folders.")
@click.option("--exptime-tolerance", type=float, default=0.01, show_default=True,
              help="Relative exposure difference allowed within a dark group.")
@click.option("--temperature-tolerance", type=float, default=2.0, show_default=True,
              help="Temperature difference (deg C) allowed within a group.")
@click.option("--type", "frame_types", multiple=True, metavar="GLOB=TYPE",
              help="Frame type for files whose headers do not say (repeatable).")
@click.option("--table", "table_path", type=click.Path(dir_okay=False),
              help="Also write the frame table (ECSV, or CSV by the name's ending).")
@click.pass_context
def inventory_command(ctx: click.Context, paths: tuple[str, ...], no_recursive: bool,
                      exptime_tolerance: float, temperature_tolerance: float,
                      frame_types: tuple[str, ...], table_path: str | None) -> int:
    """List every frame under PATHS with its type, exposure, ISO/gain, temperature,
    filter, binning, shape and CFA; the groups; which lights have matching
    calibration frames; and the problems found.

    Files not taken (calframe's own outputs under PATHS, PNG/JPEG images, other
    formats) are counted on the first line; -v lists each with the reason."""
    from ..inventory import Tolerances, take_inventory

    _progress_from(ctx)
    tol = Tolerances(exptime_rel=exptime_tolerance, temperature=temperature_tolerance)
    types = parse_frame_types(frame_types)
    inv = take_inventory(list(paths), recursive=not no_recursive, tolerances=tol,
                         frame_types=types, progress=progress)
    verbose = bool((ctx.find_root().obj or {}).get("verbose"))
    click.echo(inv.summary(verbose=verbose))
    if table_path:
        fmt = "ascii.csv" if table_path.lower().endswith(".csv") else "ascii.ecsv"
        inv.frames.write(table_path, format=fmt, overwrite=True)
        click.echo(f"frame table written to {table_path}")
    return 0
