"""DHMD's dictionary losses (reconstructed; see :mod:`emodistill.distill.dictionary`).

:func:`dictionary_contrastive` is the cross-modal InfoNCE on the dictionary-matched
representations; :func:`activation_divergence` the Jensen-Shannon alternative on the
atom activations (``ctr_mode="activations"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from emodistill.errors import ConfigError

__all__ = ["dictionary_contrastive", "activation_divergence"]


def dictionary_contrastive(
    feats: Mapping[str, Tensor],
    present: Mapping[str, Tensor] | None = None,
    *,
    temperature: float = 0.1,
    pair_weights: Mapping[tuple[str, str], Tensor | float] | None = None,
    detach_teacher: bool = False,
) -> Tensor:
    """Cross-modal InfoNCE over every ordered modality pair.

    For an ordered pair (student ``m``, teacher ``n``) and sample ``b``, the
    positive of ``feats[m][b]`` is ``feats[n][b]`` and the negatives are
    ``feats[n][b']`` for the other samples of the batch (cosine similarities
    over ``temperature``). Samples where either modality is absent are neither
    anchors nor candidates. The result is the weighted mean over (ordered pair,
    anchor); with unit weights and every modality present it is the mean over
    ordered pairs of the usual batch-mean InfoNCE.

    Parameters
    ----------
    feats : mapping of str to Tensor
        Modality → ``[B, F]`` matched representations.
    present : mapping of str to Tensor, optional
        Modality → ``[B]`` bool presence.
    temperature : float
        InfoNCE temperature ``kappa``.
    pair_weights : mapping, optional
        ``(student, teacher)`` → weight (scalar or ``[B]`` per anchor); default 1.
        DHMD's "hierarchical" variant passes the GD edge weights here.
    detach_teacher : bool
        Stop gradients through the teacher side (KD-style); default False
        (CLIP-style, both sides learn).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    mods = list(feats)
    if len(mods) < 2:
        raise ConfigError(f"cross-modal contrast needs at least 2 modalities; got {mods}")
    norm = {m: nn.functional.normalize(feats[m].float(), dim=-1) for m in mods}
    B = norm[mods[0]].shape[0]
    dev = norm[mods[0]].device
    labels = torch.arange(B, device=dev)
    total, wsum = norm[mods[0]].new_zeros(()), norm[mods[0]].new_zeros(())
    for m in mods:
        for n in mods:
            if m == n:
                continue
            t = norm[n].detach() if detach_teacher else norm[n]
            logits = norm[m] @ t.T / temperature  # [B, B]
            w = torch.ones(B, device=dev)
            if present is not None:
                ok = present[m] & present[n]
                logits = logits.masked_fill(~ok[None, :], float("-inf"))
                logits = torch.where(ok[:, None], logits, torch.zeros_like(logits))
                w = w * ok.to(w.dtype)
            pw = (pair_weights or {}).get((m, n), 1.0)
            w = w * (pw.float() if isinstance(pw, Tensor) else float(pw))
            per = nn.functional.cross_entropy(logits, labels, reduction="none")  # [B]
            total = total + (per * w).sum()
            wsum = wsum + w.sum()
    return total / wsum.clamp(min=1e-8)


def activation_divergence(
    acts: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
) -> Tensor:
    """Mean Jensen-Shannon divergence between the activations of every modality pair.

    Parameters
    ----------
    acts : mapping of str to Tensor
        Modality → ``[B, K]`` activations (non-negative, summing to 1).
    present : mapping of str to Tensor, optional
        Modality → ``[B]`` bool presence; absent samples are ignored.
    """
    mods = list(acts)
    out, n_pairs = acts[mods[0]].new_zeros(()), 0
    for i, m in enumerate(mods):
        for n in mods[i + 1:]:
            p, q = acts[m].float(), acts[n].float()
            mid = 0.5 * (p + q)

            def kl(a: Tensor, b: Tensor) -> Tensor:
                return (a * (a.clamp(min=1e-12).log() - b.clamp(min=1e-12).log())).sum(-1)

            js = 0.5 * kl(p, mid) + 0.5 * kl(q, mid)  # [B]
            if present is not None:
                ok = (present[m] & present[n]).to(js.dtype)
                js = (js * ok).sum() / ok.sum().clamp(min=1)
            else:
                js = js.mean()
            out = out + js
            n_pairs += 1
    return out / max(n_pairs, 1)
