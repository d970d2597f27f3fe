"""Per-channel quality of CFA flats: S/N centre vs corners, subset differences.

:func:`flat_quality` measures, for each Bayer channel (R, G1, G2, B) of a
(master) flat:

- in the centre and the four corners: median, scatter, S/N, and the level
  relative to the centre (the vignetting each colour sees);
- for subsets of the individual flats (e.g. taken with the panel in three
  rotations, or at the start and end of a night): each subset's combination
  compared with the combination of all the *other* flats (independent of it),
  channel by channel, after per-channel normalisation at the centre.  The
  pixel-scale RMS of the ratio (noise plus dust that moved) and a plane fitted
  to it (a tilt of the illumination: the signature of an uneven panel that
  rotates with it) say whether the subsets agree.

:meth:`FlatQuality.plot` draws the numbers as one PNG figure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table

from . import bayer
from ._stats import MAD_TO_SIGMA
from .errors import IncompatibleFramesError, InvalidSettingsError

__all__ = ["FlatQuality", "flat_quality"]

log = logging.getLogger(__name__)

_COLOURS = {"R": "tab:red", "G1": "tab:green", "G2": "olive", "B": "tab:blue"}


@dataclass
class FlatQuality:
    """Per-channel quality numbers of a flat (see :func:`flat_quality`).

    Attributes
    ----------
    pattern : str
        Effective Bayer pattern of the flat.
    regions : `~astropy.table.Table`
        One row per region and channel: ``region``, ``channel``, ``npix``,
        ``median``, ``std``, ``snr`` and ``relative`` (median / the channel's
        median in the centre).
    subsets : `~astropy.table.Table` or None
        One row per subset and channel: ``subset``, ``nframes``, ``channel``,
        ``pix_rms`` (robust RMS, per pixel, of the ratio between the subset and
        the other flats about a fitted plane: noise, dust that moved),
        ``tilt_x``, ``tilt_y`` (slopes of that plane across the half-width and
        half-height of the frame: 0.01 = 1 % from centre to edge), ``tilt``
        (their quadrature sum) and ``block_ptp`` (peak-to-peak of the ratio
        averaged in 16x16-pixel blocks of the channel).
    """

    pattern: str
    regions: Table
    subsets: Table | None = None

    def summary(self) -> str:
        """The numbers in words, one line per channel (and per subset)."""
        lines = [f"flat quality (pattern {self.pattern}):"]
        for chan in bayer.CHANNELS:
            rows = self.regions[self.regions["channel"] == chan]
            centre = rows[rows["region"] == "centre"][0]
            corners = rows[rows["region"] != "centre"]
            lines.append(f"  {chan:>2}: centre S/N {centre['snr']:.1f}, corners S/N "
                         f"{np.min(corners['snr']):.1f}-{np.max(corners['snr']):.1f}, "
                         f"corner/centre {np.min(corners['relative']):.3f}-"
                         f"{np.max(corners['relative']):.3f}")
        if self.subsets is not None:
            for row in self.subsets:
                lines.append(f"  subset {row['subset']} ({row['nframes']} flats) "
                             f"{row['channel']:>2}: pixel RMS {100 * row['pix_rms']:.2f} %, tilt "
                             f"{100 * row['tilt']:.2f} %, blocks p-p "
                             f"{100 * row['block_ptp']:.2f} %")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> Path:
        """Write a PNG figure of the numbers and return its path.

        Panels: S/N per region and channel; corner level relative to the
        centre per channel; and, with subsets, the pixel RMS and the tilt of
        each subset against the others, per channel.
        """
        from matplotlib.figure import Figure  # deferred: only plots need it (0.6 s)

        npanel = 2 if self.subsets is None else 4
        fig = Figure(figsize=(4.2 * npanel, 3.6), layout="constrained")
        axes = fig.subplots(1, npanel)
        regions = list(dict.fromkeys(self.regions["region"]))
        x = np.arange(len(regions))
        width = 0.2
        for k, chan in enumerate(bayer.CHANNELS):
            rows = self.regions[self.regions["channel"] == chan]
            by_region = {r["region"]: r for r in rows}
            snr = [by_region[r]["snr"] for r in regions]
            rel = [by_region[r]["relative"] for r in regions]
            axes[0].bar(x + (k - 1.5) * width, snr, width, color=_COLOURS[chan], label=chan)
            axes[1].bar(x + (k - 1.5) * width, rel, width, color=_COLOURS[chan], label=chan)
        for ax, title in zip(axes[:2], ("S/N (median / std)", "level / centre level"),
                             strict=True):
            ax.set_xticks(x, regions, rotation=30, fontsize=8)
            ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8)
        axes[1].axhline(1.0, color="0.5", lw=0.8)
        if self.subsets is not None:
            names = list(dict.fromkeys(self.subsets["subset"]))
            xs = np.arange(len(names))
            for k, chan in enumerate(bayer.CHANNELS):
                rows = self.subsets[self.subsets["channel"] == chan]
                by_name = {r["subset"]: r for r in rows}
                axes[2].bar(xs + (k - 1.5) * width, [100 * by_name[n]["pix_rms"] for n in names],
                            width, color=_COLOURS[chan], label=chan)
                axes[3].bar(xs + (k - 1.5) * width, [100 * by_name[n]["tilt"] for n in names],
                            width, color=_COLOURS[chan], label=chan)
            for ax, title in zip(axes[2:], ("subset / others: pixel RMS (%)",
                                            "subset / others: tilt (%)"), strict=True):
                ax.set_xticks(xs, names, rotation=30, fontsize=8)
                ax.set_title(title, fontsize=10)
        fig.suptitle(f"Flat quality per CFA channel ({self.pattern})", fontsize=11)
        path = Path(path)
        fig.savefig(path, dpi=100)
        log.info("wrote flat quality figure %s", path)
        return path


def _stack_median(frames: Sequence[CCDData], statistic: str) -> np.ndarray:
    stack = np.empty((len(frames), *frames[0].shape), dtype=np.float32)
    for i, f in enumerate(frames):
        stack[i] = f.data
        if f.mask is not None:
            stack[i][f.mask] = np.nan
    if statistic == "median":
        return np.nanmedian(stack, axis=0)
    return np.nanmean(stack, axis=0)


def _normalised_planes(data: np.ndarray, pattern: str) -> dict[str, np.ndarray]:
    scales = bayer.channel_scales(data, pattern=pattern, region="centre")
    return {c: v / scales[c] for c, v in bayer.channel_views(data, pattern).items()}


def _compare(sub: np.ndarray, rest: np.ndarray, block: int = 16) -> tuple:
    """Pixel RMS about a fitted plane, the plane's tilts, and the block peak-to-peak."""
    ratio = sub / rest
    good = np.isfinite(ratio)
    values = ratio[good]
    ny, nx = ratio.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    u = (xx - (nx - 1) / 2) / ((nx - 1) / 2)
    v = (yy - (ny - 1) / 2) / ((ny - 1) / 2)
    design = np.stack([np.ones(values.size), u[good], v[good]], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    resid = values - design @ coef
    pix_rms = MAD_TO_SIGMA * np.median(np.abs(resid - np.median(resid))) / coef[0]
    by, bx = ny // block, nx // block
    if by and bx:
        blocks = np.nanmean(ratio[:by * block, :bx * block].reshape(by, block, bx, block),
                            axis=(1, 3))
        ptp = float(np.nanmax(blocks) - np.nanmin(blocks))
    else:
        ptp = np.nan
    tilt_x = float(coef[1] / coef[0])
    tilt_y = float(coef[2] / coef[0])
    return float(pix_rms), tilt_x, tilt_y, ptp


def flat_quality(flat: CCDData | None = None, *,
                 subsets: Mapping[str, Sequence[CCDData]] | None = None,
                 pattern: str | None = None, size: float = 0.1,
                 statistic: str = "median") -> FlatQuality:
    """Per-channel quality of a CFA flat, and agreement between subsets of flats.

    Parameters
    ----------
    flat : `~astropy.nddata.CCDData`, optional
        The (master) flat, a 2-D mosaic (bias/dark removed).  Default: the
        combination of all the frames in ``subsets``.
    subsets : mapping of str to sequences of `CCDData`, optional
        Named groups of individual flats, e.g. ``{'0 deg': [...], '120 deg': [...],
        '240 deg': [...]}``.  Needs at least two groups.
    pattern : str, optional
        Effective pattern (default from the flat's or the first frame's keywords).
    size : float
        Size of the centre and corner boxes, as a fraction of the frame.
    statistic : {'median', 'mean'}
        How each subset (and the default master) is combined.

    Returns
    -------
    FlatQuality

    Raises
    ------
    ValueError
        If neither a flat nor subsets are given, fewer than two subsets are
        given, the frames' shapes differ, or the statistic is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> rng = np.random.default_rng(0)
    >>> flat = CCDData(rng.normal(1000, 10, (200, 300)).astype(np.float32), unit="adu",
    ...                meta={"BAYERPAT": "RGGB"})
    >>> q = flat_quality(flat)
    >>> row = q.regions[(q.regions["region"] == "centre") & (q.regions["channel"] == "R")]
    >>> round(float(row["snr"][0]), -1)
    100.0
    """
    if statistic not in ("median", "mean"):
        raise InvalidSettingsError(
            f"statistic={statistic!r} is not recognised; use 'median' or 'mean'")
    if flat is None and not subsets:
        raise InvalidSettingsError("flat_quality needs a flat, or subsets of flats to compare")
    groups: dict[str, list[CCDData]] = {}
    if subsets:
        groups = {str(k): list(v) for k, v in subsets.items()}
        if len(groups) < 2 or any(len(v) == 0 for v in groups.values()):
            raise InvalidSettingsError(
                f"subsets needs at least two non-empty groups of flats, got "
                             f"{ {k: len(v) for k, v in groups.items()} }")
        shapes = {f.shape for v in groups.values() for f in v}
        if flat is not None:
            shapes.add(flat.shape)
        if len(shapes) != 1:
            raise IncompatibleFramesError(
                f"the flats have different shapes {sorted(shapes)}; compare "
                             "frames of one camera and binning")
    first: Any = flat if flat is not None else next(iter(groups.values()))[0]
    pattern = bayer._pattern_for(first, pattern)
    if flat is None:
        allframes = [f for v in groups.values() for f in v]
        flat = CCDData(_stack_median(allframes, statistic), unit=first.unit,
                       meta=first.meta.copy())

    table = bayer.channel_statistics(flat, pattern=pattern,
                                     regions=bayer.standard_regions(flat.shape, size=size))
    centre = {r["channel"]: r["median"] for r in table if r["region"] == "centre"}
    table["relative"] = [r["median"] / centre[r["channel"]] for r in table]
    regions = table["region", "channel", "npix", "median", "std", "snr", "relative"]

    subset_table = None
    if groups:
        combined = {k: _stack_median(v, statistic) for k, v in groups.items()}
        rows = []
        for name, frames in groups.items():
            others = [f for k, v in groups.items() if k != name for f in v]
            rest = _stack_median(others, statistic)
            sub_planes = _normalised_planes(combined[name], pattern)
            rest_planes = _normalised_planes(rest, pattern)
            for chan in bayer.CHANNELS:
                pix_rms, tx, ty, ptp = _compare(sub_planes[chan], rest_planes[chan])
                rows.append((name, len(frames), chan, pix_rms, tx, ty, float(np.hypot(tx, ty)),
                             ptp))
        subset_table = Table(rows=rows, names=("subset", "nframes", "channel", "pix_rms",
                                               "tilt_x", "tilt_y", "tilt", "block_ptp"),
                             dtype=(str, int, str, float, float, float, float, float))
    result = FlatQuality(pattern=pattern, regions=regions, subsets=subset_table)
    log.info("%s", result.summary())
    return result
