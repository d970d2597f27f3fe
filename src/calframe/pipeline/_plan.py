"""The plan of a run: which masters to build, which lights to calibrate with them."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .. import inventory
from ..inventory import (
    Inventory,
    Problem,
    Tolerances,
    _compatible,
    scan_paths,
    take_inventory,
)
from ..provenance import _printable
from ._config import PipelineConfig
from ._failures import _FILE_FAILURES, PipelineProblemError, _oneline_of

__all__ = ["MASTER_KINDS", "Plan", "Task", "make_plan"]

log = logging.getLogger(__name__)


#: Task kinds that are master frames.
MASTER_KINDS = ("bias", "dark", "flat")


@dataclass
class Task:
    """One output of a run.

    Attributes
    ----------
    name : str
        Unique name (the output's file stem).
    kind : {'bias', 'dark', 'flat', 'light', 'stack'}
    output : str
        Output path relative to the output folder.
    inputs : list of str
        Input frame paths.
    group : int
        Inventory group of the inputs.
    uses : dict
        Role ('bias', 'dark', 'flat') -> name of the master task used.
    parameters : dict
        The settings that shape the output (part of its hash).
    """

    name: str
    kind: str
    output: str
    inputs: list[str]
    group: int
    uses: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """What a run will do: the inventory, the tasks in order and the problems.

    Parameters
    ----------
    config : PipelineConfig
        The configuration planned from.
    inventory : Inventory
        The inventory of its inputs.
    tasks : list of Task
        The outputs to make, in order.
    problems : list of Problem
        What the inventory and the planning found wrong.
    """

    config: PipelineConfig
    inventory: Inventory
    tasks: list[Task]
    problems: list[Problem] = field(default_factory=list)

    def task(self, name: str) -> Task:
        """The task called ``name``."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def describe(self, *, problems: bool = True) -> str:
        """The plan in words, one line per output (and the problems found)."""
        masters = [t for t in self.tasks if t.kind in MASTER_KINDS]
        lights = [t for t in self.tasks if t.kind == "light"]
        stacks = [t for t in self.tasks if t.kind == "stack"]
        lines = [f"plan: {len(masters)} masters, {len(lights)} calibrated lights"
                 + (f", {len(stacks)} stacks" if stacks else "")
                 + f" -> {self.config.output}"]
        for t in masters:
            uses = ", ".join(f"{r}={n}" for r, n in t.uses.items())
            lines.append(f"  master {t.kind:<5} {_printable(t.output)}  from "
                         f"{len(t.inputs)} frames"
                         + (f"  using {uses}" if uses else ""))
        by_uses: dict[tuple, list[Task]] = {}
        for t in lights:
            by_uses.setdefault(tuple(sorted(t.uses.items())), []).append(t)
        formats = dict(zip(self.inventory.frames["path"], self.inventory.frames["format"],
                           strict=True)) if len(self.inventory.frames) else {}
        for uses, tasks in by_uses.items():
            text = ", ".join(f"{r}={n}" for r, n in uses) or "no masters"
            if _black_subtracted(dict(uses), formats.get(tasks[0].inputs[0]),
                                 self.config.calibrate.subtract_black):
                text += " (the camera black level subtracted: no bias or dark removes it)"
            lines.append(f"  calibrate {len(tasks)} light(s) with {text}")
            for t in tasks:
                lines.append(f"    {_printable(t.inputs[0])} -> {_printable(t.output)}")
        c = self.config.calibrate
        steps = [f"dark scale {c.dark_scale}"]
        if c.gain:
            steps.append(f"gain {c.gain:g} e-/ADU")
        if c.cosmetic:
            steps.append("cosmetic correction")
        if c.demosaic:
            steps.append(f"demosaic {c.demosaic}")
        if c.distortion:
            steps.append(f"distortion correction with {c.distortion}")
        if c.split_rgb:
            steps.append("R, G, B planes split into files")
        lines.append("  light steps: " + ", ".join(steps))
        for t in stacks:
            st = self.config.stack
            lines.append(f"  stack {len(t.inputs)} calibrated light(s) -> "
                         f"{_printable(t.output)}  "
                         f"(align {st.align}, {st.method}, rejection {st.rejection!r})")
        m = self.config.master
        flats = {"exposure": ", flats normalised by their exposure (each light becomes its "
                             "exposure-normalised transmission)",
                 "mean": ", flats normalised by their mean"}.get(m.flat_normalize, "")
        lines.append(f"  masters: {m.method}, rejection {m.rejection!r}, memory limit "
                     f"{self.config.memory_limit}{flats}")
        skipped = self.skipped_files()
        if skipped:
            lines.append(f"not taken ({len(skipped)} file{'s' * (len(skipped) != 1)} of "
                         "other kinds):")
            lines.extend(f"  {_printable(p)}" for p in skipped)
        if problems and self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines.extend(f"  {_printable(p)}" for p in self.problems)
        return "\n".join(lines)

    def skipped_files(self) -> list[Problem]:
        """Files in the input folders that are not frames, with the reason (not
        calframe's own outputs, which are left out on purpose)."""

        outputs = getattr(inventory, "_OUTPUT_PREFIX", "a calframe output")
        return [p for p in getattr(self.inventory, "skipped", [])
                if not p.what.startswith(outputs)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form."""
        return {"config": self.config.to_dict(),
                "tasks": [dataclasses.asdict(t) for t in self.tasks],
                "problems": [dataclasses.asdict(p) for p in self.problems]}


def _black_subtracted(uses: dict, fmt: str | None, subtract: bool | None) -> bool:
    """Whether a light (or flat) calibrated with ``uses`` has its RAW black level
    subtracted (as :mod:`calframe.blacklevel` decides it: a dark in a run
    includes the bias only when no bias group exists)."""
    if subtract is False or fmt != "raw":
        return False
    return "bias" not in uses and "dark" not in uses


def make_plan(config: PipelineConfig, *, progress=None) -> Plan:
    """Take the inventory of ``config.inputs`` and decide every output.

    Only masters that some light (or flat) uses are planned.  Nothing is
    written.

    Parameters
    ----------
    config : PipelineConfig
        What to do.
    progress : callable, optional
        ``progress(iterable, desc=..., total=...)`` wrapping the inventory's scan.

    Returns
    -------
    Plan
        The inventory, the tasks in order and the problems.

    Raises
    ------
    ValueError
        When ``config.inputs`` is empty.
    PipelineProblemError
        When the config is strict and the inventory found a problem.
    """
    if not config.inputs:
        raise ValueError("no inputs: give at least one folder or file of frames")
    inv = _inventory(config, progress)
    problems = list(inv.problems)
    if config.strict and problems:
        raise PipelineProblemError(problems[0])
    masters = _MasterTasks(inv, config.master.to_dict())
    lights = _light_tasks(inv, config, masters)
    stacks = _stack_tasks(config, lights, masters.names) if config.stack.enabled else []
    return Plan(config=config, inventory=inv, tasks=masters.in_order() + lights + stacks,
                problems=problems)


def _inventory(config: PipelineConfig, progress) -> Inventory:
    """The inventory of the inputs; a file a reader fails on is a problem, not an error."""
    options = {"tolerances": config.tolerances, "frame_types": config.frame_types}
    try:
        return take_inventory(config.inputs, recursive=config.recursive,
                              exclude=[config.output], progress=progress, **options)
    except FileNotFoundError:
        raise
    except _FILE_FAILURES as err:
        # a reader let an error out: find the file(s) and take stock without them
        log.info("inventory failed (%s: %s); reading the files one by one",
                 type(err).__name__, err)
    files = scan_paths(config.inputs, recursive=config.recursive, exclude=[config.output])
    good, unreadable = [], []
    for path in files:
        try:
            take_inventory([path], **options)
        except _FILE_FAILURES as one:
            unreadable.append(Problem(path, f"cannot be read as a frame "
                                      f"({_oneline_of(one)})",
                                      "copy the file again or remove it from the "
                                      "folder"))
        else:
            good.append(path)
    inv = take_inventory(good, progress=progress, **options)
    inv.problems.extend(unreadable)
    return inv


class _MasterTasks:
    """The master tasks of a plan, each planned once with the masters it uses."""

    def __init__(self, inv: Inventory, parameters: dict[str, Any]):
        self.inv = inv
        self.parameters = parameters
        self.names = {int(g["group"]): str(g["name"]) for g in inv.groups}
        self.matches = {int(m["group"]): m for m in inv.matches}
        self.tasks: dict[str, Task] = {}

    def task(self, group: int) -> str:
        """The name of the master task of ``group``, planned when first asked for."""
        name = self.names[group]
        if name in self.tasks:
            return name
        row = self.inv.group_row(group)
        kind = "dark" if row["frametype"] == "darkflat" else str(row["frametype"])
        uses: dict[str, str] = {}
        m = self.matches.get(group)
        if kind in ("dark",):
            bias = _bias_for(self.inv, group)
            if bias is not None:
                uses["bias"] = self.task(bias)
        elif kind == "flat" and m is not None:
            if m["bias"] >= 0:
                uses["bias"] = self.task(int(m["bias"]))
            if m["dark"] >= 0:
                uses["dark"] = self.task(int(m["dark"]))
        params = dict(self.parameters)
        if kind == "flat" and m is not None and m["dark"] >= 0:
            params["dark_scaled"] = bool(m["dark_scaled"])
            # a dark without exposure (e.g. beam off) is subtracted as it is
            params["dark_scale"] = "exposure" if math.isfinite(
                float(self.inv.group_row(int(m["dark"]))["exptime"])) else "none"
        self.tasks[name] = Task(name=name, kind=kind, output=f"masters/{name}.fits",
                                inputs=self.inv.members(group), group=group, uses=uses,
                                parameters=params)
        return name

    def in_order(self) -> list[Task]:
        """The tasks, biases first, then darks, then flats, each by name."""
        order = {"bias": 0, "dark": 1, "flat": 2}
        return sorted(self.tasks.values(), key=lambda t: (order[t.kind], t.name))


def _light_tasks(inv: Inventory, config: PipelineConfig, masters: _MasterTasks
                 ) -> list[Task]:
    """One task per light that some master calibrates, named after its file."""
    tasks: list[Task] = []
    stems: set[str] = set()
    cal_params = dataclasses.asdict(config.calibrate)
    for m in inv.matches:
        if m["frametype"] != "light":
            continue
        uses = {role: masters.task(int(m[role])) for role in ("bias", "dark", "flat")
                if m[role] >= 0}
        if not uses:
            # nothing calibrates them (the inventory's problem says so): a copy
            # labelled "calibrated" would be a lie
            continue
        params = dict(cal_params)
        if m["dark"] >= 0 and not math.isfinite(float(inv.group_row(int(m["dark"]))
                                                       ["exptime"])):
            params["dark_scale"] = "none"  # nothing to scale by: subtract as it is
        for path in inv.members(int(m["group"])):
            unique = _unique_stem(_stem(path), stems)
            tasks.append(Task(name=unique, kind="light", output=f"lights/{unique}.fits",
                              inputs=[path], group=int(m["group"]), uses=uses,
                              parameters=dict(params)))
    return tasks


def _unique_stem(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... when taken; added to ``taken``."""
    unique, n = stem, 2
    while unique in taken:
        unique, n = f"{stem}_{n}", n + 1
    taken.add(unique)
    return unique


def _stack_tasks(config: PipelineConfig, lights: list[Task], names: dict[int, str]
                 ) -> list[Task]:
    """One stack per light group of two or more calibrated lights."""
    by_group: dict[int, list[Task]] = {}
    for t in lights:
        by_group.setdefault(t.group, []).append(t)
    return [Task(name=f"stack_{names[group]}", kind="stack",
                 output=f"stacks/{names[group]}.fits",
                 inputs=[t.output for t in members], group=group,
                 uses={f"light{i}": t.name for i, t in enumerate(members)},
                 parameters=config.stack.to_dict())
            for group, members in by_group.items() if len(members) >= 2]


def _bias_for(inv: Inventory, group: int) -> int | None:

    row = inv.group_row(group)
    tol = Tolerances()
    biases = [b for b in inv.groups if b["frametype"] == "bias"
              and _compatible(b, row, tol)]
    if not biases:
        return None
    return int(max(biases, key=lambda b: b["nframes"])["group"])


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in sorted((".fits.fz", ".fits.gz", ".fit.gz"), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]
