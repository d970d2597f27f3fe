"""The real Blackmagic Pocket Cinema Camera 4K DNG through calframe's RAW path."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import calframe
from calframe import bayer
from calframe.demosaicing import demosaic
from calframe.errors import UncertaintyUnknownWarning
from calframe.linearity import linearity

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def dng(real_data):
    path = real_data / "camera-raw" / "Blackmagic.dng"
    with pytest.warns(UncertaintyUnknownWarning, match="gain and read noise unknown"):
        return calframe.read_frame(path)


def test_blackmagic_dng_channel_statistics(dng):
    ccd = dng
    assert ccd.shape == (2176, 4128)
    assert ccd.meta["BAYERPAT"] == "RGGB"
    assert bayer.effective_pattern(ccd) == "RGGB"
    assert [ccd.meta[f"BLKLEV{i}"] for i in range(4)] == [512.0] * 4
    assert ccd.meta["DATASEC"] == "[17:4112,9:2168]"  # 4096x2160 active area at (16, 8)
    assert linearity(ccd)[0] is True

    # the active area starts at an even offset: same pattern
    x0, y0 = 16, 8
    active = ccd[y0:y0 + 2160, x0:x0 + 4096]
    pattern = bayer.effective_pattern(ccd, origin=(x0, y0))
    assert pattern == "RGGB"
    views = bayer.channel_views(active.data, pattern)
    assert all(np.shares_memory(v, ccd.data) for v in views.values())
    assert all(v.shape == (1080, 2048) for v in views.values())

    table = bayer.channel_statistics(active, pattern=pattern)
    table["mean"].format = table["median"].format = table["std"].format = ".1f"
    table["snr"].format = ".2f"
    print()
    table.pprint(max_lines=-1, max_width=-1)
    assert len(table) == 20
    assert np.all(table["npix"] == 22140)  # 10 % boxes: 216 x 410 pixels / 4
    # every channel lies above the black level and below the white level
    assert np.all(table["median"] > 512)
    assert np.all(table["median"] < 65535)
    assert np.all(table["snr"] > 1)
    # the pattern is right: the two greens agree to 1 % in every region, while
    # red and blue are far from green (a wrong pattern would swap them in)
    for region in set(table["region"]):
        rows = {r["channel"]: r["median"] - 512 for r in table[table["region"] == region]}
        assert_allclose(rows["G1"], rows["G2"], rtol=0.01, err_msg=region)
        assert rows["R"] < 0.75 * rows["G1"] and rows["B"] < 0.75 * rows["G1"], region


def test_blackmagic_dng_demosaic_crop(dng):
    # a 256x256 crop of the centre, black removed, demosaiced by every method
    y0, x0 = 960, 1920
    crop = dng[y0:y0 + 256, x0:x0 + 256].subtract(512 * dng.unit)
    crop.meta = dng.meta.copy()
    levels = bayer.channel_scales(crop, pattern=bayer.effective_pattern(dng, origin=(x0, y0)))
    for method in ("bilinear", "malvar2004"):
        rgb = demosaic(crop, method=method, pattern=bayer.effective_pattern(dng,
                                                                             origin=(x0, y0)))
        assert rgb.shape == (3, 256, 256)
        assert np.all(np.isfinite(rgb.data))
        medians = np.median(rgb.data, axis=(1, 2))
        # each colour plane keeps its channel's level (demosaicing adds no colour)
        assert_allclose(medians, [levels["R"], (levels["G1"] + levels["G2"]) / 2,
                                  levels["B"]], rtol=0.03)
