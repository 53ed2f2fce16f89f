"""Per-modality encoders ``[B, T, D] + mask [B, T] -> [B, H]`` (kind ``encoder`` of :data:`BLOCKS`).

``auto`` picks an MLP for length-1 inputs (utterance or trial vectors) and a
temporal convolution for sequences.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from emodistill.errors import ConfigError
from emodistill.models.blocks import ENCODERS

__all__ = ["ENCODERS", "build_encoder", "masked_mean", "masked_max", "SequenceEncoder"]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real steps: ``[B, T, H]``, ``[B, T]`` → ``[B, H]`` (0 if none)."""
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over real steps (0 where a sample has no real step)."""
    filled = x.masked_fill(~mask[..., None], torch.finfo(x.dtype).min)
    out = filled.max(1).values
    return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


class SequenceEncoder(nn.Module):
    """Base: subclasses define ``sequence(x, mask) -> [B, T, H]``; pooling is shared.

    Attributes
    ----------
    out_dim : int
        Width ``H`` of the pooled output.
    """

    out_dim: int

    def sequence(self, x: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Per-step features ``[B, T, H]``."""
        raise NotImplementedError

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Pooled features ``[B, H]``."""
        return masked_mean(self.sequence(x, mask), mask)


@ENCODERS.register("mlp")
class MLPEncoder(SequenceEncoder):
    """Step-wise MLP then masked mean; exactly an MLP for length-1 inputs."""

    def __init__(self, dim: int, seq_len: int, *, width: int = 128, layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = dim
        for _ in range(layers):
            mods += [nn.Linear(d, width), nn.GELU(), nn.LayerNorm(width), nn.Dropout(dropout)]
            d = width
        self.net = nn.Sequential(*mods)
        self.out_dim = width

    def sequence(self, x: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        return self.net(x)


@ENCODERS.register("conv")
class ConvEncoder(SequenceEncoder):
    """Temporal 1-D convolutions (same padding, GELU) then masked mean + max pooling."""

    def __init__(self, dim: int, seq_len: int, *, width: int = 128, layers: int = 2,
                 kernel_size: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        d = dim
        for _ in range(layers):
            convs.append(nn.Conv1d(d, width, kernel_size, padding=kernel_size // 2))
            d = width
        self.convs = nn.ModuleList(convs)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(2 * width)
        self.proj = nn.Linear(2 * width, width)
        self.out_dim = width

    def sequence(self, x: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        h = x.transpose(1, 2)
        m = mask[:, None, :].to(h.dtype)
        for conv in self.convs:
            h = self.drop(nn.functional.gelu(conv(h * m)))
        return h.transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        h = self.sequence(x, mask)
        return self.proj(self.norm(torch.cat([masked_mean(h, mask), masked_max(h, mask)], -1)))


@ENCODERS.register("transformer")
class TransformerSeqEncoder(SequenceEncoder):
    """Linear projection + sinusoidal positions + pre-norm transformer + masked mean."""

    def __init__(self, dim: int, seq_len: int, *, width: int = 128, layers: int = 2,
                 heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if heads < 1 or width % heads:
            raise ConfigError(
                f"transformer encoder: width={width} is not divisible by heads={heads}; "
                "pick width as a multiple of heads (e.g. method.width=128 with 4 heads)"
            )
        self.proj = nn.Linear(dim, width)
        pos = torch.arange(seq_len)[:, None]
        div = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        pe = torch.zeros(seq_len, width)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div[: width // 2])
        self.register_buffer("pos", pe, persistent=False)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = width

    def sequence(self, x: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        h = self.proj(x) + self.pos[: x.shape[1]]
        # a sample with no real step (absent modality) would make attention NaN: let it
        # attend to step 0; its pooled output is masked to zero anyway
        pad = ~mask
        pad[:, 0] = pad[:, 0] & mask.any(1)
        return self.encoder(h, src_key_padding_mask=pad)


def build_encoder(name: str, dim: int, seq_len: int, **kwargs: object) -> SequenceEncoder:
    """Build encoder ``name`` (``auto``: mlp for ``seq_len == 1``, else conv)."""
    if name == "auto":
        name = "mlp" if seq_len == 1 else "conv"
    return ENCODERS.get(name)(dim, seq_len, **kwargs)  # type: ignore[return-value]
