"""A run as a graph of Dask tasks: one per master, per calibrated light, per stack.

The coordinating process (the one that holds the lock of the output folder)
checks the inputs, then submits every task of the plan at once; Dask starts a
task when the tasks it depends on have ended (a dark after its bias, a flat
after its bias and dark, a light after its masters, a stack after its
lights).  Each task is a pure function of picklable arguments
(:class:`TaskSpec`): it reads its inputs, writes its output to the shared
output folder through :func:`calframe.write_frame` (a temporary file renamed
over the final name), and returns a :class:`TaskSummary` -- paths, its key,
the problems found -- never pixel arrays.  Dask may therefore run a task
again on another worker when one dies.

A task carries out the very code of a local run (the methods of the
runner), so the outputs are the same wherever they were made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import STATE_FOLDER, journal_temporaries
from ..errors import CalframeError
from ._cluster import open_client, parse_scheduler
from ._plan import MASTER_KINDS, Plan, Task

__all__ = ["OutputNotSharedError", "TaskSpec", "TaskSummary", "run_on_dask", "run_task"]

log = logging.getLogger(__name__)

#: How many times Dask runs a task again when its worker dies.
RETRIES = 3


class OutputNotSharedError(CalframeError, OSError):
    """A worker does not see the output folder of the run (it must be shared)."""


@dataclass
class TaskSpec:
    """What a worker needs to carry out one task of a plan (all picklable)."""

    config: Any                        # PipelineConfig (strict off: problems go back)
    task: Task
    used: list[Task]                   # the tasks it uses (their outputs are read)
    excluded: dict[str, str]           # input path -> why it was left out
    hashes: dict[str, str]             # input path -> SHA-256, as the run found it
    source_date: str | None            # SOURCE_DATE_EPOCH of the coordinating process


@dataclass
class TaskSummary:
    """What a task returns: small, never pixel arrays."""

    name: str
    key: str | None = None
    made: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    remade: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


# masters read by the tasks of this worker process, the latest few: the lights of a
# group use the same masters, as a run in one process reads them once per group
_MASTERS: OrderedDict[tuple, Any] = OrderedDict()
_MASTERS_LOCK = threading.Lock()
_MASTERS_KEPT = 6


def _task_runner(plan: Plan):
    """A runner for one task, whose masters come from the worker's few latest."""
    from ._runner import _Runner

    class _TaskRunner(_Runner):
        def master(self, name: str):
            path = self.out / self.plan.task(name).output
            try:
                st = os.stat(path)
            except OSError:
                return super().master(name)  # says what is wrong, as it would
            # the file as it is now, and the time its read step is stamped with
            key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size,
                   st.st_mtime_ns, st.st_ctime_ns, os.environ.get("SOURCE_DATE_EPOCH"))
            with _MASTERS_LOCK:
                ccd = _MASTERS.get(key)
                if ccd is not None:
                    _MASTERS.move_to_end(key)
            if ccd is None:
                ccd = super().master(name)
                with _MASTERS_LOCK:
                    _MASTERS[key] = ccd
                    while len(_MASTERS) > _MASTERS_KEPT:
                        _MASTERS.popitem(last=False)
            self.masters[name] = ccd
            return ccd

    return _TaskRunner(plan, None, None)


@contextlib.contextmanager
def _source_date(value: str | None):
    """The coordinating process's ``SOURCE_DATE_EPOCH`` while a task runs."""
    before = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    else:
        os.environ["SOURCE_DATE_EPOCH"] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def run_task(spec: TaskSpec, *dependencies: TaskSummary) -> TaskSummary:
    """Carry out one task on a worker; ``dependencies``: the summaries of the tasks it uses.

    Raises
    ------
    OutputNotSharedError
        The worker does not see the lock of the output folder, so it would
        write where the run does not look.
    """
    from ._resume import TaskKeys

    out = Path(spec.config.output)
    if not (out / STATE_FOLDER / "lock").is_file():
        raise OutputNotSharedError(
            f"{out}: this worker does not see the output folder of the run (no "
            f"{STATE_FOLDER}/lock in it); the output folder must be on a file system "
            "that every worker shares, at the same path")
    task = spec.task
    # the inventory stays with the coordinating process: a task does not use it
    plan = Plan(config=spec.config, inventory=None, tasks=[*spec.used, task])
    runner = _task_runner(plan)
    runner.excluded = dict(spec.excluded)
    runner.keys = TaskKeys(plan, out)
    runner.keys.hashes.update(spec.hashes)
    for dep in dependencies:
        if dep.failed:
            runner.failed_names.add(dep.name)
        if dep.key is not None:
            runner.keys.keys[dep.name] = dep.key
    # the temporaries listed in a journal of this worker's: a run that next takes the
    # lock removes those left by a worker killed while writing
    with _source_date(spec.source_date), journal_temporaries(out):
        if task.kind in MASTER_KINDS:
            runner.run_master(task)
        elif task.kind == "light":
            runner.run_light(task, _distortion_model(spec.config))
        else:
            runner.run_stack(task)
    result = runner.result
    return TaskSummary(name=task.name, key=runner.keys.keys.get(task.name),
                       made=result.made, skipped=result.skipped, failed=result.failed,
                       remade=result.remade,
                       problems=[(p.path, p.what, p.fix) for p in result.problems])


