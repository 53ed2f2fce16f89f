"""Shared fixtures. Helpers that tests import live in ``tests/helpers`` (see its docstring)."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(autouse=True)
def _quiet_lightning():
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    yield


@pytest.fixture(scope="session")
def synthetic_small():
    from emodistill.data.formats.synthetic import make_synthetic_mer

    return make_synthetic_mer(240, seed=3)
