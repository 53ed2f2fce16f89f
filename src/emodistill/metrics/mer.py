"""torchmetrics wrappers around :mod:`emodistill.metrics.functional`.

Each metric accumulates predictions and targets (``dist_reduce_fx="cat"``, so
DDP gathers them) and computes its number once per epoch with the exact
functional definition, which is what the golden tests pin.
"""

from __future__ import annotations

from collections.abc import Callable


from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from emodistill.data.spec import TargetSpec
from emodistill.metrics import functional as F

__all__ = [
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
        """Add a batch: regression ``[B]`` values or class logits ``[B, C]``."""
        self.preds.append(preds.detach().float())
        self.target.append(target.detach())

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


_REGRESSION = {
    "acc2_has0": Acc2Has0, "f1_has0": F1Has0, "acc2_non0": Acc2Non0, "f1_non0": F1Non0,
    "acc3": Acc3, "acc5": Acc5, "acc7": Acc7, "mae": MAE, "corr": Corr,
}
_CLASSIFICATION = {"acc": Accuracy, "f1_macro": MacroF1, "f1_weighted": WeightedF1}

#: metric name → whether higher is better (for tables and model selection)
HIGHER_IS_BETTER = {k: bool(v.higher_is_better) for k, v in {**_REGRESSION}.items()} | {
    k: True for k in _CLASSIFICATION
}


def metric_names(target: TargetSpec) -> list[str]:
    """Names of the metrics reported for ``target``."""
    return list(_REGRESSION if target.kind == "regression" else _CLASSIFICATION)


def metric_collection(target: TargetSpec, prefix: str = "", **kwargs: object) -> MetricCollection:
    """All metric variants for ``target`` as one :class:`MetricCollection`.

    ``kwargs`` go to every metric (e.g. ``sync_on_compute=False`` to compute in
    one process of a DDP job).
    """
    if target.kind == "regression":
        metrics = {k: cls(**kwargs) for k, cls in _REGRESSION.items()}
    else:
        metrics = {k: cls(target.num_classes, **kwargs) for k, cls in _CLASSIFICATION.items()}
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