def _distortion_model(config):
    if not config.calibrate.distortion:
        return None
    from ..distortion import DistortionModel

    return DistortionModel.from_fits(config.calibrate.distortion)


def run_on_dask(runner, *, announce=None):
    """Carry out a run's tasks on the Dask scheduler its config names.

    ``runner`` is the coordinating process's runner, which holds the lock.
    The scheduler is reached (or the local cluster started) first, so that a
    wrong address is said at once; then the inputs are checked here, the
    tasks submitted, and their outcomes recorded in the order of the plan, as
    a run in this process does; then the report is written.

    Returns
    -------
    RunResult
    """
    from ._checks import _quality_table
    from ._failures import _oneline

    plan: Plan = runner.plan
    masters = [t for t in plan.tasks if t.kind in MASTER_KINDS]
    lights = [t for t in plan.tasks if t.kind == "light"]
    stacks = [t for t in plan.tasks if t.kind == "stack"]
    config = dataclasses.replace(runner.config, strict=False)
    scheduler = parse_scheduler(runner.config.scheduler)
    source_date = os.environ.get("SOURCE_DATE_EPOCH")
    by_name = {t.name: t for t in plan.tasks}
    no_model = None
    if config.calibrate.distortion:
        try:
            _distortion_model(config)
        except (ImportError, CalframeError, OSError, ValueError) as err:
            no_model = err
    if announce is None:
        from .._progress import echo, progress_enabled

        announce = echo if progress_enabled() else None
    with open_client(scheduler, announce=announce) as client:
        runner.check_frames()
        futures: dict[str, Any] = {}
        token = os.urandom(4).hex()
        for task in [*masters, *([] if no_model else lights), *stacks]:
            used = [by_name[n] for n in task.uses.values()]
            hashes = {p: runner.keys.hashes[p] for p in task.inputs
                      if p in runner.keys.hashes}
            spec = TaskSpec(config=config, task=task, used=used,
                            excluded=dict(runner.excluded), hashes=hashes,
                            source_date=source_date)
            deps = [futures[n] if n in futures else TaskSummary(n, failed=[n])
                    for n in task.uses.values()]
            futures[task.name] = client.submit(run_task, spec, *deps, pure=False,
                                               retries=RETRIES,
                                               key=f"calframe-{task.name}-{token}")
        for task in runner.progress(masters, desc="masters", total=len(masters),
                                    unit="master"):
            _record(runner, futures[task.name].result())
        if no_model is not None:  # as a run in this process says it
            runner.problem(config.calibrate.distortion,
                           f"distortion model cannot be used ({_oneline(no_model)})",
                           "give a model written by DistortionModel.to_fits")
            for task in lights:
                runner.fail(task, "not calibrated: no distortion model",
                            "see the problem above")
        else:
            for task in runner.progress(lights, desc="calibrating lights",
                                        total=len(lights)):
                _record(runner, futures[task.name].result())
        for task in runner.progress(stacks, desc="stacking", total=len(stacks),
                                    unit="stack"):
            _record(runner, futures[task.name].result())
    result = runner.result
    result.quality = _quality_table(runner.quality_rows)
    if runner.config.report:
        from ..report import write_report

        result.report = str(write_report(result))
    return result


def _record(runner, summary: TaskSummary) -> None:
    """Add a task's outcome to the run's result, as the runner would have."""
    result = runner.result
    result.made.extend(summary.made)
    result.skipped.extend(summary.skipped)
    result.remade.extend(summary.remade)
    if summary.failed:
        runner.failed_names.add(summary.name)
        result.failed.extend(summary.failed)
    if summary.key is not None:
        runner.keys.keys[summary.name] = summary.key
    for path, what, fix in summary.problems:
        runner.problem(path, what, fix)
    for path in summary.made:
        runner.keys.forget(path)


