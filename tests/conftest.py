"""Shared fixtures: the real data folder (skipped when absent) and small synthetic data."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path below ../shared/data, skipping the test with a reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available at {p} (../shared/data is only present in CI "
                    "and the development checkout)")
    return p


@pytest.fixture(autouse=True)
def _quiet_lightning():
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    yield


@pytest.fixture(scope="session")
def synthetic_small():
    from emodistill.data.synthetic import make_synthetic_mer

    return make_synthetic_mer(240, seed=3)
