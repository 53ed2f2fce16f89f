"""MER and classification metrics with named variants (MMSA definitions).

:func:`metric_collection` (torchmetrics classes, for the Lightning fits) loads
:mod:`emodistill.metrics.mer` and torchmetrics on its first call: importing torchmetrics costs
seconds, and the members-in-parallel path, the tables and the reports do not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emodistill.metrics.functional import (
    MMSA_ALIASES,
    classification_metrics,
    mer_regression_metrics,
    sims_regression_metrics,
)
from emodistill.metrics.sets import HIGHER_IS_BETTER, metric_names

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

    from emodistill.data.spec import TargetSpec

__all__ = [
    "MMSA_ALIASES",
    "HIGHER_IS_BETTER",
    "classification_metrics",
    "mer_regression_metrics",
    "sims_regression_metrics",
    "metric_collection",
    "metric_names",
]


def metric_collection(target: TargetSpec, prefix: str = "",
                      **kwargs: object) -> MetricCollection:
    """All metric variants for ``target`` as one torchmetrics ``MetricCollection``.

    See :func:`emodistill.metrics.mer.metric_collection` (loaded here on first call).
    """
    from emodistill.metrics.mer import metric_collection as make

    return make(target, prefix, **kwargs)
