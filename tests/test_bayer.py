"""Tests of calframe.bayer: patterns, offsets, row order, channels, statistics."""

import itertools
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from calframe import bayer
from calframe.errors import IncompatibleFramesError, MissingMetadataError
from calframe.provenance import get_provenance

COLOUR = {"R": 0, "G": 1, "B": 2}


def _scene(ny, nx, seed=0):
    """A known RGB scene whose three planes never share a value."""
    rng = np.random.default_rng(seed)
    base = rng.permutation(ny * nx).reshape(ny, nx).astype(np.float64)
    return np.stack([base, base + 1e5, base + 2e5])


def _expose(rgb_topdown, sensor_pattern, xoff, yoff):
    """Mosaic of a top-down scene seen through a sensor (independent of calframe)."""
    ny, nx = rgb_topdown.shape[1:]
    out = np.empty((ny, nx))
    for y in range(ny):
        for x in range(nx):
            letter = sensor_pattern[2 * ((y + yoff) % 2) + (x + xoff) % 2]
            out[y, x] = rgb_topdown[COLOUR[letter], y, x]
    return out


@pytest.mark.parametrize("sensor", bayer.PATTERNS)
def test_effective_pattern_exhaustive(sensor):
    # every pattern x offset x row order x odd/even height x odd/even width x crop
    for xoff, yoff, order, ny, nx in itertools.product((0, 1), (0, 1),
                                                       ("TOP-DOWN", "BOTTOM-UP"),
                                                       (6, 7), (8, 9)):
        rgb = _scene(ny, nx, seed=ny * nx + xoff)
        mosaic = _expose(rgb, sensor, xoff, yoff)
        stored, rgb_stored = mosaic, rgb
        if order == "BOTTOM-UP":
            stored, rgb_stored = mosaic[::-1], rgb[:, ::-1]
        header = fits.Header({"BAYERPAT": sensor, "XBAYROFF": xoff, "YBAYROFF": yoff,
                              "ROWORDER": order})
        ccd = CCDData(stored.astype(np.float32), unit="adu", meta=header)
        for x0, y0 in ((0, 0), (1, 0), (0, 1), (1, 1), (3, 2), (2, 5)):
            eff = bayer.effective_pattern(ccd, origin=(x0, y0))
            crop = stored[y0:, x0:]
            crop_rgb = rgb_stored[:, y0:, x0:]
            index = bayer.channel_index(crop.shape, eff)
            letters = np.array([0, 1, 1, 2])[index]  # R, G1, G2, B -> R, G, G, B
            truth = np.take_along_axis(crop_rgb, letters[None], axis=0)[0]
            assert_array_equal(crop, truth, err_msg=f"{sensor} {xoff} {yoff} {order} "
                                                    f"{ny}x{nx} at {(x0, y0)}: {eff}")
            # the same answer from keywords given explicitly
            assert eff == bayer.effective_pattern(sensor, xoff=xoff, yoff=yoff,
                                                  roworder=order, shape=(ny, nx),
                                                  origin=(x0, y0))


def test_bottom_up_even_height_flips_rows():
    # Siril's example: an RGGB sensor read upside down looks GBRG
    assert bayer.effective_pattern("RGGB", roworder="BOTTOM-UP", shape=(2160, 4096)) == "GBRG"
    assert bayer.effective_pattern("RGGB", roworder="BOTTOM-UP", shape=(2161, 4096)) == "RGGB"
    header = fits.Header({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP", "NAXIS2": 10,
                          "NAXIS1": 4})
    assert bayer.effective_pattern(header) == "GBRG"


def test_shift_pattern_round_trip():
    for p in bayer.PATTERNS:
        assert bayer.shift_pattern(p, 2, 4) == p
        assert bayer.shift_pattern(bayer.shift_pattern(p, 1, 1), 1, 1) == p
    assert sorted(bayer.shift_pattern("RGGB", dx, dy) for dx in (0, 1) for dy in (0, 1)) \
        == sorted(bayer.PATTERNS)


def test_pattern_errors():
    with pytest.raises(ValueError, match="not a Bayer pattern"):
        bayer.effective_pattern("RGBG")
    with pytest.raises(ValueError, match="BAYERPAT='XYZW' is not a Bayer pattern"):
        bayer.effective_pattern({"BAYERPAT": "XYZW"})
    with pytest.raises(TypeError, match="must be a string"):
        bayer.effective_pattern(3)
    with pytest.raises(MissingMetadataError, match="no BAYERPAT keyword"):
        bayer.effective_pattern(fits.Header())
    with pytest.raises(MissingMetadataError, match="height is unknown"):
        bayer.effective_pattern("RGGB", roworder="BOTTOM-UP")
    with pytest.raises(ValueError, match="roworder='SIDEWAYS' is not recognised"):
        bayer.effective_pattern("RGGB", roworder="SIDEWAYS")
    with pytest.raises(MissingMetadataError, match="pattern is required for a plain array"):
        bayer.channel_statistics(np.zeros((4, 4)))


