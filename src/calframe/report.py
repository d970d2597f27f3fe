"""An HTML summary of a run, with matplotlib figures.

:func:`write_report` writes ``OUTDIR/report.html`` and its PNG figures
(``OUTDIR/report/``) for a :class:`calframe.pipeline.RunResult`:

- the outputs made, skipped and failed, and every problem (file, what, fix);
- the plan and the groups of the inventory;
- each master stretched, its histogram, its uncertainty map, its rejected-pixel
  map (from the combine's per-pixel count) and its count of masked pixels;
- for flats, the profile through the centre per CFA channel and the
  centre/corner signal-to-noise per channel;
- the distortion field (vectors and dx/dy maps) when a model was applied;
- the per-frame quality table, with the frames whose median, robust sigma or
  bright-tail fraction is an outlier within their group flagged;
- a preview of every master and calibrated light (256 px PNG, a CFA mosaic
  in colour as 2x2 superpixels) with a table per channel (mean, median, std,
  S/N and the lowest and highest corner over the centre, or over a light's
  median), the lights with a corner that stands out flagged.

The report reads the masters from disk one at a time and draws large frames
subsampled, so it needs little memory; of a calibrated light it reads, through
a memory map, only one row of 2x2 cells in n (n the preview's binning).
Nothing in it is needed to use the outputs; it is for looking.
"""

from __future__ import annotations

import html
import logging
import math
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from ._atomic import temporary_path
from ._stats import MAD_TO_SIGMA
from .errors import CalframeError, UncertaintyUnknownWarning
from .provenance import _printable

__all__ = ["flat_channel_table", "stretch", "write_report"]

log = logging.getLogger(__name__)

_MAX_DISPLAY = 800  # pixels along the longer side of a displayed image

