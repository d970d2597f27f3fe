"""A whole night or experiment, from folders of frames to calibrated FITS and a report.

:func:`make_plan` takes an inventory of the input folders (see
:mod:`calframe.inventory`), groups the frames and decides which masters to
build and which lights to calibrate with which masters.  :func:`run_pipeline`
carries the plan out:

1. every frame that a task uses is read once, checked (all-NaN, saturated,
   missing exposure...) and measured for the quality table; bad frames become
   :class:`~calframe.inventory.Problem` records and are left out;
2. one master bias, dark and flat per group (:func:`calframe.make_master_bias`
   and friends, memory bounded by ``memory_limit``);
3. every light calibrated (:func:`calframe.calibrate`), optionally
   demosaiced and corrected for distortion;
4. ``report.html`` (:func:`calframe.report.write_report`).

Resuming
--------
Each output carries a ``PIPEHASH`` header keyword: the SHA-256 of its task's
kind, parameters, the SHA-256 of every input file and the SHA-256 of the
master files it uses (so a master made again means its lights are made
again, and a light made again its stack).  A rerun skips an output only when
its hash is unchanged and its bytes are what calframe wrote: every HDU's
``CHECKSUM`` and ``DATASUM`` check out and the file ends with its
``PROVENANCE`` table.  A damaged output (truncated, a byte changed) is made
again, and everything made from it after it (:attr:`RunResult.remade`).

A run holds the lock of its output folder (``<output>/.calframe/lock``, see
``calframe._atomic.lock_output``): a second run on the same folder is
refused at once with ``OutputLockedError``, which names
the run that holds it.  Outputs are written atomically by
:func:`calframe.write_frame`, through temporary names
(``.calframe-<pid>-<random>-<name>.tmp``) listed in the run's journal before
they are created, so an interrupted run leaves no partial file under a final
name; the next run removes the temporaries that the journal of a killed run
lists, and no other file.

Configuration
-------------
A TOML file can set everything the command line can::

    inputs = ["night1"]
    output = "calibrated"
    memory_limit = "1GiB"
    strict = false
    allow_mixed = false        # true: make masters the input contract refuses
    absolute_paths = false     # true: name inputs by absolute paths in the outputs

    [master]
    method = "median"          # median | mean
    rejection = "sigma"        # none | sigma | mad | winsorized | linear | percentile
                               # | minmax | generalized
    low = 3.0                  # limits; leave out for the rejection's defaults
    high = 3.0

    [calibrate]
    gain = 1.5                 # e-/ADU, or leave out to stay in ADU
    read_noise = 5.0           # e-, or leave out to take RDNOISE from the headers
    dark_scale = "exposure"    # exposure | optimize | none
    cosmetic = false
    demosaic = "bilinear"      # or leave out
    assume_linear = false      # true: do not refuse data that look gamma-encoded
    distortion = "model.fits"  # a calframe distortion model, or leave out

    [tolerances]
    exptime_rel = 0.01
    temperature = 2.0

    [frame_types]              # types for files whose headers do not say
    "*/data.edf" = "light"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import struct
import tomllib
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from ._atomic import lock_output
from ._collection import collection_paths
from .errors import CalframeError, UncertaintyUnknownWarning
from .inventory import Inventory, Problem, Tolerances, scan_paths, take_inventory
from .provenance import _printable, restart_step_clock

__all__ = [
    "CalibrationSettings",
    "MasterSettings",
    "PipelineConfig",
    "PipelineProblemError",
    "Plan",
    "RunResult",
    "Task",
    "load_config",
    "make_plan",
    "run_pipeline",
]

log = logging.getLogger(__name__)

#: Header keyword holding an output's task hash.
HASH_KEYWORD = "PIPEHASH"

_METHODS = ("median", "mean")
_DARK_SCALES = ("exposure", "optimize", "optimize-per-channel", "none")
_ALIGNS = ("stars", "translation", "none")
#: Task kinds that are master frames.
MASTER_KINDS = ("bias", "dark", "flat")

#: What reading one damaged file may raise besides calframe's own errors (a
#: reader that leaks them): corrupt compressed data, truncation, malformed
#: header values.  A run takes any of them as a problem of that file.
_FILE_FAILURES: tuple[type[BaseException], ...] = (
    CalframeError, OSError, ValueError, EOFError, KeyError, IndexError, TypeError,
    zlib.error, struct.error)


def _file_failures() -> tuple[type[BaseException], ...]:
    """:data:`_FILE_FAILURES` and the errors of LibRaw (camera RAW files)."""
    try:
        import rawpy
    except ImportError:  # pragma: no cover - rawpy is a dependency
        return _FILE_FAILURES
    return (*_FILE_FAILURES, rawpy.LibRawError)


class PipelineProblemError(CalframeError, ValueError):
    """A problem with the inputs, raised when the run is strict."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(f"{problem} (stopped because the run is strict)")


@dataclass
class MasterSettings:
    """How masters are combined.

    Parameters
    ----------
    method : {'median', 'mean'}
        Combine method.
    rejection : str
        Rejection before combining, by Siril's name (see
        :data:`calframe.combining.REJECTIONS`): 'none', 'sigma', 'mad',
        'winsorized', 'linear', 'percentile', 'minmax' or 'generalized'.
    low, high : float, optional
        Rejection limits; default: the algorithm's own (3 and 3 sigma, 5 and
        2.5 for the linear fit, 0.2 and 0.1 of the median, 1 and 1 values for
        minmax, 0.3 and 0.05 for the generalized ESD test).
    """

    method: str = "median"
    rejection: str = "sigma"
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"master method={self.method!r} is not known; use one of "
                             f"{', '.join(_METHODS)}")
        self.rejection_object()   # an unknown name or unusable limits are refused here

    def rejection_object(self):
        """The calframe rejection settings object (None for no rejection)."""
        from .combining import rejection_from_name

        return rejection_from_name(self.rejection, self.low, self.high)