def test_channel_views_share_memory_and_cover_once():
    a = np.zeros((7, 9), dtype=np.float32)
    for p in bayer.PATTERNS:
        views = bayer.channel_views(a, p)
        assert set(views) == set(bayer.CHANNELS)
        for v in views.values():
            assert np.shares_memory(v, a)
            v += 1  # writes through to the mosaic
            assert v.base is not None
        count = a.copy()
        assert_array_equal(count, 1)  # every pixel in exactly one channel
        a[...] = 0
    views = bayer.channel_views(np.arange(16.).reshape(4, 4), "GRBG")
    assert views["R"][0, 0] == 1 and views["B"][0, 0] == 4
    assert views["G1"][0, 0] == 0 and views["G2"][0, 0] == 5
    with pytest.raises(ValueError, match="must be 2-D"):
        bayer.channel_views(np.zeros((3, 4, 4)), "RGGB")


@pytest.mark.parametrize("shape", [(8, 10), (7, 9), (7, 10)])
@pytest.mark.parametrize("pattern", bayer.PATTERNS)
def test_split_merge_round_trip(shape, pattern):
    rng = np.random.default_rng(3)
    data = rng.normal(100, 5, shape).astype(np.float32)
    unc = rng.uniform(1, 2, shape).astype(np.float32)
    mask = rng.random(shape) < 0.1
    ccd = CCDData(data, unit="adu", uncertainty=StdDevUncertainty(unc), mask=mask,
                  meta=fits.Header({"BAYERPAT": pattern, "EXPTIME": 3.0}))
    planes = bayer.split(ccd)
    assert planes["R"].meta["CFACHAN"] == "R"
    assert "BAYERPAT" not in planes["R"].meta and planes["B"].meta["EXPTIME"] == 3.0
    assert sum(p.data.size for p in planes.values()) == data.size
    back = bayer.merge(planes, pattern=pattern)
    assert_array_equal(back.data, data)
    assert_array_equal(back.uncertainty.array, unc)
    assert_array_equal(back.mask, mask)
    assert back.meta["BAYERPAT"] == pattern
    # channel R really holds the red pixels
    r_rows, r_cols = bayer.channel_slices(pattern)["R"]
    assert_array_equal(planes["R"].data, data[r_rows, r_cols])
    assert not np.shares_memory(planes["R"].data, data)


def test_merge_errors():
    planes = {c: np.zeros((2, 2)) for c in bayer.CHANNELS}
    with pytest.raises(ValueError, match="missing channel"):
        bayer.merge({"R": planes["R"]}, pattern="RGGB")
    planes["B"] = np.zeros((3, 3))
    with pytest.raises(IncompatibleFramesError, match=r"channel [RB] has shape .* needs"):
        bayer.merge(planes, pattern="RGGB")


def test_channel_statistics_known_values_and_mask():
    # per-channel levels with a known noise, vignetting-free
    rng = np.random.default_rng(11)
    levels = {"R": 1000.0, "G1": 2000.0, "G2": 2100.0, "B": 800.0}
    sigma = 10.0
    data = np.empty((200, 300))
    for name, sl in bayer.channel_slices("GBRG").items():
        data[sl] = levels[name]
    data += rng.normal(0, sigma, data.shape)
    mask = np.zeros(data.shape, bool)
    data[100, 150] = 1e9  # a masked outlier in the centre box
    mask[100, 150] = True
    ccd = CCDData(data.astype(np.float32), unit="adu", mask=mask,
                  meta={"BAYERPAT": "GBRG"})
    table = bayer.channel_statistics(ccd)
    assert len(table) == 5 * 4
    assert set(table["region"]) == {"centre", "row0-col0", "row0-colN", "rowN-col0",
                                    "rowN-colN"}
    for row in table:
        assert_allclose(row["mean"], levels[row["channel"]], atol=5 * sigma / np.sqrt(
            row["npix"]))
        assert_allclose(row["std"], sigma, rtol=0.25)
        assert_allclose(row["snr"], row["mean"] / row["std"])
    # a 20x30 box holds 150 pixels per channel; the masked one is excluded
    centre = table[table["region"] == "centre"]
    assert sorted(centre["npix"]) == [149, 150, 150, 150]
    # custom boxes, odd start: still the right channels
    t2 = bayer.channel_statistics(ccd, regions={"box": (1, 41, 3, 63)})
    for row in t2:
        assert abs(row["median"] - levels[row["channel"]]) < 5
    with pytest.raises(ValueError, match="is empty"):
        bayer.channel_statistics(ccd, regions={"b": (5, 5, 0, 10)})
    with pytest.raises(ValueError, match="must be \\(y0, y1, x0, x1\\)"):
        bayer.channel_statistics(ccd, regions={"b": "abc"})
    with pytest.raises(ValueError, match="regions='edges' is not recognised"):
        bayer.channel_statistics(ccd, regions="edges")


