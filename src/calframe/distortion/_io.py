"""Saving and loading distortion models (calframe MEF FITS, pyFAI NeXus detector)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table

from ..errors import CalframeError, CalframeWarning, FrameReadError, OutputExistsError
from ..provenance import Provenance, get_provenance, set_provenance

_PARAMS = "DISTPAR"
# version of the model file layout; files without one are version 1.  Version 2: the
# primary and DY images may be a coarse preview (DISTSTEP pixels apart), not full size
FORMAT_VERSION = 2
_READ_FIX = "give a model file written by 'calframe distortion fit' (DistortionModel.to_fits)"


# the dx/dy images of a compact model file have at most this many samples a side
_PREVIEW = 256


def write_model(model, path, *, overwrite=False, maps=False):
    from ..io import write_frame

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True (or --overwrite) to "
                                "replace it")
    ny, nx = model.shape
    valid = model.valid_mask_cached()
    if maps:
        step = 1
        dx, dy = model.maps()
    else:
        # the parameters define the model; the images are a coarse preview of the field
        step = max(1, int(np.ceil(max(ny, nx) / _PREVIEW)))
        gx, gy = grid_values(model, np.arange(0, nx, step, dtype=float),
                             np.arange(0, ny, step, dtype=float))
        dx, dy = gx.astype(np.float32), gy.astype(np.float32)
        valid = valid[::step, ::step]
    hdr = fits.Header()
    hdr["DISTKIND"] = ("dx", "primary: x displacement, ideal = observed + d")
    hdr["DISTSTEP"] = (step, "[pixel] dx/dy image sampling: [j, i] is at (i, j)*step")
    hdr["DISTRMS"] = (round(model.rms, 6), "[pixel] rms residual of the spots")
    hdr["DISTNSP"] = (len(model.spots), "spots indexed")
    hdr["DISTPIT"] = (round(model.meta["pitch_px"], 6), "[pixel] lattice pitch")
    hdr.add_history("calframe: geometric distortion model fitted on a grid target")
    if step > 1:
        hdr.add_history(f"calframe: dx/dy images sampled every {step} pixels; the model is "
                        "the parameters (DISTPAR, KNOTSX, KNOTSY, SPLCOEF)")
    ccd = CCDData(dx, unit="pixel", mask=~valid, meta=hdr)
    prov = Provenance()
    prov.extend(model.meta.get("provenance", Provenance()))
    prov.add_step("distortion_fit", rms_px=round(model.rms, 6),
                  nspots=int(model.meta["nspots"]), nindexed=int(model.meta["nindexed"]),
                  nrejected=int(model.meta["nrejected"]), smoothing=model.meta["lambda"],
                  settings=model.meta["settings"])
    set_provenance(ccd, prov)
    params = {"format": FORMAT_VERSION if step > 1 else 1, "shape": list(model.shape),
              "centre": model.centre.tolist(), "scale": model.scale, "k": model.k.tolist(),
              "T": model.T.tolist(),
              "meta": {k: v for k, v in model.meta.items() if k != "provenance"}}
    dyh = fits.ImageHDU(dy, name="DY")
    dyh.header["BUNIT"] = "pixel"
    spots = Table(model.spots, copy=True)
    spots.meta = {}
    ph = fits.BinTableHDU(spots, name="SPOTS")
    kh = fits.BinTableHDU(Table({"tx": [model.tx]}), name="KNOTSX")
    kyh = fits.BinTableHDU(Table({"ty": [model.ty]}), name="KNOTSY")
    ch = fits.ImageHDU(np.vstack([model.coef_x, model.coef_y]), name="SPLCOEF")
    par = fits.BinTableHDU(Table({"json": [json.dumps(params)]}), name=_PARAMS)
    # one atomic write: the checksums and calframe's digest cover every HDU
    return write_frame(ccd, path, overwrite=overwrite,
                       extra_hdus=(dyh, ph, kh, kyh, ch, par))


def read_model(cls, path):
    path_ = Path(path)
    if not path_.exists():
        raise FrameReadError(path, "no such file", "check the name of the model file")
    if path_.is_dir():
        raise FrameReadError(path, "is a folder, not a model file", _READ_FIX)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path)
            try:
                hdul.readall()
            except BaseException:
                hdul.close()
                raise
        with hdul:
            cut = [str(w.message) for w in caught if "truncated" in str(w.message)]
            if cut:
                raise FrameReadError(path, f"truncated ({cut[0]})",
                                     "copy the complete file, or fit the model again")
            if _PARAMS not in hdul:
                raise FrameReadError(path, "no DISTPAR extension: not a calframe distortion "
                                     "model", _READ_FIX)
            params = json.loads(hdul[_PARAMS].data["json"][0])
            version = params.get("format", 1)
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise FrameReadError(
                    path, f"model file format {version!r} is not one this calframe reads "
                    f"(up to {FORMAT_VERSION})", "update calframe, or fit the model again")
            tx = np.asarray(hdul["KNOTSX"].data["tx"][0], float)
            ty = np.asarray(hdul["KNOTSY"].data["ty"][0], float)
            coef = np.asarray(hdul["SPLCOEF"].data, float)
            spots = Table(hdul["SPOTS"].data)
            model = cls(params["shape"], params["centre"], params["scale"], params["k"], tx, ty,
                        coef[0], coef[1], params["T"], spots, params["meta"])
            if len(model.shape) != 2 or coef.shape[0] != 2:
                raise ValueError(f"shape {model.shape}, coefficients {coef.shape}")
    except FrameReadError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        # astropy reports truncated or foreign files as OSError, TypeError or
        # ValueError; missing extensions and parameters as KeyError
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise FrameReadError(path, f"not a readable calframe distortion model ({detail})",
                             _READ_FIX) from err
    prov = _read_model_provenance(path)
    model.meta["provenance"] = prov
    model.meta["source"] = str(path)
    return model


def _read_model_provenance(path) -> Provenance:
    """The provenance of a model file; an empty record, said in a warning, if unreadable.

    The model itself was read: a PROVENANCE table that cannot be decoded
    (damaged or edited cells) does not stop it from being used, but the
    frames it corrects lose the record of how it was made, and the warning
    says so.
    """
    from ..io import read_provenance
    from ..provenance import _READ_FAILURES

    try:
        return read_provenance(path)
    except (CalframeError, *_READ_FAILURES) as err:
        # ValueError includes bad JSON and percent-escapes; KeyError, IndexError and
        # TypeError a table whose columns are not the ones calframe writes
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        warnings.warn(f"{path}: its PROVENANCE table cannot be read ({detail}); the model "
                      "is used without the record of how it was made; fit it again to "
                      "restore it", CalframeWarning, stacklevel=3)
        return Provenance()


def grid_values(model, xs, ys):
    """Displacements ``(dx, dy)`` on the grid of columns ``xs`` x rows ``ys`` (compiled)."""
    from ._kernels import grid_ideal

    xs = np.ascontiguousarray(xs, float)
    ys = np.ascontiguousarray(ys, float)
    nb, na = model.ty.size - 4, model.tx.size - 4
    gx, gy = grid_ideal(xs, ys, float(model.centre[0]), float(model.centre[1]),
                        float(model.scale), np.asarray(model.k, float),
                        np.asarray(model.tx, float), np.asarray(model.ty, float),
                        np.ascontiguousarray(model.coef_x, float).reshape(nb, na),
                        np.ascontiguousarray(model.coef_y, float).reshape(nb, na),
                        np.asarray(model.T, float))
    gx -= xs[None, :]
    gy -= ys[:, None]
    return gx, gy


def corner_positions(model):
    """Ideal positions of the ``(ny + 1, nx + 1)`` pixel corners (compiled kernel)."""
    from ._kernels import grid_ideal

    ny, nx = model.shape
    nb, na = model.ty.size - 4, model.tx.size - 4
    return grid_ideal(np.arange(nx + 1, dtype=float) - 0.5, np.arange(ny + 1, dtype=float) - 0.5,
                      float(model.centre[0]), float(model.centre[1]), float(model.scale),
                      np.asarray(model.k, float), np.asarray(model.tx, float),
                      np.asarray(model.ty, float),
                      np.ascontiguousarray(model.coef_x, float).reshape(nb, na),
                      np.ascontiguousarray(model.coef_y, float).reshape(nb, na),
                      np.asarray(model.T, float))


# rows of pixels per compressed chunk of the pyFAI pixel corners, and the deflate level
_CHUNK_ROWS = 32
_LEVEL = 1


def _deflate_chunks(array, rows, level):
    """HDF5 shuffle + deflate of each ``rows``-row chunk of ``array``, in parallel threads.

    The bytes of a chunk as HDF5's shuffle and deflate filters store them
    (element bytes regrouped by significance, then deflate); an edge chunk is
    padded to the full chunk size, as HDF5 stores it.  The compressor
    releases the GIL, so the threads compress in parallel.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    try:  # ISA-L's deflate: the same format as zlib's, about 3 times faster
        from isal.isal_zlib import compress
    except ImportError:
        from zlib import compress
    size = array.dtype.itemsize
    full = (rows, *array.shape[1:])

    def one(start):
        block = array[start:start + rows]
        if block.shape[0] < rows:
            pad = np.zeros(full, array.dtype)
            pad[:block.shape[0]] = block
            block = pad
        raw = np.ascontiguousarray(block).view(np.uint8).reshape(-1, size)
        return start, compress(np.ascontiguousarray(raw.T).tobytes(), level)

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        yield from pool.map(one, range(0, array.shape[0], rows))


