"""The public :func:`combine`: parse frames, plan row blocks, run kernels, build the result."""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u

from .._collection import collection_paths
from ..errors import IncompatibleFramesError, InvalidSettingsError
from ..provenance import InputRecord, Provenance, set_provenance, sha256_file
from . import _efficiency
from ._codes import METHOD_CODES, NPARAMS, REJ_GESD, REJ_NONE, REJECTION_CODES
from ._dask import run_dask
from ._rejection import Rejection, as_rejection, gesd_critical_values
from ._scaling import Scale, as_scale, frame_scales, frame_weights

# astropy.nddata, astropy.io.fits and the compiled kernels (numba) take most of a
# second to import (measured: about 0.6 s, 0.1 s and 0.5 s on top of this module):
# combine() imports them only after it has set the hashing of its input files
# going, so that the two overlap, and importing calframe does not pay for them
if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ._sources import FrameSource

__all__ = ["combine", "parse_memory"]

log = logging.getLogger(__name__)

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
          "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
#: bytes of one row block's values (per worker) that keeps a block in cache
_BLOCK_TARGET = 6 * 1024**2


def parse_memory(value) -> int:
    """Bytes from ``"1GiB"``, ``"500 MB"``, ``2e9`` ...

    Examples
    --------
    >>> parse_memory("1GiB"), parse_memory("500MB"), parse_memory(4096)
    (1073741824, 500000000, 4096)
    """
    if isinstance(value, bool):
        raise InvalidSettingsError(f"memory_limit={value!r}: give bytes or e.g. '1GiB'")
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise InvalidSettingsError(
                f"memory_limit={value!r}: give bytes or a size such as '512MiB' or '2GB'")
        number = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not number > 0:
        raise InvalidSettingsError(f"memory_limit={value!r}: must be > 0")
    return int(number)


@dataclass
class Plan:
    """Everything a row block needs: sources and kernel arguments (picklable)."""

    sources: list[FrameSource]
    shape: tuple[int, int]
    has_unc: bool
    mul: np.ndarray
    add: np.ndarray
    fweight: np.ndarray
    ivar: bool
    method: int
    rej: int
    params: np.ndarray
    lam: np.ndarray
    pairs: np.ndarray
    medfac: np.ndarray
    c4: np.ndarray
    quant2: float
    nframes: int
    rows: int
    simple: bool = False
    _local: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_local"] = None
        return state

    def buffers(self):
        """Row-block buffers of the calling thread (allocated once per thread)."""
        if self._local is None:
            self._local = threading.local()
        loc = self._local
        if getattr(loc, "buf", None) is None:
            n = len(self.sources)
            nx = self.shape[1]
            loc.buf = np.empty((n, self.rows, nx), np.float32)
            loc.ubuf = np.empty((n, self.rows, nx) if self.has_unc else (n, 1, 1), np.float32)
        return loc.buf, loc.ubuf

    def run_block(self, r0: int, r1: int, out_data, out_unc, out_n, out_rej) -> None:
        """Read rows ``r0:r1`` of every frame and combine them into the ``out_*`` rows."""
        # deferred: numba and the compiled kernels take about 0.5 s to import
        from ._kernels import combine_block

        buf, ubuf = self.buffers()
        for i, src in enumerate(self.sources):
            src.read_rows(r0, r1, buf[i], ubuf[i] if self.has_unc else None)
        combine_block(buf, ubuf, r1 - r0, self.has_unc, self.mul, self.add, self.fweight,
                      self.ivar, self.method, self.rej, self.params, self.lam, self.pairs,
                      self.medfac, self.c4, self.quant2, float(self.nframes), self.simple,
                      out_data, out_unc, out_n, out_rej)

    def blocks(self) -> list[tuple[int, int]]:
        ny = self.shape[0]
        return [(r0, min(r0 + self.rows, ny)) for r0 in range(0, ny, self.rows)]


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _common_unit(sources) -> u.UnitBase:
    units = {src.unit for src in sources if src.unit is not None}
    if len(units) > 1:
        found = ", ".join(sorted(str(x) for x in units))
        raise IncompatibleFramesError(
            f"frames have different units ({found}); convert them to one unit first "
            "(e.g. apply the gain to all or none)")
    return units.pop() if units else u.adu


