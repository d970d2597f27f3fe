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
# version of the model file layout; files without one are version 1
FORMAT_VERSION = 1
_READ_FIX = "give a model file written by 'calframe distortion fit' (DistortionModel.to_fits)"


def write_model(model, path, *, overwrite=False):
    from ..io import write_frame

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True (or --overwrite) to "
                                "replace it")
    dx, dy = model.maps()
    valid = model.valid_mask_cached()
    hdr = fits.Header()
    hdr["DISTKIND"] = ("dx", "primary: x displacement, ideal = observed + d")
    hdr["DISTRMS"] = (round(model.rms, 6), "[pixel] rms residual of the spots")
    hdr["DISTNSP"] = (len(model.spots), "spots indexed")
    hdr["DISTPIT"] = (round(model.meta["pitch_px"], 6), "[pixel] lattice pitch")
    hdr.add_history("calframe: geometric distortion model fitted on a grid target")
    ccd = CCDData(dx, unit="pixel", mask=~valid, meta=hdr)
    prov = Provenance()
    prov.extend(model.meta.get("provenance", Provenance()))
    prov.add_step("distortion_fit", rms_px=round(model.rms, 6),
                  nspots=int(model.meta["nspots"]), nindexed=int(model.meta["nindexed"]),
                  nrejected=int(model.meta["nrejected"]), smoothing=model.meta["lambda"],
                  settings=model.meta["settings"])
    set_provenance(ccd, prov)
    params = {"format": FORMAT_VERSION, "shape": list(model.shape),
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


def write_pyfai(model, path, *, pixel_size=(1e-4, 1e-4), overwrite=False):
    from pyFAI.detectors import Detector

    path = Path(path)
    if path.exists():
        if not overwrite:
            raise OutputExistsError(f"{path}: exists; pass overwrite=True to replace it")
        path.unlink()
    ny, nx = model.shape
    px, py = (float(v) for v in pixel_size)
    # corners of pixel (r, c) at calframe positions c +- 0.5, r +- 0.5; pyFAI puts the
    # corner of pixel 0 at 0, so pyFAI position = (calframe position + 0.5) * size
    cx = np.arange(nx + 1, dtype=float) - 0.5
    cy = np.arange(ny + 1, dtype=float) - 0.5
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    dx, dy = model(xx, yy)
    ux = (xx + dx + 0.5) * px
    uy = (yy + dy + 0.5) * py
    corners = np.zeros((ny, nx, 4, 3), np.float32)
    # pyFAI corner order A (r, c), B (r+1, c), C (r+1, c+1), D (r, c+1); (z, y, x)
    for n, (a, b) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
        corners[:, :, n, 1] = uy[a:a + ny, b:b + nx]
        corners[:, :, n, 2] = ux[a:a + ny, b:b + nx]
    det = Detector(pixel1=py, pixel2=px, max_shape=(ny, nx))
    det.set_pixel_corners(corners)
    det.mask = (~model.valid_mask_cached()).astype(np.int8)
    det.save(str(path))
    return path


__all__ = ["get_provenance", "read_model", "write_model", "write_pyfai"]
