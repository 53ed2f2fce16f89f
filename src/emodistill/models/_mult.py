"""MulT-style transformer blocks (Tsai et al., ACL 2019) as used by DMD and DHMD.

A written-from-scratch, batch-first re-implementation of the fairseq/MulT
encoder that DMD's reference code (``mdswyz/DMD``) inherits from MMSA:

* the input is scaled by ``sqrt(embed_dim)``, a sinusoidal position embedding
  is added (fairseq layout: ``[sin | cos]`` halves, positions counted from 1
  over real steps, padded steps get a zero embedding) and embedding dropout
  is applied; in cross-modal attention the keys/values get the same treatment;
* pre-LayerNorm blocks: multi-head attention (attention dropout), residual
  dropout, then a ``d -> 4d -> d`` ReLU feed-forward with ReLU dropout;
  a final LayerNorm;
* an optional causal mask ("``attn_mask``"): query ``i`` sees keys
  ``j <= i + |T_k - T_q|`` (the offset MulT uses for unaligned sequences).

Deliberate differences from the reference, all documented in ``docs/methods/dmd.md``:

* padding comes from the :class:`~emodistill.data.batch.Batch` mask instead of
  "a step whose first feature is exactly 0" (an inherited fairseq quirk);
* with ``key_padding_mask=True`` padded keys are ignored (the reference uses no
  key-padding mask; on MMSA aligned data, which has no padding mask, both agree);
* attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from emodistill.models.blocks import TRANSFORMERS

__all__ = ["sinusoidal_positions", "MulTLayer", "MulTEncoder", "last_real_step", "run_grouped",
           "groupable"]


class _Group:
    """Set while :func:`run_grouped` runs a group of encoders as one vmapped module."""

    active: bool = False
    #: per-encoder attention-dropout rate (a batched 0-d tensor inside the vmap)
    p: Tensor | None = None


_GROUP = _Group()


def sinusoidal_positions(mask: Tensor, dim: int) -> Tensor:
    """Fairseq sinusoidal embeddings of the real steps of ``mask``.

    Parameters
    ----------
    mask : Tensor
        ``[B, T]`` bool, True on real steps.
    dim : int
        Embedding width.

    Returns
    -------
    Tensor
        ``[B, T, dim]``; step ``t`` of a sample gets the embedding of its
        1-based rank among the sample's real steps, padded steps get zeros.
    """
    half = dim // 2
    scale = math.log(10000.0) / max(half - 1, 1)
    freq = torch.exp(torch.arange(half, device=mask.device, dtype=torch.float32) * -scale)
    pos = mask.long().cumsum(1).to(torch.float32)  # [B, T], 1-based on real steps
    ang = pos[..., None] * freq  # [B, T, half]
    emb = torch.cat([ang.sin(), ang.cos()], -1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb * mask[..., None].to(emb.dtype)


def _allowed(q_len: int, mask_kv: Tensor | None, causal: bool, k_len: int,
             device: torch.device) -> Tensor | None:
    """Boolean attention mask ``[B|1, 1, T_q, T_k]`` (True = may attend) or None."""
    allowed: Tensor | None = None
    if causal:
        offset = abs(k_len - q_len)
        i = torch.arange(q_len, device=device)[:, None]
        j = torch.arange(k_len, device=device)[None, :]
        allowed = (j <= i + offset)[None, None]  # [1, 1, Tq, Tk]
    if mask_kv is not None:
        # a sample without any real key (absent modality) attends to every key;
        # its output is masked downstream
        kpm = mask_kv | ~mask_kv.any(1, keepdim=True)
        kpm = kpm[:, None, None, :]  # [B, 1, 1, Tk]
        if allowed is None:
            allowed = kpm
        else:
            both = allowed & kpm
            # a query row left with no key (e.g. left padding + causal) falls back to causal
            empty = ~both.any(-1, keepdim=True)
            allowed = both | (empty & allowed)
    return allowed


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Turn the boolean mask ``[B|1, 1, Tq, Tk]`` into an additive one (0 / ``-inf``).

    Adding it to the scores gives the very scores ``masked_fill(~allowed, -inf)`` gives
    (``x + 0 == x``; ``scaled_dot_product_attention`` turns a boolean mask into this
    same additive mask), but the fill runs on the small unbroadcast mask, and the add
    and its backward are plain vectorised kernels (a broadcast ``masked_fill`` on CPU
    costs several times an add, twice per layer with its backward).
    """
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device),
                       float("-inf"))


