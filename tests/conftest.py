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


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) for every Ray test of the session, shut down at its end.

    Starting Ray and importing the stack in its workers cost seconds; tests that share one
    instance pay them once (idle workers keep their imports).
    """
    ray = pytest.importorskip("ray", reason="Ray backends: pip install 'emodistill[ray]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
