"""``calframe info``: what calframe reads from each file."""

from __future__ import annotations

import warnings

import click

from . import cli

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
           ("FITS BLANK", "NBLANK"))


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
@click.option("--gain", type=float, help="Gain in e-/ADU (overrides the header).")
@click.option("--read-noise", type=float, help="Read noise in e- (overrides the header).")
def info_command(files: tuple[str, ...], all_frames: bool, gain: float | None,
                 read_noise: float | None) -> int:
    """Show what calframe reads from FILES: shape, frame type and exposure (with
    where they came from), temperature, gain, CFA pattern, black level and
    masked pixels."""
    from ..errors import UncertaintyUnknownWarning
    from ..io import iter_frames, read_frame

    options = {"gain": gain, "read_noise": read_noise}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        for path in files:
            if all_frames:
                for index, ccd in enumerate(iter_frames(path, **options)):
                    click.echo(describe(ccd, f"{path} [{index}]"))
            else:
                click.echo(describe(read_frame(path, **options), path))
    return 0
