"""Apply a distortion model to a frame."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ..errors import IncompatibleFramesError, InvalidSettingsError
from ..provenance import InputRecord, Provenance, get_provenance, set_provenance
from ._channel import cfa_pattern, select_channel
from ._kernels import resample_bilinear

__all__ = ["correct_distortion"]

_METHODS = ("flux-conserving", "interpolate")


def _jacobian(ix, iy):
    """|det d(observed)/d(ideal)| from the inverse displacement maps."""
    dxx = np.gradient(ix, axis=1)
    dxy = np.gradient(ix, axis=0)
    dyx = np.gradient(iy, axis=1)
    dyy = np.gradient(iy, axis=0)
    return np.abs((1 + dxx) * (1 + dyy) - dxy * dyx).astype(np.float32)


def _correct_mosaic(data, var, mask, valid, ix, iy, jac, use_var, flux):
    """Correct a CFA mosaic, keeping it a mosaic: each of the four site classes apart.

    The sites ``(oy + 2m, ox + 2n)`` of one class form a half-resolution
    image; its output pixel ``(m, n)`` takes the value of that image at the
    observed position of the ideal point ``(ox + 2n, oy + 2m)``, i.e. the
    full-resolution inverse displacement halved.  Colours are never mixed.
    """
    out = np.empty(data.shape, np.float32)
    ovar = np.empty(data.shape, np.float32) if use_var else None
    omask = np.empty(data.shape, bool)
    for oy in (0, 1):
        for ox in (0, 1):
            sl = (slice(oy, None, 2), slice(ox, None, 2))
            c = np.ascontiguousarray
            o, v, m = resample_bilinear(
                c(data[sl]), c(var[sl]) if use_var else var, c(mask[sl]), c(valid[sl]),
                c(0.5 * ix[sl]), c(0.5 * iy[sl]), c(jac[sl]) if flux else jac, use_var, flux)
            out[sl], omask[sl] = o, m
            if use_var:
                ovar[sl] = v
    return out, ovar, omask


def correct_distortion(ccd, model, *, method: str = "flux-conserving",
                       channel: str | None = None) -> CCDData:
    """Resample a frame onto the ideal (undistorted) pixel grid.

    Each output pixel at ideal position ``(X, Y)`` takes the bilinearly
    interpolated value at the observed position ``(X, Y) + model.inverse(X,
    Y)``.  With ``method="flux-conserving"`` (the default) the value is
    multiplied by the Jacobian determinant of the mapping (the area of the
    output pixel seen on the detector), so that the total flux of a source
    is conserved; ``"interpolate"`` keeps surface brightness instead.  The
    variance is propagated with the squared interpolation weights (the
    correlation that resampling introduces between neighbouring output
    pixels is not recorded).  Output pixels whose source lies outside the
    grid's hull, outside the frame, or on a masked pixel are masked.

    A colour frame, a ``(3, ny, nx)`` cube, is corrected plane by plane with
    the same model (fitted on a grey or luminance image of the same
    detector), unless ``channel`` picks one plane.  A CFA mosaic (2-D, with
    ``BAYERPAT`` in its header) stays a mosaic: each colour's sites are
    resampled from the sites of the same colour, through the model at the
    mosaic's full resolution, so it can be demosaiced afterwards.

    Parameters
    ----------
    ccd : CCDData or array-like
        The frame: ``(ny, nx)`` of the model's shape, a ``(3, ny, nx)``
        colour cube, or a CFA mosaic.
    model : DistortionModel
        The fitted distortion.
    method : {"flux-conserving", "interpolate"}
        See above.
    channel : {"luminance", "r", "g", "b"}, optional
        Correct only this plane of a colour cube (``"luminance"``: the Rec.
        709 weighted sum); the default corrects every plane.

    Returns
    -------
    CCDData
        float32 data, the unit, uncertainty (when the input has one) and mask;
        a cube for a cube unless ``channel`` is given.

    Raises
    ------
    InvalidSettingsError
        For an unknown method or channel, or a frame that is neither 2-D nor
        a colour cube.
    IncompatibleFramesError
        For a frame whose image shape differs from the model's.

    Examples
    --------
    >>> import numpy as np
    >>> from calframe.datasets._grid import make_grid_image
    >>> from calframe.distortion import DistortionModel
    >>> img, _ = make_grid_image((160, 160), pitch=20, seed=3)
    >>> model = DistortionModel.fit(img)
    >>> out = correct_distortion(img, model)
    >>> out.shape, bool(out.mask.any() and not out.mask.all())
    ((160, 160), True)
    """
    if method not in _METHODS:
        raise InvalidSettingsError(f"method must be one of {_METHODS}, got {method!r}")
    ccd = select_channel(ccd, channel)
    if ccd.shape[-2:] != model.shape:
        raise IncompatibleFramesError(
            f"frame shape {ccd.shape} differs from the distortion model's {model.shape}; fit "
            "a model on a grid image of this detector (same size and binning)")
    planes = ccd.shape[:-2]
    data = np.ascontiguousarray(ccd.data, dtype=np.float32)
    mask = (np.zeros(data.shape, bool) if ccd.mask is None
            else np.ascontiguousarray(ccd.mask, dtype=bool))
    mask = mask | ~np.isfinite(data)
    use_var = ccd.uncertainty is not None
    if use_var:
        sd = ccd.uncertainty.represent_as(StdDevUncertainty).array
        var = np.ascontiguousarray(np.asarray(sd, np.float32) ** 2)
    else:
        var = np.zeros((1, 1), np.float32)
    ix, iy = model.inverse_maps()
    flux = method == "flux-conserving"
    cache = model.__dict__.setdefault("_jac", None)
    if flux and cache is None:
        cache = model._jac = _jacobian(ix, iy)
    jac = cache if flux else np.ones((1, 1), np.float32)
    valid = np.ascontiguousarray(model.valid_mask_cached())
    pattern = cfa_pattern(ccd) if not planes else None
    if pattern is not None:
        out, ovar, omask = _correct_mosaic(data, var, mask, valid, ix, iy, jac, use_var, flux)
    elif not planes:
        out, ovar, omask = resample_bilinear(data, var, mask, valid, ix, iy, jac, use_var, flux)
    else:
        # a colour cube: the same correction for each plane
        out = np.empty(data.shape, np.float32)
        ovar = np.empty(data.shape, np.float32) if use_var else None
        omask = np.empty(data.shape, bool)
        for k in range(data.shape[0]):
            o, v, m = resample_bilinear(data[k], var[k] if use_var else var, mask[k], valid,
                                        ix, iy, jac, use_var, flux)
            out[k], omask[k] = o, m
            if use_var:
                ovar[k] = v
    meta = fits.Header(ccd.meta) if not isinstance(ccd.meta, fits.Header) else ccd.meta.copy()
    meta["DISTCORR"] = (method, "geometric distortion corrected")
    how = "bilinear" if pattern is None else "bilinear within each CFA colour, mosaic kept"
    meta.add_history(f"calframe: geometric distortion corrected ({method}, {how})")
    result = CCDData(out, unit=ccd.unit, mask=omask, meta=meta,
                     uncertainty=StdDevUncertainty(np.sqrt(ovar)) if use_var else None)
    prov = Provenance()
    prov.extend(get_provenance(ccd))
    prov.extend(model.meta.get("provenance", Provenance()))
    source = model.meta.get("source")
    if source:
        prov.add_input(InputRecord.from_file(source, role="distortion model"))
    prov.add_step("correct_distortion", method=method, model=model.meta.get("source", ""),
                  rms_px=round(model.rms, 6))
    set_provenance(result, prov)
    return result