def test_standard_regions_fit_and_are_even():
    for shape in ((100, 200), (2160, 4096), (7, 9), (11, 13)):
        for name, (ys, xs) in bayer.standard_regions(shape).items():
            assert ys.start % 2 == 0 and xs.start % 2 == 0, name
            assert 0 <= ys.start < ys.stop <= shape[0]
            assert 0 <= xs.start < xs.stop <= shape[1]
    with pytest.raises(ValueError, match="size=0 must be a fraction"):
        bayer.standard_regions((10, 10), size=0)


@pytest.mark.parametrize("pattern", bayer.PATTERNS)
def test_normalise_channels_removes_lamp_colour(pattern):
    # a flat = colour of the lamp x vignetting; each channel normalised to 1
    ny, nx = 120, 160
    yy, xx = np.mgrid[0:ny, 0:nx]
    vignette = 1 - 0.3 * (((yy - ny / 2) / ny) ** 2 + ((xx - nx / 2) / nx) ** 2)
    lamp = {"R": 3000.0, "G1": 9000.0, "G2": 8800.0, "B": 1500.0}
    data = np.empty((ny, nx))
    for name, sl in bayer.channel_slices(pattern).items():
        data[sl] = lamp[name] * vignette[sl]
    unc = np.sqrt(data)
    ccd = CCDData(data.astype(np.float32), unit="adu",
                  uncertainty=StdDevUncertainty(unc.astype(np.float32)),
                  meta=fits.Header({"BAYERPAT": pattern}))
    out = bayer.normalise_channels(ccd, region="centre")
    views = bayer.channel_views(out.data, pattern)
    vig_views = bayer.channel_views(vignette, pattern)
    centre_vig = bayer.channel_scales(vignette, pattern=pattern, region="centre")
    for name in bayer.CHANNELS:
        assert_allclose(views[name], vig_views[name] / centre_vig[name], rtol=1e-5)
        assert_allclose(out.meta[f"NORM_{name}"], lamp[name] * centre_vig[name], rtol=1e-5)
    assert_allclose(out.uncertainty.array, unc / np.where(
        bayer.channel_index(data.shape, pattern)[..., None] == np.arange(4),
        [out.meta[f"NORM_{c}"] for c in bayer.CHANNELS], 0).sum(-1), rtol=1e-5)
    assert out.unit == ""
    assert get_provenance(out).steps[-1].step == "normalise_channels"
    assert out.meta["NORMSTAT"] == "median"
    # combine_greens: G1 and G2 share one level
    joint = bayer.channel_scales(ccd, combine_greens=True)
    assert joint["G1"] == joint["G2"]
    assert lamp["G2"] * 0.7 < joint["G1"] < lamp["G1"]


def test_normalise_channels_errors():
    ccd = CCDData(np.zeros((4, 4), np.float32), unit="adu", meta={"BAYERPAT": "RGGB"})
    with pytest.raises(ValueError, match="are not positive"):
        bayer.normalise_channels(ccd)
    with pytest.raises(ValueError, match="statistic='mode' is not recognised"):
        bayer.normalise_channels(ccd, statistic="mode")
    masked = CCDData(np.ones((4, 4), np.float32), unit="adu", mask=np.ones((4, 4), bool),
                     meta={"BAYERPAT": "RGGB"})
    with pytest.raises(ValueError, match="has no valid"):
        bayer.normalise_channels(masked)
    with pytest.raises(TypeError, match="expected a CCDData"):
        bayer.normalise_channels(np.ones((4, 4)), pattern="RGGB")


@pytest.mark.parametrize("pattern", bayer.PATTERNS)
def test_same_colour_neighbours(pattern):
    # each channel a constant: every neighbour returned must equal the pixel's colour level
    levels = np.array([10.0, 20.0, 21.0, 30.0])
    index = bayer.channel_index((9, 11), pattern)
    a = levels[index]
    greens = {1, 2}
    ys, xs = np.nonzero(np.ones(a.shape, bool))
    vals = bayer.same_colour_neighbours(a, pattern, ys, xs)
    for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
        got = vals[k][np.isfinite(vals[k])]
        assert got.size > 0
        if index[y, x] in greens:
            assert set(got) <= {20.0, 21.0}
        else:
            assert set(got) == {a[y, x]}
    # interior: 8 neighbours for R/B, 12 for greens
    n = np.isfinite(bayer.same_colour_neighbours(a, pattern, np.array([4]),
                                                 np.array([5]))).sum()
    assert n == (12 if index[4, 5] in greens else 8)
    # masked neighbours are left out
    mask = np.zeros(a.shape, bool)
    mask[2, 5] = True
    v = bayer.same_colour_neighbours(a, pattern, np.array([4]), np.array([5]), mask=mask)
    assert np.isfinite(v).sum() == n - 1
    with pytest.raises(ValueError, match="channel='X' is not one of"):
        bayer.same_colour_offsets("X")


