"""The check of every input frame before a run: bad frames and outliers."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from .._stats import MAD_TO_SIGMA
from ..io import read_frame
from ._failures import _FILE_FAILURES, _oneline, _oneline_of

if TYPE_CHECKING:  # pragma: no cover
    from ._plan import Plan

__all__ = ["check_frames", "flag_outliers"]


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
    sigma = float(MAD_TO_SIGMA * np.median(np.abs(sample - med)))
    tail = float(np.mean(sample > med + 10 * max(sigma, 1e-12)))
    return {"median": med, "sigma": sigma, "masked": float(mask.mean()), "tail": tail,
            "finite": int(finite), "saturated": saturated}


def _quality_table(rows: list[dict]) -> Table:
    names = ["path", "frametype", "group", "median", "sigma", "masked", "tail",
             "outlier", "excluded"]
    dtypes = ["U256", "U12", int, float, float, float, float, "U200", "U200"]
    return Table(rows=[[r[n] for n in names] for r in rows] if rows else None,
                 names=names, dtype=dtypes)


def _frames_to_check(plan: Plan) -> tuple[list[tuple[str, str, int]], set[str]]:
    """Every input frame of the plan once, as ``(path, kind, group)``, and the flats
    that must say their exposure (a dark of known exposure is scaled to them)."""
    paths: list[tuple[str, str, int]] = []
    needs_exposure: set[str] = set()
    seen = set()
    inv = plan.inventory
    for t in plan.tasks:
        if t.kind == "stack":  # its inputs are this run's calibrated lights
            continue
        # a flat must say its exposure when a dark of known exposure is scaled to it
        dark = plan.task(t.uses["dark"]) if "dark" in t.uses else None
        scaled = dark is not None and math.isfinite(
            float(inv.group_row(dark.group)["exptime"]))
        for p in t.inputs:
            if p not in seen:
                seen.add(p)
                paths.append((p, t.kind, t.group))
                if t.kind == "flat" and scaled:
                    needs_exposure.add(p)
    return paths, needs_exposure


def check_frames(plan: Plan, *, digest, exclude, progress) -> list[dict]:
    """Read every input frame of ``plan`` once: one row of the quality table each.

    ``digest(path)`` hashes a frame (the run keeps the digest for its keys);
    ``exclude(row, what, detail, fix)`` is called for a frame that cannot be
    read, is saturated, holds no data or lacks an exposure it needs;
    ``progress`` wraps the loop.
    """
    paths, needs_exposure = _frames_to_check(plan)
    frames = plan.inventory.frames
    exptimes = {str(p): float(e) for p, e in zip(frames["path"], frames["exptime"],
                                                 strict=True)}
    rows: list[dict] = []
    for path, kind, group in progress(paths, desc="checking frames", total=len(paths)):
        row = {"path": path, "frametype": kind, "group": group,
               "median": np.nan, "sigma": np.nan, "masked": np.nan,
               "tail": np.nan, "finite": 0, "outlier": "", "excluded": ""}
        rows.append(row)
        try:
            digest(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ccd = read_frame(path)
        except _FILE_FAILURES as err:
            # a FrameReadError names the file already: its problem and fix only
            detail = getattr(err, "problem", None) or _oneline_of(err)
            exclude(row, "cannot be read", _oneline(detail),
                    getattr(err, "fix", None)
                    or "copy the file again or remove it from the folder")
            continue
        stats = _frame_stats(ccd)
        row.update(stats)
        del ccd
        if stats["saturated"] > 0.5:
            exclude(row, f"saturated {kind} ({100 * stats['saturated']:.0f}% of "
                    "pixels at the saturation level)", "",
                    "take flats at about half the full well" if kind == "flat"
                    else "remove the frame")
        elif stats["finite"] == 0:
            exclude(row, "all pixels are NaN or masked", "",
                    "remove the frame; it holds no data")
        elif path in needs_exposure and not math.isfinite(exptimes.get(path, np.nan)):
            exclude(row, f"{kind} without an exposure time (no EXPTIME), needed "
                    "to scale the dark to it", "",
                    "add EXPTIME to the header or remove the frame")
    return rows


def flag_outliers(rows: list[dict], k: float) -> None:
    """Flag the rows of frames whose statistics stand out of their group (robust z-score).

    The spread of each statistic across the group is the larger of its
    scaled MAD and what noise alone gives (the error of a median or of a
    robust sigma over the frame's pixels, the Poisson error of a count of
    a few bright pixels, half an ADU of quantisation), so that identical
    frames are never flagged for differing by a rounding step.  ``k`` is the
    z-score above which a statistic is flagged.
    """
    groups: dict[int, list[dict]] = {}
    for row in rows:
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
            spread = max(MAD_TO_SIGMA * np.nanmedian(np.abs(values - centre)), floor)
            for r, v in zip(rows, values, strict=True):
                z = (v - centre) / spread
                if math.isfinite(z) and abs(z) > k:
                    note = f"{stat} {z:+.1f} sigma"
                    r["outlier"] = f"{r['outlier']}; {note}" if r["outlier"] else note

