"""Assign lattice indices to grid spots by local growth (no global affine)."""

from __future__ import annotations

import heapq

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InvalidSettingsError

__all__ = ["index_lattice"]


def _basis(points, tree, pitch):
    """Two lattice step vectors from nearest-neighbour differences."""
    k = min(5, len(points))
    d, j = tree.query(points, k=k)
    vec = (points[j[:, 1:]] - points[:, None, :]).reshape(-1, 2)
    dist = d[:, 1:].ravel()
    if pitch is None:
        pitch = float(np.median(d[:, 1]))
    vec = vec[np.abs(dist - pitch) < 0.3 * pitch]
    if len(vec) == 0:
        return None
    ang = np.mod(np.arctan2(vec[:, 1], vec[:, 0]), np.pi)
    hist, edges = np.histogram(ang, bins=180, range=(0, np.pi))
    a1 = edges[np.argmax(hist)] + 0.5 * (edges[1] - edges[0])
    diff = np.abs(np.angle(np.exp(2j * (ang - a1)))) / 2  # distance modulo pi
    g1 = vec[diff < np.deg2rad(15)]
    g2 = vec[diff > np.deg2rad(60)]
    if len(g1) == 0 or len(g2) == 0:
        return None  # no second lattice direction: not a 2-D lattice
    def mean_dir(g, ref):
        g = np.where((g @ ref)[:, None] < 0, -g, g)
        return np.median(g, axis=0)
    e1 = mean_dir(g1, np.array([np.cos(a1), np.sin(a1)]))
    a2 = a1 + np.pi / 2
    e2 = mean_dir(g2, np.array([np.cos(a2), np.sin(a2)]))
    # order: e1 closest to +x, e2 closest to +y
    if abs(e1[0]) < abs(e2[0]):
        e1, e2 = e2, e1
    if e1[0] < 0:
        e1 = -e1
    if e2[1] < 0:
        e2 = -e2
    return e1, e2, pitch


def index_lattice(x, y, *, pitch: float | None = None, tolerance: float = 0.25):
    """Give each spot integer lattice indices ``(i, j)`` by growing from the centre.

    The two step vectors are measured from nearest neighbours (KD-tree); the
    growth starts at the spot nearest the centroid and proceeds outwards in
    order of distance, predicting each neighbour by linear extrapolation of
    the local steps, so that distortion of up to a good fraction of a pitch
    over the field is followed.  A spot is accepted when it lies within
    ``tolerance`` pitch of the prediction and neither it nor the index is
    taken already.

    Parameters
    ----------
    x, y : array-like
        Spot positions.
    pitch : float, optional
        Approximate pitch in pixels (median nearest-neighbour distance if not
        given).
    tolerance : float
        Acceptance radius as a fraction of the pitch.

    Returns
    -------
    i, j : numpy.ndarray of int
        Indices (``-2**31`` for spots that were not indexed); ``i`` runs
        along the lattice direction closest to +x, ``j`` closest to +y.
    nconflict : int
        Predictions that met a spot or an index already taken by another.

    Examples
    --------
    >>> import numpy as np
    >>> jj, ii = np.mgrid[0:5, 0:6]
    >>> i, j, _ = index_lattice(10 + 20.0 * ii.ravel(), 5 + 20.0 * jj.ravel())
    >>> bool(np.all(i - i.min() == ii.ravel()) and np.all(j - j.min() == jj.ravel()))
    True
    """
    pts = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    n = len(pts)
    none = np.iinfo(np.int32).min
    ii = np.full(n, none, dtype=np.int64)
    jj = np.full(n, none, dtype=np.int64)
    if n < 4:
        return ii, jj, 0
    if not np.all(np.isfinite(pts)):
        raise InvalidSettingsError("x, y: the spot positions must be finite numbers")
    tree = cKDTree(pts)
    basis = _basis(pts, tree, pitch)
    if basis is None:
        return ii, jj, 0  # no pair of lattice steps among the neighbours
    e1, e2, pitch = basis
    tol = tolerance * pitch
    centre = pts.mean(axis=0)
    start = int(np.argmin(np.hypot(*(pts - centre).T)))
    taken: dict[tuple[int, int], int] = {(0, 0): start}
    ii[start], jj[start] = 0, 0
    heap = [(0.0, start)]
    nconflict = 0
    steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
    while heap:
        _, k = heapq.heappop(heap)
        ik, jk = int(ii[k]), int(jj[k])
        for di, dj in steps:
            key = (ik + di, jk + dj)
            if key in taken:
                continue
            back = taken.get((ik - di, jk - dj))
            if back is not None:
                pred = 2 * pts[k] - pts[back]
            else:
                # local step: the parent's neighbours along the other axis
                step = di * e1 + dj * e2
                side = taken.get((ik + dj, jk + di))
                side_n = taken.get((ik + dj + di, jk + di + dj))
                if side is not None and side_n is not None:
                    step = pts[side_n] - pts[side]
                pred = pts[k] + step
            dist, m = tree.query(pred, distance_upper_bound=tol)
            if not np.isfinite(dist):
                continue
            if ii[m] != none:
                nconflict += 1
                continue
            ii[m], jj[m] = key
            taken[key] = int(m)
            heapq.heappush(heap, (float(np.hypot(*(pts[m] - pts[start]))), int(m)))
    return ii, jj, nconflict
