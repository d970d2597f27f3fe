"""A whole night or experiment, from folders of frames to calibrated FITS and a report.

:func:`make_plan` takes an inventory of the input folders (see
:mod:`calframe.inventory`), groups the frames and decides which masters to
build and which lights to calibrate with which masters.  :func:`run_pipeline`
carries the plan out:

1. every frame that a task uses is read once, checked (all-NaN, saturated,
   missing exposure...) and measured for the quality table; bad frames become
   :class:`~calframe.inventory.Problem` records and are left out;
2. one master bias, dark and flat per group (:func:`calframe.make_master_bias`
   and friends, memory bounded by ``memory_limit``);
3. every light calibrated (:func:`calframe.calibrate`), optionally
   demosaiced and corrected for distortion;
4. ``report.html`` (:func:`calframe.report.write_report`).

Resuming
--------
Each output carries a ``PIPEHASH`` header keyword: the SHA-256 of its task's
kind, parameters, the SHA-256 of every input file and the SHA-256 of the
master files it uses (so a master made again means its lights are made
again, and a light made again its stack).  A rerun skips an output only when
its hash is unchanged and its bytes are what calframe wrote: every HDU's
``CHECKSUM`` and ``DATASUM`` check out and the file ends with its
``PROVENANCE`` table.  A damaged output (truncated, a byte changed) is made
again, and everything made from it after it (:attr:`RunResult.remade`).

A run holds the lock of its output folder (``<output>/.calframe/lock``, see
``calframe._atomic.lock_output``): a second run on the same folder is
refused at once with ``OutputLockedError``, which names
the run that holds it.  Outputs are written atomically by
:func:`calframe.write_frame`, through temporary names
(``.calframe-<pid>-<random>-<name>.tmp``) listed in the run's journal before
they are created, so an interrupted run leaves no partial file under a final
name; the next run removes the temporaries that the journal of a killed run
lists, and no other file.

Configuration
-------------
A TOML file can set everything the command line can::

    inputs = ["night1"]
    output = "calibrated"
    memory_limit = "1GiB"
    strict = false
    allow_mixed = false        # true: make masters the input contract refuses
    absolute_paths = false     # true: name inputs by absolute paths in the outputs

    [master]
    method = "median"          # median | mean
    rejection = "sigma"        # none | sigma | mad | winsorized | linear | percentile
                               # | minmax | generalized
    low = 3.0                  # limits; leave out for the rejection's defaults
    high = 3.0
    # or every setting of the rejection, in the form of Rejection.to_dict:
    # rejection = {algorithm = "SigmaClip", low = 4.0, high = 3.0, scale = "mad"}

    [calibrate]
    gain = 1.5                 # e-/ADU, or leave out to stay in ADU
    read_noise = 5.0           # e-, or leave out to take RDNOISE from the headers
    dark_scale = "exposure"    # exposure | optimize | none
    cosmetic = false
    demosaic = "bilinear"      # or leave out
    assume_linear = false      # true: do not refuse data that look gamma-encoded
    distortion = "model.fits"  # a calframe distortion model, or leave out

    [tolerances]
    exptime_rel = 0.01
    temperature = 2.0

    [frame_types]              # types for files whose headers do not say
    "*/data.edf" = "light"
"""


from ._config import (
    CalibrationSettings,
    MasterSettings,
    PipelineConfig,
    StackSettings,
    load_config,
)
from ._failures import PipelineProblemError
from ._plan import MASTER_KINDS, Plan, Task, make_plan
from ._resume import HASH_KEYWORD
from ._runner import RunResult, run_pipeline

__all__ = [
    "HASH_KEYWORD",
    "MASTER_KINDS",
    "CalibrationSettings",
    "MasterSettings",
    "PipelineConfig",
    "PipelineProblemError",
    "Plan",
    "RunResult",
    "StackSettings",
    "Task",
    "load_config",
    "make_plan",
    "run_pipeline",
]
