"""Dropout masks of the parallel path: one draw per member and epoch = the per-call draws."""

from __future__ import annotations

import pytest
import torch

from emodistill.training import parallel as P


def _per_call(plan: P._MaskPlan, g: torch.Generator) -> torch.Tensor:
    # what nn.Dropout does in a sequential fit: one bernoulli_ per call, in call order
    return torch.cat([torch.empty(shape).bernoulli_(1 - p, generator=g).flatten() > 0
                      for row in plan.steps for p, shape, _ in row])


@pytest.mark.parametrize("one_rate", [True, False])
def test_epoch_draw_equals_the_per_call_draws_and_leaves_the_same_state(one_rate):
    q = 0.2 if one_rate else 0.5
    plan = P._mask_plan([[(0.2, torch.Size([7, 16])), (q, torch.Size([7, 5]))],
                         [(0.2, torch.Size([3, 16])), (q, torch.Size([3, 5]))]])
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    refs = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    keep = P._draw_keep(plan, gens)
    assert keep.shape == (3, plan.total) and keep.dtype == torch.bool
    for j, (g, r) in enumerate(zip(gens, refs, strict=True)):
        assert torch.equal(keep[j], _per_call(plan, r))
        assert torch.equal(g.get_state(), r.get_state())
    assert not torch.equal(keep[0], keep[1])


def test_per_call_fallback_gives_the_same_masks(monkeypatch):
    plan = P._mask_plan([[(0.3, torch.Size([4, 6]))], [(0.3, torch.Size([2, 6]))]])
    fast = P._draw_keep(plan, [torch.Generator().manual_seed(9)])
    monkeypatch.setattr(P, "_uniform_is_bernoulli", lambda: False)
    slow = P._draw_keep(plan, [torch.Generator().manual_seed(9)])
    assert torch.equal(fast, slow)
