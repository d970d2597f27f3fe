"""``calframe calibrate``: apply masters to lights."""

from __future__ import annotations

import os

import click

from .._progress import echo, enable_progress, progress, result
from ..errors import CalframeError
from ..provenance import get_provenance
from . import cli, command_options
from ._options import (
    black_level_option,
    cli_message,
    gain_option,
    output_dir,
    output_dir_option,
    read_noise_option,
)

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


@cli.command("calibrate")
@click.argument("lights", nargs=-1, required=True, type=click.Path(exists=True,
                                                                   dir_okay=False))
@click.option("--bias", type=click.Path(exists=True, dir_okay=False), help="Master bias.")
@click.option("--dark", type=click.Path(exists=True, dir_okay=False), help="Master dark.")
@click.option("--flat", type=click.Path(exists=True, dir_okay=False), help="Master flat.")
@output_dir_option("Output folder (one FITS per light, same name).")
@gain_option("Gain in e-/ADU: overrides EGAIN, and the output is in e-.")
@read_noise_option("Read noise in e- (overrides the header's RDNOISE).")
@click.option("--dark-scale",
              type=click.Choice(["exposure", "optimize", "optimize-per-channel", "none"]),
              default="exposure", show_default=True,
              help="How the dark is scaled to each light.")
@click.option("--cosmetic", is_flag=True, help="Correct hot and cold pixels.")
@click.option("--demosaic", default=None, help="Demosaic CFA lights (e.g. bilinear).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@black_level_option("Subtract the camera black level of RAW lights, or keep it (default: "
                    "subtracted when no --bias or --dark removes it).")
@click.option("--allow-no-masters", is_flag=True,
              help="Go ahead without --bias, --dark and --flat (only gain, cosmetics, "
                   "demosaic); refused otherwise.")
@click.option("--assume-linear", is_flag=True, default=False,
              help="Take the lights as linear: do not refuse one that looks gamma-encoded "
                   "against the flat (recorded in the provenance).")
@click.pass_context
def calibrate_command(ctx: click.Context, lights: tuple[str, ...], bias, dark, flat,
                      output: str | None, output_alias: str | None, gain, read_noise,
                      dark_scale: str, cosmetic: bool, demosaic, overwrite: bool,
                      subtract_black: bool | None, allow_no_masters: bool,
                      assume_linear: bool) -> int:
    """Calibrate LIGHTS with the given masters; write one FITS per light to FOLDER.

    With --gain or --read-noise the lights' noise model uses them instead of
    the header's EGAIN and RDNOISE.

    Each master's header must agree with its role (a flat given as --bias
    is refused).  Each result line says which steps were applied.  A light
    that cannot be calibrated is reported and skipped; the exit code is 1
    when any light failed."""
    from ..calibration import calibrate
    from ..contract import check_role
    from ..io import read_frame, write_frame

    output = output_dir(output, output_alias)
    if output is None:
        raise click.UsageError("give the output folder with -o/--output-dir")
    if bias is None and dark is None and flat is None and not allow_no_masters:
        raise click.UsageError("no --bias, --dark or --flat given, so nothing would be "
                               "calibrated; give the masters, or --allow-no-masters to only "
                               "apply the gain, cosmetics or demosaic")
    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    enable_progress(not quiet)

    # masters read once (and a normalised flat kept dimensionless)
    paths = {"bias": bias, "dark": dark, "flat": flat}
    masters = {role: read_frame(path) for role, path in paths.items() if path is not None}
    for role, ccd in masters.items():  # once, naming the file, before any light
        check_role(ccd, role, label=paths[role])
    bias, dark, flat = (masters.get(role) for role in ("bias", "dark", "flat"))
    os.makedirs(output, exist_ok=True)
    names: set[str] = set()
    failed = 0
    for light in progress(lights, desc="calibrating lights", total=len(lights)):
        stem = os.path.splitext(os.path.basename(light))[0]
        name, n = stem, 2
        while name in names:
            name, n = f"{stem}_{n}", n + 1
        names.add(name)
        target = os.path.join(output, f"{name}.fits")
        try:
            frame = light
            if gain is not None or read_noise is not None:
                frame = read_frame(light, gain=gain, read_noise=read_noise)
            ccd = calibrate(frame, bias=bias, dark=dark, flat=flat, gain=gain,
                            dark_scale=None if dark_scale == "none" else dark_scale,
                            cosmetic=True if cosmetic else None,
                            allow_no_masters=allow_no_masters, subtract_black=subtract_black,
                            assume_linear=assume_linear)
            if demosaic and ccd.meta.get("BAYERPAT"):
                from ..demosaicing import demosaic as do_demosaic

                ccd = do_demosaic(ccd, method=demosaic)
            write_frame(ccd, target, overwrite=overwrite)
        except (CalframeError, OSError) as err:
            failed += 1
            echo(f"problem: {light}: not calibrated ({cli_message(str(err), command_options())})")
            continue
        if not quiet:
            result(f"{light} -> {target} ({_steps(ccd)})")
    click.echo(f"{len(lights) - failed} of {len(lights)} lights calibrated into {output}")
    return 1 if failed else 0


#: CALSTAT letters in words.
_STEP_WORDS = {"O": "overscan", "T": "trim", "B": "bias", "D": "dark", "F": "flat",
               "G": "gain", "C": "cosmetics", "R": "cosmic rays", "M": "demosaic",
               "W": "distortion", "A": "alignment"}


def _steps(ccd) -> str:
    """The calibration steps a frame's CALSTAT records, in words."""
    meta = ccd.meta
    step = next((s.parameters for s in reversed(get_provenance(ccd).steps)
                 if s.step == "calibrate"), {})
    words = []
    for letter in str(meta.get("CALSTAT", "")):
        word = _STEP_WORDS.get(letter, letter)
        if letter == "B" and "black_level" in step:
            word = "camera black level"
        if letter == "D" and "DARKSCAL" in meta:
            word += f" x{float(meta['DARKSCAL']):.4g}"
        words.append(word)
    return "steps: " + (", ".join(words) or "none")
