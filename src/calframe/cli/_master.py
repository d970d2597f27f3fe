"""``calframe master bias|dark|flat``: combine frames into a master."""

from __future__ import annotations

import click
import numpy as np

from . import cli
from ._options import (
    black_level_option,
    gain_option,
    output_file_option,
    read_noise_option,
    rejection_object,
    rejection_options,
)

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


@cli.command("master")
@click.argument("kind", type=click.Choice(["bias", "dark", "flat"]))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True,
                                                                  dir_okay=False))
@output_file_option("The master FITS file to write.")
@click.option("--method", type=click.Choice(["median", "mean"]), default="median",
              show_default=True, help="Combine method.")
@rejection_options(default="sigma")
@click.option("--bias", type=click.Path(exists=True, dir_okay=False),
              help="Master bias to subtract (darks and flats).")
@click.option("--dark", type=click.Path(exists=True, dir_okay=False),
              help="Master dark to subtract, scaled by exposure (flats).")
@click.option("--per-second", is_flag=True, help="Dark current as a rate (adu/s).")
@gain_option("Gain in e-/ADU for the frames' noise model (overrides EGAIN; the frames "
             "are then read into memory).")
@read_noise_option("Read noise in e- for the frames' noise model (overrides RDNOISE; the "
                   "frames are then read into memory).")
@click.option("--memory-limit", default="1GiB", show_default=True,
              help="Memory for combining.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@black_level_option("Flats: subtract the camera black level of RAW frames, or keep it "
                    "(default: subtracted when no --bias or --dark removes it).")
@click.option("--allow-mixed", is_flag=True,
              help="Combine frames that do not belong together (other frame types, "
                   "exposures, binning, CFA pattern, ISO/gain, offset, 8-bit images); "
                   "recorded in the provenance.")
@click.option("--assume-linear", is_flag=True, default=False,
              help="Flats: take them as linear, do not refuse flats that look "
                   "gamma-encoded (recorded in the provenance).")
@click.pass_context
def master_command(ctx: click.Context, kind: str, files: tuple[str, ...], output: str,
                   method: str, rejection: str, low: float | None, high: float | None,
                   bias: str | None, dark: str | None, per_second: bool,
                   gain: float | None, read_noise: float | None, memory_limit: str,
                   overwrite: bool, subtract_black: bool | None, allow_mixed: bool,
                   assume_linear: bool) -> int:
    """Combine FILES into a master KIND frame (bias, dark or flat) and write OUTPUT.

    The frames are checked first: frames whose headers say they are another
    type, darks of different exposures, different binning, CFA pattern,
    ISO/gain or offset, calframe outputs and 8-bit or display images are
    refused with the list of files (--allow-mixed combines them anyway)."""
    from ..io import read_frame, write_frame
    from ..masters import make_master_bias, make_master_dark, make_master_flat

    if kind == "bias" and (bias or dark):
        raise click.UsageError("a master bias takes no --bias or --dark")
    if kind == "dark" and dark:
        raise click.UsageError("a master dark takes no --dark")
    if assume_linear and kind != "flat":
        raise click.UsageError("--assume-linear is for flats")
    if subtract_black is not None and kind != "flat":
        raise click.UsageError("--subtract-black/--keep-black are for flats: a bias or a dark "
                               "holds the black level that it removes from other frames")
    if per_second and kind != "dark":
        raise click.UsageError("--per-second is for darks")
    if per_second and not bias:
        raise click.UsageError("--per-second needs --bias (a rate of a dark that includes "
                               "the bias has no meaning)")
    options = {"method": method, "rejection": rejection_object(rejection, low, high),
               "memory_limit": memory_limit, "allow_mixed": allow_mixed}
    frames: list = list(files)
    if gain is not None or read_noise is not None:
        frames = [read_frame(path, gain=gain, read_noise=read_noise) for path in files]
    if kind == "bias":
        ccd = make_master_bias(frames, **options)
    elif kind == "dark":
        ccd = make_master_dark(frames, bias=bias, per_second=per_second, **options)
    else:
        ccd = make_master_flat(frames, bias=bias, dark=dark, subtract_black=subtract_black,
                               assume_linear=assume_linear, **options)
    write_frame(ccd, output, overwrite=overwrite)
    click.echo(f"master {kind} from {len(files)} frames -> {output} "
               f"({'x'.join(map(str, ccd.data.shape))}, {str(ccd.unit) or 'dimensionless'}, "
               f"median {float(_median(ccd)):.6g})")
    return 0


def _median(ccd) -> float:
    data = np.asarray(ccd.data, dtype=float)
    good = np.isfinite(data)
    if ccd.mask is not None:
        good &= ~np.asarray(ccd.mask, dtype=bool)
    return float(np.median(data[good])) if good.any() else float("nan")
