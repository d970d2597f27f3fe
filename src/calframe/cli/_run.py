"""``calframe run``: a whole folder of frames to calibrated FITS and a report."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .._progress import echo, enable_progress, progress
from . import cli, one_line
from ._options import (
    REJECTIONS,
    RejectionType,
    black_level_option,
    gain_option,
    output_dir,
    output_dir_option,
    parse_frame_types,
    read_noise_option,
    rejection_help,
    rejection_override,
)

# calframe.pipeline and calframe._atomic are imported where a run needs them, not
# here: every call of the command line imports this module, and they would add
# about 1 s and 0.03 s to its start-up (python -X importtime, a busy machine).
if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import PipelineConfig


def _check_scheduler(ctx, param, value):
    """``--scheduler``: one of the accepted forms (calframe.pipeline's parse_scheduler)."""
    if value is None:
        return None
    from ..errors import InvalidSettingsError
    from ..pipeline._cluster import parse_scheduler  # (start-up: see above)

    try:
        parse_scheduler(value)
    except InvalidSettingsError as err:
        raise click.BadParameter(one_line(err)) from err
    return value


@cli.command("run")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@output_dir_option("Output folder (masters/, lights/, stacks/, report.html).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="TOML file with the settings (options given here override it).")
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--strict", is_flag=True, default=None,
              help="Stop at the first problem instead of going on with the good frames.")
@click.option("--method", type=click.Choice(["median", "mean"]), default=None,
              help="Combine method of the masters.")
@click.option("--reject", "rejection", default=None, type=RejectionType(tuple(REJECTIONS)),
              help="Rejection of the masters [default: sigma].")
@click.option("--low", type=click.FloatRange(min=0), default=None, metavar="FLOAT",
              help="Lower rejection limit of the masters; by default, per --reject: "
                   f"{rejection_help(REJECTIONS)}.")
@click.option("--high", type=click.FloatRange(min=0), default=None, metavar="FLOAT",
              help="Upper rejection limit of the masters (default: the algorithm's).")
@click.option("--flat-normalize", type=click.Choice(["median", "mean", "exposure"]),
              default=None,
              help="Normalise the master flats by their median or mean [default: median], "
                   "or by their exposure time: the calibrated lights are then the "
                   "exposure-normalised transmission (data - dark)/t / ((flat - dark)/t_flat).")
@gain_option("Gain in e-/ADU (output in e-; replaces EGAIN in the lights' noise model).")
@read_noise_option("Read noise in e- (replaces RDNOISE in the lights' noise model).")
@click.option("--dark-scale",
              type=click.Choice(["exposure", "optimize", "optimize-per-channel", "none"]),
              default=None, help="How the dark is scaled to each light.")
@click.option("--cosmetic/--no-cosmetic", default=None,
              help="Correct hot and cold pixels.")
@click.option("--demosaic", default=None, help="Demosaic CFA lights (e.g. bilinear).")
@click.option("--distortion", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Distortion model to correct every light with.")
@click.option("--stack/--no-stack", "stack", default=None,
              help="Align and stack the calibrated lights of each group (stacks/).")
@click.option("--stack-align", type=click.Choice(["stars", "translation", "none"]),
              default=None, help="How the lights are aligned before stacking "
                                 "[default: stars].")
@click.option("--memory-limit", default=None, help="Memory for combining (e.g. 1GiB).")
@click.option("--type", "frame_types", multiple=True, metavar="GLOB=TYPE",
              help="Frame type for files whose headers do not say (repeatable).")
@click.option("--no-report", is_flag=True, default=None, help="Do not write report.html.")
@black_level_option("Subtract the camera black level of RAW flats and lights, or keep it "
                    "(default: subtracted where no bias or dark removes it).")
@click.option("--split-rgb", is_flag=True, default=None,
              help="Also write each calibrated colour light as _R, _G, _B files.")
@click.option("--absolute-paths", is_flag=True, default=None,
              help="Name the input files by absolute paths in the outputs' provenance "
                   "(default: relative to each output, so the folders can move).")
@click.option("--allow-mixed", is_flag=True, default=None,
              help="Make masters of frames the input contract refuses (mixed types, "
                   "exposures, camera settings); recorded in the provenance.")
@click.option("--assume-linear", is_flag=True, default=None,
              help="Take flats and lights as linear: do not refuse data that look "
                   "gamma-encoded (recorded in the provenance).")
@click.option("--scheduler", default=None, metavar="WHERE", callback=_check_scheduler,
              help="Where masters, lights and stacks are made: 'threads' (this process, "
                   "the default), 'processes:N' (a local Dask cluster of N worker "
                   "processes) or the address of a running dask scheduler "
                   "(tcp://host:8786); the outputs are the same.")
@click.option("--break-lock", is_flag=True, default=False,
              help="Take over the output folder's lock left by a calframe run on another "
                   "host (make sure that run has ended).")
@click.pass_context
def run_command(ctx: click.Context, paths, output, output_alias, config_path, dry_run,
                strict, method, rejection, low, high, flat_normalize, gain, read_noise,
                dark_scale, cosmetic,
                demosaic, distortion, stack, stack_align, memory_limit, frame_types, no_report,
                subtract_black, split_rgb, absolute_paths, allow_mixed, assume_linear,
                scheduler, break_lock) -> int:
    """Inventory PATHS, build the masters each group needs, calibrate every light,
    and write FOLDER/report.html.  A rerun redoes only what changed or is damaged.

    The run holds a lock on FOLDER (FOLDER/.calframe/lock): a second run on
    the same folder is refused until the first ends."""
    from ..pipeline import PipelineConfig, load_config, make_plan  # (start-up: see above)

    output = output_dir(output, output_alias)
    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    enable_progress(not quiet)
    try:
        config = load_config(config_path) if config_path else PipelineConfig()
    except (ValueError, TypeError) as err:  # settings the file gives wrongly
        raise click.BadParameter(one_line(err), param_hint="--config") from err
    config = config.replace(**_changes(
        config, paths=paths, output=output, no_report=no_report, frame_types=frame_types,
        rejection=(rejection, low, high),
        top={"strict": strict, "memory_limit": memory_limit, "allow_mixed": allow_mixed,
             "absolute_paths": absolute_paths, "scheduler": scheduler},
        master={"method": method, "flat_normalize": flat_normalize},
        calibrate={"gain": gain, "read_noise": read_noise, "subtract_black": subtract_black,
                   "split_rgb": split_rgb, "assume_linear": assume_linear,
                   "dark_scale": dark_scale, "cosmetic": cosmetic, "demosaic": demosaic,
                   "distortion": distortion},
        stack={"enabled": stack, "align": stack_align}))
    if not config.inputs:
        raise click.UsageError("give at least one folder or file of frames (or inputs in "
                               "the config)")
    if not output and not config_path:
        raise click.UsageError("give the output folder with -o/--output-dir")
    if dry_run:
        click.echo(make_plan(config, progress=progress).describe())
        return 0
    return _carry_out(config, quiet=quiet, break_lock=break_lock)


def _changes(config: PipelineConfig, *, paths, output, no_report, frame_types, rejection,
             top: dict, master: dict, calibrate: dict, stack: dict) -> dict:
    """The changes of ``config`` (:meth:`PipelineConfig.replace`) that the options make.

    An option given as None was not given; ``rejection`` is ``(--reject, --low,
    --high)``.
    """
    changes = {key: value for key, value in top.items() if value is not None}
    if paths:
        changes["inputs"] = list(paths)
    if output:
        changes["output"] = output
    if no_report:
        changes["report"] = False
    for section, values in (("master", master), ("calibrate", calibrate), ("stack", stack)):
        changes.update({f"{section}__{key}": value for key, value in values.items()
                        if value is not None})
    if frame_types:
        changes["frame_types"] = parse_frame_types(frame_types, config.frame_types)
    if any(value is not None for value in rejection):
        changes["master__rejection"] = rejection_override(config.master.rejection, *rejection)
    return changes


def _carry_out(config: PipelineConfig, *, quiet: bool, break_lock: bool) -> int:
    """Plan and run ``config``, printing the plan, the problems and the summary."""
    from .._atomic import lock_output  # (start-up: see the top of this module)
    from ..pipeline import make_plan, run_pipeline

    # locked before the inventory: a second run on the folder is refused at once
    with lock_output(config.output, break_lock=break_lock):
        plan = make_plan(config, progress=progress)
        if not quiet:
            click.echo(plan.describe(problems=False))

        def on_problem(problem) -> None:
            echo(f"problem: {problem}")

        result = run_pipeline(plan, progress=progress, on_problem=on_problem,
                              break_lock=break_lock)
    click.echo(result.summary())
    return 0 if result.ok else 1
