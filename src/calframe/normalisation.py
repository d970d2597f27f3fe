"""Beamline flat-field normalisation: the exposure-normalised transmission, and dark matching.

A projection ``data`` and an open-beam ``flat`` taken at different exposures,
each with a dark of its own exposure, give the transmission

    T = ((data - dark_d) / t_d) / ((flat - dark_f) / t_f)

with the uncertainty of every term propagated (first order, independent
frames), the masks ORed and the photon noise counted above each dark (the
dark is the detector's offset: see :func:`calframe.calibrate`).
:func:`select_dark` finds, among many darks, the one of a frame's exposure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData

from ._arith import Plane, divide, multiply
from ._calutil import header_of, plane_to_ccd
from .errors import IncompatibleFramesError, MissingMetadataError
from .provenance import get_provenance, set_provenance

__all__ = ["select_dark", "transmission"]

log = logging.getLogger(__name__)

#: Largest relative difference of exposure between a frame and a matching dark.
EXPOSURE_TOLERANCE = 0.01


def _describe(item):
    """Exposure, shape, temperature and a name of a CCDData or a file (header only)."""
    from .io import read_header

    if isinstance(item, CCDData):
        from .contract import file_of

        meta, shape = item.meta, item.shape
        name = file_of(item) or "a dark in memory"
    elif isinstance(item, str | os.PathLike):
        info = read_header(item)
        meta, shape, name = info.header, info.shape, os.fsdecode(item)
    else:
        raise TypeError(f"select_dark: expected CCDData or paths, got {type(item).__name__}")
    exptime = meta.get("EXPTIME")
    temp = meta.get("CCD-TEMP")
    return (None if exptime is None else float(exptime), tuple(shape),
            None if temp is None else float(temp), name)


def select_dark(frame, darks: Iterable, *, tolerance: float = EXPOSURE_TOLERANCE):
    """The dark of ``darks`` that matches ``frame``'s exposure (and shape).

    Parameters
    ----------
    frame : CCDData or path
        The frame to calibrate.
    darks : iterable of CCDData or path
        Candidate darks (files are read for their header only).
    tolerance : float
        Largest relative difference of exposure accepted (1% by default).

    Returns
    -------
    CCDData or path
        The matching dark, as given.  Among several, the one closest in
        exposure, then in temperature (CCD-TEMP).

    Raises
    ------
    MissingMetadataError
        The frame has no exposure time.
    IncompatibleFramesError
        No dark of the frame's shape and exposure; the message lists the
        exposures there are.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> darks = [CCDData(np.zeros((2, 2)), unit="adu", meta={"EXPTIME": t})
    ...          for t in (0.1, 0.5, 2.0)]
    >>> light = CCDData(np.ones((2, 2)), unit="adu", meta={"EXPTIME": 0.5})
    >>> select_dark(light, darks).meta["EXPTIME"]
    0.5
    """
    t_frame, shape, temp, name = _describe(frame)
    if t_frame is None:
        raise MissingMetadataError(f"{name}: no exposure time (EXPTIME), so no dark can be "
                                   "matched to it; set EXPTIME in seconds")
    candidates = []
    seen = []
    for dark in darks:
        t_dark, d_shape, d_temp, d_name = _describe(dark)
        seen.append(f"{t_dark:g} s" if t_dark is not None else f"{d_name} (no EXPTIME)")
        if t_dark is None or d_shape != shape:
            continue
        diff = abs(t_dark - t_frame) / max(t_frame, 1e-12)
        if diff <= tolerance:
            dtemp = abs(d_temp - temp) if d_temp is not None and temp is not None else 0.0
            candidates.append((diff, dtemp, len(candidates), dark))
    if not candidates:
        there = ", ".join(dict.fromkeys(seen)) or "none"
        raise IncompatibleFramesError(
            f"{name}: no dark of {t_frame:g} s and shape {shape} among the darks given "
            f"(exposures: {there}); take darks at the frame's exposure, or give a master "
            "bias and a master dark made with it, which can be scaled")
    return min(candidates, key=lambda c: c[:3])[3]


def _rate(frame, dark, *, role: str, dark_scale):
    """``(frame - dark) / t`` as a Plane, with the calibrated frame (for its header)."""
    from .calibration import calibrate
    from .io import read_frame

    ccd = frame if isinstance(frame, CCDData) else read_frame(frame)
    t = ccd.meta.get("EXPTIME")
    if t is None or not float(t) > 0:
        raise MissingMetadataError(f"{role}: no positive exposure time (EXPTIME = {t!r}); "
                                   "the transmission is normalised by exposure; set EXPTIME "
                                   "in seconds")
    out = calibrate(ccd, dark=dark, dark_scale=dark_scale)
    if out.unit != ccd.unit:
        raise IncompatibleFramesError(f"{role}: calibrated into {out.unit}, expected the "
                                      f"frame's {ccd.unit}")
    return multiply(Plane.from_ccd(out), 1.0 / float(t)), out, float(t)


def transmission(data, flat, *, dark, flat_dark=None, dark_scale="exposure") -> CCDData:
    """The exposure-normalised transmission ``((data - dark_d)/t_d) / ((flat - dark_f)/t_f)``.

    Parameters
    ----------
    data : CCDData or path
        The projection (sample in the beam), raw.
    flat : CCDData or path
        The open beam (no sample), raw; its exposure may differ.
    dark : CCDData, path or list
        The dark of ``data`` (beam off), raw; a list is searched with
        :func:`select_dark` for the one of the data's exposure.
    flat_dark : CCDData, path or list, optional
        The dark of the flat (default: ``dark``, searched the same way).
    dark_scale : str, float or None
        As in :func:`calframe.calibrate`; a raw dark (it holds the offset) is
        never scaled by exposure, so it must match the exposure.

    Returns
    -------
    CCDData
        Dimensionless transmission, its uncertainty (when the frames have
        theirs or EGAIN/RDNOISE are known), the masks ORed, ``EXPTIME`` of
        the data, ``FLATEXP`` of the flat, and the provenance of every input.

    Raises
    ------
    MissingMetadataError
        A frame without exposure time.
    IncompatibleFramesError
        No dark of the right exposure; shapes differ; a raw dark to be scaled.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> def frame(value, t):
    ...     return CCDData(np.full((3, 3), value, np.float32), unit="adu",
    ...                    meta={"EXPTIME": t, "BIASSUB": False})
    >>> out = transmission(frame(400.0, 2.0), frame(1100.0, 1.0),
    ...                    dark=[frame(100.0, 2.0), frame(100.0, 1.0)])
    >>> round(float(out.data[1, 1]), 6)   # ((400 - 100) / 2) / ((1100 - 100) / 1)
    0.15
    """
    if isinstance(dark, list | tuple):
        dark_d = select_dark(data, dark)
    else:
        dark_d = dark
    darks_f = dark if flat_dark is None else flat_dark
    dark_f = select_dark(flat, darks_f) if isinstance(darks_f, list | tuple) else darks_f
    num, num_ccd, t_d = _rate(data, dark_d, role="data", dark_scale=dark_scale)
    den, den_ccd, t_f = _rate(flat, dark_f, role="flat", dark_scale=dark_scale)
    if num.data.shape != den.data.shape:
        raise IncompatibleFramesError(f"transmission: the data are {num.data.shape}, the "
                                      f"flat {den.data.shape}; use frames of one detector area")
    ratio = divide(num, den)
    meta = header_of(num_ccd.meta)
    meta["FLATEXP"] = (t_f, "[s] exposure of the flat")
    meta["TRANSMIS"] = (True, "((data - dark)/t) / ((flat - flat dark)/t_flat)")
    meta["HISTORY"] = "calframe transmission: exposure-normalised (data-dark)/(flat-dark)"
    out = plane_to_ccd(ratio, unit=u.dimensionless_unscaled, meta=meta)
    prov = get_provenance(num_ccd).copy()
    prov.extend(get_provenance(den_ccd))
    prov.add_step("transmission", data_exptime=t_d, flat_exptime=t_f,
                  dark_exptime=_exptime(dark_d), flat_dark_exptime=_exptime(dark_f),
                  masked=int(np.count_nonzero(ratio.mask)))
    set_provenance(out, prov)
    log.info("transmission: data %.6g s, flat %.6g s", t_d, t_f)
    return out


def _exptime(frame) -> float | None:
    if isinstance(frame, CCDData):
        value = frame.meta.get("EXPTIME")
        return None if value is None else float(value)
    if frame is None:
        return None
    return _describe(frame)[0]
