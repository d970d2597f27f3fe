"""The public names of :mod:`calframe`, one line each: the only list of them.

``calframe/__init__.py`` hands this file to :func:`lazy_loader.attach_stub`,
which reads the imports below and imports each name from its module on first
use, so that ``from calframe import combine`` does not pay for the
distortion, registration or report machinery.  Static type checkers and IDEs
read the same imports.  ``from .module import name as name`` is how a stub
says that a name is re-exported (PEP 484).  To make a name public, add its
line here and document it on its module's page in ``docs/api/``.
"""

__version__: str

from .blacklevel import subtract_black_level as subtract_black_level
from .calibration import calibrate as calibrate
from .calibration import fit_dark_scale as fit_dark_scale
from .calibration import fit_dark_scale_per_channel as fit_dark_scale_per_channel
from .combining import GESD as GESD
from .combining import LinearFitClip as LinearFitClip
from .combining import MinMaxClip as MinMaxClip
from .combining import PercentileClip as PercentileClip
from .combining import Scale as Scale
from .combining import SigmaClip as SigmaClip
from .combining import WinsorizedSigmaClip as WinsorizedSigmaClip
from .combining import combine as combine
from .combining import running_mean as running_mean
from .cosmetic import Cosmetic as Cosmetic
from .cosmetic import CosmicRays as CosmicRays
from .cosmetic import correct_bad_pixels as correct_bad_pixels
from .cosmetic import find_bad_pixels as find_bad_pixels
from .cosmetic import remove_cosmic_rays as remove_cosmic_rays
from .demosaicing import demosaic as demosaic
from .demosaicing import split_rgb as split_rgb
from .distortion import DistortionModel as DistortionModel
from .distortion import FailedDistortionFit as FailedDistortionFit
from .distortion import FitSettings as FitSettings
from .distortion import correct_distortion as correct_distortion
from .distortion import detect_grid_spots as detect_grid_spots
from .distortion import plot_distortion as plot_distortion
from .errors import CalframeError as CalframeError
from .errors import CalframeWarning as CalframeWarning
from .errors import FrameReadError as FrameReadError
from .errors import IncompatibleFramesError as IncompatibleFramesError
from .errors import InvalidSettingsError as InvalidSettingsError
from .errors import MissingMetadataError as MissingMetadataError
from .errors import MixedFramesError as MixedFramesError
from .errors import NonLinearDataError as NonLinearDataError
from .errors import NonLinearDataWarning as NonLinearDataWarning
from .errors import OutputExistsError as OutputExistsError
from .errors import UncertaintyUnknownWarning as UncertaintyUnknownWarning
from .errors import UnitMismatchError as UnitMismatchError
from .errors import UnsupportedFormatError as UnsupportedFormatError
from .errors import WrongFrameTypeError as WrongFrameTypeError
from .flatquality import FlatQuality as FlatQuality
from .flatquality import flat_quality as flat_quality
from .inventory import Inventory as Inventory
from .inventory import Tolerances as Tolerances
from .inventory import take_inventory as take_inventory
from .io import FrameInfo as FrameInfo
from .io import iter_frames as iter_frames
from .io import read_frame as read_frame
from .io import read_header as read_header
from .io import read_provenance as read_provenance
from .io import write_frame as write_frame
from .linearity import check_flat_linearity as check_flat_linearity
from .linearity import check_light_linearity as check_light_linearity
from .linearity import check_linear_pair as check_linear_pair
from .masters import make_master_bias as make_master_bias
from .masters import make_master_dark as make_master_dark
from .masters import make_master_flat as make_master_flat
from .normalisation import select_dark as select_dark
from .normalisation import transmission as transmission
from .pipeline import PipelineConfig as PipelineConfig
from .pipeline import load_config as load_config
from .pipeline import make_plan as make_plan
from .pipeline import run_pipeline as run_pipeline
from .provenance import InputRecord as InputRecord
from .provenance import Provenance as Provenance
from .provenance import get_provenance as get_provenance
from .provenance import set_provenance as set_provenance
from .register import Alignment as Alignment
from .register import AlignmentError as AlignmentError
from .register import align as align
from .register import stack as stack
from .register import warp as warp
from .report import write_report as write_report
from .series import FrameSeries as FrameSeries
from .series import open_series as open_series
