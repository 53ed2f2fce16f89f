"""stacked_metric_values: N members at once equal N metric collections, value for value."""

from __future__ import annotations

import pytest
import torch

from emodistill.data.spec import TargetSpec
from emodistill.metrics import metric_collection
from emodistill.metrics.sets import stacked_metric_values


def _one_by_one(target: TargetSpec, preds: torch.Tensor, targets: torch.Tensor):
    out = []
    for p, t in zip(preds, targets, strict=True):
        mc = metric_collection(target)
        mc.update(p, t)
        out.append({k: float(v) for k, v in mc.compute().items()})
    return out


@pytest.mark.parametrize("c", [2, 3, 5])
def test_classification_equals_the_collection_member_by_member(c):
    g = torch.Generator().manual_seed(c)
    target = TargetSpec("y", "binary" if c == 2 else "multiclass",
                        class_names=tuple("abcde"[:c]))
    logits = torch.randn(7, 41, c, generator=g)
    labels = torch.randint(0, c, (7, 41), generator=g)
    labels[0] = 0  # a member whose labels hold one class only
    logits[1, :, 1] += 50  # a member that predicts one class only
    got = stacked_metric_values(target, logits, labels)
    assert got == _one_by_one(target, logits, labels)  # exact, not approximate
    assert got[0] != got[2]


@pytest.mark.parametrize("value_range", [(-3.0, 3.0), (-1.0, 1.0)])
def test_regression_equals_the_collection_member_by_member(value_range):
    g = torch.Generator().manual_seed(1)
    target = TargetSpec("sentiment", "regression", value_range=value_range)
    preds = torch.randn(4, 30, generator=g) * value_range[1]
    labels = (torch.randn(4, 30, generator=g) * value_range[1]).round()
    got = stacked_metric_values(target, preds, labels)
    want = _one_by_one(target, preds, labels)
    assert sorted(got[0]) == sorted(want[0])
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, nan_ok=True, abs=0)
