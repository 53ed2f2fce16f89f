"""Attention dropout on the parallel path: member draws equal to the sequential fit's draws."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from emodistill.training import parallel as P


def _layer(norm_first: bool) -> nn.TransformerEncoderLayer:
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(16, 4, 24, 0.2, batch_first=True, norm_first=norm_first)


def _inputs(b: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(b, 6, 16)
    pad = torch.zeros(b, 6, dtype=torch.bool)
    pad[1, 4:] = True
    pad[3, 1:] = True
    return x, pad


def _member_masks(base: nn.Module, x, pad, gens):
    """The engine's masks for one step: probe, one draw per member, memory order → logical."""
    P._DRAWS.record = []
    try:
        with torch.no_grad():
            base(x, src_key_padding_mask=pad)
        rec = list(P._DRAWS.record)
    finally:
        P._DRAWS.record = None
    plan = P._mask_plan([[(p, shape) for p, shape, _ in rec]])
    keep = P._draw_keep(plan, gens)
    return rec, [P._to_logical(torch.where(keep[:, off:off + math.prod(shape)], 1 / (1 - p), 0.0)
                               .reshape(-1, *shape), perm)
                 for (p, shape, off), (_, _, perm) in zip(plan.steps[0], rec, strict=True)]


@pytest.mark.parametrize("norm_first", [False, True])
def test_swapped_layer_draws_the_sequential_masks_bit_for_bit(norm_first):
    layer = _layer(norm_first).train()
    base = copy.deepcopy(layer)
    P._swap_dropout(base)
    assert type(base.self_attn) is P._MemberAttention
    x, pad = _inputs()
    g = torch.Generator()
    g.set_state(torch.get_rng_state())
    want = layer(x, src_key_padding_mask=pad)  # draws from the global stream
    rec, masks = _member_masks(base, x, pad, [g])
    assert rec[0][1] == (5, 4, 6, 6) and rec[0][2] is None  # attention weights, contiguous
    # the attention output is a transposed view: dropout1 fills its mask in memory order
    assert any(perm is not None for _, _, perm in rec)
    P._DRAWS.masks, P._DRAWS.pos = [m[0] for m in masks], 0
    got = base(x, src_key_padding_mask=pad)
    assert torch.equal(got, want)
    assert torch.equal(g.get_state(), torch.get_rng_state())  # the same number of draws


def test_vmapped_members_each_match_their_own_sequential_forward():
    layers = [_layer(False).train() for _ in range(2)]
    with torch.no_grad():
        layers[1].linear1.weight.mul_(0.5)  # two different members
    x, pad = _inputs()
    gens, want = [], []
    for seed, layer in zip((11, 12), layers, strict=True):
        torch.manual_seed(seed)
        g = torch.Generator()
        g.set_state(torch.get_rng_state())
        gens.append(g)
        want.append(layer(x, src_key_padding_mask=pad))
    base = copy.deepcopy(layers[0])
    P._swap_dropout(base)
    _, masks = _member_masks(base, x, pad, gens)
    params, buffers = torch.func.stack_module_state(layers)

    def f(p, m):
        P._DRAWS.masks, P._DRAWS.pos = m, 0
        return torch.func.functional_call(base, {**p}, (x,), {"src_key_padding_mask": pad})

    got = torch.func.vmap(f, randomness="different")(params, masks)
    for j in range(2):
        torch.testing.assert_close(got[j], want[j], atol=1e-6, rtol=1e-5)


def test_unswappable_dropouts_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="has no member draws"):
        P._swap_dropout(nn.Sequential(nn.Dropout2d(0.3)))
    mha = nn.MultiheadAttention(8, 2, dropout=0.1)  # batch_first=False
    with pytest.raises(ValueError, match="MultiheadAttention layout"):
        P._swap_dropout(nn.Sequential(mha))
    P._swap_dropout(nn.Sequential(nn.Dropout2d(0.0), nn.MultiheadAttention(8, 2)))  # no draws
