"""Detection and sub-pixel centring of the spots of a grid target."""

from __future__ import annotations

import logging

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table
from photutils.background import Background2D, MedianBackground
from photutils.detection import find_peaks
from scipy import ndimage
from scipy.spatial import cKDTree

from .._stats import MAD_TO_SIGMA
from ..errors import InvalidSettingsError
from ._channel import cfa_pattern, cfa_plane_array, plane_array
from ._kernels import fit_disks
from ._lattice import index_lattice

__all__ = ["detect_grid_spots"]

log = logging.getLogger(__name__)


def _as_array(image, mask, channel=None):
    pattern = None
    if isinstance(image, CCDData):
        data = np.asarray(image.data, dtype=np.float64)
        m = np.zeros(data.shape, bool) if image.mask is None else np.asarray(image.mask, bool)
        pattern = cfa_pattern(image)
    else:
        data = np.asarray(image, dtype=np.float64)
        m = np.zeros(data.shape, bool)
    if pattern is not None:
        # a CFA mosaic: its green sites (or the chosen colour) at full size
        data, m = cfa_plane_array(data, m, pattern, channel)
    else:
        data, m = plane_array(data, m, channel)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != data.shape:
            raise InvalidSettingsError(f"mask: shape {mask.shape} differs from the image "
                                       f"{data.shape}; give a mask of the image's shape")
        m = m | mask
    m = m | ~np.isfinite(data)
    return data, m


def _polarity(data, mask):
    p = np.percentile(data[~mask], [0.5, 50, 99.5])
    return "bright" if (p[2] - p[1]) > (p[1] - p[0]) else "dark"


def _zoom_matrix(n, factor):
    """Linear operator of ``scipy.ndimage.zoom`` along one axis (cubic, reflect, grid mode)."""
    return ndimage.zoom(np.eye(n), (factor, 1), order=3, mode="reflect", grid_mode=True)


def _expand_mesh(mesh, box, shape):
    """Full-size background from a :class:`~photutils.background.Background2D` mesh.

    The same image as ``Background2D.background`` (cubic spline zoom of the mesh
    by the box size in grid mode, cropped and clipped to the mesh range), computed
    as the separable product ``Wy @ mesh @ Wx.T`` of the two one-axis zoom
    operators: a few small matrix products instead of a 16-tap spline
    evaluation at every pixel.
    """
    mesh = np.asarray(mesh, float)
    if np.ptp(mesh) == 0:
        return np.full(shape, mesh.min())
    by, bx = np.broadcast_to(np.asarray(box, int), (2,))
    wy = _zoom_matrix(mesh.shape[0], int(by))[:shape[0]]
    wx = _zoom_matrix(mesh.shape[1], int(bx))[:shape[1]]
    out = wy @ (mesh @ wx.T)
    return np.clip(out, mesh.min(), mesh.max(), out=out)


def _signal(data, mask, polarity, box):
    """Background-removed spot signal (positive spots) and its noise."""
    bkg = Background2D(np.where(mask, np.nan, data), box, mask=mask, exclude_percentile=90,
                       bkg_estimator=MedianBackground(), filter_size=3)
    level = _expand_mesh(bkg.background_mesh, bkg.box_size, data.shape)
    if polarity == "bright":
        sig = data - level
        bad = mask
    else:
        ref = np.nanmedian(level[~mask])
        top = float(np.nanpercentile(level[~mask], 95))
        if ref < 0.5 * top:
            # most of the image is dark (a lens image circle, a target smaller than the
            # view): the bright field is the reference, the dark surround is left out
            ref = top
        bad = mask | (level < 0.2 * ref)
        sig = (level - data) / np.maximum(level, 1e-6 * ref) * ref
    # noise from neighbour differences: robust to the spots that fill part of each box
    diff = np.diff(sig, axis=1)[~(bad[:, 1:] | bad[:, :-1])]
    rms = float(MAD_TO_SIGMA * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))
    return sig, bad, rms


def _components(sig, bad, threshold):
    lab, n = ndimage.label((sig > threshold) & ~bad)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0), lab
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(sig), lab, idx)
    com = np.array(ndimage.center_of_mass(np.ones_like(sig), lab, idx))
    return com[:, ::-1], area, lab


