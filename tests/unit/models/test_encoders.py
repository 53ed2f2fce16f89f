"""Encoders: shapes, masking (padding never leaks into the output), registry and pooling."""

from __future__ import annotations

import pytest
import torch

from emodistill.errors import ConfigError, UnknownNameError
from emodistill.models.encoders import ENCODERS, build_encoder, masked_max, masked_mean

# float-feature encoders; token-id encoders (minilm) are tested in test_text_encoder.py
NAMES = [n for n in ENCODERS.names()
         if getattr(ENCODERS.get(n), "input_kind", "features") == "features"]


def _inputs(b=4, t=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g)
    lengths = torch.tensor([7, 4, 1, 0])[:b]
    mask = torch.arange(t)[None] < lengths[:, None]
    return x * mask[..., None], mask


def test_masked_pooling():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[-2.0], [-4.0], [9.0]], [[5.0], [6.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [True, True, False], [False, False, False]])
    assert masked_mean(x, mask).squeeze(-1).tolist() == [2.0, -3.0, 0.0]
    assert masked_max(x, mask).squeeze(-1).tolist() == [3.0, -2.0, 0.0]  # not the padding


def test_registry_and_auto():
    assert {"mlp", "conv", "transformer"} <= set(NAMES)
    assert type(build_encoder("auto", 5, 1, width=8)).__name__ == "MLPEncoder"
    assert type(build_encoder("auto", 5, 10, width=8)).__name__ == "ConvEncoder"
    with pytest.raises(UnknownNameError, match="unknown encoder 'lstm'.*Valid encoders: conv"):
        build_encoder("lstm", 5, 10)
    with pytest.raises(ConfigError, match="width=10 is not divisible by heads=4"):
        build_encoder("transformer", 5, 10, width=10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seq_len", [1, 7])
def test_output_shape_and_finite(name, seq_len):
    enc = build_encoder(name, 5, seq_len, width=8, layers=1, dropout=0.0)
    assert enc.out_dim == 8
    x, mask = _inputs(t=seq_len)
    if seq_len == 1:
        mask = mask[:, :1]
    out = enc(x[:, :seq_len], mask)
    assert out.shape == (4, 8) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in enc.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_padding_does_not_change_the_output(name):
    """Garbage in padded steps must not reach the pooled features."""
    torch.manual_seed(0)
    enc = build_encoder(name, 5, 7, width=8, layers=2, dropout=0.0).eval()
    x, mask = _inputs()
    noisy = x + 50.0 * torch.randn_like(x) * (~mask)[..., None]
    with torch.no_grad():
        a, b = enc(x, mask), enc(noisy, mask)
    torch.testing.assert_close(a[:3], b[:3], rtol=1e-4, atol=1e-5)  # the last sample is empty


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    torch.manual_seed(0)
    enc = build_encoder(name, 5, 7, width=8, dropout=0.0).eval()
    x, mask = _inputs()
    with torch.no_grad():
        full = enc(x, mask)
        for i in range(3):
            torch.testing.assert_close(enc(x[i:i + 1], mask[i:i + 1]), full[i:i + 1],
                                       rtol=1e-4, atol=1e-5)