@dataclass
class CalibrationSettings:
    """How lights are calibrated.

    Parameters
    ----------
    gain : float, optional
        Gain in e-/ADU; when given, calibrated lights are in electrons, and
        it replaces the headers' EGAIN in the frames' noise model.
    read_noise : float, optional
        Read noise in e-; replaces the headers' RDNOISE in the noise model.
    dark_scale : {'exposure', 'optimize', 'optimize-per-channel', 'none'}
        How a master dark is scaled to a light.
    cosmetic : bool
        Correct hot and cold pixels found in the master dark and flat.
    demosaic : str, optional
        Demosaic CFA lights with this method (e.g. 'bilinear').
    distortion : str, optional
        A distortion model file (:meth:`calframe.DistortionModel.to_fits`)
        to correct every light with.
    subtract_black : bool, optional
        Subtract the camera black level (RAW frames) from flats and lights;
        default: where no bias and no dark that includes the bias remove it
        (see :mod:`calframe.blacklevel`).  False keeps it.
    assume_linear : bool
        Take flats and lights as linear: skip the refusal of data that look
        gamma-encoded (:mod:`calframe.linearity`); recorded in the provenance.
    split_rgb : bool
        Also write each calibrated colour light as three files,
        ``lights/<name>_R.fits``, ``_G``, ``_B`` (demosaiced first, with
        ``demosaic`` or bilinear), as Siril's ``split`` does.
    """

    gain: float | None = None
    read_noise: float | None = None
    dark_scale: str = "exposure"
    cosmetic: bool = False
    demosaic: str | None = None
    distortion: str | None = None
    subtract_black: bool | None = None
    split_rgb: bool = False
    assume_linear: bool = False

    def __post_init__(self) -> None:
        if self.dark_scale not in _DARK_SCALES:
            raise ValueError(f"dark_scale={self.dark_scale!r} is not known; use one of "
                             f"{', '.join(_DARK_SCALES)}")
        if self.gain is not None and not (self.gain > 0):
            raise ValueError(f"gain={self.gain!r} must be positive (e-/ADU)")
        if self.read_noise is not None and not (self.read_noise >= 0):
            raise ValueError(f"read_noise={self.read_noise!r} must not be negative (e-)")


@dataclass
class StackSettings:
    """Whether and how the calibrated lights of each group are aligned and stacked.

    One stack is made per light group of the inventory (lights that share
    exposure, filter, binning, shape, gain and temperature), into
    ``stacks/<group>.fits``, with :func:`calframe.stack`.

    Parameters
    ----------
    enabled : bool
        Make the stacks.
    align : {'stars', 'translation', 'none'}
        Alignment to the group's first light.
    method : {'mean', 'median'}
        Combine method.
    rejection : str
        Rejection before combining, with ``low`` / ``high`` (as for masters).
    low, high : float, optional
        Rejection limits (default: the algorithm's own, as for masters).
    order : {0, 1, 3}
        Interpolation order of the warp.
    """

    enabled: bool = False
    align: str = "stars"
    method: str = "mean"
    rejection: str = "sigma"
    low: float | None = None
    high: float | None = None
    order: int = 1

    def __post_init__(self) -> None:
        if self.align not in _ALIGNS:
            raise ValueError(f"stack align={self.align!r} is not known; use one of "
                             f"{', '.join(_ALIGNS)}")
        if self.order not in (0, 1, 3):
            raise ValueError(f"stack order={self.order!r} is not known; use 0, 1 or 3")
        # method and rejection are checked like the masters'
        MasterSettings(method=self.method, rejection=self.rejection, low=self.low,
                       high=self.high)

    def rejection_object(self):
        """The calframe rejection settings object (None for no rejection)."""
        return MasterSettings(method=self.method, rejection=self.rejection, low=self.low,
                              high=self.high).rejection_object()