class _Attention(nn.Module):
    """Multi-head attention with input/output projections (biases as in MulT).

    ``impl``: ``sdpa`` always uses :func:`~torch.nn.functional.scaled_dot_product_attention`;
    ``manual`` computes ``softmax(q kᵀ/√d_h) v`` explicitly and draws the attention-dropout
    mask as ``rand >= p`` (statistically the same dropout; on CPU several times cheaper than
    the Bernoulli sampling of SDPA's math fallback, which runs whenever dropout is on);
    ``auto`` = ``manual`` for CPU training with attention dropout, else ``sdpa``.
    """

    def __init__(self, dim: int, heads: int, dropout: float, impl: str = "auto") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed dim {dim} is not divisible by {heads} heads")
        if impl not in ("auto", "sdpa", "manual"):
            raise ValueError(f"attention impl {impl!r}; use auto, sdpa or manual")
        self.heads, self.dropout, self.impl = heads, dropout, impl
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: Tensor, kv: Tensor | None, allowed: Tensor | None) -> Tensor:
        B, Tq, D = q.shape
        h = self.heads
        if kv is None:
            qq, kk, vv = self.in_proj(q).chunk(3, -1)
        else:
            w, b = self.in_proj.weight, self.in_proj.bias
            qq = nn.functional.linear(q, w[:D], b[:D])
            kk, vv = nn.functional.linear(kv, w[D:], b[D:]).chunk(2, -1)
        Tk = kk.shape[1]
        qq = qq.view(B, Tq, h, D // h).transpose(1, 2)
        kk = kk.view(B, Tk, h, D // h).transpose(1, 2)
        vv = vv.view(B, Tk, h, D // h).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        gp = _GROUP.p if (_GROUP.active and self.training) else None
        manual = _GROUP.active or self.impl == "manual" or (
            self.impl == "auto" and p > 0 and q.device.type == "cpu")
        if manual:
            att = (qq @ kk.transpose(-1, -2)) * (D // h) ** -0.5
            if allowed is not None:  # an additive 0 / -inf mask (see _additive): one add
                att = att + _additive(allowed, att.dtype)
            att = att.softmax(-1)
            # attention dropout: drop where rand < p, as masked_fill(rand < p, 0) would, but
            # as a multiplication (CPU masked_fill is ~10x a multiply) by a mask that holds
            # the scale 1/(1-p) where kept: one product (and one in the backward) instead of
            # a 0/1 mask, a bool->float copy and a second product; the same values and
            # gradients bit for bit (a*1*s = a*s, a*0*s = 0 = a*0, for finite a)
            if gp is not None:  # grouped: each encoder's own rate
                att = att * (torch.rand_like(att) >= gp).to(att.dtype) / (1.0 - gp)
            elif p > 0:
                att = att * torch.where(torch.rand_like(att) >= p, 1.0 / (1.0 - p), 0.0)
            out = att @ vv
        else:
            out = nn.functional.scaled_dot_product_attention(qq, kk, vv, attn_mask=allowed,
                                                             dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(B, Tq, D))


class MulTLayer(nn.Module):
    """One pre-LN MulT block: (cross-)attention then a ReLU feed-forward.

    Parameters
    ----------
    dim, heads : int
        Width and number of heads.
    attn_dropout, relu_dropout, res_dropout : float
        Dropout on attention weights, after the first FFN layer, and on each
        residual branch.
    attention_impl : {"auto", "sdpa", "manual"}
        Attention kernel (see ``_Attention``); the model is the same.
    """

    def __init__(self, dim: int, heads: int, *, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0,
                 attention_impl: str = "auto") -> None:
        super().__init__()
        self.attn = _Attention(dim, heads, attn_dropout, attention_impl)
        self.norm_attn = nn.LayerNorm(dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.relu_dropout = nn.Dropout(relu_dropout)
        self.res_dropout = nn.Dropout(res_dropout)

    def forward(self, x: Tensor, kv: Tensor | None, allowed: Tensor | None) -> Tensor:
        """``x [B, Tq, D]``, ``kv [B, Tk, D]`` (None = self-attention) → ``[B, Tq, D]``."""
        h = self.norm_attn(x)
        kvn = None if kv is None else self.norm_attn(kv)  # MulT normalises k/v with the same LN
        x = x + self.res_dropout(self.attn(h, kvn, allowed))
        h = self.fc2(self.relu_dropout(nn.functional.relu(self.fc1(self.norm_ffn(x)))))
        return x + self.res_dropout(h)


@TRANSFORMERS.register("mult")
class MulTEncoder(nn.Module):
    """A stack of :class:`MulTLayer` (self- or cross-modal) with MulT's input treatment.

    Parameters
    ----------
    dim : int
        Embedding width ``D``.
    heads : int
        Attention heads (``D`` must be divisible by it).
    layers : int
        Number of blocks.
    attn_dropout, relu_dropout, res_dropout, embed_dropout : float
        Dropout rates (``embed_dropout`` after scaling + positions).
    causal : bool
        Apply MulT's (offset) causal mask.
    key_padding_mask : bool
        Ignore padded key steps (see module docstring).
    attention_impl : {"auto", "sdpa", "manual"}
        Attention kernel (see ``_Attention``); the model is the same.
    """

    def __init__(self, dim: int, heads: int, layers: int, *, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0,
                 embed_dropout: float = 0.0, causal: bool = True,
                 key_padding_mask: bool = True, attention_impl: str = "auto") -> None:
        super().__init__()
        self.dim = dim
        self.scale = math.sqrt(dim)
        self.causal = causal
        self.key_padding_mask = key_padding_mask
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.layers = nn.ModuleList(
            MulTLayer(dim, heads, attn_dropout=attn_dropout, relu_dropout=relu_dropout,
                      res_dropout=res_dropout, attention_impl=attention_impl)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def _embed(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.embed_dropout(self.scale * x + sinusoidal_positions(mask, self.dim).to(x.dtype))

    def forward(self, x: Tensor, mask: Tensor, kv: Tensor | None = None,
                mask_kv: Tensor | None = None) -> Tensor:
        """Encode ``x``, attending to itself or to ``kv``.

        Parameters
        ----------
        x : Tensor
            ``[B, T_q, D]`` queries.
        mask : Tensor
            ``[B, T_q]`` bool, True on real query steps.
        kv : Tensor, optional
            ``[B, T_k, D]`` keys/values of another modality (cross-modal attention).
        mask_kv : Tensor, optional
            ``[B, T_k]`` bool mask of ``kv``.

        Returns
        -------
        Tensor
            ``[B, T_q, D]``.
        """
        h = self._embed(x, mask)
        if kv is None:
            kvh, kmask = None, mask
        else:
            kvh = self._embed(kv, mask_kv)
            kmask = mask_kv
        allowed = _allowed(h.shape[1], kmask if self.key_padding_mask else None, self.causal,
                           h.shape[1] if kvh is None else kvh.shape[1], h.device)
        for layer in self.layers:
            h = layer(h, kvh, allowed)
        return self.norm(h)


def last_real_step(x: Tensor, mask: Tensor) -> Tensor:
    """Return the last real step of each sample: ``[B, T, D]``, ``[B, T]`` → ``[B, D]``.

    With right padding (the :class:`~emodistill.data.batch.Batch` contract) this
    is step ``length - 1``; a sample without real steps gets step ``T - 1``.
    With a full mask it is MulT's "take the last time step".
    """
    T = mask.shape[1]
    steps = torch.arange(T, device=mask.device)
    idx = torch.where(mask, steps, -1).amax(1)
    idx = torch.where(idx < 0, T - 1, idx)
    return x[torch.arange(x.shape[0], device=x.device), idx]


def _signature(enc: MulTEncoder) -> tuple:
    """Everything but the weights and the attention-dropout rate that makes two encoders differ."""
    rates = {float(layer.attn.dropout) for layer in enc.layers}
    return (enc.dim, enc.causal, enc.key_padding_mask, len(enc.layers), len(rates),
            float(enc.embed_dropout.p), enc.layers[0].attn.heads,
            float(enc.layers[0].relu_dropout.p), float(enc.layers[0].res_dropout.p),
            tuple((n, tuple(p.shape)) for n, p in enc.named_parameters()))


def groupable(encoders: list[MulTEncoder]) -> bool:
    """Tell whether ``encoders`` can run as one group.

    They must share shapes and settings except the attention-dropout rate, which may
    differ per encoder (one rate per encoder).
    """
    sigs = {_signature(e) for e in encoders}
    return len(sigs) == 1 and next(iter(sigs))[4] == 1


def run_grouped(encoders: list[MulTEncoder], x: Tensor, mask: Tensor, kv: Tensor | None = None,
                mask_kv: Tensor | None = None) -> Tensor:
    """Run ``G`` encoders of one shape as one batched module (one kernel per layer, not ``G``).

    The weights are stacked on the fly (``torch.stack`` of the encoders' own parameters,
    so gradients reach them and checkpoints keep their layout) and one
    ``torch.func.vmap`` runs the encoder code over the group.

    Parameters
    ----------
    encoders : list of MulTEncoder
        ``G`` encoders with :func:`groupable` true.
    x : Tensor
        ``[G, B, T_q, D]`` queries (encoder ``g`` gets ``x[g]``).
    mask : Tensor
        ``[G, B, T_q]`` bool.
    kv, mask_kv : Tensor, optional
        ``[G, B, T_k, D]`` and ``[G, B, T_k]`` for cross-modal attention.

    Returns
    -------
    Tensor
        ``[G, B, T_q, D]``: equal to ``encoders[g](x[g], mask[g], kv[g], mask_kv[g])``
        (to rounding; dropout masks are drawn differently).
    """
    from torch.func import functional_call, vmap

    base = encoders[0]
    named = [dict(e.named_parameters()) for e in encoders]
    stacked = {n: torch.stack([d[n] for d in named]) for n in named[0]}
    rates = torch.tensor([float(e.layers[0].attn.dropout) for e in encoders], dtype=x.dtype,
                         device=x.device)

    def one(params: dict[str, Tensor], x: Tensor, mask: Tensor, kv: Tensor | None,
            mask_kv: Tensor | None, rate: Tensor) -> Tensor:
        _GROUP.p = rate
        return functional_call(base, params, (x, mask, kv, mask_kv))

    _GROUP.active = True
    try:
        if kv is None:
            return vmap(lambda p, a, m, r: one(p, a, m, None, None, r),
                        randomness="different")(stacked, x, mask, rates)
        return vmap(one, randomness="different")(stacked, x, mask, kv, mask_kv, rates)
    finally:
        _GROUP.active, _GROUP.p = False, None