def _check_shapes(sources) -> tuple[int, int]:
    shape = sources[0].shape
    for src in sources[1:]:
        if src.shape != shape:
            raise IncompatibleFramesError(
                f"{src.label} has shape {src.shape} but {sources[0].label} has {shape}; "
                "all frames of a combine must have the same shape (trim or bin them first)")
    return shape


def _rows_per_block(nframes, nx, has_unc, limit, out_bytes, workers) -> int:
    per_row = nframes * nx * 4 * (2 if has_unc else 1)
    budget = (limit - out_bytes) // max(1, 2 * workers)
    target = min(_BLOCK_TARGET, budget) if budget > 0 else 0
    rows = max(1, target // per_row)
    if per_row > max(budget, 0):
        log.warning("memory_limit leaves room for less than one row block per worker; "
                    "using one row (%d bytes) per block", per_row)
    return int(rows)


def _rounding_step2(sources, mul) -> float:
    """Mean square of the frames' rounding steps after scaling (0.0: continuous data)."""
    steps = np.array([src.quantum() for src in sources]) * np.abs(mul)
    return float(np.mean(steps**2))


def _describe(value) -> str:
    return value.describe() if isinstance(value, Rejection) else str(value)


def combine(frames, *, method: str = "median", rejection: Rejection | None = None,
            scale=None, weights=None, memory_limit: str | int = "1GiB",
            workers: int | None = None, scheduler=None) -> CCDData:
    """Combine frames pixel by pixel, with rejection, scaling, weights and uncertainty.

    Frames are streamed in row blocks: never more than one block of every
    frame is in memory, and FITS files are read straight from disk with
    their integer scaling applied in the compiled kernel.

    Parameters
    ----------
    frames : list or iterator of path, CCDData or ndarray, or ImageFileCollection
        The frames, all of one shape and unit.  Paths may be anything
        :func:`calframe.read_frame` reads; uncompressed FITS is read by
        offset, other formats are decoded once into a temporary cache.
        Masked and non-finite values are left out of every statistic.
    method : {"median", "mean", "sum"}
        How the surviving values of a pixel are combined.  ``"sum"`` is the
        mean times the number of frames (so a masked or rejected value does
        not leave a hole; equal to a plain sum when nothing is left out).
    rejection : SigmaClip, WinsorizedSigmaClip, LinearFitClip, PercentileClip, MinMaxClip, GESD
        Outlier rejection applied per pixel before combining (None: none).  An
        :class:`astropy.stats.SigmaClip` is taken too (see
        :meth:`SigmaClip.from_astropy`).
    scale : None, "median", "mean", array, callable or Scale
        Normalisation of each frame before rejection.  Strings, arrays and
        callables are multiplicative; use ``Scale(..., mode="additive")`` for
        offsets.  See :class:`Scale`.
    weights : None, array, "exposure" or "inverse-variance"
        Weights of the frames in a mean or sum (not allowed with a median).
        ``"inverse-variance"`` weights every value by 1/sigma^2 of its
        input uncertainty.  Frames of weight 0 are left out.
    memory_limit : str or int
        Memory the engine may use for its row blocks and the output
        (``"1GiB"``, ``"500MB"`` or bytes).
    workers : int, optional
        Threads for the local back end (default: the cores available).
    scheduler : dask.distributed.Client or str, optional
        Run the row blocks as Dask tasks on this client (or scheduler
        address); the result is identical to the local one.

    Returns
    -------
    astropy.nddata.CCDData
        ``data`` (float32; NaN where nothing survived), ``uncertainty``
        (:class:`~astropy.nddata.StdDevUncertainty`: propagated from the
        inputs' uncertainties when every frame has one, else estimated from
        the scatter of the surviving values, see the combining guide),
        ``mask`` (True where nothing survived), ``meta`` (the first frame's
        header with NCOMBINE, COMBMETH, COMBREJ, COMBSCAL, COMBWGHT and
        HISTORY), and attributes ``ncombine`` and ``rejected`` (int16 per
        pixel: values combined, values rejected).  Its provenance lists every
        input file and one ``combine`` step.

    Raises
    ------
    NoFramesError
        ``frames`` is empty.
    IncompatibleFramesError
        Frames differ in shape or unit, or are not 2-D.
    InvalidSettingsError
        An unknown method, bad rejection/scale/weights settings.
    MissingMetadataError
        ``weights="exposure"`` without EXPTIME, ``"inverse-variance"`` without
        uncertainties.

    Examples
    --------
    >>> import numpy as np
    >>> from calframe import combine, SigmaClip
    >>> rng = np.random.default_rng(0)
    >>> frames = [rng.normal(100.0, 5.0, (32, 32)) for _ in range(20)]
    >>> frames[4][10, 10] = 10000.0   # a cosmic ray in one frame
    >>> out = combine(frames, method="mean", rejection=SigmaClip(low=3, high=3))
    >>> int(out.rejected[10, 10]), int(out.ncombine[10, 10]), out.meta["NCOMBINE"]
    (1, 19, 20)
    >>> bool(abs(out.data[10, 10] - 100) < 10)
    True
    """
    frames = collection_paths(frames, "combine")
    rejection = as_rejection(rejection)   # astropy's SigmaClip converted, or refused
    _check_method(method, rejection)
    limit = parse_memory(memory_limit)
    workers = _check_workers(workers)
    scale_obj = as_scale(scale)

    tmp: list[str] = []

    def folder():
        if not tmp:
            tmp.append(tempfile.mkdtemp(prefix="calframe-combine-"))
        return tmp[0]

    sources: list[FrameSource] = []
    # hash the input files for the provenance while the modules and kernels load and
    # run: hashlib releases the GIL, so this fills the single-threaded parts' gaps.
    # One thread fewer than the workers leaves a core to this thread's imports.
    hasher = ThreadPoolExecutor(max_workers=max(1, workers - 1),
                                thread_name_prefix="calframe-hash")
    try:
        hashes = _hash_listed_files(frames, hasher)
        # deferred (see the top of this module): numba and the compiled kernels
        # take about 0.5 s to import, which overlaps the hashing here
        from ._kernels import sorting_network
        from ._sources import parse_frames

        sources = parse_frames(frames, folder)
        for src in sources:
            if src.path is not None and src.path not in hashes:
                hashes[src.path] = hasher.submit(sha256_file, src.path)
        shape = _check_shapes(sources)
        unit = _common_unit(sources)
        fweight, ivar, weights_json = frame_weights(weights, sources, method)
        all_sources = sources
        sources, fweight, scale_obj = _drop_unweighted(sources, fweight, scale_obj)
        mul, add = frame_scales(scale_obj, sources)
        has_unc = all(s.has_unc for s in sources)
        if not has_unc and any(s.has_unc for s in sources):
            log.warning("only some frames carry an uncertainty; the combined uncertainty is "
                        "estimated from the scatter of the frames instead")
        nf = len(sources)
        if nf > np.iinfo(np.int16).max:
            raise InvalidSettingsError(
                f"{nf} frames: the per-pixel counts are int16, so at most 32767 frames can "
                "be combined at once; combine in groups and combine the results")
        ny, nx = shape
        rej_code, params, lam = _kernel_rejection(rejection, nf)
        medfac, c4 = _efficiency.tables(nf)
        quant2 = _rounding_step2(sources, mul) if method == "median" else 0.0
        out_bytes = ny * nx * 12
        rows = _rows_per_block(nf, nx, has_unc, limit, out_bytes, workers)
        plan = Plan(sources=sources, shape=shape, has_unc=has_unc, mul=mul, add=add,
                    fweight=fweight, ivar=ivar, method=METHOD_CODES[method], rej=rej_code,
                    params=params, lam=lam, pairs=sorting_network(nf),
                    medfac=np.asarray(medfac), c4=np.asarray(c4), quant2=quant2, nframes=nf,
                    rows=rows,
                    simple=not has_unc and not ivar and bool(np.all(fweight == fweight[0])))
        out_data = np.empty(shape, np.float32)
        out_unc = np.empty(shape, np.float32)
        out_n = np.empty(shape, np.int16)
        out_rej = np.empty(shape, np.int16)
        log.info("combining %d frames of %dx%d (%s, rejection %s) in blocks of %d rows",
                 nf, ny, nx, method, _describe(rejection), rows)
        if scheduler is None:
            _run_local(plan, workers, out_data, out_unc, out_n, out_rej)
        else:
            run_dask(plan, scheduler, out_data, out_unc, out_n, out_rej)
        return _result(all_sources, sources, unit, method, rejection, scale_obj, weights_json,
                       memory_limit, hashes, out_data, out_unc, out_n, out_rej)
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)
        for src in sources:
            src.close()
        if tmp:
            shutil.rmtree(tmp[0], ignore_errors=True)


