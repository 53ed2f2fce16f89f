"""How many members the parallel path stacks at once (``chunk_size``)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from emodistill.training.parallel import chunk_size


def _setup(width: int, rows: int) -> SimpleNamespace:
    model = nn.Sequential(nn.Linear(16, width), nn.Linear(width, 2))
    part = SimpleNamespace(features={"x": torch.zeros(rows, 16)})
    cfg = SimpleNamespace(train=SimpleNamespace(batch_size=32))
    return SimpleNamespace(model=model, parts={"train": part, "test": part}, cfg=cfg)


def test_chunks_follow_the_budget_and_stay_between_one_and_the_member_count():
    small = [_setup(8, 100)] * 40
    assert chunk_size(small, budget_bytes=1 << 40) == 40  # everything fits
    assert chunk_size(small, budget_bytes=1) == 1  # nothing fits: still one at a time
    one = chunk_size(small, budget_bytes=1 << 20)
    assert 1 <= one < 40 and chunk_size(small, budget_bytes=2 << 20) >= 2 * one - 1
    # a wider model and more data per member: fewer members in the same budget
    big = [_setup(512, 10_000)] * 40
    assert chunk_size(big, budget_bytes=1 << 20) < one
