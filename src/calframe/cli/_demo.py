"""``calframe demo``: a synthetic night with a known truth, processed and checked."""

from __future__ import annotations

import click

from . import cli
from ._options import output_dir, output_dir_option


@cli.command("demo")
@output_dir_option("Folder for the synthetic night (reused if an earlier demo wrote it) "
                   "[default: calframe-demo].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the synthetic night.")
@click.pass_context
def demo_command(ctx: click.Context, output: str | None, output_alias: str | None,
                 seed: int) -> int:
    """Write a synthetic night (a mono CCD and a colour camera) with a known truth,
    read every frame back, measure the detector from the frames and compare every
    figure with the truth.  Exits with 0 only if every check passes."""
    from ..demo import run_demo

    outdir = output_dir(output, output_alias) or "calframe-demo"
    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    result = run_demo(outdir, seed=seed)
    nframes = sum(len(n.frames) for n in result.nights.values())
    if not quiet:
        click.echo(f"synthetic night: {nframes} FITS frames in {outdir} (seed {seed}); "
                   f"{len(result.outputs)} masters and calibrated lights written there")
        click.echo("")
        click.echo(result.summary_table())
        click.echo("")
        click.echo(result.checks_table())
        total = sum(result.timings.values())
        click.echo(f"time: {total:.1f} s (" + ", ".join(
            f"{k} {v:.1f} s" for k, v in result.timings.items()) + ")")
    else:
        for check in result.checks:
            if not check.passed:
                click.echo(check.line())
    npass = sum(c.passed for c in result.checks)
    click.echo(f"demo {'PASSED' if result.passed else 'FAILED'}: "
               f"{npass}/{len(result.checks)} checks against the truth")
    return 0 if result.passed else 1
