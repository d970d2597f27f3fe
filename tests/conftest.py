"""Shared fixtures: where the real instrument data live, and a temporary folder."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = SHARED_DATA / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real instrument files; skips when it is absent."""
    if not REAL.is_dir():
        pytest.skip(f"real instrument data not found at ../shared/data/real ({REAL})")
    return REAL