@dataclass
class PipelineConfig:
    """Everything a run needs; what the TOML file and the command line set.

    Examples
    --------
    >>> cfg = PipelineConfig.from_dict({"inputs": ["night"], "output": "out",
    ...                                 "master": {"method": "mean"}})
    >>> cfg.master.method, cfg.calibrate.dark_scale
    ('mean', 'exposure')
    """

    inputs: list[str] = field(default_factory=list)
    output: str = "calibrated"
    master: MasterSettings = field(default_factory=MasterSettings)
    calibrate: CalibrationSettings = field(default_factory=CalibrationSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    tolerances: Tolerances = field(default_factory=Tolerances)
    frame_types: dict[str, str] = field(default_factory=dict)
    memory_limit: str = "1GiB"
    strict: bool = False
    allow_mixed: bool = False
    absolute_paths: bool = False
    recursive: bool = True
    report: bool = True
    outlier_sigma: float = 5.0

    def __post_init__(self) -> None:  # inputs may be a ccdproc ImageFileCollection
        self.inputs = collection_paths(self.inputs, "PipelineConfig inputs")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PipelineConfig:
        """Build from a plain dictionary (e.g. parsed TOML); unknown keys are errors."""
        data = dict(data)
        sections = {"master": MasterSettings, "calibrate": CalibrationSettings,
                    "stack": StackSettings, "tolerances": Tolerances}
        kwargs: dict[str, Any] = {}
        top = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in top:
                raise ValueError(f"{source}: unknown setting {key!r}; known settings are "
                                 f"{', '.join(sorted(top))}")
            if key in sections:
                if not isinstance(value, dict):
                    raise ValueError(f"{source}: [{key}] must be a table of settings")
                known = {f.name for f in dataclasses.fields(sections[key])}
                for sub in value:
                    if sub not in known:
                        raise ValueError(f"{source}: unknown setting {key}.{sub}; known "
                                         f"settings are {', '.join(sorted(known))}")
                kwargs[key] = sections[key](**value)
            elif key == "inputs":
                kwargs[key] = [str(v) for v in ([value] if isinstance(value, str)
                                                else value)]
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON and TOML friendly)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items()}

    def replace(self, **changes) -> PipelineConfig:
        """A copy with top-level settings or ``section__name`` settings changed."""
        top, nested = {}, {}
        for key, value in changes.items():
            if "__" in key:
                section, name = key.split("__", 1)
                nested.setdefault(section, {})[name] = value
            else:
                top[key] = value
        for section, values in nested.items():
            top[section] = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **top)


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a TOML configuration file.

    Relative ``inputs``, ``output`` and ``calibrate.distortion`` paths are
    taken relative to the folder of the file.

    Raises
    ------
    ValueError
        When the file is not valid TOML or has unknown settings.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err}); fix the syntax") from err
    base = path.parent

    def rebase(p: str) -> str:
        return p if os.path.isabs(p) or str(base) in ("", ".") else str(base / p)

    if "inputs" in data:
        inputs = data["inputs"]
        data["inputs"] = [rebase(p) for p in ([inputs] if isinstance(inputs, str)
                                                else inputs)]
    if "output" in data:
        data["output"] = rebase(data["output"])
    if isinstance(data.get("calibrate"), dict) and data["calibrate"].get("distortion"):
        data["calibrate"]["distortion"] = rebase(data["calibrate"]["distortion"])
    return PipelineConfig.from_dict(data, source=str(path))


