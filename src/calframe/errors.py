"""Exceptions and warnings raised by calframe.

Every error that calframe raises for bad input is a :class:`CalframeError`.
Each one also subclasses the builtin exception it refines (``ValueError`` for
bad values, ``TypeError`` for wrong types), so ``except ValueError`` keeps
working for callers who do not know calframe.

Messages name the file or parameter, say what was found, and say how to fix
it.  The command line prints them without a traceback.
"""

from __future__ import annotations

import os

from astropy.units import UnitsError
from astropy.utils.exceptions import AstropyUserWarning

__all__ = [
    "CalframeError",
    "CalframeWarning",
    "CalibrationWarning",
    "ChecksumMismatchWarning",
    "FrameReadError",
    "IncompatibleFramesError",
    "InputOverwriteError",
    "InvalidSettingsError",
    "MissingMetadataError",
    "MixedFramesError",
    "NegativePixelsWarning",
    "NoFramesError",
    "NonLinearDataError",
    "NonLinearDataWarning",
    "OutputExistsError",
    "TemperatureMismatchWarning",
    "UncertaintyUnknownWarning",
    "UnitMismatchError",
    "UnsupportedFormatError",
    "WrongFrameTypeError",
]


class CalframeError(Exception):
    """Base class of every error calframe raises for bad input or settings."""


class FrameReadError(CalframeError, ValueError):
    """A file could not be read as a frame (truncated, empty, not an image...).

    Parameters
    ----------
    path : str or path-like
        The file that failed.
    problem : str
        What is wrong with it.
    fix : str, optional
        How the user can fix it.
    """

    def __init__(self, path, problem: str, fix: str | None = None):
        self.path = os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else str(path)
        self.problem = problem
        self.fix = fix
        message = f"{self.path}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class UnsupportedFormatError(FrameReadError):
    """The file is of a kind calframe does not read (or refuses on purpose)."""


class MissingMetadataError(CalframeError, ValueError):
    """A value that a step needs (exposure time, frame type...) is missing."""


class IncompatibleFramesError(CalframeError, ValueError):
    """Frames that must match (shape, unit, CFA pattern...) do not."""


class MixedFramesError(IncompatibleFramesError):
    """Frames given to one master differ where they must agree.

    Different exposures in one dark, different binning, CFA pattern, ISO or
    gain, offset, or frame types that do not belong together.  The message
    lists the groups found; ``allow_mixed=True`` (``--allow-mixed``) combines
    them anyway and records that in the provenance.
    """


class WrongFrameTypeError(IncompatibleFramesError):
    """A frame was offered in a role its own header contradicts.

    A light in a master bias, a master flat given as the bias, a calframe
    output offered as a raw frame, an 8-bit display image as a calibration
    frame.
    """


class UnitMismatchError(IncompatibleFramesError, UnitsError):
    """A master's unit does not fit the frame it calibrates (also a ``UnitsError``)."""


class OutputExistsError(CalframeError, FileExistsError):
    """An output file exists and overwriting was not requested."""


class CalframeWarning(AstropyUserWarning):
    """Base class of the warnings calframe emits."""


class UncertaintyUnknownWarning(CalframeWarning):
    """A frame was read without an uncertainty: gain or read noise is unknown.

    Emitted once per process by :func:`calframe.read_frame`; pass ``gain=`` and
    ``read_noise=`` (or write EGAIN / RDNOISE in the header) to get one.
    """


class InputOverwriteError(CalframeError, ValueError):
    """An output path names one of the files the frame was made from."""


class ChecksumMismatchWarning(CalframeWarning):
    """A FITS file's CHECKSUM or DATASUM does not match its bytes."""


class CalibrationWarning(CalframeWarning):
    """Calibration went ahead, but something about the inputs is suspicious."""


class TemperatureMismatchWarning(CalibrationWarning):
    """A dark was taken at a sensor temperature (CCD-TEMP) unlike the frame's."""


class NegativePixelsWarning(CalibrationWarning):
    """Many calibrated pixels are negative (bias or dark likely over-subtracted)."""


class InvalidSettingsError(CalframeError, ValueError):
    """A settings object or keyword argument has a value that cannot be used."""


class NoFramesError(CalframeError, ValueError):
    """A step that needs frames (e.g. a combine) was given none."""


class NonLinearDataError(CalframeError, ValueError):
    """Gamma-encoded (developed) data met linear calibration frames, e.g. a flat."""


class NonLinearDataWarning(CalibrationWarning):
    """A frame may be gamma-encoded (developed) while its calibration frames are linear."""
