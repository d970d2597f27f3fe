"""Line-grid targets: crossings measured against a known field."""

import numpy as np
import pytest

from calframe.datasets._grid import GridDistortion
from calframe.datasets._linegrid import make_line_grid
from calframe.distortion import DistortionModel, field_error
from calframe.distortion._lines import find_line_crossings
from calframe.errors import InvalidSettingsError

SHAPE = (480, 640)


@pytest.mark.parametrize(("kw", "limit"), [
    ({"blur": 0.8, "read_noise": 3.0}, 0.025),
    # blur, uneven light, noise and broken lines
    ({"blur": 1.2, "gradient": 0.6, "read_noise": 8.0, "broken": 6}, 0.025),
    ({"polarity": "bright", "blur": 1.0, "read_noise": 5.0}, 0.025),
])
def test_line_grid_field(kw, limit):
    field = GridDistortion(SHAPE, radial=8.0, smooth=1.0, seed=3)
    img = make_line_grid(SHAPE, pitch=30, width=2.0, distortion=field, seed=1, **kw)
    crossings = find_line_crossings(img)
    assert crossings.meta["polarity"] == kw.get("polarity", "dark")
    assert crossings.meta["pitch"] == pytest.approx(30, abs=1.5)
    model = DistortionModel.fit(crossings, shape=SHAPE)
    assert model and model.meta["nindexed"] > 280
    rms, worst = field_error(model, field)
    assert rms < limit and worst < 0.1


def test_no_lines():
    noise = np.random.default_rng(0).normal(100, 1, (64, 64))
    with pytest.raises(InvalidSettingsError, match="line"):
        find_line_crossings(noise)
    with pytest.raises(InvalidSettingsError, match="width"):
        find_line_crossings(noise, width=-1)
