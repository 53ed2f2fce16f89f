"""Issue 15: one dtype rule for the torchmetrics classes and the functions."""

import numpy as np
import pytest
import torch

from emodistill.data.spec import TargetSpec
from emodistill.metrics import metric_collection, sims_regression_metrics
from emodistill.metrics.functional import mer_regression_metrics, metric_input

SIMS = TargetSpec("sentiment", "regression", value_range=(-1.0, 1.0))
MOSI = TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0))


def _edge_case(n=200, seed=0):
    """float64 values just above the SIMS bin edges: float32 rounding moves them onto the edge."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(-1, 1, n)
    t = rng.uniform(-1, 1, n)
    for i, e in enumerate((-0.7, -0.1, 0.1, 0.7) * 10):
        p[i] = np.nextafter(e, 1.0)  # > edge in float64, == edge in float32
        t[i] = e + 0.05
    return torch.tensor(p, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)


def _class_values(target, p, t, chunks=3):
    coll = metric_collection(target)
    for idx in np.array_split(np.arange(len(p)), chunks):
        coll.update(p[idx], t[idx])
    return {k: float(v) for k, v in coll.compute().items()}


def test_sims_acc3_acc5_class_and_function_agree_on_float64():
    p, t = _edge_case()
    fn = sims_regression_metrics(p, t)
    cls = _class_values(SIMS, p, t)
    for k in ("acc2", "acc3", "acc5", "f1", "mae", "corr"):
        assert cls[k] == pytest.approx(fn[k], abs=1e-7), k
    # the edge values really do bin differently in float32: the rule matters here
    f32 = sims_regression_metrics(p.float(), t.float())
    assert f32["acc3"] != fn["acc3"] or f32["acc5"] != fn["acc5"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_class_and_function_agree_on_other_dtypes(dtype):
    p, t = _edge_case(seed=1)
    p, t = p.to(dtype), t.to(dtype)
    fn = sims_regression_metrics(p, t)
    cls = _class_values(SIMS, p, t)
    assert all(cls[k] == pytest.approx(fn[k], abs=1e-6) for k in fn)
    p3, t3 = p * 3, t * 3
    fn = mer_regression_metrics(p3, t3)
    cls = _class_values(MOSI, p3, t3)
    assert all(cls[k] == pytest.approx(fn[k], abs=1e-6, nan_ok=True) for k in fn)


def test_metric_input_rule():
    assert metric_input(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64
    assert metric_input(torch.zeros(2, dtype=torch.float32)).dtype == torch.float32
    assert metric_input(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert metric_input(torch.zeros(2, dtype=torch.long)).dtype == torch.float64