def _recentre(work, x, y, foot, r):
    """Centre of mass in a disk footprint around the rounded positions (vectorised).

    The same estimate as :func:`photutils.centroids.centroid_sources` with
    ``centroid_com`` and a footprint, computed for all spots at once.
    """
    win = np.arange(-r, r + 1)
    ix = np.round(x).astype(int)
    iy = np.round(y).astype(int)
    rows = iy[:, None, None] + win[None, :, None]
    cols = ix[:, None, None] + win[None, None, :]
    cut = work[rows, cols] * foot
    tot = cut.sum(axis=(1, 2))
    good = tot > 0
    tot = np.where(good, tot, 1.0)
    cx = (cut * win[None, None, :]).sum(axis=(1, 2)) / tot
    cy = (cut * win[None, :, None]).sum(axis=(1, 2)) / tot
    return np.where(good, ix + cx, x), np.where(good, iy + cy, y)


def _fit_profiles(sig, bad, x, y, radius, weight=None, iterations=6, chunk=1500):
    """Fit the spots in chunks (bounded memory); see :func:`_fit_chunk`."""
    h = int(np.ceil(radius + 3.5))
    sig = np.pad(sig, h)
    bad = np.pad(bad, h, constant_values=True)
    weight = np.ones_like(sig) if weight is None else np.pad(weight, h)
    res = np.full((x.size, 6), np.nan)
    ok = np.zeros(x.size, bool)
    for s in range(0, x.size, chunk):
        e = slice(s, s + chunk)
        res[e], ok[e] = _fit_chunk(sig, bad, weight, h, x[e], y[e], radius, iterations)
    return res, ok


def _fit_chunk(sig, bad, weight, h, x, y, radius, iterations):
    """Levenberg-Marquardt fit of a soft-edged disk with a linear amplitude slope.

    The pixels of every spot are gathered here; the per-spot fit runs in the
    compiled kernel :func:`._kernels.fit_disks` (parallel over spots).

    Model per spot: ``b + A (1 + gx u + gy v) P(rho)``, ``P = erfc((rho - R)/(sqrt2 w))/2``.
    Returns x, y, A, R, w, relative residual rms, and an ok flag.
    """
    # the arrays are padded by h so that spots near the edge keep a full window
    x = x + h
    y = y + h
    win = np.arange(-h, h + 1)
    ix = np.round(x).astype(int)
    iy = np.round(y).astype(int)
    ok = np.isfinite(x) & np.isfinite(y)
    n = x.size
    res = np.full((n, 6), np.nan)
    sel = np.flatnonzero(ok)
    if sel.size == 0:
        return res, ok
    rows = iy[sel, None, None] + win[None, :, None]
    cols = ix[sel, None, None] + win[None, None, :]
    cut = sig[rows, cols].reshape(sel.size, -1)
    cbad = bad[rows, cols].reshape(sel.size, -1)
    full = (sel.size, win.size, win.size)
    X = np.broadcast_to(cols, full).reshape(sel.size, -1).astype(float)
    Y = np.broadcast_to(rows, full).reshape(sel.size, -1).astype(float)
    # a bad pixel on the spot or its edge spoils it; farther out it is only left out
    near = np.hypot(X - x[sel, None], Y - y[sel, None]) < radius + 2.0
    ok[sel[(cbad & near).any(axis=1)]] = False
    wt = np.where(cbad, 0.0, weight[rows, cols].reshape(sel.size, -1))
    cut = np.where(cbad, 0.0, cut)
    p = np.zeros((sel.size, 8))
    p[:, 0], p[:, 1] = x[sel], y[sel]
    p[:, 2] = np.percentile(cut, 95, axis=1)
    p[:, 3] = radius
    p[:, 4] = 0.8
    p[:, 5] = np.percentile(cut, 5, axis=1)
    c = fit_disks(np.ascontiguousarray(cut), np.ascontiguousarray(wt), np.ascontiguousarray(X),
                  np.ascontiguousarray(Y), p, float(radius), int(iterations))
    rel = np.sqrt(c / wt.sum(axis=1)) / np.maximum(np.abs(p[:, 2]), 1e-12)
    res[sel] = np.column_stack([p[:, 0] - h, p[:, 1] - h, p[:, 2], np.abs(p[:, 3]),
                                np.abs(p[:, 4]), rel])
    moved = np.hypot(p[:, 0] - x[sel], p[:, 1] - y[sel]) > 0.5 * radius
    moved |= np.abs(p[:, 3] - radius) > 0.5 * radius
    ok[sel[moved]] = False
    ok &= np.isfinite(res).all(axis=1)
    return res, ok


