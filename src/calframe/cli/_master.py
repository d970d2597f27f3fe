"""``calframe master bias|dark|flat``: combine frames into a master."""

from __future__ import annotations

import click

from . import cli


@cli.command("master")
@click.argument("kind", type=click.Choice(["bias", "dark", "flat"]))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True,
                                                                  dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The master FITS file to write.")
@click.option("--method", type=click.Choice(["median", "mean"]), default="median",
              show_default=True, help="Combine method.")
@click.option("--reject", "rejection", default="sigma", show_default=True,
              type=click.Choice(["none", "sigma", "minmax", "percentile"]),
              help="Rejection before combining.")
@click.option("--low", type=float, default=None,
              help="Lower rejection limit: sigma (default 3), frames (1) or fraction of "
                   "the median (0.2).")
@click.option("--high", type=float, default=None,
              help="Upper rejection limit: sigma (3), frames (1) or fraction (0.1).")
@click.option("--bias", type=click.Path(exists=True, dir_okay=False),
              help="Master bias to subtract (darks and flats).")
@click.option("--dark", type=click.Path(exists=True, dir_okay=False),
              help="Master dark to subtract, scaled by exposure (flats).")
@click.option("--per-second", is_flag=True, help="Dark current as a rate (adu/s).")
@click.option("--memory-limit", default="1GiB", show_default=True,
              help="Memory for combining.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.pass_context
def master_command(ctx: click.Context, kind: str, files: tuple[str, ...], output: str,
                   method: str, rejection: str, low: float | None, high: float | None,
                   bias: str | None,
                   dark: str | None, per_second: bool, memory_limit: str,
                   overwrite: bool) -> int:
    """Combine FILES into a master KIND frame (bias, dark or flat) and write OUTPUT."""
    from ..io import write_frame
    from ..masters import make_master_bias, make_master_dark, make_master_flat
    from ..pipeline import MasterSettings

    if kind == "bias" and (bias or dark):
        raise click.UsageError("a master bias takes no --bias or --dark")
    if kind == "dark" and dark:
        raise click.UsageError("a master dark takes no --dark")
    if per_second and kind != "dark":
        raise click.UsageError("--per-second is for darks")
    settings = MasterSettings(method=method, rejection=rejection, low=low, high=high)
    options = {"method": method, "rejection": settings.rejection_object(),
               "memory_limit": memory_limit}
    if kind == "bias":
        ccd = make_master_bias(list(files), **options)
    elif kind == "dark":
        ccd = make_master_dark(list(files), bias=bias, per_second=per_second, **options)
    else:
        ccd = make_master_flat(list(files), bias=bias, dark=dark, **options)
    write_frame(ccd, output, overwrite=overwrite)
    click.echo(f"master {kind} from {len(files)} frames -> {output} "
               f"({'x'.join(map(str, ccd.data.shape))}, {str(ccd.unit) or 'dimensionless'}, "
               f"median {float(_median(ccd)):.6g})")
    return 0


def _median(ccd) -> float:
    import numpy as np

    data = np.asarray(ccd.data, dtype=float)
    good = np.isfinite(data)
    if ccd.mask is not None:
        good &= ~np.asarray(ccd.mask, dtype=bool)
    return float(np.median(data[good])) if good.any() else float("nan")
