"""Supervised (task) losses shared by every method."""

from __future__ import annotations

from torch import Tensor, nn

from emodistill.data.spec import TargetSpec

__all__ = ["task_loss", "present_task_loss"]


def task_loss(preds: Tensor, target: Tensor, spec: TargetSpec, kind: str = "l1") -> Tensor:
    """Compute the supervised loss: L1 (MMSA) or MSE for regression, cross-entropy for classes.

    Parameters
    ----------
    preds : Tensor
        ``[B]`` values or ``[B, C]`` logits.
    target : Tensor
        ``[B]`` float values or int64 class indices.
    spec : TargetSpec
        The target being predicted.
    kind : {"l1", "mse"}
        Regression loss.

    Returns
    -------
    Tensor
        Scalar, the batch mean.
    """
    if spec.kind == "regression":
        t = target.to(preds.dtype)
        if kind == "mse":
            return nn.functional.mse_loss(preds, t)
        return nn.functional.l1_loss(preds, t)
    return nn.functional.cross_entropy(preds.float(), target.long())


def present_task_loss(preds: Tensor, target: Tensor, present: Tensor, spec: TargetSpec,
                      kind: str = "l1") -> Tensor:
    """:func:`task_loss` averaged over the samples where a modality is present.

    DMD's per-modality heads use it: a head of an absent modality is not trained.

    Parameters
    ----------
    preds : Tensor
        ``[B]`` values or ``[B, C]`` logits.
    target : Tensor
        ``[B]`` float values or int64 class indices.
    present : Tensor
        ``[B]`` bool presence of the modality.
    spec : TargetSpec
        The target being predicted.
    kind : {"l1", "mse"}
        Regression loss.

    Returns
    -------
    Tensor
        Scalar; 0 when no sample is present.
    """
    if spec.kind == "regression":
        t = target.to(preds.dtype)
        per = ((preds - t).abs() if kind == "l1" else (preds - t).pow(2))
    else:
        per = nn.functional.cross_entropy(preds.float(), target.long(), reduction="none")
    w = present.to(per.dtype)
    return (per * w).sum() / w.sum().clamp(min=1.0)
