"""Carrying out a plan: masters, calibrated lights, stacks and the report."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.table import Table

from .._atomic import lock_output
from ..errors import CalframeError, UncertaintyUnknownWarning
from ..inventory import Problem
from ..io import read_frame, write_frame
from ..provenance import _printable, restart_step_clock
from ._checks import _quality_table, check_frames, flag_outliers
from ._config import PipelineConfig
from ._failures import _FILE_FAILURES, PipelineProblemError, _oneline, _oneline_of
from ._plan import MASTER_KINDS, Plan, Task, make_plan
from ._resume import HASH_KEYWORD, TaskKeys, _check_output

__all__ = ["RunResult", "run_pipeline"]

log = logging.getLogger(__name__)

# The steps of a run (calframe.masters, .calibrate, .demosaic, .distortion,
# .register, .report) are imported where they are used: together they add about
# 2.7 s to importing calframe.pipeline (2.2 s), which planning alone
# (calframe run --dry-run, make_plan) does not need (time.perf_counter around
# the imports, on a busy machine).


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
        self.keys = TaskKeys(plan, self.out)
        self.excluded: dict[str, str] = {}  # input path -> reason
        self.quality_rows: list[dict] = []
        self.masters: dict[str, Any] = {}  # task name -> CCDData, current light group only
        self.failed_names: set[str] = set()  # tasks whose output could not be made
        # the light being written in the background while the next one is calibrated:
        # (task, the written paths, the future of the write), and the writer
        self.pending: tuple[Task, list[Path], Any] | None = None
        self.writer: Any = None

    # -- problems -------------------------------------------------------
    def problem(self, path: str, what: str, fix: str = "") -> None:
        p = Problem(str(path), what, fix)
        self.result.problems.append(p)
        log.info("problem: %s", p)
        if self.on_problem is not None:
            self.on_problem(p)
        if self.config.strict:
            raise PipelineProblemError(p)

    # -- checks ---------------------------------------------------------
    def check_frames(self) -> None:
        """Read every input once: quality statistics and bad-frame problems."""
        self.quality_rows = check_frames(self.plan, digest=self.keys.sha,
                                         exclude=self.exclude, progress=self.progress)
        flag_outliers(self.quality_rows, self.config.outlier_sigma)

    def exclude(self, row: dict, what: str, detail: str, fix: str) -> None:
        row["excluded"] = what
        self.excluded[row["path"]] = what
        self.problem(row["path"], what + (f" ({detail})" if detail else ""), fix)

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
        ccd.meta[HASH_KEYWORD] = (key, "calframe run: hash of inputs and settings")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frame(ccd, path, overwrite=True, absolute_paths=self.config.absolute_paths)
        self.keys.forget(str(path))  # a new file: its digest is computed again

    def master(self, name: str):
        """A master of the current light group, read once."""
        if name not in self.masters:
            restart_step_clock()   # its read step stamped alike whichever light reads it
            with warnings.catch_warnings():
                # a master without an uncertainty is said once, when it was made
                warnings.simplefilter("ignore", UncertaintyUnknownWarning)
                self.masters[name] = read_frame(self.out / self.plan.task(name).output)
        return self.masters[name]

    def run_master(self, task: Task) -> None:
        restart_step_clock()   # SOURCE_DATE_EPOCH: stamps that depend on this output only
        from ..masters import make_master_bias, make_master_dark, make_master_flat

        inputs = [p for p in task.inputs if p not in self.excluded]
        path = self.out / task.output
        missing = [r for r, n in task.uses.items() if n in self.failed_names]
        if missing or not inputs:
            why = (f"its {', '.join(missing)} master could not be made" if missing
                   else "no usable input frames")
            self.fail(task, why, "see the problems above")
            return
        key = self.keys.key(task, inputs)
        if self.up_to_date(path, key):
            self.result.skipped.append(str(path))
            log.info("up to date: %s", path)
            return
        m = self.config.master
        options = {"method": m.method, "rejection": m.rejection,
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
                                           normalize=m.flat_normalize, **options)
            self.write(ccd, path, key)
        except _FILE_FAILURES as err:
            self.fail(task, f"could not be made ({_oneline_of(err)})",
                      "check the input frames listed for this master")
            return
        self.result.made.append(str(path))
        log.info("made %s from %d frames", path, len(inputs))

    def fail(self, task: Task, what: str, fix: str) -> None:
        self.failed_names.add(task.name)
        self.result.failed.append(str(self.out / task.output))
        self.problem(str(self.out / task.output), what, fix)

    def write_lights(self, task: Task, outputs: list[tuple[Any, Path]], key: str) -> None:
        """Write a calibrated light (and its colour planes): in the background when a
        writer runs, so that the next light is read and calibrated meanwhile."""
        written: list[Path] = []

        def write_all():
            for ccd, out in outputs:
                self.write(ccd, out, key)
                written.append(out)

        if self.writer is not None:
            self.pending = (task, written, self.writer.submit(write_all))
            return
        from concurrent.futures import Future

        done: Future = Future()
        try:
            write_all()
            done.set_result(None)
        except Exception as err:  # raised again by finish_pending
            done.set_exception(err)
        self.pending = (task, written, done)
        self.finish_pending()

    def finish_pending(self) -> None:
        """Wait for the light written in the background and record what became of it:
        its colour planes written, then the light, or its failure."""
        if self.pending is None:
            return
        task, written, future = self.pending
        self.pending = None
        try:
            future.result()
        except _FILE_FAILURES as err:
            self.result.made.extend(str(out) for out in written[1:])
            self.fail(task, f"not calibrated ({_oneline_of(err)})",
                      "check the light and the masters it uses")
            return
        self.result.made.extend(str(out) for out in written[1:])
        if written:
            self.result.made.append(str(written[0]))

    def run_light(self, task: Task, distortion_model) -> None:
        restart_step_clock()   # SOURCE_DATE_EPOCH: stamps that depend on this output only
        from ..calibration import calibrate

        path = self.out / task.output
        source = task.inputs[0]
        if source in self.excluded:
            self.finish_pending()
            self.fail(task, f"not calibrated: the light {self.excluded[source]}",
                      "see the problem listed for the input")
            return
            self.fail(task, f"not calibrated: the light {self.excluded[source]}",
                      "see the problem listed for the input")
            return
        missing = [r for r, n in task.uses.items() if n in self.failed_names]
        if missing:
            self.finish_pending()
            self.fail(task, f"not calibrated: its {', '.join(missing)} master could not "
                      "be made", "see the problems above")
            return
        key = self.keys.key(task, task.inputs)
        c = self.config.calibrate
        splits = [path.with_name(f"{path.stem}_{name}.fits") for name in "RGB"]
        if self.up_to_date(path, key) and (not c.split_rgb or all(
                self.up_to_date(p, key) for p in splits) or not self.is_colour(path)):
            self.finish_pending()
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
                    frame = read_frame(source, gain=c.gain, read_noise=c.read_noise)
                ccd = calibrate(
                    frame, bias=masters.get("bias"), dark=masters.get("dark"),
                    flat=masters.get("flat"), gain=c.gain,
                    dark_scale=None if dark_scale == "none" else dark_scale,
                    cosmetic=True if c.cosmetic else None, subtract_black=c.subtract_black,
                    assume_linear=c.assume_linear)
                if c.demosaic and ccd.meta.get("BAYERPAT"):
                    from ..demosaicing import demosaic

                    ccd = demosaic(ccd, method=c.demosaic)
                if distortion_model is not None:
                    from ..distortion import correct_distortion

                    ccd = correct_distortion(ccd, distortion_model)
                planes = self.split_planes(ccd) if c.split_rgb else {}
        except _FILE_FAILURES as err:
            self.finish_pending()
            self.fail(task, f"not calibrated ({_oneline_of(err)})",
                      "check the light and the masters it uses")
            return
        self.finish_pending()
        outputs = [(ccd, path)] + [(plane, path.with_name(f"{path.stem}_{name}.fits"))
                                   for name, plane in planes.items()]
        self.write_lights(task, outputs, key)

    def split_planes(self, ccd) -> dict:
        """The R, G, B planes of a calibrated colour light ({} for a mono one)."""
        from ..demosaicing import demosaic, split_rgb

        if ccd.ndim == 2 and ccd.meta.get("BAYERPAT"):
            ccd = demosaic(ccd, method=self.config.calibrate.demosaic or "bilinear")
        if ccd.ndim != 3:
            log.info("split_rgb: a mono light has no colour planes to split")
            return {}
        return split_rgb(ccd)

    @staticmethod
    def is_colour(path: Path) -> bool:
        """Whether a calibrated light is a mosaic or a colour cube (has planes to split)."""
        header = fits.getheader(path)
        return bool(header.get("BAYERPAT")) or header.get("NAXIS") == 3

    def run_stack(self, task: Task) -> None:
        restart_step_clock()   # SOURCE_DATE_EPOCH: stamps that depend on this output only
        from ..register import stack

        path = self.out / task.output
        inputs = [str(self.out / p) for p, n in zip(task.inputs, task.uses.values(),
                                                     strict=True)
                  if n not in self.failed_names]
        if len(inputs) < 2:
            self.fail(task, f"not stacked: {len(inputs)} calibrated light(s) of the group "
                      "could be made", "see the problems above")
            return
        key = self.keys.key(task, inputs)
        if self.up_to_date(path, key):
            self.result.skipped.append(str(path))
            return
        st = self.config.stack
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=Warning)
                ccd = stack(inputs, align=None if st.align == "none" else st.align,
                            order=st.order, method=st.method,
                            rejection=st.rejection,
                            memory_limit=self.config.memory_limit)
            self.write(ccd, path, key)
        except _FILE_FAILURES as err:
            self.fail(task, f"not stacked ({_oneline_of(err)})",
                      "try another --stack-align, or check the calibrated lights")
            return
        self.result.made.append(str(path))
        log.info("stacked %d lights into %s", len(inputs), path)

    def run(self, *, break_lock: bool = False) -> RunResult:
        with lock_output(self.out, break_lock=break_lock):
            return self.run_locked()

    def run_locked(self) -> RunResult:
        if self.config.scheduler != "threads":  # tasks on a Dask cluster (see _graph)
            from ._graph import run_on_dask

            return run_on_dask(self)
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
                from ..distortion import DistortionModel

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
        from concurrent.futures import ThreadPoolExecutor

        # each light is written (converted, summed, hashed, written, synced) by
        # another thread while the next one is read and calibrated; one light waits
        # at most, so memory holds two calibrated lights
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="calframe-write") as pool:
            self.writer = pool
            try:
                for task in self.progress(lights, desc="calibrating lights",
                                          total=len(lights)):
                    if task.uses != current:  # memory: the masters of one group at a time
                        self.masters.clear()
                        current = task.uses
                    self.run_light(task, model)
            finally:
                self.writer = None
                self.finish_pending()
        self.masters.clear()
        for task in self.progress(stacks, desc="stacking", total=len(stacks),
                                  unit="stack"):
            self.run_stack(task)
        self.result.quality = _quality_table(self.quality_rows)
        if self.config.report:
            from ..report import write_report

            self.result.report = str(write_report(self.result))
        return self.result


def _str(path) -> str | None:
    return None if path is None else str(path)


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
