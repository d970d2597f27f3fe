"""The tree of :func:`~calframe.provenance.provenance_tree` as text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._cells import _printable
from ._json import _short
from ._records import InputRecord, StepRecord

if TYPE_CHECKING:  # pragma: no cover
    from ._check_inputs import InputCheck
    from ._tree import ProvenanceNode


def _step_rows(steps: list[StepRecord], full: bool) -> list[str]:
    if full:
        return [_step_line(s) for s in steps]
    rows: list[str] = []
    i = 0
    while i < len(steps):
        j = i
        while j < len(steps) and steps[j].step == steps[i].step:
            j += 1
        if j - i >= 3:
            same = all(s.parameters == steps[i].parameters for s in steps[i:j])
            row = f"{steps[i].time[:19]}  {steps[i].step} x{j - i}"
            if same and steps[i].parameters:
                row += "  " + _step_line(steps[i]).split(f"{steps[i].step}  ", 1)[-1]
            rows.append(row + f"  (until {steps[j - 1].time[:19]}; --full lists them)")
        else:
            rows.extend(_step_line(s) for s in steps[i:j])
        i = j
    return rows


def _step_line(step: StepRecord) -> str:
    words = ", ".join(f"{k}={_short(v, 40)}" for k, v in step.parameters.items())
    return f"{step.time[:19]}  {step.step}" + (f"  {words}" if words else "")


def _input_line(record: InputRecord, check: InputCheck | None) -> str:
    parts = [record.path or "?", f"[{record.role or '-'}]"]
    if record.frametype and record.frametype != record.role:
        parts.append(record.frametype)
    if record.exptime is not None:
        parts.append(f"EXPTIME {record.exptime:g} s")
    if record.date_obs:
        parts.append(record.date_obs)
    if record.shape:
        parts.append("x".join(str(n) for n in record.shape))
    parts.append(f"sha256 {record.sha256[:16]}")
    if check is not None:
        parts.append({"ok": "ok", "changed": "CHANGED", "missing": "missing"}[check.status])
    return "  ".join(parts)


def render_tree(node: ProvenanceNode, *, full: bool = False) -> str:
    """The tree below ``node`` as text (see :meth:`ProvenanceNode.render`)."""
    lines = [f"{node.path}  sha256 {node.sha256[:16]}  CALSTAT {node.calstat or '-'}"]
    if not (node.steps or node.inputs or node.inherited):
        lines.append("└── no provenance recorded (not written by calframe?)")
    _render_body(node, lines, "", full)
    return _printable("\n".join(lines))


def _render_body(node: ProvenanceNode, lines: list[str], indent: str, full: bool) -> None:
    sections: list[tuple[str, list[str] | list[InputRecord]]] = []
    if node.steps:
        sections.append(("steps", _step_rows(node.steps, full)))
    if node.inputs:
        sections.append(("inputs", node.inputs))
    for origin, prov in node.inherited.items():
        rows = _step_rows(prov.steps, full) + [_input_line(r, None) for r in prov.inputs]
        where = " (not found)" if node.followed else ""
        sections.append((f"recorded from {origin}{where}", rows))
    for k, (title, items) in enumerate(sections):
        last = k == len(sections) - 1
        lines.append(f"{indent}{'└── ' if last else '├── '}{title}")
        sub = indent + ("    " if last else "│   ")
        for i, item in enumerate(items):
            end = i == len(items) - 1
            branch = "└── " if end else "├── "
            if isinstance(item, str):
                lines.append(f"{sub}{branch}{item}")
                continue
            lines.append(f"{sub}{branch}{_input_line(item, node.checks.get(i))}")
            child = node.children.get(i)
            if child is not None:
                child_indent = sub + ("    " if end else "│   ")
                lines.append(f"{child_indent}└── {child.path}  CALSTAT "
                             f"{child.calstat or '-'}")
                _render_body(child, lines, child_indent + "    ", full)
