"""calframe: calibration of CCD/CMOS detector frames and camera RAW files.

Every frame is an :class:`astropy.nddata.CCDData` with a unit, an uncertainty
and a mask; every output is a multi-extension FITS that says how it was made.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calframe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .calibrate import calibrate, fit_dark_scale, fit_dark_scale_per_channel
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
from .demosaic import demosaic, split_rgb
from .distortion import (
    DistortionModel,
    FailedDistortionFit,
    FitSettings,
    correct_distortion,
    detect_grid_spots,
    plot_distortion,
)
from .errors import (
    CalframeError,
    CalframeWarning,
    FrameReadError,
    IncompatibleFramesError,
    MissingMetadataError,
    NonLinearDataError,
    NonLinearDataWarning,
    OutputExistsError,
    UncertaintyUnknownWarning,
    UnsupportedFormatError,
)
from .flatquality import FlatQuality, flat_quality
from .inventory import Inventory, Tolerances, take_inventory
from .io import iter_frames, read_frame, read_provenance, write_frame
from .linearity import check_linear_pair
from .masters import make_master_bias, make_master_dark, make_master_flat
from .pipeline import PipelineConfig, load_config, make_plan, run_pipeline
from .provenance import InputRecord, Provenance, get_provenance, set_provenance
from .register import Alignment, AlignmentError, align, stack, warp
from .report import write_report

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
    "FrameReadError",
    "IncompatibleFramesError",
    "InputRecord",
    "Inventory",
    "LinearFitClip",
    "MinMaxClip",
    "MissingMetadataError",
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
    "UnsupportedFormatError",
    "WinsorizedSigmaClip",
    "__version__",
    "align",
    "calibrate",
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
    "plot_distortion",
    "read_frame",
    "read_provenance",
    "remove_cosmic_rays",
    "run_pipeline",
    "running_mean",
    "set_provenance",
    "split_rgb",
    "stack",
    "take_inventory",
    "warp",
    "write_frame",
    "write_report",
]