# --------------------------------------------------------------------------
# the plan


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
    """What a run will do: the inventory, the tasks in order and the problems."""

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
                         f"(align {st.align}, {st.method}, rejection {st.rejection})")
        m = self.config.master
        rejection = m.rejection_object()
        lines.append(f"  masters: {m.method}, rejection {rejection!r}, memory limit "
                     f"{self.config.memory_limit}")
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
        from . import inventory

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

    Raises
    ------
    ValueError
        When ``config.inputs`` is empty.
    PipelineProblemError
        When the config is strict and the inventory found a problem.
    """
    if not config.inputs:
        raise ValueError("no inputs: give at least one folder or file of frames")
    options = {"tolerances": config.tolerances, "frame_types": config.frame_types}
    unreadable: list[Problem] = []
    try:
        inv = take_inventory(config.inputs, recursive=config.recursive,
                             exclude=[config.output], progress=progress, **options)
    except FileNotFoundError:
        raise
    except _file_failures() as err:
        # a reader let an error out: find the file(s) and take stock without them
        log.info("inventory failed (%s: %s); reading the files one by one",
                 type(err).__name__, err)
        files = scan_paths(config.inputs, recursive=config.recursive,
                           exclude=[config.output])
        good = []
        for path in files:
            try:
                take_inventory([path], **options)
            except _file_failures() as one:
                unreadable.append(Problem(path, f"cannot be read as a frame "
                                          f"({_oneline_of(one)})",
                                          "copy the file again or remove it from the "
                                          "folder"))
            else:
                good.append(path)
        inv = take_inventory(good, progress=progress, **options)
    inv.problems.extend(unreadable)
    problems = list(inv.problems)
    if config.strict and problems:
        raise PipelineProblemError(problems[0])

    names = {int(g["group"]): str(g["name"]) for g in inv.groups}
    matches = {int(m["group"]): m for m in inv.matches}
    master_params = dataclasses.asdict(config.master)
    tasks: dict[str, Task] = {}

    def master_task(group: int, *, role_for: str | None = None) -> str:
        name = names[group]
        if name in tasks:
            return name
        row = inv.group_row(group)
        kind = "dark" if row["frametype"] == "darkflat" else str(row["frametype"])
        uses: dict[str, str] = {}
        m = matches.get(group)
        if kind in ("dark",):
            bias = _bias_for(inv, group)
            if bias is not None:
                uses["bias"] = master_task(bias)
        elif kind == "flat" and m is not None:
            if m["bias"] >= 0:
                uses["bias"] = master_task(int(m["bias"]))
            if m["dark"] >= 0:
                uses["dark"] = master_task(int(m["dark"]))
        params = dict(master_params)
        if kind == "flat" and m is not None and m["dark"] >= 0:
            params["dark_scaled"] = bool(m["dark_scaled"])
            # a dark without exposure (e.g. beam off) is subtracted as it is
            params["dark_scale"] = "exposure" if math.isfinite(
                float(inv.group_row(int(m["dark"]))["exptime"])) else "none"
        tasks[name] = Task(name=name, kind=kind, output=f"masters/{name}.fits",
                           inputs=inv.members(group), group=group, uses=uses,
                           parameters=params)
        return name

    light_tasks: list[Task] = []
    stems: set[str] = set()
    cal_params = dataclasses.asdict(config.calibrate)
    for m in inv.matches:
        if m["frametype"] != "light":
            continue
        uses = {}
        for role in ("bias", "dark", "flat"):
            if m[role] >= 0:
                uses[role] = master_task(int(m[role]))
        if not uses:
            # nothing calibrates them (the inventory's problem says so): a copy
            # labelled "calibrated" would be a lie
            continue
        params = dict(cal_params)
        if m["dark"] >= 0 and not math.isfinite(float(inv.group_row(int(m["dark"]))
                                                       ["exptime"])):
            params["dark_scale"] = "none"  # nothing to scale by: subtract as it is
        for path in inv.members(int(m["group"])):
            stem = _stem(path)
            unique, n = stem, 2
            while unique in stems:
                unique, n = f"{stem}_{n}", n + 1
            stems.add(unique)
            light_tasks.append(Task(name=unique, kind="light",
                                    output=f"lights/{unique}.fits", inputs=[path],
                                    group=int(m["group"]), uses=uses,
                                    parameters=dict(params)))
    order = {"bias": 0, "dark": 1, "flat": 2}
    masters = sorted(tasks.values(), key=lambda t: (order[t.kind], t.name))
    stack_tasks: list[Task] = []
    if config.stack.enabled:
        by_group: dict[int, list[Task]] = {}
        for t in light_tasks:
            by_group.setdefault(t.group, []).append(t)
        for group, members in by_group.items():
            if len(members) < 2:
                continue
            name = f"stack_{names[group]}"
            stack_tasks.append(Task(
                name=name, kind="stack", output=f"stacks/{names[group]}.fits",
                inputs=[t.output for t in members], group=group,
                uses={f"light{i}": t.name for i, t in enumerate(members)},
                parameters=dataclasses.asdict(config.stack)))
    return Plan(config=config, inventory=inv, tasks=masters + light_tasks + stack_tasks,
                problems=problems)


def _bias_for(inv: Inventory, group: int) -> int | None:
    from .inventory import _compatible

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


# --------------------------------------------------------------------------
# running


@dataclass
class RunResult:
    """What a run did.

    Attributes
    ----------
    plan : Plan
    made, skipped : list of str
        Output paths written, and up-to-date outputs left as they were.
    failed : list of str
        Outputs that could not be made.
    problems : list of Problem
        Every problem, from the inventory and from the run.
    quality : `~astropy.table.Table`
        Per-frame statistics and outlier flags.
    report : str or None
        Path of ``report.html``.
    remade : list of str
        Outputs found damaged (truncated, bytes changed) and made again, each
        with what was wrong.
    """

    plan: Plan
    made: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    quality: Table | None = None
    report: str | None = None
    remade: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every planned output exists."""
        return not self.failed

    def summary(self) -> str:
        """A few lines: counts, failed outputs, problems."""
        lines = [f"{len(self.made)} outputs made, {len(self.skipped)} up to date, "
                 f"{len(self.failed)} failed, {len(self.problems)} problems"]
        lines.extend(f"  failed: {_printable(f)}" for f in self.failed)
        lines.extend(f"  damaged, made again: {_printable(f)}" for f in self.remade)
        if self.report:
            lines.append(f"report: {_printable(self.report)}")
        return "\n".join(lines)