@pytest.mark.skipif(shutil.which("siril-cli") is None, reason="siril-cli is not installed")
def test_row_order_and_offsets_agree_with_siril(tmp_path):
    # Siril (which introduced ROWORDER) debayers files written with calframe's reading
    # of BAYERPAT / X,YBAYROFF / ROWORDER into the right colours; a file that ignores the
    # bottom-up flip comes out with swapped colours (so the check can fail).
    levels = {"R": 1000, "G1": 3000, "G2": 3000, "B": 6000}
    script = ["requires 1.0.0"]
    cases = []
    for k, (order, ny, sensor, xoff, yoff) in enumerate(itertools.product(
            ("TOP-DOWN", "BOTTOM-UP"), (32, 33), ("RGGB", "GBRG"), (0, 1), (0, 1))):
        eff = bayer.effective_pattern(sensor, roworder=order, shape=(ny, 32), xoff=xoff,
                                      yoff=yoff)
        data = np.empty((ny, 32), np.uint16)
        for chan, sl in bayer.channel_slices(eff).items():
            data[sl] = levels[chan]
        folder = tmp_path / f"case{k}"
        folder.mkdir()
        header = fits.Header({"BAYERPAT": sensor, "ROWORDER": order, "XBAYROFF": xoff,
                              "YBAYROFF": yoff})
        fits.PrimaryHDU(data, header=header).writeto(folder / "cfa.fit")
        script += [f"cd {folder}", "convert out -debayer"]
        cases.append((folder, (order, ny, sensor, xoff, yoff)))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    data = np.empty((32, 32), np.uint16)
    for chan, sl in bayer.channel_slices("RGGB").items():  # bottom-up flip ignored
        data[sl] = levels[chan]
    fits.PrimaryHDU(data, header=fits.Header({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"})
                    ).writeto(wrong / "cfa.fit")
    script += [f"cd {wrong}", "convert out -debayer"]
    (tmp_path / "run.ssf").write_text("\n".join(script) + "\n")
    subprocess.run(["siril-cli", "-s", str(tmp_path / "run.ssf")], check=True,
                   capture_output=True, timeout=300)
    for folder, case in cases:
        rgb = fits.getdata(folder / "out_00001.fit").astype(float)
        assert rgb.shape[0] == 3, case
        medians = [np.median(rgb[i][4:-4, 4:-4]) for i in range(3)]
        assert_allclose(medians, [1000, 3000, 6000], rtol=0.01, err_msg=str(case))
    rgb = fits.getdata(wrong / "out_00001.fit").astype(float)
    assert abs(np.median(rgb[0][4:-4, 4:-4]) - 1000) > 500


@settings(max_examples=60, deadline=None)
@given(pattern=st.sampled_from(bayer.PATTERNS), ny=st.integers(2, 13), nx=st.integers(2, 13),
       x0=st.integers(0, 7), y0=st.integers(0, 7), x1=st.integers(0, 7), y1=st.integers(0, 7),
       order=st.sampled_from(["TOP-DOWN", "BOTTOM-UP"]))
def test_property_crops_compose_and_split_merge_round_trips(pattern, ny, nx, x0, y0, x1, y1,
                                                            order):
    # the pattern of a crop of a crop is that of the combined crop
    base = bayer.effective_pattern(pattern, roworder=order, shape=(ny, nx))
    assert bayer.shift_pattern(bayer.shift_pattern(base, x0, y0), x1, y1) == \
        bayer.effective_pattern(pattern, roworder=order, shape=(ny, nx),
                                origin=(x0 + x1, y0 + y1))
    # split / merge is the identity for any shape and pattern
    data = np.arange(ny * nx, dtype=np.float32).reshape(ny, nx)
    planes = bayer.split(CCDData(data, unit="adu"), pattern=base)
    assert_array_equal(bayer.merge(planes, pattern=base).data, data)
    # channel statistics of a mosaic holding its channel index give that index
    index = bayer.channel_index((ny, nx), base).astype(float)
    table = bayer.channel_statistics(index, pattern=base, regions="full")
    assert list(table["median"]) == [0.0, 1.0, 2.0, 3.0]
