"""``calframe provenance``: how a calframe file was made, and whether its inputs changed."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from . import cli


@cli.command("provenance")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--verify", is_flag=True,
              help="Re-hash the inputs that are present and report changed or missing "
                   "ones (exit code 1 if any changed).")
@click.option("--prov-json", "prov_json", type=click.Path(dir_okay=False),
              help="Also write the record as W3C PROV-JSON to this file.")
@click.option("--no-follow", is_flag=True,
              help="Do not open the calframe files (masters) the file was made from.")
@click.option("--full", is_flag=True,
              help="List every step (runs of steps of the same name are shortened).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --prov-json file.")
def provenance_command(file: str, verify: bool, prov_json: str | None, no_follow: bool,
                       full: bool, overwrite: bool) -> int:
    """Print how FILE was made: its steps and inputs as a tree, following the
    masters it used when they are found (at their recorded place or beside FILE)."""
    from ..errors import OutputExistsError
    from ..io import read_provenance
    from ..provenance import provenance_tree, sha256_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node = provenance_tree(file, verify=verify, follow=not no_follow)
    for item in caught:
        click.echo(f"warning: {item.message}", err=True)
    click.echo(node.render(full=full))

    status = 0
    if verify:
        checks = list(node.iter_checks())
        counts = {k: sum(c.status == k for c in checks) for k in ("ok", "changed", "missing")}
        click.echo(f"verified {len(checks)} inputs: {counts['ok']} unchanged, "
                   f"{counts['changed']} changed, {counts['missing']} not found")
        for check in checks:
            if check.status == "changed":
                click.echo(f"changed: {check.record.path} (recorded sha256 "
                           f"{check.record.sha256[:16]}, now {check.sha256[:16]})", err=True)
        if counts["changed"]:
            status = 1

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
