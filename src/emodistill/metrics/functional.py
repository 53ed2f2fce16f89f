"""MER metrics as pure functions on tensors, with MMSA's exact definitions.

Inputs are the raw (unclipped) regression outputs ``preds`` ``[N]`` and gold
labels ``target`` ``[N]``. Definitions (MMSA ``metricsTop.py``):

* ``acc2_has0`` / ``f1_has0`` (MMSA ``Has0_acc_2`` / ``Has0_F1_score``): all
  samples, classes ``target >= 0`` vs ``< 0`` (negative vs non-negative); F1 is
  sklearn's weighted F1.
* ``acc2_non0`` / ``f1_non0`` (``Non0_acc_2`` / ``Non0_F1_score``): samples with
  ``target == 0`` dropped; classes ``> 0`` vs ``<= 0`` (a prediction of exactly 0
  counts as negative).
* ``acc3`` / ``acc5`` / ``acc7`` (``Mult_acc_3/5/7``): clip both to [-1, 1],
  [-2, 2], [-3, 3], round half to even, exact-match accuracy.
* ``mae``: mean absolute error, unclipped. ``corr``: Pearson r, unclipped.

SIMS (labels in [-1, 1]) clips everything to [-1, 1] first and bins instead
of rounding; see :func:`sims_regression_metrics`.

Dtypes: one rule for these functions and the torchmetrics classes of
:mod:`emodistill.metrics.mer` (:func:`metric_input`): each input keeps its own
floating precision (float16/bfloat16 become float32); the classes store what
they are given under the same rule, so a class and its function agree on any
input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "acc2_has0",
    "f1_has0",
    "acc2_non0",
    "f1_non0",
    "acc_k",
    "mae",
    "pearson_corr",
    "weighted_f1",
    "macro_f1",
    "mer_regression_metrics",
    "sims_regression_metrics",
    "classification_metrics",
    "MMSA_ALIASES",
    "metric_input",
]

#: emodistill name → MMSA's name for the same number
MMSA_ALIASES = {
    "acc2_has0": "Has0_acc_2",
    "f1_has0": "Has0_F1_score",
    "acc2_non0": "Non0_acc_2",
    "f1_non0": "Non0_F1_score",
    "acc5": "Mult_acc_5",
    "acc7": "Mult_acc_7",
    "mae": "MAE",
    "corr": "Corr",
}


def metric_input(x: Tensor) -> Tensor:
    """Apply the one dtype rule for metric inputs (functions and torchmetrics classes alike).

    Floating tensors keep their precision (float32 model outputs are binned in
    float32, as MMSA does; float64 inputs in float64), except float16 and
    bfloat16, which are promoted to float32; integer and bool tensors become
    float64. Returns a detached, flattened tensor.
    """
    x = x.detach().reshape(-1)
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x if x.is_floating_point() else x.double()


def _flat(x: Tensor) -> Tensor:
    return x.detach().reshape(-1).double()


def _per_class_f1(pred: Tensor, true: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Return per-class F1 ``[C]`` and support ``[C]`` for integer labels."""
    idx = true * num_classes + pred
    cm = torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = cm.diagonal().double()
    support = cm.sum(1).double()
    predicted = cm.sum(0).double()
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return f1, support


def weighted_f1(pred: Tensor, true: Tensor, num_classes: int) -> Tensor:
    """Sklearn ``f1_score(average="weighted")`` for integer labels ``[N]``."""
    f1, support = _per_class_f1(pred.long(), true.long(), num_classes)
    return (f1 * support).sum() / support.sum().clamp(min=1)


def macro_f1(pred: Tensor, true: Tensor, num_classes: int) -> Tensor:
    """Sklearn ``f1_score(average="macro")`` over classes present in ``true`` or ``pred``."""
    pred, true = pred.long(), true.long()
    f1, support = _per_class_f1(pred, true, num_classes)
    seen = (support > 0) | (torch.bincount(pred, minlength=num_classes) > 0)
    return f1[seen].mean() if seen.any() else f1.new_zeros(())


def acc2_has0(preds: Tensor, target: Tensor) -> Tensor:
    """Negative vs non-negative accuracy over all samples (MMSA ``Has0_acc_2``)."""
    p, t = _flat(preds), _flat(target)
    return ((p >= 0) == (t >= 0)).double().mean()


def f1_has0(preds: Tensor, target: Tensor) -> Tensor:
    """Weighted F1 of negative vs non-negative over all samples (``Has0_F1_score``)."""
    p, t = _flat(preds), _flat(target)
    return weighted_f1((p >= 0).long(), (t >= 0).long(), 2)


