"""``calframe info``: what calframe reads from each file."""

from __future__ import annotations

import warnings

import click

from ..errors import UncertaintyUnknownWarning
from . import _State, cli, error_line
from ._options import gain_option, read_noise_option

_ROWS = (
    ("type", "FRAMETYP", "FTSOURCE"),
    ("exposure [s]", "EXPTIME", "EXPSRC"),
    ("temperature [C]", "CCD-TEMP", "TEMPSRC"),
    ("gain [e-/ADU]", "EGAIN", None),
    ("read noise [e-]", "RDNOISE", None),
    ("ISO", "ISOSPEED", None),
    ("CFA pattern", "BAYERPAT", None),
    ("row order", "ROWORDER", None),
    ("black level [adu]", "BLKLEVEL", None),
    ("saturation [adu]", "SATURATE", None),
    ("date", "DATE-OBS", None),
    ("instrument", "INSTRUME", None),
)
_COUNTS = (("saturated", "NSATUR"), ("non-finite", "NNONFIN"), ("gap markers", "NGAPPIX"),
           ("FITS BLANK", "NBLANK"), ("detector mask", "NPIXMASK"))

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


def describe(ccd, label: str) -> str:
    """Plain-text summary of a frame as read."""
    meta = ccd.meta
    lines = [f"{label}: {' x '.join(str(n) for n in ccd.shape)} {ccd.data.dtype} "
             f"[{ccd.unit}]"]
    for name, key, source_key in _ROWS:
        if key not in meta:
            if key == "EXPTIME":
                lines.append(f"  {name:18s} unknown")
            continue
        text = f"{meta[key]}"
        if source_key and meta.get(source_key, "none") != "none":
            text += f" (from {meta[source_key]})"
        lines.append(f"  {name:18s} {text}")
    counts = ", ".join(f"{meta[key]} {what}" for what, key in _COUNTS
                       if meta.get(key))
    lines.append(f"  {'masked':18s} {int(ccd.mask.sum())}" + (f" ({counts})" if counts else ""))
    source = meta.get("UNCSRC", "none")
    if source == "none":
        source = "none (gain or read noise unknown: --gain, --read-noise)"
    lines.append(f"  {'uncertainty':18s} {source}")
    return "\n".join(lines)


@cli.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--all-frames", is_flag=True,
              help="Describe every frame of multi-frame files (EDF, TIFF, FITS HDUs).")
@gain_option("Gain in e-/ADU (overrides the header).")
@read_noise_option("Read noise in e- (overrides the header).")
@click.pass_context
def info_command(ctx: click.Context, files: tuple[str, ...], all_frames: bool,
                 gain: float | None, read_noise: float | None) -> int:
    """Show what calframe reads from FILES: shape, frame type and exposure (with
    where they came from), temperature, gain, CFA pattern, black level and
    masked pixels.

    A file that cannot be read gets one error line and the others go on; the
    exit code is then 1."""
    from ..io import iter_frames, read_frame

    options = {"gain": gain, "read_noise": read_noise}
    failed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        for path in files:
            try:
                if all_frames:
                    for index, ccd in enumerate(iter_frames(path, **options)):
                        click.echo(describe(ccd, f"{path} [{index}]"))
                else:
                    click.echo(describe(read_frame(path, **options), path))
            except Exception as exc:
                if _State.debug:
                    raise
                failed += 1
                click.echo(error_line(exc, path), err=True)
    if failed:
        click.echo(f"{failed} of {len(files)} files could not be read", err=True)
    return 1 if failed else 0
