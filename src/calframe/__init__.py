"""calframe: calibration of CCD/CMOS detector frames and camera RAW files.

Every frame is an :class:`astropy.nddata.CCDData` with a unit, an uncertainty
and a mask; every output is a multi-extension FITS that says how it was made.

The public names are listed once, in ``__init__.pyi`` beside this file, and
imported from their modules on first use, so that ``from calframe import
combine`` does not pay for the distortion, registration or report machinery
(which bring in photutils, scikit-image and matplotlib).
"""

from importlib.metadata import PackageNotFoundError, version

import lazy_loader

try:
    __version__ = version("calframe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
