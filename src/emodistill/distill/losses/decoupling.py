"""DMD's decoupling losses (Li et al., CVPR 2023), as the reference code computes them.

Reconstruction and cycle terms (:func:`masked_mse`), the orthogonality term
(:func:`orthogonality_loss`, with the reference's 3-D cosine quirk kept as
``mode="batch_axis"``) and the label-adaptive margin loss (:func:`margin_loss`,
vectorised; :func:`margin_loss_loop` is the reference's per-anchor loop, kept as
the test oracle and for ``benchmarks/dmd_speed.py``'s ``margin_impl=loop``). See
``docs/methods/dmd.md`` and ``../shared/reference/dmd_mmsa.md`` §2.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from emodistill.errors import ConfigError

__all__ = ["masked_mse", "orthogonality_loss", "margin_loss", "margin_loss_loop"]


def masked_mse(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the real steps: ``[B, T, D]`` × 2, ``[B, T]`` → scalar."""
    m = mask.to(a.dtype)[..., None]
    return ((a - b).pow(2) * m).sum() / (m.sum() * a.shape[-1]).clamp(min=1.0)


def orthogonality_loss(s: Tensor, c: Tensor, mask: Tensor,
                       mode: Literal["step", "sample", "batch_axis"] = "step") -> Tensor:
    """DMD's ``CosineEmbeddingLoss(S, C, -1)``: mean of ``max(0, cos)``.

    Parameters
    ----------
    s, c : Tensor
        ``[B, T, d]`` private and shared sequences.
    mask : Tensor
        ``[B, T]`` bool mask of real steps.
    mode : {"step", "sample", "batch_axis"}
        ``step`` (default, the fix): cosine over the ``d`` channels of each real
        step of each sample. ``sample``: cosine of the flattened ``T*d``
        vectors of each sample. ``batch_axis``: what the reference computed on
        PyTorch 1.9 with 3-D inputs, a cosine across the *batch* axis for
        each (step, channel) — kept only for bit-level comparisons.
    """
    if mode == "step":
        cos = nn.functional.cosine_similarity(s.float(), c.float(), dim=-1).clamp(min=0)
        m = mask.to(cos.dtype)
        return (cos * m).sum() / m.sum().clamp(min=1.0)
    if mode == "sample":
        m = mask.to(s.dtype)[..., None]
        cos = nn.functional.cosine_similarity((s * m).flatten(1).float(),
                                              (c * m).flatten(1).float(), dim=-1)
        return cos.clamp(min=0).mean()
    if mode == "batch_axis":
        return nn.functional.cosine_similarity(s.float(), c.float(), dim=0).clamp(min=0).mean()
    raise ConfigError(f"ort_cosine={mode!r}; use 'step', 'sample' or 'batch_axis'")


def _cosine_matrix(x: Tensor) -> Tensor:
    """Pairwise cosine ``[N, N]`` with the reference's ``sqrt(|x|^2 + 1e-8)`` norms."""
    n = (x.pow(2).sum(1) + 1e-8).sqrt().clamp(min=1e-8)
    return (x @ x.T) / (n[:, None] * n[None, :])


def margin_loss(feats: Tensor, labels: Tensor, valid: Tensor | None = None, *,
                scale: float = 0.15, chunk: int = 64) -> Tensor:
    """DMD's label-adaptive margin (hinge) loss, vectorised.

    For every anchor ``i``, positives ``j != i`` have exactly the same label,
    negatives ``k`` a different one; the anchor's loss is the mean over all
    (positive, negative) pairs of ``max(0, scale*|y_i - y_k| - cos(i,j) + cos(i,k))``.
    Anchors lacking a positive or a negative are skipped; the result is the
    mean over contributing anchors (0 if none).

    Parameters
    ----------
    feats : Tensor
        ``[N, F]`` vectors (DMD: the projected homogeneous features of every
        modality of every sample, ``N = M * B``).
    labels : Tensor
        ``[N]`` labels (regression values or class indices).
    valid : Tensor, optional
        ``[N]`` bool; invalid vectors (absent modalities) take no part.
    scale : float
        Margin per unit of label distance (reference 0.15).
    chunk : int
        Anchors processed at once (memory ``chunk * N * N``).
    """
    x = feats.float()
    y = labels.float()
    N = x.shape[0]
    cos = _cosine_matrix(x)
    same = y[:, None] == y[None, :]
    eye = torch.eye(N, dtype=torch.bool, device=x.device)
    ok = torch.ones(N, dtype=torch.bool, device=x.device) if valid is None else valid
    pair_ok = ok[:, None] & ok[None, :]
    pos = same & ~eye & pair_ok
    neg = ~same & pair_ok
    margin = scale * (y[:, None] - y[None, :]).abs()
    per_anchor = []
    for a in range(0, N, chunk):
        sl = slice(a, min(a + chunk, N))
        # h[i, j, k] = max(0, margin_ik - cos_ij + cos_ik)
        h = (margin[sl, None, :] - cos[sl, :, None] + cos[sl, None, :]).clamp(min=0)
        w = (pos[sl, :, None] & neg[sl, None, :]).to(h.dtype)
        per_anchor.append((h * w).sum((1, 2)) / w.sum((1, 2)).clamp(min=1.0))
    loss_i = torch.cat(per_anchor)
    contrib = (pos.any(1) & neg.any(1) & ok).to(loss_i.dtype)
    return (loss_i * contrib).sum() / contrib.sum().clamp(min=1.0)


def margin_loss_loop(feats: Tensor, labels: Tensor, valid: Tensor | None = None, *,
                     scale: float = 0.15) -> Tensor:
    """Straightforward per-anchor loop of :func:`margin_loss` (the reference's shape).

    Kept as the test oracle and for the speed benchmark; do not use in training.
    """
    x, y = feats.float(), labels.float()
    N = x.shape[0]
    cos = _cosine_matrix(x)
    ok = [True] * N if valid is None else valid.tolist()
    total, count = x.new_zeros(()), 0
    for i in range(N):
        if not ok[i]:
            continue
        pos = [j for j in range(N) if j != i and ok[j] and bool(y[j] == y[i])]
        neg = [k for k in range(N) if ok[k] and bool(y[k] != y[i])]
        if not pos or not neg:
            continue
        sim = cos[i, pos][:, None]
        dif = cos[i, neg][None, :]
        marg = scale * (y[i] - y[neg]).abs()[None, :]
        total = total + (marg - sim + dif).clamp(min=0).mean()
        count += 1
    return total / max(count, 1)
