"""MER and classification metrics with named variants (MMSA definitions)."""

from emodistill.metrics.functional import (
    MMSA_ALIASES,
    classification_metrics,
    mer_regression_metrics,
    sims_regression_metrics,
)
from emodistill.metrics.mer import HIGHER_IS_BETTER, metric_collection, metric_names

__all__ = [
    "MMSA_ALIASES",
    "HIGHER_IS_BETTER",
    "classification_metrics",
    "mer_regression_metrics",
    "sims_regression_metrics",
    "metric_collection",
    "metric_names",
]
