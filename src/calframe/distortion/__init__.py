"""Geometric distortion of a detector, calibrated from an image of a grid target.

Workflow: :func:`detect_grid_spots` finds the holes/dots to sub-pixel
accuracy, :meth:`DistortionModel.fit` indexes them on the lattice and fits a
smooth displacement field, :func:`correct_distortion` resamples frames onto
the ideal pixel grid, and the model saves itself as FITS or as a pyFAI
detector.
"""

from ._check import Straightness, grid_straightness
from ._correct import correct_distortion
from ._detect import detect_grid_spots
from ._lattice import index_lattice
from ._model import DistortionModel, FailedDistortionFit, FitSettings
from ._plot import plot_distortion
from ._truth import field_error

__all__ = [
    "DistortionModel",
    "FailedDistortionFit",
    "FitSettings",
    "Straightness",
    "correct_distortion",
    "detect_grid_spots",
    "field_error",
    "grid_straightness",
    "index_lattice",
    "plot_distortion",
]
