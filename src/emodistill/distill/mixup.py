"""Consistent mixup of a whole multimodal batch, for function-matching KD.

Function matching (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient
and consistent", CVPR) distils on *the same* augmented input for teacher and student; with
mixup, the points between training samples are where the teacher's function carries more
than the labels it was fitted to. Here every modality of a batch is mixed with the same
per-sample weight ``lam`` and the same partner permutation ``perm``::

    x_mix[i] = lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]      (every modality)

so a headset view of the mixed full cap equals the mix of the headset views (the headset's
features are a subset of the cap's features of the same trial). Not part of the seed papers.

The draws come from a caller-owned :class:`torch.Generator` (deterministic runs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.data.spec import TargetSpec
from emodistill.errors import ConfigError

__all__ = ["MixDraw", "check_mixup_alpha", "draw_mix", "mix_batch", "mixed_task_loss",
           "mixed_label_targets"]


class MixDraw:
    """One draw of a batch mix: ``lam [B]`` (float, in [0, 1]) and ``perm [B]`` (int64)."""

    def __init__(self, lam: Tensor, perm: Tensor) -> None:
        if lam.shape != perm.shape or lam.ndim != 1:
            raise ValueError(f"lam {tuple(lam.shape)} and perm {tuple(perm.shape)} must both "
                             "be [B]")
        self.lam, self.perm = lam, perm


def check_mixup_alpha(alpha: float, *, key: str = "method.kd_mixup") -> float:
    """Return ``alpha`` as a float, refusing values that are not a Beta parameter.

    Raises
    ------
    ConfigError
        ``alpha`` negative, not finite or not a number (0 means off).
    """
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={alpha!r} is not a number; give the Beta(a, a) parameter "
                          "a > 0 of the mixing weight, or 0 for no mixup") from None
    if not (a >= 0.0 and a < float("inf")):
        raise ConfigError(f"{key}={alpha!r}; it must be a finite number >= 0 (0: no mixup; "
                          "a > 0: mixing weights from Beta(a, a), e.g. 0.2 or 1.0)")
    return a


def draw_mix(n: int, alpha: float, generator: torch.Generator) -> MixDraw:
    """Draw per-sample weights ``lam ~ Beta(alpha, alpha)`` ``[n]`` and a partner permutation.

    ``lam = G1 / (G1 + G2)`` with ``G1, G2 ~ Gamma(alpha, 1)`` drawn from ``generator``
    (``torch.distributions.Beta`` cannot take a generator); ``perm`` is
    ``torch.randperm(n, generator=generator)``. Both live on the generator's device (CPU).
    """
    a = check_mixup_alpha(alpha)
    if a <= 0:
        raise ConfigError(f"draw_mix needs alpha > 0; got {alpha}")
    conc = torch.full((2, n), a, dtype=torch.float64, device=generator.device)
    g = torch._standard_gamma(conc, generator=generator)
    lam = g[0] / (g[0] + g[1]).clamp_min(torch.finfo(torch.float64).tiny)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return MixDraw(lam.float(), perm)


def mix_batch(batch: Batch, draw: MixDraw) -> Batch:
    """Mix every modality of ``batch`` with the same weights and partners.

    Parameters
    ----------
    batch : Batch
        ``inputs[m]`` ``[B, T, D]`` float; masks ``[B, T]``; presence ``[B]``.
    draw : MixDraw
        ``lam [B]`` and ``perm [B]`` (moved to the batch's device).

    Returns
    -------
    Batch
        ``inputs[m] = lam * x + (1 - lam) * x[perm]`` for every modality; ``mask[m]`` and
        ``present[m]`` are the OR of the two partners' (the mix holds content where either
        partner has it; pooled band features have all-ones masks); ``target`` and ``index``
        are the first partner's (use :func:`mixed_task_loss` for the mixed labels).

    Raises
    ------
    ConfigError
        A modality holds token ids (integers): ids cannot be mixed.
    """
    if batch.context is not None:
        raise ConfigError("mixup KD (method.kd_mixup > 0) with utterance context "
                          "(method.context) is not supported: set method.kd_mixup=0")
    dev = batch.target.device
    lam, perm = draw.lam.to(dev), draw.perm.to(dev)
    inputs: dict[str, Tensor] = {}
    for m, x in batch.inputs.items():
        if not torch.is_floating_point(x):
            raise ConfigError(
                f"mixup KD (method.kd_mixup > 0): modality {m!r} holds token ids "
                f"({x.dtype}), which cannot be mixed; use pre-extracted features for it "
                "(e.g. dataset.text_level=pooled) or set method.kd_mixup=0")
        w = lam.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        inputs[m] = w * x + (1 - w) * x[perm]
    return Batch(
        inputs=inputs,
        mask={m: v | v[perm] for m, v in batch.mask.items()},
        present={m: v | v[perm] for m, v in batch.present.items()},
        target=batch.target,
        index=batch.index,
        context=None,
    )


def mixed_label_targets(target: Tensor, draw: MixDraw, spec: TargetSpec) -> Tensor:
    """Mixed labels: ``[B, C]`` class probabilities, or ``[B]`` mixed values (regression)."""
    lam, perm = draw.lam.to(target.device), draw.perm.to(target.device)
    if spec.kind == "regression":
        t = target.float()
        return lam * t + (1 - lam) * t[perm]
    onehot = nn.functional.one_hot(target.long(), spec.n_outputs).float()
    return lam[:, None] * onehot + (1 - lam[:, None]) * onehot[perm]


def mixed_task_loss(preds: Tensor, target: Tensor, draw: MixDraw, spec: TargetSpec,
                    kind: str = "l1") -> Tensor:
    """Task loss of ``preds`` (on the mixed batch) against the mixed labels.

    Classes: cross-entropy with the mixed label distribution ``lam e_y + (1 - lam)
    e_y[perm]`` (= ``lam CE(y) + (1 - lam) CE(y[perm])``); regression: L1 / MSE to the mixed
    value. Scalar, the batch mean.
    """
    q = mixed_label_targets(target, draw, spec)
    if spec.kind == "regression":
        fn = nn.functional.mse_loss if kind == "mse" else nn.functional.l1_loss
        return fn(preds.float(), q)
    return -(q * nn.functional.log_softmax(preds.float(), -1)).sum(-1).mean()
