"""What every calframe output says about how it was made."""

from ._provenance import *  # noqa: F403
from ._provenance import (  # noqa: F401
    _ATTRIBUTE,
    _DIGESTS,
    _READ_FAILURES,
    __all__,
    _encode_text,
    _locate,
    _pieces,
    _printable,
    restart_step_clock,
    source_date,
    utc_now,
)