class _Runner:
    def __init__(self, plan: Plan, progress, on_problem):
        self.plan = plan
        self.config = plan.config
        self.out = Path(self.config.output)
        self.progress = progress or (lambda it, **kw: it)
        self.on_problem = on_problem
        self.result = RunResult(plan=plan, problems=list(plan.problems))
        self.hashes: dict[str, str] = {}   # input path -> sha256
        self.keys: dict[str, str] = {}     # task name -> task hash
        self.excluded: dict[str, str] = {}  # input path -> reason
        self.quality_rows: list[dict] = []
        self.masters: dict[str, Any] = {}  # task name -> CCDData, current light group only
        self.failed_names: set[str] = set()  # tasks whose output could not be made

    # -- problems -------------------------------------------------------
    def problem(self, path: str, what: str, fix: str = "") -> None:
        p = Problem(str(path), what, fix)
        self.result.problems.append(p)
        log.info("problem: %s", p)
        if self.on_problem is not None:
            self.on_problem(p)
        if self.config.strict:
            raise PipelineProblemError(p)

    # -- hashing --------------------------------------------------------
    def sha(self, path: str) -> str:
        if path not in self.hashes:
            from .provenance import sha256_file

            self.hashes[path] = sha256_file(path)
        return self.hashes[path]

    def key(self, task: Task, inputs: list[str]) -> str:
        payload = {"kind": task.kind, "parameters": task.parameters,
                   "inputs": [self.sha(p) for p in inputs],
                   "uses": {r: self.keys.get(n, "missing") for r, n in task.uses.items()},
                   "masters": self.master_digests(task),
                   "version": _calframe_version()}
        text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def master_digests(self, task: Task) -> dict[str, str]:
        """The SHA-256 of each master file a task uses, as it is now on disk.

        A master made again (settings, inputs, or damage) is a new file, so
        what was made from it is made again too; the provenance of every
        output names master files that exist.
        """
        digests = {}
        for role, name in task.uses.items():
            used = self.plan.task(name)
            if used.kind not in MASTER_KINDS:
                continue
            path = self.out / used.output
            try:
                digests[role] = self.sha(str(path))
            except (OSError, CalframeError):
                digests[role] = "missing"
        return digests

    # -- checks ---------------------------------------------------------
    def check_frames(self) -> None:
        """Read every input once: quality statistics and bad-frame problems."""
        from .io import read_frame

        paths: list[tuple[str, str, int]] = []
        needs_exposure: set[str] = set()
        seen = set()
        inv = self.plan.inventory
        for t in self.plan.tasks:
            if t.kind == "stack":  # its inputs are this run's calibrated lights
                continue
            # a flat must say its exposure when a dark of known exposure is scaled to it
            dark = self.plan.task(t.uses["dark"]) if "dark" in t.uses else None
            scaled = dark is not None and math.isfinite(
                float(inv.group_row(dark.group)["exptime"]))
            for p in t.inputs:
                if p not in seen:
                    seen.add(p)
                    paths.append((p, t.kind, t.group))
                    if t.kind == "flat" and scaled:
                        needs_exposure.add(p)
        frames = inv.frames
        exptimes = {str(p): float(e) for p, e in zip(frames["path"], frames["exptime"],
                                                     strict=True)}
        for path, kind, group in self.progress(paths, desc="checking frames",
                                               total=len(paths)):
            row = {"path": path, "frametype": kind, "group": group,
                   "median": np.nan, "sigma": np.nan, "masked": np.nan,
                   "tail": np.nan, "finite": 0, "outlier": "", "excluded": ""}
            self.quality_rows.append(row)
            try:
                self.sha(path)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ccd = read_frame(path)
            except _file_failures() as err:
                # a FrameReadError names the file already: its problem and fix only
                detail = getattr(err, "problem", None) or _oneline_of(err)
                self.exclude(row, "cannot be read", _oneline(detail),
                             getattr(err, "fix", None)
                             or "copy the file again or remove it from the folder")
                continue
            stats = _frame_stats(ccd)
            row.update(stats)
            del ccd
            if stats["saturated"] > 0.5:
                self.exclude(row, f"saturated {kind} ({100 * stats['saturated']:.0f}% of "
                             "pixels at the saturation level)", "",
                             "take flats at about half the full well" if kind == "flat"
                             else "remove the frame")
            elif stats["finite"] == 0:
                self.exclude(row, "all pixels are NaN or masked", "",
                             "remove the frame; it holds no data")
            elif path in needs_exposure and not math.isfinite(exptimes.get(path, np.nan)):
                self.exclude(row, f"{kind} without an exposure time (no EXPTIME), needed "
                             "to scale the dark to it", "",
                             "add EXPTIME to the header or remove the frame")
        self.flag_outliers()

    def exclude(self, row: dict, what: str, detail: str, fix: str) -> None:
        row["excluded"] = what
        self.excluded[row["path"]] = what
        self.problem(row["path"], what + (f" ({detail})" if detail else ""), fix)

    def flag_outliers(self) -> None:
        """Flag frames whose statistics stand out of their group (robust z-score).

        The spread of each statistic across the group is the larger of its
        scaled MAD and what noise alone gives (the error of a median or of a
        robust sigma over the frame's pixels, the Poisson error of a count of
        a few bright pixels, half an ADU of quantisation), so that identical
        frames are never flagged for differing by a rounding step.
        """
        k = self.config.outlier_sigma
        groups: dict[int, list[dict]] = {}
        for row in self.quality_rows:
            if not row["excluded"] and row.get("finite", 0) > 0:
                groups.setdefault(row["group"], []).append(row)
        for rows in groups.values():
            if len(rows) < 3:
                continue
            npix = float(np.median([r["finite"] for r in rows]))
            sigma = float(np.nanmedian([r["sigma"] for r in rows]))
            floors = {"median": max(1.2533 * sigma / math.sqrt(npix), 0.5),
                      "sigma": 1.5 * sigma / math.sqrt(npix) + 0.5,
                      "tail": 3.0 / npix}
            for stat, floor in floors.items():
                values = np.array([r[stat] for r in rows], dtype=float)
                centre = np.nanmedian(values)
                spread = max(1.4826 * np.nanmedian(np.abs(values - centre)), floor)
                for r, v in zip(rows, values, strict=True):
                    z = (v - centre) / spread
                    if math.isfinite(z) and abs(z) > k:
                        note = f"{stat} {z:+.1f} sigma"
                        r["outlier"] = f"{r['outlier']}; {note}" if r["outlier"] else note

    # -- outputs --------------------------------------------------------
    def up_to_date(self, path: Path, key: str) -> bool:
        """Whether ``path`` was made with ``key`` and its bytes are what calframe wrote."""
        if not path.exists():
            return False
        try:
            damage, stored = _check_output(path, HASH_KEYWORD)
        except OSError as err:
            damage, stored = f"cannot be read ({_oneline(err)})", None
        if damage and stored in (key, None):  # not only made with other settings
            log.info("%s is damaged (%s); making it again", path, damage)
            self.result.remade.append(f"{path} ({damage})")
        return damage is None and stored == key

    def write(self, ccd, path: Path, key: str) -> None:
        from .io import write_frame

        ccd.meta[HASH_KEYWORD] = (key, "calframe run: hash of inputs and settings")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frame(ccd, path, overwrite=True, absolute_paths=self.config.absolute_paths)
        self.hashes.pop(str(path), None)  # a new file: its digest is computed again

    def master(self, name: str):
        """A master of the current light group, read once."""
        if name not in self.masters:
            restart_step_clock()   # its read step stamped alike whichever light reads it
            from .io import read_frame

            with warnings.catch_warnings():
                # a master without an uncertainty is said once, when it was made
                warnings.simplefilter("ignore", UncertaintyUnknownWarning)
                self.masters[name] = read_frame(self.out / self.plan.task(name).output)
        return self.masters[name]

    def run_master(self, task: Task) -> None:
        restart_step_clock()   # SOURCE_DATE_EPOCH: stamps that depend on this output only
        from .masters import make_master_bias, make_master_dark, make_master_flat

        inputs = [p for p in task.inputs if p not in self.excluded]
        path = self.out / task.output
        missing = [r for r, n in task.uses.items() if n in self.failed_names]
        if missing or not inputs:
            why = (f"its {', '.join(missing)} master could not be made" if missing
                   else "no usable input frames")
            self.fail(task, why, "see the problems above")
            return
        key = self.key(task, inputs)
        self.keys[task.name] = key
        if self.up_to_date(path, key):
            self.result.skipped.append(str(path))
            log.info("up to date: %s", path)
            return
        m = self.config.master
        options = {"method": m.method, "rejection": m.rejection_object(),
                   "memory_limit": self.config.memory_limit,
                   "allow_mixed": self.config.allow_mixed}
        try:
            masters = {r: self.out / self.plan.task(n).output for r, n in task.uses.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=Warning)
                if task.kind == "bias":
                    ccd = make_master_bias(inputs, **options)
                elif task.kind == "dark":
                    ccd = make_master_dark(inputs, bias=_str(masters.get("bias")), **options)
                else:
                    scale = task.parameters.get("dark_scale", "exposure")
                    ccd = make_master_flat(inputs, bias=_str(masters.get("bias")),
                                           dark=_str(masters.get("dark")),
                                           dark_scale=None if scale == "none" else scale,
                                           subtract_black=self.config.calibrate.subtract_black,
                                           assume_linear=self.config.calibrate.assume_linear,
                                           **options)
            self.write(ccd, path, key)
        except _file_failures() as err:
            self.fail(task, f"could not be made ({_oneline_of(err)})",
                      "check the input frames listed for this master")
            return
        self.result.made.append(str(path))
        log.info("made %s from %d frames", path, len(inputs))

    def fail(self, task: Task, what: str, fix: str) -> None:
        self.failed_names.add(task.name)
        self.result.failed.append(str(self.out / task.output))
        self.problem(str(self.out / task.output), what, fix)

    def run_light(self, task: Task, distortion_model) -> None:
        restart_step_clock()   # SOURCE_DATE_EPOCH: stamps that depend on this output only
        from .calibration import calibrate

        path = self.out / task.output
        source = task.inputs[0]
        if source in self.excluded:
            self.fail(task, f"not calibrated: the light {self.excluded[source]}",
                      "see the problem listed for the input")
            return
        missing = [r for r, n in task.uses.items() if n in self.failed_names]
        if missing:
            self.fail(task, f"not calibrated: its {', '.join(missing)} master could not "
                      "be made", "see the problems above")
            return
        key = self.key(task, task.inputs)
        self.keys[task.name] = key
        c = self.config.calibrate
        splits = [path.with_name(f"{path.stem}_{name}.fits") for name in "RGB"]
        if self.up_to_date(path, key) and (not c.split_rgb or all(
                self.up_to_date(p, key) for p in splits) or not self.is_colour(path)):
            self.result.skipped.append(str(path))
            return
        dark_scale = task.parameters.get("dark_scale", c.dark_scale)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=Warning)
                # masters read once per light group; their provenance still names
                # the master files and their hashes
                masters = {r: self.master(n) for r, n in task.uses.items()}
                restart_step_clock()   # the light's own steps, whoever read the masters
                frame = source
                if c.gain is not None or c.read_noise is not None:
                    from .io import read_frame

                    frame = read_frame(source, gain=c.gain, read_noise=c.read_noise)
                ccd = calibrate(
                    frame, bias=masters.get("bias"), dark=masters.get("dark"),
                    flat=masters.get("flat"), gain=c.gain,
                    dark_scale=None if dark_scale == "none" else dark_scale,
                    cosmetic=True if c.cosmetic else None, subtract_black=c.subtract_black,
                    assume_linear=c.assume_linear)
                if c.demosaic and ccd.meta.get("BAYERPAT"):
                    from .demosaicing import demosaic

                    ccd = demosaic(ccd, method=c.demosaic)
                if distortion_model is not None:
                    from .distortion import correct_distortion

                    ccd = correct_distortion(ccd, distortion_model)
                planes = self.split_planes(ccd) if c.split_rgb else {}
            self.write(ccd, path, key)
            for name, plane in planes.items():
                split = path.with_name(f"{path.stem}_{name}.fits")
                self.write(plane, split, key)
                self.result.made.append(str(split))
        except _file_failures() as err:
            self.fail(task, f"not calibrated ({_oneline_of(err)})",
                      "check the light and the masters it uses")
            return
        self.result.made.append(str(path))

    def split_planes(self, ccd) -> dict:
        """The R, G, B planes of a calibrated colour light ({} for a mono one)."""
        from .demosaicing import demosaic, split_rgb

        if ccd.ndim == 2 and ccd.meta.get("BAYERPAT"):
            ccd = demosaic(ccd, method=self.config.calibrate.demosaic or "bilinear")
        if ccd.ndim != 3:
            log.info("split_rgb: a mono light has no colour planes to split")
            return {}
        return split_rgb(ccd)

    @staticmethod
    def is_colour(path: Path) -> bool:
        """Whether a calibrated light is a mosaic or a colour cube (has planes to split)."""
        from astropy.io import fits

        header = fits.getheader(path)
        return bool(header.get("BAYERPAT")) or header.get("NAXIS") == 3

    def run_stack(self, task: Task) -> None:
        restart_step_clock()   # SOURCE_DATE_EPOCH: stamps that depend on this output only
        from .register import stack

        path = self.out / task.output
        inputs = [str(self.out / p) for p, n in zip(task.inputs, task.uses.values(),
                                                     strict=True)
                  if n not in self.failed_names]
        if len(inputs) < 2:
            self.fail(task, f"not stacked: {len(inputs)} calibrated light(s) of the group "
                      "could be made", "see the problems above")
            return
        key = self.key(task, inputs)
        self.keys[task.name] = key
        if self.up_to_date(path, key):
            self.result.skipped.append(str(path))
            return
        st = self.config.stack
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=Warning)
                ccd = stack(inputs, align=None if st.align == "none" else st.align,
                            order=st.order, method=st.method,
                            rejection=st.rejection_object(),
                            memory_limit=self.config.memory_limit)
            self.write(ccd, path, key)
        except _file_failures() as err:
            self.fail(task, f"not stacked ({_oneline_of(err)})",
                      "try another --stack-align, or check the calibrated lights")
            return
        self.result.made.append(str(path))
        log.info("stacked %d lights into %s", len(inputs), path)

    def run(self, *, break_lock: bool = False) -> RunResult:
        with lock_output(self.out, break_lock=break_lock):
            return self.run_locked()

    def run_locked(self) -> RunResult:
        self.check_frames()
        masters = [t for t in self.plan.tasks if t.kind in MASTER_KINDS]
        lights = [t for t in self.plan.tasks if t.kind == "light"]
        stacks = [t for t in self.plan.tasks if t.kind == "stack"]
        for task in self.progress(masters, desc="masters", total=len(masters),
                                  unit="master"):
            self.run_master(task)
        model = None
        if self.config.calibrate.distortion:
            try:
                from .distortion import DistortionModel

                model = DistortionModel.from_fits(self.config.calibrate.distortion)
            except (ImportError, CalframeError, OSError, ValueError) as err:
                self.problem(self.config.calibrate.distortion,
                             f"distortion model cannot be used ({_oneline(err)})",
                             "give a model written by DistortionModel.to_fits")
                for task in lights:
                    self.fail(task, "not calibrated: no distortion model",
                              "see the problem above")
                lights = []
        current = None
        for task in self.progress(lights, desc="calibrating lights", total=len(lights)):
            if task.uses != current:  # memory: only the masters of one group at a time
                self.masters.clear()
                current = task.uses
            self.run_light(task, model)
        self.masters.clear()
        for task in self.progress(stacks, desc="stacking", total=len(stacks),
                                  unit="stack"):
            self.run_stack(task)
        self.result.quality = _quality_table(self.quality_rows)
        if self.config.report:
            from .report import write_report

            self.result.report = str(write_report(self.result))
        return self.result