def _pyfai_detector_class():
    """``pyFAI.detectors.Detector``, imported without pyFAI's notices about optional parts.

    pyFAI logs at import that OpenCL and other accelerators it does not need
    here are missing; those lines are kept out of calframe's output.
    """
    import logging

    quiet = [logging.getLogger(name) for name in ("pyFAI", "silx")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        from pyFAI.detectors import Detector
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    return Detector


def write_pyfai(model, path, *, pixel_size=(1e-4, 1e-4), overwrite=False):
    """A pyFAI NeXus detector: the layout of ``Detector.save``, corners written fast.

    pyFAI writes the detector; the pixel corners, computed in a compiled
    kernel, are added as ``pixel_corners`` with the shuffle and deflate
    filters (deflate level 1, chunks compressed in parallel threads and
    written directly) instead of pyFAI's single-threaded level 9.  The file
    is written under a temporary name and renamed.
    """
    import h5py

    from .._atomic import temporary_path
    from ._kernels import fill_corners

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True to replace it")
    ny, nx = model.shape
    px, py = (float(v) for v in pixel_size)
    gx, gy = corner_positions(model)
    corners = np.empty((ny, nx, 4, 3), np.float32)
    fill_corners(gx, gy, px, py, corners)
    del gx, gy
    Detector = _pyfai_detector_class()
    det = Detector(pixel1=py, pixel2=px, max_shape=(ny, nx))
    det.mask = (~model.valid_mask_cached()).astype(np.int8)
    tmp = temporary_path(path)
    try:
        det.save(str(tmp))  # a uniform detector: everything but the corners
        with h5py.File(tmp, "r+") as h5:
            found = []
            h5.visititems(lambda name, obj: found.append(name)
                          if obj.attrs.get("NX_class") in ("NXdetector", b"NXdetector")
                          else None)
            grp = h5[found[0]]
            # what Detector.set_pixel_corners + save record for a distorted flat detector
            for key, value in (("IS_CONTIGUOUS", False), ("IS_FLAT", True)):
                if key in grp:
                    del grp[key]
                grp[key] = value
            rows = min(_CHUNK_ROWS, ny)
            dset = grp.create_dataset("pixel_corners", shape=corners.shape, dtype=np.float32,
                                      chunks=(rows, *corners.shape[1:]), shuffle=True,
                                      compression="gzip", compression_opts=_LEVEL)
            dset.attrs["interpretation"] = "vertex"
            for start, data in _deflate_chunks(corners, rows, _LEVEL):
                dset.id.write_direct_chunk((start, 0, 0, 0), data)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


__all__ = ["corner_positions", "get_provenance", "grid_values", "read_model", "write_model",
           "write_pyfai"]