#: What reading and drawing a damaged output may raise; the report says so and
#: goes on.
_DRAW_FAILURES = (CalframeError, OSError, ValueError, EOFError, KeyError, IndexError,
                  TypeError, zlib.error, struct.error)

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #eee; }
tr.flag td { background: #fde2e2; }
tr.excl td { background: #eee; color: #777; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
.ok { color: #1a7f37; } .bad { color: #b42318; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { border: 1px solid #ccc; padding: 0.4em; }
.card.flagcard { border-color: #b42318; }
.card table { font-size: 0.75em; }
img.preview { image-rendering: pixelated; display: block; }
p.cap { font-size: 0.8em; margin: 0.2em 0; max-width: 32em; }
"""


def _esc(value) -> str:
    """``value`` as HTML text; the bytes of a name that is not UTF-8 as ``\\xff``."""
    return html.escape(_printable(value))


def stretch(data: np.ndarray, *, low: float = 0.5, high: float = 99.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Scale an image to 0..1 between two percentiles with an asinh stretch.

    Masked and non-finite pixels become NaN (drawn as blank).

    Parameters
    ----------
    data : ndarray
        The image.
    low, high : float
        Percentiles that map to 0 and 1.
    mask : ndarray, optional
        True where a pixel is not to be drawn.

    Returns
    -------
    ndarray
        The stretched image, 0 to 1, NaN where masked or not finite.

    Examples
    --------
    >>> out = stretch(np.arange(100.0).reshape(10, 10))
    >>> float(out.min()), float(out.max())
    (0.0, 1.0)
    """
    values = np.asarray(data, dtype=np.float64)
    bad = ~np.isfinite(values)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    good = values[~bad]
    if good.size == 0:
        return np.full(values.shape, np.nan)
    lo, hi = np.percentile(good, [low, high])
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    out = np.arcsinh(10.0 * scaled) / np.arcsinh(10.0)
    out[bad] = np.nan
    return out


def _display(array: np.ndarray, mask: np.ndarray | None, cfa: bool) -> tuple:
    """Block-average to at most _MAX_DISPLAY pixels (2x2 first on a CFA mosaic)."""
    shape = np.shape(array)
    factor = max(1, math.ceil(max(shape) / _MAX_DISPLAY))
    if cfa:
        factor = max(2, factor + factor % 2)
    if factor > 1 and shape[0] >= factor and shape[1] >= factor:
        from ._binning import block_nanmean

        # compiled: no float64 copy of the whole frame
        return block_nanmean(array, mask, factor), factor
    a = np.asarray(array, dtype=np.float64)
    if mask is not None:
        a = np.where(np.asarray(mask, dtype=bool), np.nan, a)
    return a, factor


def _figure(ncols: int, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=80)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    fig.subplots_adjust(left=0.06 / ncols + 0.02, right=0.98, bottom=0.14, top=0.9,
                        wspace=0.3)
    return fig, axes


def _save(fig, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(folder / name)
    fig.savefig(tmp, format="png")
    os.replace(tmp, folder / name)
    return f"{folder.name}/{name}"


def flat_channel_table(flat, *, size: float = 0.1):
    """Centre and corner statistics of a flat, per CFA channel ('L' for a mono flat).

    For a CFA mosaic this is the ``regions`` table of
    :func:`calframe.flat_quality`; a monochrome flat gets the same columns
    with one channel, 'L'.  Columns: ``region``, ``channel``, ``npix``,
    ``median``, ``std``, ``snr`` (median / std) and ``relative`` (the
    region's median over the channel's median in the centre: the vignetting
    that the flat corrects).

    Parameters
    ----------
    flat : CCDData
        A master flat.
    size : float
        Side of the centre and corner boxes, as a fraction of the frame's.

    Returns
    -------
    `~astropy.table.Table`
        One row per region and channel.

    Examples
    --------
    >>> from astropy.nddata import CCDData
    >>> f = CCDData(np.ones((40, 40), np.float32), unit="")
    >>> t = flat_channel_table(f)
    >>> sorted(set(t["channel"].tolist())), float(t["relative"][0])
    (['L'], 1.0)
    """
    from astropy.table import Table

    from . import bayer
    from .flatquality import flat_quality

    data = np.asarray(flat.data, dtype=np.float64)
    if str(flat.meta.get("BAYERPAT", "") or "").strip() and data.ndim == 2:
        return flat_quality(flat, size=size).regions
    mask = None if flat.mask is None else np.asarray(flat.mask, dtype=bool)
    plane = data if data.ndim == 2 else np.nanmean(data, axis=0)
    rows = []
    for name, sl in bayer.standard_regions(plane.shape, size=size).items():
        good = np.isfinite(plane[sl])
        if mask is not None and mask.shape == plane.shape:
            good &= ~mask[sl]
        v = plane[sl][good]
        med = float(np.median(v)) if v.size else np.nan
        std = float(np.std(v, ddof=1)) if v.size > 1 else np.nan
        rows.append((name, "L", int(v.size), med, std,
                     med / std if std and np.isfinite(std) and std > 0 else np.nan))
    table = Table(rows=rows, names=("region", "channel", "npix", "median", "std", "snr"),
                  dtype=(str, str, int, float, float, float))
    centre = float(table["median"][0])
    table["relative"] = table["median"] / centre if centre else np.nan
    return table


def _table_html(table, columns=None, *, row_class=None, fmt="{:.4g}",
                headings=None) -> str:
    columns = columns or list(table.colnames)
    headings = headings or {}
    out = ["<table><tr>" + "".join(f"<th>{_esc(headings.get(c, c))}</th>" for c in columns)
           + "</tr>"]
    for row in table:
        cls = row_class(row) if row_class else ""
        cells = []
        for c in columns:
            v = row[c]
            if isinstance(v, float | np.floating):
                text = "" if not np.isfinite(v) else fmt.format(float(v))
            else:
                text = str(v)
            cells.append(f"<td>{_esc(text)}</td>")
        out.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


# --- previews -----------------------------------------------------------------------

_PREVIEW = 256  # pixels along the longer side of a preview

#: Columns of the per-channel table of a preview, and their headings.
_CHANNEL_COLUMNS = (("channel", "channel"), ("npix", "pixels"), ("mean", "mean"),
                    ("median", "median"), ("std", "std"), ("snr", "S/N"),
                    ("corner_min", "lowest corner"), ("corner_max", "highest corner"))

#: A light's corner is flagged when its median differs from the light's median
#: (its sky) by more than this fraction, and by more than its noise.
_CORNER_TOLERANCE = 0.05


def _pattern_of(header, shape) -> str | None:
    """The effective Bayer pattern of a 2-D mosaic, or None (mono, colour planes)."""
    from . import bayer

    if len(shape) != 2 or not str(header.get("BAYERPAT", "") or "").strip():
        return None
    keys = {k: header.get(k) for k in ("BAYERPAT", "XBAYROFF", "YBAYROFF", "ROWORDER")
            if header.get(k) is not None}
    try:
        return bayer.effective_pattern(keys, shape=shape)
    except (CalframeError, ValueError) as err:
        log.info("preview drawn as mono: %s", err)
        return None


def _preview_factor(shape, cfa: bool) -> int:
    """Binning of a preview, in pixels (2x2 cells on a CFA mosaic) per preview pixel."""
    ny, nx = shape[-2:]
    cells = max(ny // 2, nx // 2) if cfa else max(ny, nx)
    return max(1, math.ceil(cells / _PREVIEW))


def _sample_rows(array, mask, cfa: bool, step: int):
    """Every ``step``-th row (row of 2x2 cells on a CFA mosaic), as float32 with NaN.

    ``array`` may be a memory map: only the rows taken are read.  Masked and
    non-finite pixels become NaN.
    """
    ny = array.shape[-2] // 2 * 2 if cfa else array.shape[-2]
    if step == 1:
        rows = slice(0, ny)
    elif cfa:
        starts = np.arange(0, ny, 2 * step)
        rows = np.stack([starts, starts + 1], axis=1).ravel()
    else:
        rows = np.arange(0, ny, step)
    data = np.array(array[..., rows, :], dtype=np.float32)
    if cfa:
        data = data[..., : data.shape[-1] // 2 * 2]
    if mask is not None:
        m = np.asarray(mask[..., rows, :], dtype=bool)[..., : data.shape[-1]]
        data[np.broadcast_to(m, data.shape)] = np.nan
    return data


def _channel_planes(sample: np.ndarray, pattern: str | None) -> dict[str, np.ndarray]:
    """The channels of a sample: R, G1, G2, B of a mosaic; R, G, B planes; or L."""
    from . import bayer

    if pattern is not None:
        return {name: sample[sl] for name, sl in bayer.channel_slices(pattern).items()}
    if sample.ndim == 3 and sample.shape[0] == 3:
        return dict(zip(("R", "G", "B"), sample, strict=True))
    if sample.ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {"L": np.nanmean(sample, axis=0)}
    return {"L": sample}


def _median(values: np.ndarray) -> float:
    good = values[np.isfinite(values)]
    return float(np.median(good)) if good.size else np.nan


def _channel_row(name: str, plane: np.ndarray, reference: str) -> tuple:
    """Statistics of one channel plane, and its corners over its centre or median."""
    from . import bayer

    values = plane[np.isfinite(plane)]
    n = int(values.size)
    mean = float(np.mean(values, dtype=np.float64)) if n else np.nan
    median = float(np.median(values)) if n else np.nan
    std = float(np.std(values, ddof=1, dtype=np.float64)) if n > 1 else np.nan
    snr = mean / std if n > 1 and std > 0 else np.nan
    regions = bayer.standard_regions(plane.shape)
    centre = regions.pop("centre")
    level = _median(plane[centre]) if reference == "centre" else median
    ratios, significant = [], False
    for sl in regions.values():
        corner = _median(plane[sl])
        ratios.append(corner / level if level else np.nan)
        npix = max(int(np.isfinite(plane[sl]).sum()), 1)
        noise = 1.2533 * std / math.sqrt(npix) if np.isfinite(std) else 0.0
        if abs(corner - level) > max(_CORNER_TOLERANCE * abs(level), 5 * noise):
            significant = True
    ratios = np.array(ratios, dtype=np.float64)
    finite = ratios[np.isfinite(ratios)]
    lo = float(finite.min()) if finite.size else np.nan
    hi = float(finite.max()) if finite.size else np.nan
    return (name, n, mean, median, std, snr, lo, hi, significant and level > 0)


def _channel_table(sample: np.ndarray, pattern: str | None, *, reference: str = "centre"):
    """Per-channel statistics of a frame (or of a sample of its rows).

    Parameters
    ----------
    sample : ndarray
        A 2-D frame or a stack of rows of it (a CFA mosaic keeps whole 2x2
        cells), masked pixels NaN; a 3-D array of colour planes.
    pattern : str or None
        Effective Bayer pattern of a mosaic; None for a mono frame (one
        channel, 'L') or colour planes (R, G, B).
    reference : {'centre', 'median'}
        What the corners are compared with: the median of the centre box
        (a master: the vignetting of a flat), or the channel's median (a
        light: its sky, which a target in the centre box would not be).

    Returns
    -------
    `~astropy.table.Table`
        One row per channel: ``channel``, ``npix``, ``mean``, ``median``,
        ``std`` (ddof=1), ``snr`` (mean / std), ``corner_min`` and
        ``corner_max`` (the lowest and highest median of the four corner
        boxes of :func:`calframe.bayer.standard_regions` over the reference
        level) and ``corner_flag`` (a corner differs from the reference by
        more than 5% and more than its noise).

    Examples
    --------
    >>> a = np.tile(np.array([[4., 2.], [2., 1.]], np.float32), (20, 20))
    >>> t = _channel_table(a, "RGGB")
    >>> t["channel"].tolist(), t["median"].tolist(), t["corner_max"].tolist()
    (['R', 'G1', 'G2', 'B'], [4.0, 2.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    """
    from astropy.table import Table

    if reference not in ("centre", "median"):
        raise ValueError(f"reference={reference!r}: use 'centre' or 'median'")
    rows = [_channel_row(name, plane, reference)
            for name, plane in _channel_planes(sample, pattern).items()]
    return Table(rows=rows, names=[c for c, _ in _CHANNEL_COLUMNS] + ["corner_flag"],
                 dtype=(str, int, float, float, float, float, float, float, bool))


def _bin_plane(plane: np.ndarray, fy: int, fx: int) -> np.ndarray:
    ny, nx = plane.shape[0] // fy * fy, plane.shape[1] // fx * fx
    if not (ny and nx):
        return plane
    if fy == fx == 1:
        return plane[:ny, :nx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(plane[:ny, :nx].reshape(ny // fy, fy, nx // fx, fx), axis=(1, 3))


def _auto_stretch(plane: np.ndarray) -> np.ndarray:
    """:func:`stretch` between limits that keep a sky background visible.

    The limits are the 0.5 and 99.5 percentiles, tightened to 3 robust sigma
    below and 25 above the median, with the top at least 20 times the
    pixel-to-pixel noise above the median: the sky of a light then sits near
    a third of full scale with its noise well inside the range, so that a
    gradient or an over-corrected corner shows, while a flat, whose spread
    is its vignetting, keeps its percentiles.
    """
    good = plane[np.isfinite(plane)]
    if good.size == 0:
        return np.full(plane.shape, np.nan)
    lo, med, hi = np.percentile(good, [0.5, 50, 99.5])
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(good - med)))
    steps = np.diff(plane, axis=-1)
    steps = steps[np.isfinite(steps)]
    noise = MAD_TO_SIGMA / math.sqrt(2) * float(np.median(np.abs(steps))) if steps.size else 0.0
    if sigma > 0:
        lo, hi = max(lo, med - 3 * sigma), min(hi, med + 25 * sigma)
    hi = max(hi, med + 20 * noise)
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    scaled = np.clip((plane - lo) / (hi - lo), 0.0, 1.0)
    return np.arcsinh(10.0 * scaled) / np.arcsinh(10.0)


def _preview_image(sample: np.ndarray, pattern: str | None, fy: int, fx: int) -> np.ndarray:
    """A stretched 8-bit preview (RGB, or grey for one channel), row 0 at the bottom.

    A CFA mosaic is shown as 2x2 superpixels (R, mean of the greens, B), each
    colour stretched on its own.
    """
    planes = _channel_planes(sample, pattern)
    if pattern is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            green = np.nanmean(np.stack([planes["G1"], planes["G2"]]), axis=0)
        planes = {"R": planes["R"], "G": green, "B": planes["B"]}
    layers = [np.nan_to_num(_auto_stretch(_bin_plane(p, fy, fx)), nan=0.0)
              for p in planes.values()]
    image = np.rint(255 * np.stack(layers, axis=-1)).astype(np.uint8)[::-1]
    return image[..., 0] if image.shape[-1] == 1 else image


def _save_preview(image: np.ndarray, folder: Path, name: str) -> str:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(folder / name)
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, folder / name)
    return f"{folder.parent.name}/{folder.name}/{name}"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", _printable(text))[:80]


def _preview_html(sample: np.ndarray, pattern: str | None, factor: int, row_step: int,
                  *, title: str, folder: Path, name: str, note: str = "",
                  light: bool = False) -> tuple[str, bool]:
    """A preview card: the image, what it shows, and the per-channel table.

    The corners of a light are compared with its median, and flagged when
    they stand out; those of a master with its centre.
    """
    image = _preview_image(sample, pattern, factor // row_step, factor)
    src = _save_preview(image, folder, name)
    table = _channel_table(sample, pattern, reference="median" if light else "centre")
    flag_corners = light
    flagged = flag_corners and bool(np.any(table["corner_flag"]))
    shown = table[[c for c, _ in _CHANNEL_COLUMNS[:-2]]]
    shown["corners"] = [f"{lo:.3f}-{hi:.3f}" if np.isfinite(lo) and np.isfinite(hi) else ""
                        for lo, hi in zip(table["corner_min"], table["corner_max"], strict=True)]
    flags = {str(r["channel"]) for r in table if flag_corners and r["corner_flag"]}
    heading = "corners/median" if light else "corners/centre"
    body = _table_html(shown, headings={**dict(_CHANNEL_COLUMNS), "corners": heading},
                       row_class=lambda r: "flag" if str(r["channel"]) in flags else "")
    ny, nx = image.shape[:2]
    size = "width='256'" if nx >= ny else "height='256'"
    kind = f"CFA {pattern}, 2x2 superpixels" if pattern else (
        "colour planes" if "R" in table["channel"] else "mono")
    caption = (f"{_esc(title)}: {kind}, binned {factor}x{factor}"
               + (f", one row{' of cells' if pattern else ''} in {row_step} read"
                  if row_step > 1 else "") + (f"; {_esc(note)}" if note else ""))
    card = (f"<div class='card{' flagcard' if flagged else ''}'>"
            f"<img class='preview' src='{_esc(src)}' alt='preview of {_esc(title)}' "
            f"{size}><p class='cap'>{caption}</p>\n{body}</div>")
    return card, flagged


def _light_preview(path: Path, title: str, folder: Path, name: str) -> tuple[str, bool]:
    """The preview card of a calibrated light, read through a memory map.

    Only every n-th row of 2x2 cells (of pixels for a mono frame) is read,
    n being the preview's binning, so a light costs about 1/n of its size
    in reading.
    """
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        with fits.open(path, memmap=True) as hdul:
            hdu = hdul[0]
            if hdu.data is None or hdu.data.ndim not in (2, 3):
                raise ValueError(f"{path.name} has no 2-D image in its primary HDU")
            data = hdu.data
            pattern = _pattern_of(hdu.header, data.shape)
            factor = _preview_factor(data.shape, pattern is not None)
            mask = hdul["MASK"].data if "MASK" in hdul else None
            if mask is not None and mask.shape[-2:] != data.shape[-2:]:
                mask = None
            sample = _sample_rows(data, mask, pattern is not None, factor)
            unit = str(hdu.header.get("BUNIT", "") or "")
            del data, mask, hdu
    return _preview_html(sample, pattern, factor, factor, title=title, folder=folder,
                         name=name, note=f"unit {unit}" if unit else "", light=True)


def _master_section(path: Path, name: str, kind: str, figdir: Path) -> str:
    from .io import read_frame

    with warnings.catch_warnings():   # a master's missing noise model is said elsewhere
        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        ccd = read_frame(path)
    data = np.asarray(ccd.data)
    mask = None if ccd.mask is None else np.asarray(ccd.mask, dtype=bool)
    cfa = bool(ccd.meta.get("BAYERPAT")) and data.ndim == 2
    plane = data if data.ndim == 2 else np.nanmean(data, axis=0)
    pmask = mask if (mask is None or mask.ndim == 2) else mask.any(axis=0)
    nbad = int(mask.sum()) if mask is not None else 0
    unc = None if ccd.uncertainty is None else np.asarray(ccd.uncertainty.array)
    rejected = getattr(ccd, "rejected", None)
    ncombine = ccd.meta.get("NCOMBINE", "")

    panels = ["image", "histogram"]
    if unc is not None:
        panels.append("uncertainty")
    if rejected is not None and np.size(rejected):
        panels.append("rejected")
    fig, axes = _figure(len(panels))
    shown, factor = _display(plane, pmask, cfa)
    ax = axes[0]
    ax.imshow(stretch(shown), cmap="gray", origin="lower", interpolation="nearest")
    ax.set_title(f"{kind}: stretched" + (f" (binned {factor}x{factor})" if factor > 1
                                         else ""))
    ax = axes[1]
    good = plane[np.isfinite(plane) & (~pmask if pmask is not None else True)]
    if good.size:
        lo, hi = np.percentile(good, [0.05, 99.95])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        ax.hist(np.clip(good, lo, hi), bins=200, range=(lo, hi), color="k",
                histtype="step", log=True)
    ax.set_title(f"histogram ({ccd.unit})")
    i = 2
    if unc is not None:
        uplane = unc if unc.ndim == 2 else np.sqrt(np.nanmean(unc ** 2, axis=0))
        ushown, _ = _display(uplane, pmask, cfa)
        im = axes[i].imshow(ushown, cmap="viridis", origin="lower", interpolation="nearest",
                            vmin=np.nanpercentile(ushown, 1),
                            vmax=np.nanpercentile(ushown, 99))
        fig.colorbar(im, ax=axes[i], shrink=0.8)
        axes[i].set_title("uncertainty")
        i += 1
    if "rejected" in panels:
        rshown, _ = _display(np.asarray(rejected, dtype=float), None, False)
        im = axes[i].imshow(rshown, cmap="magma", origin="lower", interpolation="nearest")
        fig.colorbar(im, ax=axes[i], shrink=0.8)
        axes[i].set_title(f"rejected values (total {int(np.sum(rejected))})")
    for ax in axes:
        if ax is not axes[1]:
            ax.set_xticks([])
            ax.set_yticks([])
    src = _save(fig, figdir, f"{name}.png")
    badtext = ""
    if kind in ("dark", "flat") and data.ndim == 2:
        from .cosmetic import find_bad_pixels

        sides = {"hot_sigma": 5.0} if kind == "dark" else {"hot_sigma": None,
                                                             "cold_sigma": 5.0}
        try:
            found = int(np.sum(find_bad_pixels(ccd, **sides)) - nbad)
            badtext = (f", {'hot' if kind == 'dark' else 'cold'} pixels beyond 5 robust "
                       f"sigma {found}")
        except ValueError as err:
            log.info("bad-pixel search of %s failed: %s", name, err)
    pattern = _pattern_of(ccd.meta, data.shape)
    card, _ = _preview_html(_sample_rows(data, mask, pattern is not None, 1), pattern,
                            _preview_factor(data.shape, pattern is not None), 1,
                            title=name, folder=figdir / "previews",
                            name=f"{kind}-{_safe_name(name)}.png")
    parts = [f"<h3>{_esc(name)}</h3>",
             f"<p>{_esc(str(path.name))}: shape {'x'.join(map(str, data.shape))}, "
             f"unit {_esc(str(ccd.unit))}, NCOMBINE {_esc(str(ncombine))}, "
             f"masked (bad) pixels {nbad} ({100 * nbad / max(data.size, 1):.3f}%)"
             + badtext
             + (f", median {float(np.median(good)):.6g}" if good.size else "") + "</p>",
             _how_made(ccd),
             f"<img src='{src}' alt='{_esc(name)}'>",
             "<p>Preview and statistics per channel (corners/centre: the median of "
             "the lowest and of the highest corner box over the centre's):</p>",
             f"<div class='cards'>{card}</div>"]
    if kind == "flat":
        parts.append(_flat_section(ccd, name, figdir))
    return "\n".join(parts)


def _how_made(ccd) -> str:
    """What a reader of the report must know of how a master was made: the camera
    black level subtracted, where a flat's level was measured, the linearity check."""
    from .provenance import get_provenance

    meta = ccd.meta
    notes = []
    if str(meta.get("BLKSUB", "")).strip().upper() in ("T", "TRUE"):
        notes.append("the camera black level was subtracted (no bias or dark removed it)")
    if meta.get("FLATREG"):
        notes.append(f"the flat's level was measured on {meta['FLATREG']}")
    step = next((s.parameters for s in reversed(get_provenance(ccd).steps)
                 if s.step.startswith("make_master")), {})
    check = step.get("linearity")
    if isinstance(check, dict) and check.get("exponent") is not None:
        verdict = {True: "linear", False: "gamma-encoded", None: "cannot tell"}.get(
            check.get("verdict"), "?")
        notes.append(f"linearity from the photon noise: exponent {check['exponent']:.3f} "
                     f"({verdict})")
    if step.get("assume_linear"):
        notes.append("taken as linear on request (assume_linear)")
    if step.get("allow_mixed"):
        notes.append("frames the input contract refuses were combined on request: "
                     + "; ".join(str(p) for p in step["allow_mixed"]))
    return f"<p>{_esc('; '.join(notes).capitalize())}.</p>" if notes else ""


def _flat_section(ccd, name: str, figdir: Path) -> str:
    from . import bayer

    data = np.asarray(ccd.data, dtype=np.float64)
    if data.ndim != 2:
        return ""
    mask = None if ccd.mask is None else np.asarray(ccd.mask, dtype=bool)
    values = data if mask is None else np.where(mask, np.nan, data)
    pattern = str(ccd.meta.get("BAYERPAT", "") or "").upper()
    fig, axes = _figure(2, width=5.0)
    centre_y = data.shape[0] // 2 // 2 * 2
    band = slice(max(0, centre_y - 4), centre_y + 4)
    colours = {"R": "tab:red", "G1": "tab:green", "G2": "olive", "B": "tab:blue",
               "L": "k"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if pattern:
            pattern = bayer.effective_pattern(ccd)
            for chan, sl in bayer.channel_slices(pattern).items():
                sub = values[band][sl]
                x = np.arange(data.shape[1])[sl[1]]
                axes[0].plot(x, np.nanmedian(sub, axis=0), color=colours[chan], lw=0.8,
                             label=chan)
                suby = values[:, data.shape[1] // 2 - 4: data.shape[1] // 2 + 4][sl]
                y = np.arange(data.shape[0])[sl[0]]
                axes[1].plot(y, np.nanmedian(suby, axis=1), color=colours[chan], lw=0.8,
                             label=chan)
        else:
            axes[0].plot(np.nanmedian(values[band], axis=0), color="k", lw=0.8, label="L")
            mid = data.shape[1] // 2
            axes[1].plot(np.nanmedian(values[:, max(0, mid - 4): mid + 4], axis=1),
                         color="k", lw=0.8, label="L")
    axes[0].set_title("profile along x through the centre")
    axes[1].set_title("profile along y through the centre")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.set_xlabel("pixel")
    src = _save(fig, figdir, f"{name}_profile.png")
    table = flat_channel_table(ccd)
    return (f"<img src='{src}' alt='flat profiles'>\n<p>Centre and corner statistics "
            "per channel (relative: the level over the centre's, the vignetting the flat "
            "corrects):</p>\n" + _table_html(table))


def _distortion_section(model_path: str, figdir: Path) -> str:
    from matplotlib.figure import Figure

    from .errors import CalframeError

    try:
        from .distortion import DistortionModel, plot_distortion

        model = DistortionModel.from_fits(model_path)
        dx, dy = model.maps()
        fig = plot_distortion(model, figure=Figure(figsize=(13, 4.2), dpi=80))
    except (ImportError, CalframeError, OSError, ValueError) as err:
        return (f"<p class='bad'>Distortion model {_esc(model_path)}: cannot be "
                f"drawn ({_esc(str(err))}).</p>")
    src = _save(fig, figdir, "distortion.png")
    size = np.hypot(dx, dy)
    return (f"<p>Model {_esc(model_path)}: |d| up to "
            f"{float(np.nanmax(size)):.3g} px, median {float(np.nanmedian(size)):.3g} px"
            f"; fit residual rms {float(getattr(model, 'rms', np.nan)):.3g} px.</p>\n"
            f"<img src='{src}' alt='distortion'>")


def _quality_section(quality, figdir: Path) -> str:
    if quality is None or len(quality) == 0:
        return "<p>No frames were checked.</p>"
    fig, axes = _figure(2, width=5.5)
    for kind, marker in (("bias", "o"), ("dark", "s"), ("flat", "^"), ("light", "D")):
        sel = quality["frametype"] == kind
        if not np.any(sel):
            continue
        idx = np.flatnonzero(sel)
        flagged = np.array([bool(quality["outlier"][i]) for i in idx])
        for ax, col in ((axes[0], "median"), (axes[1], "sigma")):
            vals = np.asarray(quality[col][idx], dtype=float)
            ax.plot(idx, vals, marker, ms=4, ls="none", label=kind)
            if flagged.any():
                ax.plot(idx[flagged], vals[flagged], "x", color="red", ms=9)
    for ax, col in ((axes[0], "median"), (axes[1], "robust sigma")):
        ax.set_xlabel("frame")
        ax.set_title(f"{col} per frame (red x: outlier)")
        ax.set_yscale("symlog")
        ax.legend(fontsize=7)
    src = _save(fig, figdir, "quality.png")
    nflag = int(sum(bool(v) for v in quality["outlier"]))
    return (f"<p>{len(quality)} frames checked; {nflag} flagged as outliers within "
            "their group (robust z-score of median, robust sigma or fraction of pixels "
            "10 sigma above the median).</p>\n"
            f"<img src='{src}' alt='quality'>\n"
            + _table_html(quality, row_class=lambda r: "excl" if r["excluded"] else
                          ("flag" if r["outlier"] else "")))


def _lights_previews(lights, out: Path, failed: set, figdir: Path) -> str:
    """Preview cards of the calibrated lights, with the lights whose corners stand out."""
    import time

    start = time.perf_counter()
    cards, flagged = [], []
    for i, task in enumerate(lights):
        lpath = out / task.output
        if str(lpath) in failed or not lpath.exists():
            continue
        try:
            card, flag = _light_preview(lpath, task.name, figdir / "previews",
                                        f"light-{i:04d}-{_safe_name(task.name)}.png")
        except _DRAW_FAILURES as err:  # damaged since it was written
            cards.append(f"<div class='card'><p class='bad'>{_esc(task.name)}: cannot be "
                         f"drawn ({_esc(str(err))}).</p></div>")
            continue
        cards.append(card)
        if flag:
            flagged.append(task.name)
    log.info("previews of %d lights in %.2f s", len(cards), time.perf_counter() - start)
    if not cards:
        return ""
    text = ("<p>Previews (2x2 superpixels of a CFA mosaic, each colour stretched on its "
            "own) and statistics per channel, from a sample of rows of each light; "
            "corners/median is the median of the lowest and of the highest corner box "
            "over the light's median (its sky), which shows an over- or under-corrected "
            "corner.</p>")
    if flagged:
        text += (f"<p class='bad'>{len(flagged)} light(s) with a corner more than "
                 f"{100 * _CORNER_TOLERANCE:.0f}% off their median: "
                 + ", ".join(_esc(n) for n in flagged) + "</p>")
    return text + "\n<div class='cards'>\n" + "\n".join(cards) + "\n</div>"


def write_report(result, path: str | os.PathLike | None = None) -> Path:
    """Write the HTML report of a run.

    Parameters
    ----------
    result : calframe.pipeline.RunResult
        What the run did.
    path : path, optional
        Where to write (default ``OUTDIR/report.html``); figures go into a
        ``report`` folder beside it.

    Returns
    -------
    pathlib.Path
        The report's path.
    """
    from . import __version__

    plan = result.plan
    out = Path(plan.config.output)
    path = Path(path) if path is not None else out / "report.html"
    figdir = path.parent / "report"
    sections: list[str] = []
    state = "ok" if not result.failed else "bad"
    sections.append(
        f"<p class='{state}'>{len(result.made)} outputs made, {len(result.skipped)} up to "
        f"date, {len(result.failed)} failed; {len(result.problems)} problems. "
        f"calframe {_esc(__version__)}.</p>")

    sections.append("<h2>Problems</h2>")
    if result.problems:
        rows = "".join(f"<tr><td>{_esc(p.path)}</td><td>{_esc(p.what)}</td>"
                       f"<td>{_esc(p.fix)}</td></tr>" for p in result.problems)
        sections.append("<table><tr><th>file</th><th>what</th><th>how to fix</th></tr>"
                        f"{rows}</table>")
    else:
        sections.append("<p>None.</p>")
    skipped = plan.skipped_files() if hasattr(plan, "skipped_files") else []
    if skipped:
        rows = "".join(f"<tr><td>{_esc(p.path)}</td><td>{_esc(p.what)}</td>"
                       f"<td>{_esc(p.fix)}</td></tr>" for p in skipped)
        sections.append(f"<p>Files in the input folders not taken ({len(skipped)}):</p>"
                        "<table><tr><th>file</th><th>why</th><th>what to do</th></tr>"
                        f"{rows}</table>")
    if result.failed:
        sections.append("<p class='bad'>Outputs not made: "
                        + ", ".join(_esc(f) for f in result.failed) + "</p>")

    sections.append("<h2>Plan</h2>")
    sections.append(f"<pre>{_esc(plan.describe())}</pre>")
    sections.append("<h3>Groups</h3>")
    sections.append(_table_html(plan.inventory.groups, ["group", "name", "frametype",
                                                        "nframes", "exptime", "iso", "gain",
                                                        "temperature", "filter", "binning",
                                                        "shape", "bayerpat"]))

    sections.append("<h2>Masters</h2>")
    stacks = [t for t in plan.tasks if t.kind == "stack"]
    for task in [t for t in plan.tasks if t.kind not in ("light", "stack")] + stacks:
        if task is (stacks[0] if stacks else None):
            sections.append("<h2>Stacks</h2>")
        mpath = out / task.output
        if not mpath.exists():
            sections.append(f"<p class='bad'>{_esc(task.name)}: not made.</p>")
            continue
        try:
            sections.append(_master_section(mpath, task.name, task.kind, figdir))
        except _DRAW_FAILURES as err:  # a master damaged since it was made
            sections.append(f"<p class='bad'>{_esc(task.name)}: cannot be drawn "
                            f"({_esc(str(err))}).</p>")

    if plan.config.calibrate.distortion:
        sections.append("<h2>Distortion</h2>")
        sections.append(_distortion_section(plan.config.calibrate.distortion, figdir))

    sections.append("<h2>Frame quality</h2>")
    sections.append(_quality_section(result.quality, figdir))

    sections.append("<h2>Calibrated lights</h2>")
    lights = [t for t in plan.tasks if t.kind == "light"]
    failed = set(result.failed)
    rows = "".join(
        f"<tr><td>{_esc(t.inputs[0])}</td><td>{_esc(t.output)}</td>"
        f"<td>{'failed' if str(out / t.output) in failed else 'ok'}</td></tr>"
        for t in lights)
    sections.append(f"<table><tr><th>light</th><th>output</th><th>state</th></tr>{rows}"
                    "</table>")
    sections.append(_lights_previews(lights, out, failed, figdir))

    text = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>calframe run: {_esc(str(out))}</title>"
            f"<style>{_CSS}</style></head><body>\n"
            f"<h1>calframe run: {_esc(str(out))}</h1>\n"
            + "\n".join(sections) + "\n</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    log.info("report written to %s", path)
    return path
