"""Option parsing shared by several sub-commands."""

from __future__ import annotations

import click


def parse_frame_types(items, base: dict[str, str] | None = None) -> dict[str, str]:
    """``--type GLOB=TYPE`` values (repeatable) as a ``{glob: type}`` mapping."""
    types = dict(base or {})
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not GLOB=TYPE (e.g. '*data.edf=light')",
                                     param_hint="--type")
        glob, ftype = item.rsplit("=", 1)
        types[glob] = ftype
    return types
