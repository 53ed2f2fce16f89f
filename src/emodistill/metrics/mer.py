"""torchmetrics wrappers around :mod:`emodistill.metrics.functional`.

Each metric accumulates predictions and targets (``dist_reduce_fx="cat"``, so
DDP gathers them) and computes its number once per epoch with the exact
functional definition, which is what the golden tests pin.

Regression targets get MMSA's MOSI/MOSEI set; a regression target declared on
[-1, 1] (CH-SIMS) gets MMSA's SIMS set instead (``acc2``, ``acc3``, ``acc5``,
``f1``, ``mae``, ``corr``, everything clipped to [-1, 1] and binned), as MMSA
switches by dataset. Which metrics a target gets, and their definitions, are in
:mod:`emodistill.metrics.sets` (importable without torchmetrics).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from emodistill.data.spec import TargetSpec
from emodistill.metrics import functional as F
from emodistill.metrics.sets import (
    CLASSIFICATION,
    REGRESSION,
    SIMS,
    MetricDef,
    metric_set,
)

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
    "SimsAcc2",
    "SimsAcc3",
    "SimsAcc5",
    "SimsF1",
    "SimsMAE",
    "SimsCorr",
    "metric_collection",
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


def _make(name: str, d: MetricDef) -> type:
    return type(name, (_PredTargetMetric,), {"_fn": staticmethod(d.fn),
                                              "higher_is_better": d.higher, "__doc__": d.doc})


Acc2Has0 = _make("Acc2Has0", REGRESSION["acc2_has0"])
F1Has0 = _make("F1Has0", REGRESSION["f1_has0"])
Acc2Non0 = _make("Acc2Non0", REGRESSION["acc2_non0"])
F1Non0 = _make("F1Non0", REGRESSION["f1_non0"])
Acc3 = _make("Acc3", REGRESSION["acc3"])
Acc5 = _make("Acc5", REGRESSION["acc5"])
Acc7 = _make("Acc7", REGRESSION["acc7"])
MAE = _make("MAE", REGRESSION["mae"])
Corr = _make("Corr", REGRESSION["corr"])


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


SimsAcc2 = _make("SimsAcc2", SIMS["acc2"])
SimsAcc3 = _make("SimsAcc3", SIMS["acc3"])
SimsAcc5 = _make("SimsAcc5", SIMS["acc5"])
SimsF1 = _make("SimsF1", SIMS["f1"])
SimsMAE = _make("SimsMAE", SIMS["mae"])
SimsCorr = _make("SimsCorr", SIMS["corr"])

_REGRESSION = {"acc2_has0": Acc2Has0, "f1_has0": F1Has0, "acc2_non0": Acc2Non0,
               "f1_non0": F1Non0, "acc3": Acc3, "acc5": Acc5, "acc7": Acc7, "mae": MAE,
               "corr": Corr}
_SIMS = {"acc2": SimsAcc2, "acc3": SimsAcc3, "acc5": SimsAcc5, "f1": SimsF1, "mae": SimsMAE,
         "corr": SimsCorr}
_CLASSIFICATION = dict(zip(CLASSIFICATION, (Accuracy, MacroF1, WeightedF1), strict=True))


def metric_collection(target: TargetSpec, prefix: str = "", **kwargs: object) -> MetricCollection:
    """All metric variants for ``target`` as one :class:`MetricCollection`.

    ``kwargs`` go to every metric (e.g. ``sync_on_compute=False`` to compute in
    one process of a DDP job).
    """
    regression = metric_set(target)
    if regression is not None:
        classes = _SIMS if regression is SIMS else _REGRESSION
        metrics = {k: cls(**kwargs) for k, cls in classes.items()}
    else:
        metrics = {k: cls(target.num_classes, **kwargs) for k, cls in _CLASSIFICATION.items()}
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)