def _check_method(method, rejection) -> None:
    if method not in METHOD_CODES:
        raise InvalidSettingsError(
            f"method={method!r}: use 'median', 'mean' or 'sum'")
    if rejection is not None and not isinstance(rejection, Rejection):
        raise InvalidSettingsError(
            f"rejection={rejection!r}: pass a settings object such as SigmaClip(low=3, high=3) "
            "or None")


def _check_workers(workers) -> int:
    """The number of worker threads: ``workers``, or the cores available for None."""
    if workers is None:
        workers = _default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise InvalidSettingsError(f"workers={workers!r}: must be a whole number >= 1")
    return workers


def _drop_unweighted(sources, fweight, scale_obj: Scale | None):
    """Leave out the frames of weight 0 (and their values of a per-frame scale)."""
    keep = fweight > 0
    if np.all(keep):
        return sources, fweight, scale_obj
    if scale_obj is not None and isinstance(scale_obj.statistic, tuple):
        if len(scale_obj.statistic) != len(sources):
            raise InvalidSettingsError(
                f"scale has {len(scale_obj.statistic)} values for "
                f"{len(sources)} frames; give one per frame")
        scale_obj = Scale(np.asarray(scale_obj.statistic)[keep], mode=scale_obj.mode)
    return [s for s, k in zip(sources, keep, strict=True) if k], fweight[keep], scale_obj


