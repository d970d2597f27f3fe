"""Parameters and versions as compact, sorted JSON text."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _clean_json(value):
    """Non-finite floats are not JSON: store them as strings ('nan', 'inf')."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _to_json(value) -> str:
    plain = json.loads(json.dumps(value, default=_json_default))
    return json.dumps(_clean_json(plain), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def _short(value, limit: int = 24) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(json.loads(_to_json(value)), ensure_ascii=False,
                          separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."