def _oneline(err: BaseException | str) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _oneline_of(err: BaseException) -> str:
    """The first line of an error, with its type when it is not calframe's own."""
    text = _oneline(err)
    if isinstance(err, CalframeError) or text == type(err).__name__:
        return text
    kind = type(err)
    module = kind.__module__.split(".")[0]
    if module != "builtins":  # zlib.error, struct.error, rawpy.LibRawIOError...
        return f"{module}.{kind.__name__}: {text}"
    if isinstance(err, KeyError | IndexError | TypeError):
        return f"{kind.__name__}: {text}"
    return text


def _str(path) -> str | None:
    return None if path is None else str(path)


def _calframe_version() -> str:
    from . import __version__

    return __version__


_BLOCK = 2880
_CHUNK = _BLOCK * 2048  # bytes summed at a time: whole blocks, whole 32-bit words


def _ones_sum(buffer, total: int = 0) -> int:
    """The FITS checksum sum: one's complement sum of big-endian 32-bit words."""
    total += int(np.frombuffer(buffer, dtype=">u4").sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _card_value(card: bytes) -> str | None:
    """The value of a header card as text (a string without its quotes)."""
    if card[8:10] != b"= ":
        return None
    text = card[10:].decode("ascii", "replace").lstrip()
    if not text.startswith("'"):
        return text.split("/", 1)[0].strip()
    out, i = [], 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1:i + 2] != "'":
                break
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out).rstrip()


