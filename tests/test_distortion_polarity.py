"""Polarity of a grid target chosen by evidence: the one whose spots index on a lattice."""

import numpy as np
import pytest

from calframe.datasets._grid import GridDistortion, make_grid_image
from calframe.distortion import DistortionModel, detect_grid_spots, field_error
from calframe.distortion._detect import _polarity

SHAPE = (600, 800)


@pytest.fixture(scope="module")
def dark_in_circle():
    """Dark dots, 30 px barrel, most of the frame dark outside a lens image circle."""
    field = GridDistortion(SHAPE, radial=30.0, smooth=1.0, seed=4)
    img, truth = make_grid_image(SHAPE, pitch=30, spot_radius=5, polarity="dark",
                                 distortion=field, vignetting=0.3, amplitude=800,
                                 background=50, field_stop=0.5, seed=1)
    return img, truth, field


def test_histogram_guess_is_wrong_here(dark_in_circle):
    # the precondition of the test: the image histogram says "bright"
    img, _, _ = dark_in_circle
    assert _polarity(img, np.zeros(img.shape, bool)) == "bright"


def test_polarity_by_evidence_recovers_the_field(dark_in_circle):
    img, _, field = dark_in_circle
    model = DistortionModel.fit(img)
    assert model, getattr(model, "reason", "")
    meta = model.spots.meta
    assert meta["polarity"] == "dark" and meta["auto_polarity"]
    assert meta["polarities_tried"] == ["bright", "dark"]
    rms, worst = field_error(model, field)
    assert rms < 0.02 and worst < 0.08
    # the same spots as with the polarity requested
    requested = DistortionModel.fit(img, polarity="dark")
    np.testing.assert_array_equal(model.spots["x"], requested.spots["x"])
    # detect_grid_spots decides the same way
    assert detect_grid_spots(img).meta["polarity"] == "dark"


def test_requested_polarity_is_not_second_guessed(dark_in_circle):
    img, _, _ = dark_in_circle
    bad = DistortionModel.fit(img, polarity="bright")
    assert not bad and bad.polarity == "bright" and not bad.auto_polarity
    assert bad.tried == [] and "polarity bright, as requested" in bad.reason
    assert "polarity='dark'" not in bad.suggestion()


def test_clear_image_tries_one_polarity():
    img, _ = make_grid_image((256, 256), pitch=24, polarity="dark", seed=5)
    spots = detect_grid_spots(img)
    assert spots.meta["polarity"] == "dark" and "polarities_tried" not in spots.meta


def test_failure_reports_both_polarities():
    noise = np.random.default_rng(3).normal(100, 1, (96, 96))
    bad = DistortionModel.fit(noise)
    assert not bad and bad.auto_polarity
    assert "both polarities tried" in bad.reason
    assert "with polarity bright" in bad.reason and "with polarity dark" in bad.reason
    assert len(bad.tried) == 1 and bad.tried[0]["polarity"] != bad.polarity
    assert set(bad.tried[0]) == {"polarity", "ncandidates", "nfitted", "nindexed", "problem"}
    assert "both polarities" in bad.suggestion(cli=True)
    assert "--spot-radius" in bad.suggestion(cli=True)