def _kernel_rejection(rejection: Rejection | None, nf: int):
    """The kernels' rejection code, parameter array and GESD critical values."""
    if rejection is None:
        return REJ_NONE, np.zeros(NPARAMS), np.zeros((1, 1))
    code = REJECTION_CODES[rejection._code]
    if code == REJ_GESD:
        lam = gesd_critical_values(nf, rejection.significance)
    else:
        lam = np.zeros((1, 1))
    return code, rejection._params(), lam


def _hash_listed_files(frames, hasher) -> dict:
    """Start hashing the existing files named in a list or tuple of frames: {path: future}.

    Iterators are left alone (they are read once, by the parser); the parser
    reports paths that are not files.
    """
    hashes: dict = {}
    if isinstance(frames, list | tuple):
        for item in frames:
            if isinstance(item, str | os.PathLike):
                path = str(os.fspath(item))
                if path not in hashes and os.path.isfile(path):
                    hashes[path] = hasher.submit(sha256_file, path)
    return hashes


def _run_local(plan: Plan, workers: int, out_data, out_unc, out_n, out_rej) -> None:
    """Run the row blocks on ``workers`` threads (the kernels release the GIL).

    The first block runs on this thread: it loads the compiled kernels, which
    holds the interpreter.  While the others run, astropy.nddata (needed
    only for the result) is imported on a thread of its own, in the time
    the kernels leave the interpreter free.
    """
    blocks = plan.blocks()

    def work(block):
        r0, r1 = block
        plan.run_block(r0, r1, out_data[r0:r1], out_unc[r0:r1], out_n[r0:r1],
                       out_rej[r0:r1])

    work(blocks[0])
    importer = None
    if "astropy.nddata" not in sys.modules:
        importer = threading.Thread(target=importlib.import_module, args=("astropy.nddata",),
                                    name="calframe-import", daemon=True)
        importer.start()
    try:
        if workers == 1 or len(blocks) <= 2:
            for block in blocks[1:]:
                work(block)
            return
        with ThreadPoolExecutor(max_workers=workers,
                                thread_name_prefix="calframe-combine") as ex:
            for _ in ex.map(work, blocks[1:]):
                pass
    finally:
        if importer is not None:
            importer.join()


