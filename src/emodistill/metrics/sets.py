"""Which metrics each target reports, and their values for stacked members.

No torchmetrics here (it costs seconds to import, with its text and audio extras): the
classes that accumulate over batches are in :mod:`emodistill.metrics.mer`, built from the
definitions below, and load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from emodistill.data.spec import TargetSpec
from emodistill.metrics import functional as F

__all__ = ["MetricDef", "REGRESSION", "SIMS", "CLASSIFICATION", "HIGHER_IS_BETTER",
           "metric_set", "metric_names", "stacked_metric_values"]


class MetricDef(NamedTuple):
    """One reported metric: ``fn(preds, target) -> Tensor``, its direction and a line of doc."""

    fn: Callable[[Tensor, Tensor], Tensor]
    higher: bool
    doc: str


def _sims(key: str) -> Callable[[Tensor, Tensor], Tensor]:
    def fn(p: Tensor, t: Tensor) -> Tensor:
        return torch.tensor(F.sims_regression_metrics(p, t)[key], dtype=torch.float64)

    return fn


#: MOSI/MOSEI regression: MMSA's set
REGRESSION: dict[str, MetricDef] = {
    "acc2_has0": MetricDef(F.acc2_has0, True, "MMSA Has0_acc_2 (negative vs non-negative)."),
    "f1_has0": MetricDef(F.f1_has0, True, "MMSA Has0_F1_score (weighted F1)."),
    "acc2_non0": MetricDef(F.acc2_non0, True, "MMSA Non0_acc_2 (zero labels dropped)."),
    "f1_non0": MetricDef(F.f1_non0, True, "MMSA Non0_F1_score (weighted F1, zeros dropped)."),
    "acc3": MetricDef(lambda p, t: F.acc_k(p, t, 3), True, "3-class accuracy (clip, round)."),
    "acc5": MetricDef(lambda p, t: F.acc_k(p, t, 5), True, "MMSA Mult_acc_5."),
    "acc7": MetricDef(lambda p, t: F.acc_k(p, t, 7), True, "MMSA Mult_acc_7."),
    "mae": MetricDef(F.mae, False, "Mean absolute error (unclipped)."),
    "corr": MetricDef(F.pearson_corr, True, "Pearson correlation (unclipped)."),
}
#: CH-SIMS regression (labels in [-1, 1]): MMSA's SIMS definitions, see
#: :func:`emodistill.metrics.functional.sims_regression_metrics`
SIMS: dict[str, MetricDef] = {
    "acc2": MetricDef(_sims("acc2"), True, "CH-SIMS Mult_acc_2: [-1, 0] vs (0, 1]."),
    "acc3": MetricDef(_sims("acc3"), True, "CH-SIMS Mult_acc_3 (bins at -0.1, 0.1)."),
    "acc5": MetricDef(_sims("acc5"), True, "CH-SIMS Mult_acc_5 (bins at ±0.7, ±0.1)."),
    "f1": MetricDef(_sims("f1"), True, "CH-SIMS F1_score (weighted F1 of the 2 bins)."),
    "mae": MetricDef(_sims("mae"), False, "CH-SIMS MAE, after clipping to [-1, 1]."),
    "corr": MetricDef(_sims("corr"), True, "CH-SIMS Corr, after clipping to [-1, 1]."),
}
#: classification from logits ``[B, C]``: accuracy, macro- and support-weighted F1
CLASSIFICATION: tuple[str, ...] = ("acc", "f1_macro", "f1_weighted")

#: metric name → whether higher is better (for tables and model selection)
HIGHER_IS_BETTER: dict[str, bool] = {k: v.higher for k, v in {**REGRESSION, **SIMS}.items()} | {
    k: True for k in CLASSIFICATION
}


def metric_set(target: TargetSpec) -> dict[str, MetricDef] | None:
    """MOSI/MOSEI set for regression, SIMS set for regression in [-1, 1], ``None`` for classes."""
    if target.kind != "regression":
        return None
    if target.value_range is not None and tuple(map(float, target.value_range)) == (-1.0, 1.0):
        return SIMS  # MMSA picks these for SIMS; MOSI's Acc-7 is meaningless on [-1, 1]
    return REGRESSION


def metric_names(target: TargetSpec) -> list[str]:
    """Names of the metrics reported for ``target``."""
    regression = metric_set(target)
    return list(CLASSIFICATION if regression is None else regression)


def stacked_metric_values(target: TargetSpec, preds: Tensor,
                          targets: Tensor) -> list[dict[str, float]]:
    """Compute the values of ``metric_collection`` for ``N`` members at once.

    Parameters
    ----------
    target : TargetSpec
        What is predicted (selects the metric set, as
        :func:`~emodistill.metrics.mer.metric_collection`).
    preds : Tensor
        ``[N, M]`` regression outputs or ``[N, M, C]`` class logits, one row per member.
    targets : Tensor
        ``[N, M]`` gold labels.

    Returns
    -------
    list of dict
        Per member, metric name → value, equal to ``float`` of that member's
        collection ``compute()`` after one ``update(preds[i], targets[i])``
        (float32-rounded, as the classes return). Classification is computed for
        every member in one pass (one ``bincount`` of per-member confusion matrices);
        regression calls each metric's function per member.
    """
    n = preds.shape[0]
    fns = metric_set(target)
    if fns is not None:  # regression
        out = []
        for i in range(n):
            p = F.metric_input(preds[i])
            t = F.metric_input(targets[i]) if targets[i].is_floating_point() else targets[i]
            out.append({k: float(d.fn(p, t).float()) for k, d in fns.items()})
        return out
    c = int(target.num_classes)
    logits = preds.detach()
    pred = logits.argmax(-1) if logits.ndim == 3 else logits.long()
    t = targets.detach().long()
    acc = (pred == t).double().mean(1)
    member = torch.arange(n, device=t.device)[:, None] * (c * c)
    cm = torch.bincount((member + t * c + pred).reshape(-1), minlength=n * c * c).view(n, c, c)
    tp = cm.diagonal(dim1=1, dim2=2).double()
    support, predicted = cm.sum(2).double(), cm.sum(1).double()
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    weighted = (f1 * support).sum(1) / support.sum(1).clamp(min=1)
    seen = (support > 0) | (predicted > 0)
    k = seen.sum(1)
    macro = torch.where(k > 0, (f1 * seen).sum(1) / k.clamp(min=1), torch.zeros_like(acc))
    cols = torch.stack([acc, macro, weighted], 1).float().tolist()
    names = list(CLASSIFICATION)
    return [dict(zip(names, row, strict=True)) for row in cols]
