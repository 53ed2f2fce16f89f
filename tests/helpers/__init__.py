"""Test helpers importable under any pytest import mode (``pythonpath = ["tests"]``).

``from helpers import shared_path`` (the real data, skipped when absent),
``from helpers.checkpoints import make_checkpoint`` (small untrained checkpoints),
``from helpers.report_runs import write_run`` (run folders written by hand), and small
inputs shared by several test modules: ``dmd``, ``hkd_mer``, ``mkd``, ``tiny_methods``
(every method's config shrunk), ``mmsa``, ``mahnob``, ``eeg_tables``, ``text_tokens``,
``selection``, ``crossfit``, ``tensorboard`` (event-file scalars). A test module never
imports another test module (``tests/unit/test_fast_lane.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["SHARED_DATA", "shared_path"]

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path below ../shared/data, skipping the test with a reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available at {p} (../shared/data is only present in CI "
                    "and the development checkout)")
    return p