def detect_grid_spots(image, *, polarity: str = "auto", spot_radius: float | None = None,
                      mask=None, channel: str | None = None) -> Table:
    """Find the spots (holes or dots) of a grid-target image to sub-pixel accuracy.

    The background (or the illumination of a bright field) is estimated with
    :class:`photutils.background.Background2D` with the spots masked; a
    dark-on-bright image is divided by it, so vignetting and uneven
    illumination cancel.  Seeds come from :func:`photutils.detection.find_peaks`
    on the smoothed signal, are recentred by the centre of mass in a disk footprint (iterated; the
    estimate of :func:`photutils.centroids.centroid_sources` with
    ``centroid_com``, vectorised over all spots), and are refined by a least-squares fit of a
    soft-edged disk whose amplitude may vary linearly across the spot (so a
    gradient of illumination does not pull the centre).  Spots cut by the
    edge or by masked pixels, spots whose fitted radius is far from the
    median, and failed fits are dropped.

    Parameters
    ----------
    image : CCDData or array-like
        The grid image: 2-D, a ``(3, ny, nx)`` RGB cube with ``channel``, or
        a CFA mosaic (a CCDData with ``BAYERPAT``), whose green sites are
        used unless ``channel`` says otherwise.
    polarity : {"auto", "bright", "dark"}
        Bright holes on a dark field, dark dots on a bright field, or decide
        from the image histogram.
    spot_radius : float, optional
        Spot radius in pixels (estimated from the thresholded spots if not
        given).
    mask : array-like of bool, optional
        Pixels to ignore (True = bad), added to the frame's own mask.
    channel : {"luminance", "r", "g", "b"}, optional
        The plane of a colour cube to use: the Rec. 709 luminance (also
        ``"luma"``) or one colour.  Required for a cube (refused without
        it), not needed for a grey image.  For a CFA mosaic, ``"g"`` (the
        default) and ``"luminance"`` use the green sites (each red or blue
        site the mean of its four green neighbours), ``"r"`` and ``"b"``
        that colour interpolated bilinearly at every pixel.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (pixel centres at integers), ``flux``,
        ``radius``, ``quality`` (1 - relative rms of the fit residual).  The
        table's ``meta`` holds ``polarity``, ``spot_radius``, ``pitch``
        (nearest-neighbour spacing), ``nseeds``, ``nrejected`` and
        ``auto_polarity`` (the polarity was detected, not requested).

    Raises
    ------
    InvalidSettingsError
        For a wrong polarity or channel, an image that is neither 2-D nor a
        colour cube with a ``channel``, a mask of the wrong shape, and an
        image in which fewer than 4 spots are found (the message says what
        was found).

    Examples
    --------
    >>> from calframe.datasets._grid import make_grid_image
    >>> img, truth = make_grid_image((160, 160), pitch=24, seed=0)
    >>> spots = detect_grid_spots(img)
    >>> spots.meta["polarity"], len(spots) == int(truth.spots["inside"].sum())
    ('bright', True)
    """
    data, bad = _check_args(image, polarity, spot_radius, mask, channel)
    out, info, _ = find_indexed(data, bad, polarity, spot_radius)
    if out is None:
        fix = info["fix"] or _polarity_fix(info)
        raise InvalidSettingsError(f"image: {_summary(info)}; {info['problem']}; {fix}")
    return out


