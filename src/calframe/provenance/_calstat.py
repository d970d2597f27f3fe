"""The letters of the ``CALSTAT`` keyword: which corrections a step applied."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._records import StepRecord

__all__ = ["CALSTAT_LETTERS"]


#: Letters of the ``CALSTAT`` keyword, in the order written, with the pattern
#: of step names (searched, case-insensitive) that set each letter.
CALSTAT_LETTERS: dict[str, str] = {
    "O": r"overscan",
    "T": r"trim",
    "B": r"(subtract|remove|apply)_?(master_?)?bias|bias_?(subtract|correct|remov)",
    "D": r"(subtract|remove|apply)_?(master_?)?dark|dark_?(subtract|correct|remov)",
    "F": r"flat_?(correct|field|divi)|divide_?(by_?)?(master_?)?flat"
         r"|apply_?(master_?)?flat",
    "G": r"gain_?correct|apply_?gain|to_?electron",
    "C": r"cosmetic|bad_?pixel",
    "R": r"cosmic",
    "M": r"demosaic|debayer",
    "W": r"distortion|undistort",
    "A": r"register|align",
}

_CALSTAT_PARAMETERS = {
    "B": ("bias", "master_bias", "bias_subtracted"),
    "D": ("dark", "master_dark", "dark_subtracted"),
    "F": ("flat", "master_flat", "flat_corrected"),
}


def _step_letters(step: StepRecord) -> set[str]:
    letters = {letter for letter, pattern in CALSTAT_LETTERS.items()
               if re.search(pattern, step.step, flags=re.IGNORECASE)}
    if re.match(r"calibrat|make_master", step.step, flags=re.IGNORECASE):
        for letter, keys in _CALSTAT_PARAMETERS.items():
            if any(step.parameters.get(k) not in (None, False, "", 0) for k in keys):
                letters.add(letter)
    explicit = step.parameters.get("calstat")
    if isinstance(explicit, str):
        letters.update(c for c in explicit.upper() if c in CALSTAT_LETTERS)
    return letters
