"""torchmetrics wrappers around :mod:`emodistill.metrics.functional`.

Each metric accumulates predictions and targets (``dist_reduce_fx="cat"``, so
DDP gathers them) and computes its number once per epoch with the exact
functional definition, which is what the golden tests pin.

Regression targets get MMSA's MOSI/MOSEI set; a regression target declared on
[-1, 1] (CH-SIMS) gets MMSA's SIMS set instead (``acc2``, ``acc3``, ``acc5``,
``f1``, ``mae``, ``corr``, everything clipped to [-1, 1] and binned), as MMSA
switches by dataset.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from emodistill.data.spec import TargetSpec
from emodistill.metrics import functional as F

__all__ = [
    "stacked_metric_values",
    "Acc2Has0",
    "F1Has0",
    "Acc2Non0",
    "F1Non0",
    "Acc3",
    "Acc5",
    "Acc7",
    "MAE",
    "Corr",
    "Accuracy",
    "MacroF1",
    "WeightedF1",
    "SimsAcc2",
    "SimsAcc3",
    "SimsAcc5",
    "SimsF1",
    "SimsMAE",
    "SimsCorr",
    "metric_collection",
    "metric_names",
    "HIGHER_IS_BETTER",
]


class _PredTargetMetric(Metric):
    """Accumulate ``preds`` and ``target``; subclasses define ``_fn``."""

    is_differentiable = False
    full_state_update = False
    _fn: Callable[[Tensor, Tensor], Tensor]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: regression ``[B]`` values or class logits ``[B, C]``.

        Regression inputs follow :func:`~emodistill.metrics.functional.metric_input`
        (the functions' dtype rule); class logits are kept as given (half → float32).
        """
        if preds.ndim == 2:  # class logits [B, C]: only their argmax matters
            p = preds.detach()
            self.preds.append(p.float() if p.dtype in (torch.float16, torch.bfloat16) else p)
            self.target.append(target.detach())
            return
        self.preds.append(F.metric_input(preds))
        self.target.append(F.metric_input(target) if target.is_floating_point()
                           else target.detach().reshape(-1))

    def compute(self) -> Tensor:
        """Return the metric over every accumulated sample."""
        return type(self)._fn(dim_zero_cat(self.preds), dim_zero_cat(self.target)).float()


def _make(name: str, fn: Callable[[Tensor, Tensor], Tensor], higher: bool, doc: str) -> type:
    cls = type(name, (_PredTargetMetric,), {"_fn": staticmethod(fn),
                                             "higher_is_better": higher, "__doc__": doc})
    return cls


Acc2Has0 = _make("Acc2Has0", F.acc2_has0, True, "MMSA Has0_acc_2 (negative vs non-negative).")
F1Has0 = _make("F1Has0", F.f1_has0, True, "MMSA Has0_F1_score (weighted F1).")
Acc2Non0 = _make("Acc2Non0", F.acc2_non0, True, "MMSA Non0_acc_2 (zero labels dropped).")
F1Non0 = _make("F1Non0", F.f1_non0, True, "MMSA Non0_F1_score (weighted F1, zeros dropped).")
Acc3 = _make("Acc3", lambda p, t: F.acc_k(p, t, 3), True, "3-class accuracy (clip, round).")
Acc5 = _make("Acc5", lambda p, t: F.acc_k(p, t, 5), True, "MMSA Mult_acc_5.")
Acc7 = _make("Acc7", lambda p, t: F.acc_k(p, t, 7), True, "MMSA Mult_acc_7.")
MAE = _make("MAE", F.mae, False, "Mean absolute error (unclipped).")
Corr = _make("Corr", F.pearson_corr, True, "Pearson correlation (unclipped).")