def _check_args(image, polarity, spot_radius, mask, channel):
    if polarity not in ("auto", "bright", "dark"):
        raise InvalidSettingsError(f"polarity must be 'auto', 'bright' or 'dark', got "
                                   f"{polarity!r}")
    if spot_radius is not None and not spot_radius > 0:
        raise InvalidSettingsError(f"spot_radius must be positive, got {spot_radius!r}")
    return _as_array(image, mask, channel)


def _counts(info) -> str:
    n = info["ncandidates"]
    return (f"found {n} candidate spot{'' if n == 1 else 's'}, {info['nfitted']} fitted, "
            f"{info.get('nindexed', 0)} indexed")


def _summary(info) -> str:
    """``found N candidate spots, M fitted, K indexed (polarity ...)``.

    When both polarities were tried (``info["tried"]`` holds the other
    attempt), the counts of the other one follow.
    """
    if info.get("tried"):
        head = f"{_counts(info)} with polarity {info['polarity']}"
        rest = "; ".join(f"{_counts(t)} with polarity {t['polarity']}"
                         + (f" ({t['problem']})" if t.get("problem") else "")
                         for t in info["tried"])
        return f"both polarities tried: {head}; {rest}"
    how = "detected automatically" if info["auto_polarity"] else "as requested"
    pol = f" (polarity {info['polarity']}, {how})" if info.get("polarity") else ""
    return f"{_counts(info)}{pol}"


def _polarity_fix(info, *, cli=False) -> str:
    """How to retry, by the polarity that was tried."""
    pol = info.get("polarity")
    other = {"dark": "bright", "bright": "dark"}.get(pol)
    if info.get("tried"):
        opts = "--spot-radius and --pitch" if cli else "spot_radius and pitch"
        return ("check that the image shows a grid of dots or holes (both polarities found "
                f"too few spots on a lattice), and give {opts}")
    if info["auto_polarity"] and other:
        opt = f"--polarity {other}" if cli else f"polarity={other!r}"
        kind = "dark dots on a bright field" if other == "dark" else "bright holes on a dark field"
        return f"check that the image shows a grid of dots or holes, or try {opt} ({kind})"
    if cli:
        return ("check that the image shows a grid of dots or holes, --polarity (dark dots on "
                "a bright field are 'dark'), --spot-radius and --pitch")
    return ("check that the image shows a grid of dots or holes, the polarity, spot_radius "
            "and pitch")


# an image this small cannot hold 4 x 4 spots
_MIN_SIZE = 16


def _line_fraction(lab, area) -> float:
    """Share of the thresholded pixels in long thin components (lines, networks of lines).

    A component is thin when its longest extent exceeds 6 times its
    thickness (twice its largest inscribed radius): a disk or a few merged
    dots are not, a line or a connected grid of lines is.
    """
    if area.size == 0 or area.sum() == 0:
        return 0.0
    line = np.zeros(area.size, bool)
    for k, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None:
            continue
        ext = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        if ext < 12:
            continue
        inner = ndimage.distance_transform_edt(np.pad(lab[sl] == k + 1, 1))
        line[k] = ext > 6.0 * 2.0 * inner.max()
    return float(area[line].sum() / area.sum())


LINE_PROBLEM = ("this looks like a line pattern, not a dot grid, and no lattice of line "
                "crossings was measured in it")
LINE_FIX = ("check that the lines cross in a square grid (lines in both directions, "
            "several pitches across), or image a grid of dots or holes")


def _failed(info, problem, fix=None):
    """``(None, info)`` with the problem; a failure on an image of lines says so."""
    comps = info.pop("_components", None)
    if comps is not None:  # measured only on failure (it costs a pass over the blobs)
        info["line_fraction"] = _line_fraction(*comps)
    if info["line_fraction"] > 0.5:
        problem, fix = LINE_PROBLEM, LINE_FIX
    info.update(problem=problem, fix=fix)
    return None, info


# a detection is accepted without trying the other polarity when at least this many
# spots, and this share of the fitted spots, are indexed on one lattice
_MIN_INDEXED = 16
_MIN_INDEXED_SHARE = 0.5


