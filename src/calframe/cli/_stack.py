"""``calframe stack``: align calibrated frames and combine them."""

from __future__ import annotations

import click
import numpy as np

from . import cli
from ._options import output_file_option, rejection_object, rejection_options

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


@cli.command("stack")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True,
                                                                  dir_okay=False))
@output_file_option("The stacked FITS file to write.")
@click.option("--align", "align_method", default="stars", show_default=True,
              type=click.Choice(["stars", "translation", "none"]),
              help="How to align the frames to the first (or --reference).")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False),
              help="Reference frame (default: the first of FILES).")
@click.option("--mask", "mask_path", type=click.Path(exists=True, dir_okay=False),
              help="FITS image of pixels to ignore when aligning (non-zero = ignore).")
@click.option("--model", type=click.Choice(["similarity", "affine", "euclidean"]),
              default="similarity", show_default=True,
              help="Transform fitted to matched stars (--align stars).")
@click.option("--fwhm", type=float, default=3.0, show_default=True,
              help="Expected star FWHM in pixels (--align stars).")
@click.option("--order", type=click.Choice(["0", "1", "3"]), default="1",
              show_default=True, help="Interpolation order of the warp.")
@click.option("--method", type=click.Choice(["median", "mean", "sum"]), default="mean",
              show_default=True, help="Combine method.")
@rejection_options(default="sigma")
@click.option("--memory-limit", default="1GiB", show_default=True,
              help="Memory for combining.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def stack_command(files: tuple[str, ...], output: str, align_method: str,
                  reference: str | None, mask_path: str | None, model: str, fwhm: float,
                  order: str, method: str, rejection: str, low: float | None,
                  high: float | None,
                  memory_limit: str, overwrite: bool) -> int:
    """Align FILES (calibrated, demosaiced if colour) and combine them into OUTPUT."""
    from astropy.io import fits

    from ..io import write_frame
    from ..register import stack

    reject = rejection_object(rejection, low, high)
    mask = None
    if mask_path:
        mask = np.asarray(fits.getdata(mask_path), dtype=float) != 0
    options = {"model": model, "fwhm": fwhm} if align_method == "stars" else {}
    result = stack(list(files), reference=reference,
                   align=None if align_method == "none" else align_method, mask=mask,
                   order=int(order), method=method, rejection=reject,
                   memory_limit=memory_limit, **options)
    write_frame(result, output, overwrite=overwrite)
    click.echo(f"stacked {len(files)} frames -> {output} "
               f"({'x'.join(map(str, result.data.shape))}, {result.unit})")
    return 0