class _ClassMetric(_PredTargetMetric):
    higher_is_better = True

    def __init__(self, num_classes: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def compute(self) -> Tensor:
        """Return the metric from accumulated logits ``[N, C]`` and labels ``[N]``."""
        logits, t = dim_zero_cat(self.preds), dim_zero_cat(self.target).long()
        pred = logits.argmax(-1) if logits.ndim == 2 else logits.long()
        return self._score(pred, t).float()


class Accuracy(_ClassMetric):
    """Top-1 accuracy from logits."""

    def _score(self, pred: Tensor, t: Tensor) -> Tensor:
        return (pred == t).double().mean()


class MacroF1(_ClassMetric):
    """Macro-averaged F1 (sklearn ``average="macro"``)."""

    def _score(self, pred: Tensor, t: Tensor) -> Tensor:
        return F.macro_f1(pred, t, self.num_classes)


class WeightedF1(_ClassMetric):
    """Support-weighted F1 (sklearn ``average="weighted"``)."""

    def _score(self, pred: Tensor, t: Tensor) -> Tensor:
        return F.weighted_f1(pred, t, self.num_classes)


def _sims(key: str) -> Callable[[Tensor, Tensor], Tensor]:
    def fn(p: Tensor, t: Tensor) -> Tensor:
        return torch.tensor(F.sims_regression_metrics(p, t)[key], dtype=torch.float64)

    return fn


SimsAcc2 = _make("SimsAcc2", _sims("acc2"), True, "CH-SIMS Mult_acc_2: [-1, 0] vs (0, 1].")
SimsAcc3 = _make("SimsAcc3", _sims("acc3"), True, "CH-SIMS Mult_acc_3 (bins at -0.1, 0.1).")
SimsAcc5 = _make("SimsAcc5", _sims("acc5"), True, "CH-SIMS Mult_acc_5 (bins at ±0.7, ±0.1).")
SimsF1 = _make("SimsF1", _sims("f1"), True, "CH-SIMS F1_score (weighted F1 of the 2 bins).")
SimsMAE = _make("SimsMAE", _sims("mae"), False, "CH-SIMS MAE, after clipping to [-1, 1].")
SimsCorr = _make("SimsCorr", _sims("corr"), True, "CH-SIMS Corr, after clipping to [-1, 1].")

_REGRESSION = {
    "acc2_has0": Acc2Has0, "f1_has0": F1Has0, "acc2_non0": Acc2Non0, "f1_non0": F1Non0,
    "acc3": Acc3, "acc5": Acc5, "acc7": Acc7, "mae": MAE, "corr": Corr,
}
#: CH-SIMS regression (labels in [-1, 1]): MMSA's SIMS definitions, see
#: :func:`emodistill.metrics.functional.sims_regression_metrics`
_SIMS = {"acc2": SimsAcc2, "acc3": SimsAcc3, "acc5": SimsAcc5, "f1": SimsF1, "mae": SimsMAE,
         "corr": SimsCorr}
_CLASSIFICATION = {"acc": Accuracy, "f1_macro": MacroF1, "f1_weighted": WeightedF1}

#: metric name → whether higher is better (for tables and model selection)
HIGHER_IS_BETTER = {k: bool(v.higher_is_better) for k, v in {**_REGRESSION, **_SIMS}.items()} | {
    k: True for k in _CLASSIFICATION
}


def _metric_set(target: TargetSpec) -> dict[str, type]:
    """MOSI/MOSEI set for regression, SIMS set for regression in [-1, 1], else classes."""
    if target.kind != "regression":
        return _CLASSIFICATION
    if target.value_range is not None and tuple(map(float, target.value_range)) == (-1.0, 1.0):
        return _SIMS  # MMSA picks these for SIMS; MOSI's Acc-7 is meaningless on [-1, 1]
    return _REGRESSION


def metric_names(target: TargetSpec) -> list[str]:
    """Names of the metrics reported for ``target``."""
    return list(_metric_set(target))


def metric_collection(target: TargetSpec, prefix: str = "", **kwargs: object) -> MetricCollection:
    """All metric variants for ``target`` as one :class:`MetricCollection`.

    ``kwargs`` go to every metric (e.g. ``sync_on_compute=False`` to compute in
    one process of a DDP job).
    """
    if target.kind == "regression":
        metrics = {k: cls(**kwargs) for k, cls in _metric_set(target).items()}
    else:
        metrics = {k: cls(target.num_classes, **kwargs) for k, cls in _CLASSIFICATION.items()}
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)




def stacked_metric_values(target: TargetSpec, preds: Tensor,
                          targets: Tensor) -> list[dict[str, float]]:
    """Compute the values of :func:`metric_collection` for ``N`` members at once.

    Parameters
    ----------
    target : TargetSpec
        What is predicted (selects the metric set, as :func:`metric_collection`).
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
    if target.kind == "regression":
        fns = _metric_set(target)
        out = []
        for i in range(n):
            p = F.metric_input(preds[i])
            t = F.metric_input(targets[i]) if targets[i].is_floating_point() else targets[i]
            out.append({k: float(cls._fn(p, t).float()) for k, cls in fns.items()})
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
    names = list(_CLASSIFICATION)  # acc, f1_macro, f1_weighted
    return [dict(zip(names, row, strict=True)) for row in cols]