def find_indexed(data, bad, polarity, spot_radius, *, pitch=None, tolerance=0.25):
    """Detection with the polarity chosen by evidence, and the lattice indices.

    With ``polarity="auto"`` the polarity the histogram suggests is tried
    first; when its spots do not index on a lattice (fewer than 16, or
    fewer than half of those fitted), the other polarity is tried too and
    the one that indexes more spots is kept.  A requested polarity is used
    alone.

    Returns
    -------
    spots : Table or None
        As from :func:`detect_grid_spots` (None when no polarity gave 4
        fitted spots).
    info : dict
        As from :func:`_find_spots`, with ``nindexed``; ``tried`` lists the
        counts (and problem) of the other polarity when both were tried.
    index : tuple or None
        ``(i, j, nconflict)`` of :func:`index_lattice` for ``spots``.
    """
    first = polarity
    if polarity == "auto":
        # an image with no usable pixel fails in _find_spots whatever the polarity
        first = "bright" if bad.all() else _polarity(data, bad)
    order = [first] if polarity != "auto" else [first, {"dark": "bright",
                                                        "bright": "dark"}[first]]
    attempts = []
    for pol in order:
        spots, info = _find_spots(data, bad, pol, spot_radius)
        info["auto_polarity"] = polarity == "auto"
        index = None
        if spots is not None:
            spots.meta["auto_polarity"] = polarity == "auto"
            index = index_lattice(np.asarray(spots["x"], float), np.asarray(spots["y"], float),
                                  pitch=spots.meta.get("pitch") if pitch is None else pitch,
                                  tolerance=tolerance)
            info["nindexed"] = int(np.sum(index[0] != np.iinfo(np.int32).min))
        attempts.append((spots, info, index))
        n = info["nindexed"]
        if n >= _MIN_INDEXED and n >= _MIN_INDEXED_SHARE * info["nfitted"]:
            break
        if info.get("problem") and info.get("fix") and info["line_fraction"] <= 0.5:
            break  # a problem of the image itself (blank, too small, all masked)
    # the attempt with most indexed spots (then most fitted); the first on a tie
    best = max(range(len(attempts)), key=lambda k: (attempts[k][1]["nindexed"],
                                                    attempts[k][1]["nfitted"], -k))
    spots, info, index = attempts[best]
    if len(attempts) > 1:
        info = dict(info, tried=[dict(a[1]) for k, a in enumerate(attempts) if k != best])
        if spots is not None:
            spots.meta["polarities_tried"] = [a[1]["polarity"] for a in attempts]
        log.info("polarity by evidence: %s", "; ".join(
            f"{a[1]['polarity']}: {a[1]['nindexed']} indexed" for a in attempts))
    return spots, info, index