def _non0(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    p, t = _flat(preds), _flat(target)
    keep = t != 0
    return (p[keep] > 0).long(), (t[keep] > 0).long()


def acc2_non0(preds: Tensor, target: Tensor) -> Tensor:
    """Negative vs positive accuracy with zero labels dropped (``Non0_acc_2``)."""
    p, t = _non0(preds, target)
    return (p == t).double().mean() if t.numel() else torch.tensor(float("nan"))


def f1_non0(preds: Tensor, target: Tensor) -> Tensor:
    """Weighted F1 of negative vs positive with zero labels dropped (``Non0_F1_score``)."""
    p, t = _non0(preds, target)
    return weighted_f1(p, t, 2) if t.numel() else torch.tensor(float("nan"))


def acc_k(preds: Tensor, target: Tensor, k: int) -> Tensor:
    """``k``-class accuracy (k in 3, 5, 7): clip to ``±(k-1)/2``, round half to even."""
    if k not in (3, 5, 7):
        raise ValueError(f"acc_k: k={k}; MMSA defines k in (3, 5, 7)")
    b = (k - 1) / 2
    p, t = _flat(preds).clamp(-b, b).round(), _flat(target).clamp(-b, b).round()
    return (p == t).double().mean()


def mae(preds: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error (unclipped)."""
    return (_flat(preds) - _flat(target)).abs().mean()


def pearson_corr(preds: Tensor, target: Tensor) -> Tensor:
    """Pearson correlation (NaN when either input is constant, as numpy's corrcoef)."""
    p, t = _flat(preds), _flat(target)
    p, t = p - p.mean(), t - t.mean()
    denom = p.norm() * t.norm()
    return (p * t).sum() / denom if denom > 0 else torch.tensor(float("nan"), dtype=torch.float64)


def mer_regression_metrics(preds: Tensor, target: Tensor) -> dict[str, float]:
    """All MOSI/MOSEI metric variants as floats (fractions, not percent)."""
    return {
        "acc2_has0": float(acc2_has0(preds, target)),
        "f1_has0": float(f1_has0(preds, target)),
        "acc2_non0": float(acc2_non0(preds, target)),
        "f1_non0": float(f1_non0(preds, target)),
        "acc3": float(acc_k(preds, target, 3)),
        "acc5": float(acc_k(preds, target, 5)),
        "acc7": float(acc_k(preds, target, 7)),
        "mae": float(mae(preds, target)),
        "corr": float(pearson_corr(preds, target)),
    }


def _bin(x: Tensor, edges: list[float]) -> Tensor:
    """Bin index with right-closed bins: ``(e[i-1], e[i]]``, first bin closed."""
    return torch.bucketize(x, torch.tensor(edges, dtype=x.dtype), right=False)


def sims_regression_metrics(preds: Tensor, target: Tensor) -> dict[str, float]:
    """CH-SIMS metrics: clip to [-1, 1] first (also for MAE and Corr), then bin.

    Bins: 2-class [-1, 0] / (0, 1]; 3-class [-1, -0.1] / (-0.1, 0.1] / (0.1, 1];
    5-class [-1, -0.7] / (-0.7, -0.1] / (-0.1, 0.1] / (0.1, 0.7] / (0.7, 1].
    """
    # bin each input in its own precision: MMSA compares float32 outputs with Python-float
    # edges, i.e. in float32, and float32(0.1) > 0.1 in float64 would move it to the next bin
    p_own, t_own = (metric_input(x).clamp(-1, 1) for x in (preds, target))
    p, t = p_own.double(), t_own.double()
    out = {}
    for k, edges in ((2, [0.0]), (3, [-0.1, 0.1]), (5, [-0.7, -0.1, 0.1, 0.7])):
        pb, tb = _bin(p_own, edges), _bin(t_own, edges)
        out[f"acc{k}"] = float((pb == tb).double().mean())
        if k == 2:
            out["f1"] = float(weighted_f1(pb, tb, 2))
    out["mae"] = float((p - t).abs().mean())
    out["corr"] = float(pearson_corr(p, t))
    return out


def classification_metrics(logits: Tensor, target: Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy, macro F1 and weighted F1 from logits ``[N, C]`` (or labels ``[N]``)."""
    pred = logits.argmax(-1) if logits.ndim == 2 else logits.long()
    t = target.long().reshape(-1)
    return {
        "acc": float((pred == t).double().mean()),
        "f1_macro": float(macro_f1(pred, t, num_classes)),
        "f1_weighted": float(weighted_f1(pred, t, num_classes)),
    }
