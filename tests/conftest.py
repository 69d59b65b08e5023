"""Shared fixtures: where the real test data lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_data_dir() -> Path | None:
    """The shared real-data folder (``ENTROPYMAP_TEST_DATA``), or None if absent."""
    path = Path(os.environ.get("ENTROPYMAP_TEST_DATA", _DEFAULT_DATA)).resolve()
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder; tests that need it skip, with the reason, where it is absent."""
    path = test_data_dir()
    if path is None:
        pytest.skip(
            "real test data not found: set ENTROPYMAP_TEST_DATA to the shared/data folder "
            f"(looked at {os.environ.get('ENTROPYMAP_TEST_DATA', _DEFAULT_DATA)})"
        )
    return path


def itk_array(path: Path) -> np.ndarray:
    """Read an image with ITK directly (independent of entropymap.io), as (z, y, x)."""
    import warnings

    with warnings.catch_warnings():
        # ITK loads its SWIG modules lazily, warning as it does: keep the guard around the read.
        warnings.simplefilter("ignore", DeprecationWarning)
        import itk

        return np.asarray(itk.array_from_image(itk.imread(str(path))))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20231203)
