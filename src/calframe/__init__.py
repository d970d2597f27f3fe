"""calframe: calibration of CCD/CMOS detector frames and camera RAW files.

Every frame is an :class:`astropy.nddata.CCDData` with a unit, an uncertainty
and a mask; every output is a multi-extension FITS that says how it was made.

The public names below are imported from their modules on first use, so that
``from calframe import combine`` does not pay for the distortion, registration
or report machinery (which bring in photutils, scikit-image and matplotlib).
"""

import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import TYPE_CHECKING

try:
    __version__ = version("calframe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .errors import (
    CalframeError,
    CalframeWarning,
    FrameReadError,
    IncompatibleFramesError,
    InvalidSettingsError,
    MissingMetadataError,
    MixedFramesError,
    NonLinearDataError,
    NonLinearDataWarning,
    OutputExistsError,
    UncertaintyUnknownWarning,
    UnitMismatchError,
    UnsupportedFormatError,
    WrongFrameTypeError,
)

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "subtract_black_level": ".blacklevel",
    "calibrate": ".calibrate",
    "fit_dark_scale": ".calibrate",
    "fit_dark_scale_per_channel": ".calibrate",
    "GESD": ".combine",
    "LinearFitClip": ".combine",
    "MinMaxClip": ".combine",
    "PercentileClip": ".combine",
    "Scale": ".combine",
    "SigmaClip": ".combine",
    "WinsorizedSigmaClip": ".combine",
    "combine": ".combine",
    "running_mean": ".combine",
    "Cosmetic": ".cosmetic",
    "CosmicRays": ".cosmetic",
    "correct_bad_pixels": ".cosmetic",
    "find_bad_pixels": ".cosmetic",
    "remove_cosmic_rays": ".cosmetic",
    "demosaic": ".demosaic",
    "split_rgb": ".demosaic",
    "DistortionModel": ".distortion",
    "FailedDistortionFit": ".distortion",
    "FitSettings": ".distortion",
    "correct_distortion": ".distortion",
    "detect_grid_spots": ".distortion",
    "plot_distortion": ".distortion",
    "FlatQuality": ".flatquality",
    "flat_quality": ".flatquality",
    "Inventory": ".inventory",
    "Tolerances": ".inventory",
    "take_inventory": ".inventory",
    "FrameInfo": ".io",
    "iter_frames": ".io",
    "read_frame": ".io",
    "read_header": ".io",
    "read_provenance": ".io",
    "write_frame": ".io",
    "check_flat_linearity": ".linearity",
    "check_light_linearity": ".linearity",
    "check_linear_pair": ".linearity",
    "make_master_bias": ".masters",
    "make_master_dark": ".masters",
    "make_master_flat": ".masters",
    "PipelineConfig": ".pipeline",
    "load_config": ".pipeline",
    "make_plan": ".pipeline",
    "run_pipeline": ".pipeline",
    "InputRecord": ".provenance",
    "Provenance": ".provenance",
    "get_provenance": ".provenance",
    "set_provenance": ".provenance",
    "Alignment": ".register",
    "AlignmentError": ".register",
    "align": ".register",
    "stack": ".register",
    "warp": ".register",
    "write_report": ".report",
    "FrameSeries": ".series",
    "open_series": ".series",
    "select_dark": ".transmission",
    "transmission": ".transmission",
}

if TYPE_CHECKING:  # static analysers and IDEs see ordinary imports
    from .blacklevel import (
        subtract_black_level,
    )
    from .calibrate import (
        calibrate,
        fit_dark_scale,
        fit_dark_scale_per_channel,
    )
    from .combine import (
        GESD,
        LinearFitClip,
        MinMaxClip,
        PercentileClip,
        Scale,
        SigmaClip,
        WinsorizedSigmaClip,
        combine,
        running_mean,
    )
    from .cosmetic import (
        Cosmetic,
        CosmicRays,
        correct_bad_pixels,
        find_bad_pixels,
        remove_cosmic_rays,
    )
    from .demosaic import (
        demosaic,
        split_rgb,
    )
    from .distortion import (
        DistortionModel,
        FailedDistortionFit,
        FitSettings,
        correct_distortion,
        detect_grid_spots,
        plot_distortion,
    )
    from .flatquality import (
        FlatQuality,
        flat_quality,
    )
    from .inventory import (
        Inventory,
        Tolerances,
        take_inventory,
    )
    from .io import (
        FrameInfo,
        iter_frames,
        read_frame,
        read_header,
        read_provenance,
        write_frame,
    )
    from .linearity import (
        check_flat_linearity,
        check_light_linearity,
        check_linear_pair,
    )
    from .masters import (
        make_master_bias,
        make_master_dark,
        make_master_flat,
    )
    from .pipeline import (
        PipelineConfig,
        load_config,
        make_plan,
        run_pipeline,
    )
    from .provenance import (
        InputRecord,
        Provenance,
        get_provenance,
        set_provenance,
    )
    from .register import (
        Alignment,
        AlignmentError,
        align,
        stack,
        warp,
    )
    from .report import (
        write_report,
    )
    from .series import (
        FrameSeries,
        open_series,
    )
    from .transmission import (
        select_dark,
        transmission,
    )


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'calframe' has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    """The ``calframe`` module type: keeps functions named like their module bound.

    ``calframe.combine``, ``calframe.calibrate`` and ``calframe.demosaic`` are
    functions defined in modules of the same name.  Python's import system
    binds a submodule to its package's attribute when the submodule is first
    imported, which would hide the function behind the module; this keeps
    the function.
    """

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, ModuleType) and _LAZY.get(name) == "." + name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "GESD",
    "Alignment",
    "AlignmentError",
    "CalframeError",
    "CalframeWarning",
    "Cosmetic",
    "CosmicRays",
    "DistortionModel",
    "FailedDistortionFit",
    "FitSettings",
    "FlatQuality",
    "FrameInfo",
    "FrameReadError",
    "FrameSeries",
    "IncompatibleFramesError",
    "InputRecord",
    "InvalidSettingsError",
    "Inventory",
    "LinearFitClip",
    "MinMaxClip",
    "MissingMetadataError",
    "MixedFramesError",
    "NonLinearDataError",
    "NonLinearDataWarning",
    "OutputExistsError",
    "PercentileClip",
    "PipelineConfig",
    "Provenance",
    "Scale",
    "SigmaClip",
    "Tolerances",
    "UncertaintyUnknownWarning",
    "UnitMismatchError",
    "UnsupportedFormatError",
    "WinsorizedSigmaClip",
    "WrongFrameTypeError",
    "__version__",
    "align",
    "calibrate",
    "check_flat_linearity",
    "check_light_linearity",
    "check_linear_pair",
    "combine",
    "correct_bad_pixels",
    "correct_distortion",
    "demosaic",
    "detect_grid_spots",
    "find_bad_pixels",
    "fit_dark_scale",
    "fit_dark_scale_per_channel",
    "flat_quality",
    "get_provenance",
    "iter_frames",
    "load_config",
    "make_master_bias",
    "make_master_dark",
    "make_master_flat",
    "make_plan",
    "open_series",
    "plot_distortion",
    "read_frame",
    "read_header",
    "read_provenance",
    "remove_cosmic_rays",
    "run_pipeline",
    "running_mean",
    "select_dark",
    "set_provenance",
    "split_rgb",
    "stack",
    "subtract_black_level",
    "take_inventory",
    "transmission",
    "warp",
    "write_frame",
    "write_report",
]
