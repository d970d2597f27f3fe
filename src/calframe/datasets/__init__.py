"""Synthetic frames and whole nights with a known truth.

A :class:`SyntheticCamera` describes a detector (bias with structure, read
noise, gain, dark current with hot pixels, full well, Bayer pattern,
colour-dependent vignetting, dust donuts).  The frame factories
(:func:`bias_frame`, :func:`dark_frame`, :func:`flat_frame`,
:func:`light_frame`) return a :class:`SyntheticFrame`: the noisy ADU values,
the header a camera would write and the :class:`FrameTruth` it was made
from.  :func:`make_night` writes a whole night to disk as FITS and returns a
:class:`Night` with its files and its :class:`NightTruth`.
:func:`make_grid_image` renders a grid target (bright holes or dark dots)
through a known :class:`GridDistortion`, for the distortion calibration.

Everything is deterministic: the same ``seed`` gives the same frames.

Examples
--------
>>> from calframe.datasets import SyntheticCamera, bias_frame
>>> cam = SyntheticCamera(shape=(32, 32), read_noise=6.0, gain=2.0)
>>> frame = bias_frame(cam, seed=42)
>>> frame.truth.sigma.shape, round(float(cam.read_noise_adu), 2)
((32, 32), 3.0)
"""

from ._camera import CFA_PATTERNS, SyntheticCamera, cfa_colour_index
from ._dng import DngNight, DngNightTruth, make_dng_night
from ._frames import (
    IMAGETYP_MAXIM,
    FrameTruth,
    StarField,
    SyntheticFrame,
    bias_frame,
    dark_frame,
    flat_frame,
    light_frame,
    render_stars,
)
from ._grid import GridDistortion, GridTruth, make_grid_image
from ._night import DEFAULT_LAYOUT, Night, NightFrame, NightTruth, make_night

__all__ = [
    "CFA_PATTERNS",
    "DEFAULT_LAYOUT",
    "IMAGETYP_MAXIM",
    "DngNight",
    "DngNightTruth",
    "FrameTruth",
    "GridDistortion",
    "GridTruth",
    "Night",
    "NightFrame",
    "NightTruth",
    "StarField",
    "SyntheticCamera",
    "SyntheticFrame",
    "bias_frame",
    "cfa_colour_index",
    "dark_frame",
    "flat_frame",
    "light_frame",
    "make_dng_night",
    "make_grid_image",
    "make_night",
    "render_stars",
]
