"""``calframe provenance``: how a calframe file was made, and whether its inputs changed."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from ..errors import OutputExistsError
from . import cli

# The library is imported inside the command, when it runs: every call of the
# command line imports this module, and with the library `calframe --help` would
# take about 1.2 s instead of 0.5 s (python -X importtime, a busy machine).


@cli.command("provenance")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--verify", is_flag=True,
              help="Check that FILE is what calframe wrote (its digest and checksums) and "
                   "that every input is still there with its recorded SHA-256; one line "
                   "per problem (TAMPERED, CHANGED, MISSING, NO PROVENANCE, UNVERIFIABLE), "
                   "exit code 1 if any.")
@click.option("--allow-missing", is_flag=True,
              help="With --verify: accept raw inputs that are not found (archives that do "
                   "not keep them); calframe files (masters) must still be there.")
@click.option("--prov-json", "prov_json", type=click.Path(dir_okay=False),
              help="Also write the record as W3C PROV-JSON to this file.")
@click.option("--no-follow", is_flag=True,
              help="Do not open the calframe files (masters) the file was made from.")
@click.option("--full", is_flag=True,
              help="List every step (runs of steps of the same name are shortened).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --prov-json file.")
def provenance_command(file: str, verify: bool, allow_missing: bool, prov_json: str | None,
                       no_follow: bool, full: bool, overwrite: bool) -> int:
    """Print how FILE was made: its steps and inputs as a tree, following the
    masters it used when they are found (at their recorded place or beside FILE).

    With --verify, exit code 0 means: FILE is what calframe wrote, from inputs
    that are still what they were."""
    from ..io import read_provenance
    from ..provenance import provenance_tree, sha256_file, verify_output

    if allow_missing and not verify:
        raise click.UsageError("--allow-missing is an option of --verify; give both")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if verify:
            report = verify_output(file, allow_missing=allow_missing, follow=not no_follow)
            node = report.tree
        else:
            node = provenance_tree(file, follow=not no_follow)
    for item in caught:
        click.echo(f"warning: {item.message}", err=True)
    click.echo(node.render(full=full))

    status = 0
    if verify:
        for line in report.lines():
            click.echo(line)
        click.echo(report.summary())
        status = 0 if report.ok else 1
        if not report.ok:   # the answer also as one error line, as every refusal is
            kinds = ", ".join(dict.fromkeys(kind for kind, _p, _d in report.problems))
            click.echo(f"error: {file}: not verified ({kinds}); see the lines above",
                       err=True)

    if prov_json:
        out = Path(prov_json)
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out}: file exists; pass --overwrite to replace it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record = read_provenance(file)
        text = record.to_prov_json(output=Path(file).name, output_sha256=sha256_file(file))
        out.write_text(text + "\n", encoding="utf-8")
        click.echo(f"PROV-JSON written to {out}")
    return status