def _check_output(path: str | os.PathLike, keyword: str) -> tuple[str | None, str | None]:
    """What is wrong with a calframe output file, and the value of ``keyword``.

    Every HDU must carry ``CHECKSUM`` and ``DATASUM`` that match its bytes
    (computed here on the raw blocks, without astropy: a rerun checks every
    output it skips), the file must end where its last HDU ends, and that
    HDU must be the ``PROVENANCE`` table that :func:`calframe.write_frame`
    writes last (a file cut at an HDU boundary is refused too).

    Returns
    -------
    problem : str or None
        None when the file is whole.
    value : str or None
        The primary header's ``keyword`` (None when missing or unreadable).
    """
    value = None
    size = os.path.getsize(path)
    last = None
    with open(path, "rb") as handle:
        offset = index = 0
        while offset < size:
            raw: dict[str, bytes] = {}   # keyword -> its first card, read when needed
            header_sum, end = 0, False
            start = b"SIMPLE  " if index == 0 else b"XTENSION"
            while not end:
                block = handle.read(_BLOCK)
                if len(block) < _BLOCK:
                    return f"HDU {index}: the header is cut short", value
                if not raw and not block.startswith(start):
                    return f"HDU {index}: no FITS header where one should start", value
                header_sum = _ones_sum(block, header_sum)
                offset += _BLOCK
                for i in range(0, _BLOCK, 80):
                    key = block[i:i + 8].decode("ascii", "replace").rstrip()
                    if key == "END":
                        end = True
                        break
                    if key and key not in raw:
                        raw[key] = block[i:i + 80]

            def card(key: str, raw=raw) -> str | None:
                return _card_value(raw[key]) if key in raw else None

            if index == 0:
                value = card(keyword)
            try:
                naxis = int(card("NAXIS") or "")
                count = math.prod(int(card(f"NAXIS{n}") or "") for n in range(1, naxis + 1))
                nbytes = (abs(int(card("BITPIX") or "")) // 8 * int(card("GCOUNT") or 1)
                          * (int(card("PCOUNT") or 0) + (count if naxis else 0)))
                datasum = int(card("DATASUM") or "")
                if not card("CHECKSUM"):
                    raise ValueError("no CHECKSUM")
            except ValueError:
                return (f"HDU {index}: no valid data size, CHECKSUM or DATASUM in its "
                        "header"), value
            padded = -(-nbytes // _BLOCK) * _BLOCK
            if offset + padded > size:
                return f"HDU {index}: the data are cut short", value
            data_sum, left = 0, padded
            while left:
                chunk = handle.read(min(_CHUNK, left))
                data_sum = _ones_sum(chunk, data_sum)
                left -= len(chunk)
            offset += padded
            if data_sum != datasum:
                return f"HDU {index}: the data do not match their DATASUM", value
            if _ones_sum(data_sum.to_bytes(4, "big"), header_sum) != 0xFFFFFFFF:
                return f"HDU {index}: the HDU does not match its CHECKSUM", value
            last = card("EXTNAME")
            index += 1
    if last != "PROVENANCE":
        return "the file ends before its PROVENANCE table", value
    return None, value


def _frame_stats(ccd) -> dict[str, float]:
    data = np.asarray(ccd.data, dtype=np.float32)
    mask = ~np.isfinite(data)
    if ccd.mask is not None and np.shape(ccd.mask) == data.shape:
        mask = mask | np.asarray(ccd.mask, dtype=bool)
    saturated = 0.0
    try:
        level = float(ccd.meta.get("SATURATE"))
    except (TypeError, ValueError):
        level = float("nan")
    if math.isfinite(level):
        with np.errstate(invalid="ignore"):
            saturated = float(np.mean(data >= level))
    good = data[~mask]
    finite = good.size
    if finite == 0:
        return {"median": np.nan, "sigma": np.nan, "masked": 1.0, "tail": np.nan,
                "finite": 0, "saturated": saturated}
    sample = good if good.size <= 1_000_000 else good[:: good.size // 1_000_000 + 1]
    med = float(np.median(sample))
    sigma = float(1.4826 * np.median(np.abs(sample - med)))
    tail = float(np.mean(sample > med + 10 * max(sigma, 1e-12)))
    return {"median": med, "sigma": sigma, "masked": float(mask.mean()), "tail": tail,
            "finite": int(finite), "saturated": saturated}


def _quality_table(rows: list[dict]) -> Table:
    names = ["path", "frametype", "group", "median", "sigma", "masked", "tail",
             "outlier", "excluded"]
    dtypes = ["U256", "U12", int, float, float, float, float, "U200", "U200"]
    return Table(rows=[[r[n] for n in names] for r in rows] if rows else None,
                 names=names, dtype=dtypes)


def run_pipeline(config: PipelineConfig | Plan, *, progress=None,
                 on_problem=None, break_lock: bool = False) -> RunResult:
    """Carry out a run: check the inputs, build masters, calibrate lights, report.

    Parameters
    ----------
    config : PipelineConfig or Plan
        What to do (a plan from :func:`make_plan`, or the config to plan from).
    progress : callable, optional
        ``progress(iterable, desc=..., total=..., unit=...)`` wrapping each long
        step (the command line passes a tqdm helper).
    on_problem : callable, optional
        Called with each :class:`~calframe.inventory.Problem` as it is found
        (the command line prints them).
    break_lock : bool, optional
        Take over the lock of the output folder left by a process of another
        host (which cannot be checked from here); a lock left by a dead
        process of this host is taken over without it.

    Returns
    -------
    RunResult

    Raises
    ------
    PipelineProblemError
        At the first problem when ``config.strict`` is set.
    ``calframe._atomic.OutputLockedError``
        Another run holds the output folder (the message names it), or a
        process of another host left its lock and ``break_lock`` is false.
    """
    plan = config if isinstance(config, Plan) else make_plan(config, progress=progress)
    if on_problem is not None:
        for p in plan.problems:
            on_problem(p)
    return _Runner(plan, progress, on_problem).run(break_lock=break_lock)
