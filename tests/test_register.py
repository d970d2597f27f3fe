"""Alignment, warping and stacking against synthetic frames with a known truth."""

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.testing import assert_allclose
from scipy import ndimage
from scipy.special import erf

from calframe import read_frame, write_frame
from calframe.errors import IncompatibleFramesError
from calframe.provenance import get_provenance
from calframe.register import Alignment, AlignmentError, align, stack, warp


def _render_stars(shape, xy, flux, sigma=1.3, sky=100.0):
    """Pixel-integrated Gaussian stars: the truth positions are unambiguous."""
    ny, nx = shape
    image = np.full(shape, sky, dtype=np.float64)
    edges_x = np.arange(nx + 1) - 0.5
    edges_y = np.arange(ny + 1) - 0.5
    for (x0, y0), f in zip(xy, flux, strict=True):
        if not (-5 < x0 < nx + 5 and -5 < y0 < ny + 5):
            continue
        cx = 0.5 * erf((edges_x - x0) / (np.sqrt(2) * sigma))
        cy = 0.5 * erf((edges_y - y0) / (np.sqrt(2) * sigma))
        image += f * np.outer(np.diff(cy), np.diff(cx))
    return image


def _matrix(dx=0.0, dy=0.0, angle_deg=0.0, scale=1.0, center=(0.0, 0.0)):
    """Reference -> frame: rotate/scale about ``center`` then shift."""
    a = np.radians(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    cx, cy = center
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    to = np.array([[1, 0, cx + dx], [0, 1, cy + dy], [0, 0, 1.0]])
    back = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    return to @ rot @ back


def _star_field(matrices, *, shape=(256, 256), nstars=80, seed=0, read_noise=5.0):
    rng = np.random.default_rng(seed)
    ny, nx = shape
    ref_xy = np.column_stack([rng.uniform(10, nx - 10, nstars),
                              rng.uniform(10, ny - 10, nstars)])
    flux = rng.uniform(3e3, 6e4, nstars)
    frames = []
    for m in matrices:
        x, y, _ = m @ np.vstack([ref_xy.T, np.ones(nstars)])
        expected = _render_stars(shape, np.column_stack([x, y]), flux)
        noisy = rng.poisson(expected) + rng.normal(0, read_noise, shape)
        sigma = np.sqrt(expected + read_noise**2)
        frames.append(CCDData(noisy.astype(np.float32), unit="adu",
                              uncertainty=StdDevUncertainty(sigma.astype(np.float32))))
    return frames, ref_xy


def test_star_alignment_recovers_known_transforms():
    truth = [np.eye(3), _matrix(3.37, -5.81), _matrix(-7.2, 2.45, angle_deg=1.3,
                                                       center=(128, 128)),
             _matrix(0.41, 0.77, angle_deg=-0.6, center=(100, 140))]
    frames, _ = _star_field(truth, seed=3)
    result = align(frames, method="stars", model="similarity")
    for got, want in zip(result, truth, strict=True):
        # The transform's effect over the frame, not just its coefficients.
        corners = np.array([[0, 0], [255, 0], [0, 255], [255, 255], [128, 128]], float)
        gx, gy = got(corners[:, 0], corners[:, 1])
        wx, wy = Alignment(want, "truth")(corners[:, 0], corners[:, 1])
        assert np.max(np.hypot(gx - wx, gy - wy)) < 0.02
        angle = np.degrees(np.arctan2(want[1, 0], want[0, 0]))
        assert abs(got.rotation - angle) < 0.01
        assert got.nmatch >= 20


def test_star_alignment_is_reproducible():
    truth = [np.eye(3), _matrix(10.5, -3.25, angle_deg=2.0, center=(128, 128))]
    frames, _ = _star_field(truth, seed=5)
    first = align(frames, method="stars")
    second = align(frames, method="stars")
    for a, b in zip(first, second, strict=True):
        assert_allclose(a.matrix, b.matrix, rtol=0, atol=1e-12)


def test_star_alignment_fails_clearly_without_stars():
    rng = np.random.default_rng(0)
    blank = [rng.normal(100, 5, (64, 64)) for _ in range(2)]
    with pytest.raises(AlignmentError, match="stars"):
        align(blank, method="stars")


def test_translation_subpixel_unmasked():
    rng = np.random.default_rng(11)
    ref = ndimage.gaussian_filter(rng.normal(size=(160, 160)), 2.5) * 1000 + 500
    shifts = [(0.0, 0.0), (2.3, -4.7), (-0.35, 0.8)]
    frames = [ndimage.shift(ref, (dy, dx), order=3, mode="nearest") for dx, dy in shifts]
    result = align(frames)
    for got, (dx, dy) in zip(result, shifts, strict=True):
        assert_allclose(got.shift, (dx, dy), atol=0.02)


def test_masked_translation_ignores_fixed_beam_block():
    """A beam block identical in every frame: the masked method finds the drift,
    an unmasked correlation locks onto the block (zero shift)."""
    rng = np.random.default_rng(2)
    ny, nx = 192, 192
    scene = ndimage.gaussian_filter(rng.normal(size=(ny, nx)), 3.0) * 60 + 200
    block = np.zeros((ny, nx), bool)
    block[70:130, :] = True  # a wide horizontal bar fixed on the detector
    block[:, 85:105] = True
    drifts = [(0.0, 0.0), (5.4, -3.2), (-6.75, 4.5)]
    frames = []
    for dx, dy in drifts:
        f = ndimage.shift(scene, (dy, dx), order=3, mode="nearest")
        f[block] = 5000.0  # the block is bright, sharp and does not move
        frames.append(f)
    masked = align(frames, mask=block)
    unmasked = align(frames, refine=False)
    for got, want in zip(masked, drifts, strict=True):
        assert_allclose(got.shift, want, atol=0.05)
    for got in unmasked[1:]:
        assert_allclose(got.shift, (0.0, 0.0), atol=0.5)


def test_control_point_homography_from_four_noisy_pairs():
    rng = np.random.default_rng(4)
    truth = np.array([[0.98, 0.05, 12.0], [-0.03, 1.02, -7.0], [2e-4, -1e-4, 1.0]])
    ref_pts = np.array([[20, 20], [230, 25], [225, 240], [15, 235]], float)
    fx, fy = Alignment(truth, "truth")(ref_pts[:, 0], ref_pts[:, 1])
    img_pts = np.column_stack([fx, fy]) + rng.normal(0, 0.05, (4, 2))
    (got,) = align([None], method="control-points", control_points=[(ref_pts, img_pts)])
    grid = np.array([[x, y] for x in (0, 128, 255) for y in (0, 128, 255)], float)
    gx, gy = got(grid[:, 0], grid[:, 1])
    tx, ty = Alignment(truth, "truth")(grid[:, 0], grid[:, 1])
    assert np.max(np.hypot(gx - tx, gy - ty)) < 0.3
    with pytest.raises(ValueError, match="N >= 4"):
        align([None], method="control-points", control_points=[(ref_pts[:3], img_pts[:3])])


def test_small_map_registered_onto_large_photo():
    """The seed case: a small image registered onto a larger one by a homography."""
    rng = np.random.default_rng(8)
    photo = ndimage.gaussian_filter(rng.normal(size=(300, 400)), 4) * 100 + 300
    truth = np.array([[0.5, 0.02, 150.0], [-0.01, 0.52, 90.0], [1e-5, 0.0, 1.0]])
    small = warp(CCDData(photo.astype(np.float32), unit="adu"), truth,
                 output_shape=(120, 160))
    # Register the large photo onto the small map's grid from 4 picked points.
    corners = np.array([[0, 0], [159, 0], [159, 119], [0, 119]], float)
    px, py = Alignment(truth, "truth")(corners[:, 0], corners[:, 1])
    (got,) = align([photo], method="control-points",
                   control_points=[(corners, np.column_stack([px, py]))])
    registered = warp(CCDData(photo.astype(np.float32), unit="adu"), got,
                      output_shape=(120, 160))
    good = ~registered.mask & ~small.mask
    assert good.mean() > 0.9
    assert_allclose(registered.data[good], small.data[good], rtol=1e-4)


def test_warp_uncertainty_matches_scatter():
    """Warped noise: reported sigma equals the measured scatter over realisations."""
    rng = np.random.default_rng(6)
    m = _matrix(0.37, -0.62, angle_deg=3.0, center=(16, 16))
    values, sigmas = [], []
    for _ in range(300):
        noise = rng.normal(0, 2.0, (32, 32)).astype(np.float32)
        ccd = CCDData(noise, unit="adu",
                      uncertainty=StdDevUncertainty(np.full((32, 32), 2.0, np.float32)))
        out = warp(ccd, m, order=3)
        values.append(out.data[16, 16])
        sigmas.append(out.uncertainty.array[16, 16])
    assert abs(np.std(values) / np.mean(sigmas) - 1) < 0.1
    assert np.ptp(sigmas) < 1e-5  # the same weights every time


def test_warp_masks_pixels_touching_masked_inputs():
    data = np.ones((10, 10), np.float32)
    mask = np.zeros((10, 10), bool)
    mask[5, 5] = True
    ccd = CCDData(data, unit="adu", mask=mask)
    out = warp(ccd, _matrix(0.5, 0.0), order=1)
    # Output x samples input x + 0.5: pixels 4 and 5 of row 5 touch input (5, 5).
    assert out.mask[5].tolist() == [False] * 4 + [True, True] + [False] * 3 + [True]
    assert not out.mask[4, :9].any()
    assert_allclose(out.data[~out.mask], 1.0)


def test_warp_refuses_cfa_and_records_provenance():
    cfa = CCDData(np.zeros((8, 8), np.float32), unit="adu", meta={"BAYERPAT": "RGGB"})
    with pytest.raises(IncompatibleFramesError, match="demosaic"):
        warp(cfa, np.eye(3))
    mono = CCDData(np.zeros((8, 8), np.float32), unit="adu")
    out = warp(mono, _matrix(1.0, 0.0))
    assert get_provenance(out).steps[-1].step == "warp"
    with pytest.raises(ValueError, match="order"):
        warp(mono, np.eye(3), order=2)


def test_stack_puts_stars_at_truth_and_rejects_a_trail():
    from calframe.combining import SigmaClip

    truth = [np.eye(3)] + [_matrix(dx, dy) for dx, dy in
                           [(1.7, -2.2), (-3.1, 0.6), (2.45, 3.3), (-1.2, -1.9),
                            (0.6, 2.8), (3.9, -0.4)]]
    frames, ref_xy = _star_field(truth, seed=9, nstars=40)
    trail = frames[3].data.copy()
    rr, cc = np.indices(trail.shape)
    on_trail = np.abs(rr - (0.4 * cc + 40)) < 1.5
    trail[on_trail] += 3000.0
    frames[3] = CCDData(trail, unit="adu", uncertainty=frames[3].uncertainty)
    result = stack(frames, align="stars", method="mean",
                   rejection=SigmaClip(low=3, high=3))
    sky_level = 100.0  # the sky of _render_stars
    # The trail is gone: the stacked sky along it is at the sky level.
    sky = on_trail & ~result.mask
    far = np.ones_like(on_trail)
    for x, y in ref_xy:
        far &= np.hypot(cc - x, rr - y) > 6
    assert abs(np.median(result.data[sky & far]) - sky_level) < 3
    # Stars are at their reference positions.
    from photutils.centroids import centroid_sources

    bright = ref_xy[(ref_xy[:, 0] > 20) & (ref_xy[:, 0] < 236)
                    & (ref_xy[:, 1] > 20) & (ref_xy[:, 1] < 236)]
    cx, cy = centroid_sources(result.data - 100, bright[:, 0], bright[:, 1], box_size=7)
    assert np.median(np.hypot(cx - bright[:, 0], cy - bright[:, 1])) < 0.05
    steps = [s.step for s in get_provenance(result).steps]
    assert "stack" in steps and "combine" in steps


def test_colour_cubes_align_on_the_channel_sum_and_warp_plane_by_plane(tmp_path):
    truth = [np.eye(3), _matrix(2.6, -1.4), _matrix(-3.2, 2.1)]
    mono, _ = _star_field(truth, seed=12, nstars=80)
    colour = [0.5, 1.0, 0.8]
    cubes = [CCDData(np.stack([c * f.data for c in colour]), unit="adu",
                     uncertainty=StdDevUncertainty(
                         np.stack([c * f.uncertainty.array for c in colour])))
             for f in mono]
    found = align(cubes, method="stars")
    corners = np.array([[0, 0], [255, 0], [0, 255], [255, 255], [128, 128]], float)
    for got, want in zip(found, truth, strict=True):
        gx, gy = got(corners[:, 0], corners[:, 1])
        wx, wy = Alignment(want, "truth")(corners[:, 0], corners[:, 1])
        assert np.max(np.hypot(gx - wx, gy - wy)) < 0.02
    warped = warp(cubes[1], found[1])
    assert warped.shape == cubes[1].shape and warped.mask.shape == cubes[1].shape
    plain = warp(mono[1], found[1])
    for k, c in enumerate(colour):
        assert_allclose(warped.data[k], c * plain.data, rtol=1e-5, atol=1e-3)
        assert_allclose(warped.uncertainty.array[k], c * plain.uncertainty.array,
                        rtol=1e-5)
    stacked = stack(cubes, transforms=found, method="mean")
    assert stacked.shape == cubes[0].shape
    assert stacked.ncombine.shape == cubes[0].shape
    assert stacked.ncombine.max() == 3
    write_frame(stacked, tmp_path / "rgb.fits")
    back = read_frame(tmp_path / "rgb.fits")
    assert_allclose(back.data, stacked.data)
    assert_allclose(back.ncombine, stacked.ncombine)
