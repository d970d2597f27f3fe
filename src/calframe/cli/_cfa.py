"""``calframe cfa-stats``, ``calframe flat-quality`` and ``calframe demosaic``."""

from __future__ import annotations

import glob
import os
import warnings

import click

from ..errors import UncertaintyUnknownWarning
from . import cli
from ._options import about, output_file_option, pattern_option

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


def _read(path: str, *, subtract_black: bool):
    from ..io import read_frame

    with warnings.catch_warnings():
        # statistics and ratios do not need a noise model
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        ccd = read_frame(path)
    if subtract_black:
        from ..blacklevel import black_level, subtract_black_level

        if black_level(ccd.meta) is None:
            raise click.UsageError(f"{path}: --subtract-black needs BLKLEV0..3 or BLKLEVEL "
                                   "in the header (camera RAW files have them)")
        ccd = subtract_black_level(ccd)
    return ccd


@cli.command("cfa-stats")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--box", nargs=4, type=int, multiple=True, metavar="Y0 Y1 X0 X1",
              help="A region in array pixels (repeatable); default: centre and corners.")
@click.option("--size", type=click.FloatRange(0, 1, min_open=True), default=0.1,
              show_default=True,
              help="Size of the centre/corner boxes as a fraction of the frame.")
@click.option("--subtract-black", is_flag=True,
              help="Subtract the camera black level (BLKLEV0..3) first.")
@pattern_option("Bayer pattern at array pixel [0, 0] (default: from the header's BAYERPAT "
                "and offsets).")
def cfa_stats_command(path: str, box, size: float, subtract_black: bool,
                      pattern: str | None) -> int:
    """Per-channel (R, G1, G2, B) statistics of the Bayer mosaic in PATH."""
    from ..bayer import channel_statistics, standard_regions

    with about(path):
        ccd = _read(path, subtract_black=subtract_black)
        regions = ({f"box{i + 1}": tuple(b) for i, b in enumerate(box)} if box
                   else standard_regions(ccd.shape, size=size))
        table = channel_statistics(ccd, pattern=pattern, regions=regions)
    for name in ("mean", "median", "std"):
        table[name].format = ".2f"
    table["snr"].format = ".2f"
    click.echo(f"{path}: pattern {table.meta['pattern']} at pixel [0, 0], shape {ccd.shape}")
    for line in table.pformat(max_lines=-1, max_width=-1):
        click.echo(line)
    if not box and "centre" in set(table["region"]):
        ratios = []
        for channel in dict.fromkeys(table["channel"]):
            rows = table[table["channel"] == channel]
            centre = float(rows[rows["region"] == "centre"]["median"][0])
            corners = [float(r["median"]) for r in rows if r["region"] != "centre"]
            ratio = sum(corners) / len(corners) / centre if centre else float("nan")
            ratios.append(f"{channel} {ratio:.4f}")
        click.echo("corners/centre (median of the corner boxes over the centre's): "
                   + "  ".join(ratios))
    return 0


@cli.command("flat-quality")
@click.argument("flats", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--master", type=click.Path(exists=True, dir_okay=False),
              help="The master flat (default: the median of all the flats).")
@click.option("--subset", "subsets", multiple=True, metavar="NAME=GLOB",
              help="A named group of flats, e.g. '0deg=flats/rot0/*.fits' (repeatable).")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Write the figure to this PNG file.")
@click.option("--subtract-black", is_flag=True,
              help="Subtract the camera black level (BLKLEV0..3) of RAW flats first.")
def flat_quality_command(flats: tuple[str, ...], master, subsets: tuple[str, ...], png,
                         subtract_black: bool) -> int:
    """Per-channel quality of a CFA flat: S/N centre vs corners, subset differences.

    Give a MASTER, or FLATS (one group), or --subset groups to compare."""
    from ..flatquality import flat_quality

    groups: dict[str, list] = {}
    for spec in subsets:
        if "=" not in spec:
            raise click.UsageError(f"--subset {spec!r}: write NAME=GLOB, e.g. "
                                   "'0deg=flats/rot0/*.fits'")
        name, pattern = spec.split("=", 1)
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise click.UsageError(f"--subset {spec!r}: no file matches {pattern!r}")
        groups[name] = [_read(p, subtract_black=subtract_black) for p in paths]
    flat = _read(master, subtract_black=subtract_black) if master else None
    if flat is None and not groups:
        if not flats:
            raise click.UsageError("give FLATS, --master or --subset groups")
        if len(flats) == 1:
            flat = _read(flats[0], subtract_black=subtract_black)
        else:
            half = len(flats) // 2
            groups = {"first half": [_read(p, subtract_black=subtract_black)
                                     for p in flats[:half]],
                      "second half": [_read(p, subtract_black=subtract_black)
                                      for p in flats[half:]]}
    quality = flat_quality(flat, subsets=groups or None)
    click.echo(quality.summary())
    if png:
        click.echo(f"figure: {quality.plot(png)}")
    return 0


@cli.command("demosaic")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@output_file_option("The RGB cube (FITS) to write.")
@click.option("--method", type=click.Choice(["bilinear", "malvar2004", "menon2007"]),
              default="bilinear", show_default=True, help="Demosaicing method.")
@pattern_option("Bayer pattern at array pixel [0, 0] (default: from the header's BAYERPAT "
                "and offsets).")
@click.option("--split", is_flag=True,
              help="Also write one file per colour (OUTPUT with _R, _G, _B).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def demosaic_command(path: str, output: str, method: str, pattern: str | None, split: bool,
                     overwrite: bool) -> int:
    """Demosaic the calibrated Bayer mosaic PATH into an RGB cube OUTPUT (FITS)."""
    from ..demosaicing import demosaic, split_rgb
    from ..io import read_frame, write_frame

    with about(path):
        cube = demosaic(read_frame(path), method=method, pattern=pattern)
    written = [write_frame(cube, output, overwrite=overwrite)]
    if split:
        stem, ext = os.path.splitext(output)
        for name, plane in split_rgb(cube).items():
            written.append(write_frame(plane, f"{stem}_{name}{ext or '.fits'}",
                                       overwrite=overwrite))
    for p in written:
        click.echo(str(p))
    return 0
