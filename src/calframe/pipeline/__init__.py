"""A whole night or experiment, from folders of frames to calibrated FITS and a report."""

from ._runner import *  # noqa: F403
from ._runner import (  # noqa: F401
    HASH_KEYWORD,
    MASTER_KINDS,
    StackSettings,
    __all__,
    _check_output,
)