def _scale_card(scale_obj: Scale | None) -> str:
    if scale_obj is None:
        return "none"
    stat = scale_obj.statistic
    kind = stat if isinstance(stat, str) else "array" if isinstance(stat, tuple) else "callable"
    return f"{scale_obj.mode}:{kind}"


def _result(all_sources, sources, unit, method, rejection, scale_obj: Scale | None,
            weights_json, memory_limit, hashes, out_data, out_unc, out_n,
            out_rej) -> CCDData:
    # deferred (see the top of this module): astropy.io.fits and astropy.nddata take
    # about 0.1 s and 0.6 s to import; _run_local imports the latter while the kernels run
    from astropy.io import fits
    from astropy.nddata import CCDData, StdDevUncertainty

    mask = out_n == 0
    header = fits.Header(sources[0].header, copy=True) if sources[0].header is not None \
        else fits.Header()
    for key in ("NCOMBINE", "COMBMETH", "COMBREJ", "COMBSCAL", "COMBWGHT"):
        header.remove(key, ignore_missing=True, remove_all=True)
    header["NCOMBINE"] = (len(sources), "number of frames combined")
    header["COMBMETH"] = (method, "combine method")
    header["COMBREJ"] = (type(rejection).__name__ if rejection is not None else "none",
                         "rejection algorithm")
    header["COMBSCAL"] = (_scale_card(scale_obj), "scaling of the frames")
    header["COMBWGHT"] = ("none" if weights_json is None else
                          weights_json if isinstance(weights_json, str) else "array",
                          "weights of the frames")
    if rejection is not None:
        header.add_history(f"combine rejection: {rejection.describe()}")
    nrej = int(out_rej.sum(dtype=np.int64))
    header.add_history(f"combined {len(sources)} frames by {method}; {nrej} values rejected, "
                       f"{int(mask.sum())} pixels with no value")
    out = CCDData(out_data, unit=unit, uncertainty=StdDevUncertainty(out_unc, copy=False),
                  mask=mask, meta=header, copy=False)
    out.ncombine = out_n
    out.rejected = out_rej

    prov = Provenance()

    for src in all_sources:
        if src.path is not None:
            prov.add_input(InputRecord.from_file(
                src.path, role=src.frametype or "input", frametype=src.frametype,
                exptime=src.exptime, date_obs=str(src.header.get("DATE-OBS", "")),
                shape=src.shape, sha256=hashes[src.path].result()))
        elif src.provenance is not None:
            prov.extend(src.provenance)
    labels = [src.path if src.path is not None else src.label for src in sources]
    prov.add_step(
        "combine", method=method,
        rejection=None if rejection is None else rejection.to_dict(),
        scale=None if scale_obj is None else scale_obj.to_dict(),
        weights=weights_json, nframes=len(sources), frames=labels,
        memory_limit=memory_limit if isinstance(memory_limit, str) else int(memory_limit),
        uncertainty="propagated" if all(s.has_unc for s in sources) else "scatter")
    set_provenance(out, prov)
    return out