def _find_spots(data, bad, polarity, spot_radius):
    """The detection of :func:`detect_grid_spots` on a checked array.

    Returns ``(table, info)``, with ``table`` None when fewer than 4 spots
    are found; ``info`` holds ``polarity``, ``auto_polarity``,
    ``ncandidates``, ``nfitted``, ``line_fraction`` and, on failure,
    ``problem`` and ``fix`` (None when the fix is about the polarity).
    """
    info = {"polarity": None if polarity == "auto" else polarity,
            "auto_polarity": polarity == "auto", "ncandidates": 0, "nfitted": 0,
            "nindexed": 0, "line_fraction": 0.0, "problem": "", "fix": None}
    ny, nx = data.shape
    if bad.all():
        return _failed(info, "every pixel is masked or not finite (NaN); nothing to detect",
                       "check the image and its mask")
    if min(ny, nx) < _MIN_SIZE:
        return _failed(info, f"the image is only {nx} x {ny} pixels, too small to hold a grid "
                       "of spots", "give the whole grid image")
    good = data[~bad]
    if good.min() == good.max():
        return _failed(info, f"every pixel has the same value ({good.min():g}): a blank image",
                       "check the exposure (shutter, illumination) and give the grid image")
    if polarity == "auto":
        polarity = _polarity(data, bad)
    info["polarity"] = polarity
    # first pass: coarse background, components -> radius and pitch
    box = int(min(max(48, min(ny, nx) // 8), max(8, min(ny, nx) // 2)))
    sig, sbad, rms = _signal(data, bad, polarity, box)
    amp = float(np.percentile(sig[~sbad], 99.5))
    thr = max(0.4 * amp, 5 * rms)
    cen, area, lab = _components(sig, sbad, thr)
    big = area >= 4
    info["ncandidates"] = int(big.sum())
    info["_components"] = (lab, area)
    if big.sum() < 4:
        return _failed(info, "fewer than 4 spots stand out of the background")
    if spot_radius is None:
        spot_radius = float(np.sqrt(np.median(area[big]) / np.pi)) / 0.9
    d, _ = cKDTree(cen[big]).query(cen[big], k=2)
    pitch = float(np.median(d[:, 1]))
    # second pass: background between the spots only
    spotmask = ndimage.binary_dilation(sig > thr, iterations=int(np.ceil(0.3 * spot_radius + 2)))
    box = int(max(2 * pitch, 4 * spot_radius))
    sig, sbad, rms = _signal(data, bad | spotmask, polarity, box)
    sbad = sbad & ~spotmask | bad
    smooth = ndimage.gaussian_filter(np.where(sbad, 0.0, sig), 0.5 * spot_radius)
    amp = float(np.percentile(smooth[~sbad], 99.5))
    # seeds only inside first-pass blobs of a spot's size (not in broad bright areas)
    amed = float(np.median(area[big]))
    blob_ok = np.r_[False, (area > 0.25 * amed) & (area < 3.0 * amed)]
    seedable = blob_ok[lab] & ~sbad
    peaks = find_peaks(smooth, max(0.3 * amp, 5 * rms),
                       min_separation=max(2.0, 0.6 * spot_radius, 0.3 * pitch), mask=~seedable)
    if peaks is None or len(peaks) < 4:
        info["ncandidates"] = 0 if peaks is None else len(peaks)
        return _failed(info, "fewer than 4 spot peaks found")
    x = np.asarray(peaks["x_peak"], float)
    y = np.asarray(peaks["y_peak"], float)
    r = int(np.ceil(spot_radius + 2))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    foot = xx * xx + yy * yy <= r * r
    work = np.pad(np.where(sbad, 0.0, np.clip(sig, 0.0, None)), r)
    for _ in range(3):
        x, y = _recentre(work, x + r, y + r, foot, r)
        x, y = np.clip(x - r, 0, nx - 1), np.clip(y - r, 0, ny - 1)
    # inverse-variance weights (Poisson-like: variance grows with the raw level)
    raw = data - np.nanmin(np.where(bad, np.nan, data))
    weight = 1.0 / (np.where(bad, 0.0, raw) + max(rms, 1e-3) ** 2)
    weight /= np.median(weight)
    fit, ok = _fit_profiles(sig, sbad, x, y, spot_radius, weight)
    radius = fit[:, 3]
    if ok.sum():
        rmed = float(np.median(radius[ok]))
        amed = float(np.median(fit[ok, 2]))
        ok &= (np.abs(radius - rmed) < 0.25 * rmed) & (fit[:, 2] > 0.3 * amed)
        ok &= fit[:, 5] < 0.5
    nseeds = int(x.size)
    fit = fit[ok]
    out = Table({"x": fit[:, 0], "y": fit[:, 1], "flux": fit[:, 2] * np.pi * fit[:, 3] ** 2,
                 "radius": fit[:, 3], "quality": 1.0 - fit[:, 5]})
    if len(out) >= 4:
        d, _ = cKDTree(fit[:, :2]).query(fit[:, :2], k=2)
        pitch = float(np.median(d[:, 1]))
    out.meta.update(polarity=polarity, spot_radius=float(spot_radius), pitch=pitch,
                    nseeds=nseeds, nrejected=nseeds - int(ok.sum()),
                    auto_polarity=info["auto_polarity"])
    info.update(ncandidates=nseeds, nfitted=len(out))
    log.info("detect_grid_spots: %d spots kept of %d seeds (%s, radius %.2f px, pitch %.2f px)",
             len(out), nseeds, polarity, spot_radius, pitch)
    if len(out) < 4:
        return _failed(info, f"fewer than 4 spots fitted (only {len(out)})")
    info.pop("_components", None)
    return out, info
