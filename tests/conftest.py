"""Shared fixtures. Helpers that tests import live in ``tests/helpers`` (see its docstring)."""

from __future__ import annotations

import warnings

import pytest

# re-exported for tests that still write ``from conftest import shared_path`` (default import
# mode only); new tests import from ``helpers``, which works under every import mode
from helpers import SHARED_DATA, shared_path  # noqa: F401


@pytest.fixture(autouse=True)
def _quiet_lightning():
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    yield


@pytest.fixture(scope="session")
def synthetic_small():
    from emodistill.data.formats.synthetic import make_synthetic_mer

    return make_synthetic_mer(240, seed=3)
