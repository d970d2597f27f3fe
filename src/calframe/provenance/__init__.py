"""What every calframe output says about how it was made.

A :class:`Provenance` holds one :class:`InputRecord` per input file and one
:class:`StepRecord` per processing step.  It travels with a frame in memory
(see :func:`get_provenance` / :func:`set_provenance`), is extended by every
calframe step, and is written as the ``PROVENANCE`` table of every output
(see :func:`calframe.write_frame` and the file-layout page of the
documentation).

Every step that makes a new frame follows the same pattern::

    prov = Provenance()
    for frame in inputs:
        prov.extend(get_provenance(frame))
    prov.add_input(InputRecord.from_file(path, role="dark", frametype="dark"))
    prov.add_step("combine", method="median", nframes=len(inputs))
    set_provenance(output, prov)

Records read back from a calframe file carry ``origin``: the file in whose
table they first appeared.  This is how a calibrated light tells its own
steps from the steps that made its masters (``CALSTAT`` counts only the
former), and how ``calframe provenance`` draws the tree.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ._calstat import CALSTAT_LETTERS
from ._cells import _printable as _printable
from ._check_inputs import InputCheck, verify_inputs
from ._clock import restart_step_clock, source_date, utc_now
from ._hashing import _DIGESTS as _DIGESTS
from ._hashing import sha256_file
from ._paths import path_for_output, path_from_file
from ._provenance import _ATTRIBUTE as _ATTRIBUTE
from ._provenance import Provenance, get_provenance, set_provenance
from ._records import InputRecord, StepRecord
from ._table import PARAMS_CHUNK, TABLE_VERSION
from ._versions import software_versions

# (``_printable``, ``_DIGESTS`` and ``_ATTRIBUTE``: private names that other
# calframe modules and the benchmark scripts take from here.)

# Following and verifying files reads them through calframe.io, which writes
# and reads the records above: those names are imported on first use, so that
# calframe.io and this package never import each other.
_LAZY = {
    "PROBLEM_KINDS": "._verify", "VerifyReport": "._verify", "verify_output": "._verify",
    "ProvenanceNode": "._tree", "provenance_tree": "._tree",
    "_READ_FAILURES": "._reading",
}

if TYPE_CHECKING:  # pragma: no cover
    from ._reading import _READ_FAILURES as _READ_FAILURES
    from ._tree import ProvenanceNode, provenance_tree
    from ._verify import PROBLEM_KINDS, VerifyReport, verify_output

__all__ = [
    "CALSTAT_LETTERS",
    "PARAMS_CHUNK",
    "PROBLEM_KINDS",
    "TABLE_VERSION",
    "InputCheck",
    "InputRecord",
    "Provenance",
    "ProvenanceNode",
    "StepRecord",
    "VerifyReport",
    "get_provenance",
    "path_for_output",
    "path_from_file",
    "provenance_tree",
    "restart_step_clock",
    "set_provenance",
    "sha256_file",
    "software_versions",
    "source_date",
    "utc_now",
    "verify_inputs",
    "verify_output",
]


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'calframe.provenance' has no attribute {name!r}") \
            from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
