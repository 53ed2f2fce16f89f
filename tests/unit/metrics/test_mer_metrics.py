"""Golden tests: emodistill's metrics against numpy/sklearn re-implementations of MMSA.

The reference functions below transcribe MMSA's ``metricsTop.py`` definitions
(../shared/reference/dmd_mmsa.md §4) in plain numpy + sklearn.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from emodistill.data.spec import TargetSpec
from emodistill.metrics import (
    HIGHER_IS_BETTER,
    MMSA_ALIASES,
    classification_metrics,
    mer_regression_metrics,
    metric_collection,
    metric_names,
    sims_regression_metrics,
)
from emodistill.metrics import functional as F


# ------------------------------------------------------------------ references
def ref_mosi(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """MMSA __eval_mosei_regression, plus the Acc-3 it computes but does not return."""
    non_zeros = np.array([i for i, e in enumerate(t) if e != 0])
    out = {}
    for k, b in ((7, 3.0), (5, 2.0), (3, 1.0)):
        pc, tc = np.clip(p, -b, b), np.clip(t, -b, b)
        out[f"acc{k}"] = np.sum(np.round(pc) == np.round(tc)) / float(len(tc))
    out["mae"] = np.mean(np.absolute(p - t))
    out["corr"] = np.corrcoef(p, t)[0][1]
    if len(non_zeros):
        nz_t, nz_p = t[non_zeros] > 0, p[non_zeros] > 0
        out["acc2_non0"] = accuracy_score(nz_t, nz_p)
        out["f1_non0"] = f1_score(nz_t, nz_p, average="weighted")
    else:
        out["acc2_non0"] = out["f1_non0"] = float("nan")
    out["acc2_has0"] = accuracy_score(t >= 0, p >= 0)
    out["f1_has0"] = f1_score(t >= 0, p >= 0, average="weighted")
    return out


def ref_sims(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """MMSA __eval_sims_regression (clip first; bins are (lo, hi] with lo = -1.01)."""
    p, t = np.clip(p, -1.0, 1.0), np.clip(t, -1.0, 1.0)

    def binned(x, edges):
        out = np.zeros_like(x)
        for i in range(len(edges) - 1):
            out[np.logical_and(x > edges[i], x <= edges[i + 1])] = i
        return out

    ms2, ms3 = [-1.01, 0.0, 1.01], [-1.01, -0.1, 0.1, 1.01]
    ms5 = [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]
    p2, t2 = binned(p, ms2), binned(t, ms2)
    return {
        "acc2": np.sum(p2 == t2) / len(t2),
        "acc3": np.mean(binned(p, ms3) == binned(t, ms3)),
        "acc5": np.mean(binned(p, ms5) == binned(t, ms5)),
        "f1": f1_score(t2, p2, average="weighted"),
        "mae": np.mean(np.absolute(p - t)),
        "corr": np.corrcoef(p, t)[0][1],
    }


def ref_classes(logits: np.ndarray, t: np.ndarray) -> dict[str, float]:
    pred = logits.argmax(1)
    return {"acc": accuracy_score(t, pred), "f1_macro": f1_score(t, pred, average="macro"),
            "f1_weighted": f1_score(t, pred, average="weighted")}


def assert_same(got: dict[str, float], want: dict[str, float], tol: float = 1e-9) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        if math.isnan(want[k]):
            assert math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(want[k], abs=tol), k


def mosi_like(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """float32-exact predictions and labels with exact zeros, half-integers, out-of-range."""
    rng = np.random.default_rng(seed)
    t = np.round(rng.uniform(-3, 3, n) * 5) / 5  # 0.2 grid like MOSI; zeros occur
    t[:10] = 0.0
    p = rng.normal(0, 1.6, n)
    p[10:20] = 0.0
    p[20:40] = rng.integers(-7, 8, 20) / 2  # half-integers up to ±3.5
    p[40:45] = [4.2, -5.0, 3.5, -2.5, 2.5]
    return p.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)


# ------------------------------------------------------------------ regression
@pytest.mark.parametrize("seed", range(6))
def test_mosi_metrics_match_mmsa_on_random_inputs(seed):
    p, t = mosi_like(seed)
    got = mer_regression_metrics(torch.tensor(p), torch.tensor(t))
    assert_same(got, ref_mosi(p, t))
    p32, t32 = p.astype(np.float32), t.astype(np.float32)  # float32 as models output
    assert_same(mer_regression_metrics(torch.tensor(p32), torch.tensor(t32)),
                ref_mosi(p32, t32), tol=1e-6)


def test_labels_exactly_zero():
    t = torch.tensor([0.0, 0.0, 1.0, -1.0])
    p = torch.tensor([-0.5, 0.5, 1.0, -1.0])
    # Has0: zero labels are non-negative; the -0.5 prediction is wrong
    assert F.acc2_has0(p, t) == pytest.approx(0.75)
    # Non0: zero labels are dropped; the remaining two are right
    assert F.acc2_non0(p, t) == pytest.approx(1.0)
    assert F.f1_non0(p, t) == pytest.approx(1.0)
    assert math.isnan(float(F.acc2_non0(p, torch.zeros(4))))
    assert math.isnan(float(F.f1_non0(p, torch.zeros(4))))


def test_predictions_exactly_zero():
    t = torch.tensor([0.4, -0.4, 0.0])
    p = torch.zeros(3)
    # Has0: a 0 prediction is non-negative (right for 0.4 and 0.0)
    assert F.acc2_has0(p, t) == pytest.approx(2 / 3)
    # Non0: a 0 prediction counts as negative (right only for -0.4)
    assert F.acc2_non0(p, t) == pytest.approx(0.5)


def test_half_integer_rounding_is_half_to_even():
    p = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    t = torch.tensor([0.0, 2.0, 2.0, 0.0, -2.0, -2.0])
    assert F.acc_k(p, t, 7) == pytest.approx(1.0)
    t_away = torch.tensor([1.0, 2.0, 3.0, -1.0, -2.0, -3.0])  # round-half-away would match
    assert F.acc_k(p, t_away, 7) == pytest.approx(2 / 6)


def test_clipping_before_rounding_but_not_for_mae_or_corr():
    p = torch.tensor([5.0, -4.0, 2.6, 1.4])
    t = torch.tensor([3.0, -3.0, 2.0, 1.0])
    assert F.acc_k(p, t, 7) == pytest.approx(0.75)  # 5 -> 3, -4 -> -3, but 2.6 -> 3 != 2
    assert F.acc_k(torch.tensor([2.6]), torch.tensor([2.0]), 7) == 0
    assert F.acc_k(torch.tensor([2.6]), torch.tensor([2.0]), 5) == 1  # both clip to 2
    assert F.acc_k(torch.tensor([-0.6, 7.0]), torch.tensor([-3.0, 1.2]), 3) == 1  # clip to ±1
    assert F.mae(p, t) == pytest.approx((2 + 1 + 0.6 + 0.4) / 4)  # unclipped
    with pytest.raises(ValueError, match="k=4"):
        F.acc_k(p, t, 4)


def test_corr_of_constant_predictions_is_nan():
    assert math.isnan(float(F.pearson_corr(torch.ones(5), torch.arange(5.0))))
    with np.errstate(invalid="ignore", divide="ignore"):
        assert math.isnan(float(np.corrcoef(np.ones(5), np.arange(5.0))[0][1]))  # as numpy
    assert F.pearson_corr(torch.arange(5.0), 2 * torch.arange(5.0) + 1) == pytest.approx(1.0)


def test_shapes_are_flattened():
    p, t = mosi_like(9, n=60)
    a = mer_regression_metrics(torch.tensor(p)[:, None], torch.tensor(t))
    assert_same(a, ref_mosi(p, t))


# ------------------------------------------------------------------ SIMS
@pytest.mark.parametrize("seed", range(4))
def test_sims_metrics_match_mmsa(seed):
    rng = np.random.default_rng(seed)
    t = np.round(rng.uniform(-1, 1, 150) * 5) / 5
    p = rng.normal(0, 0.7, 150)
    p[:12] = [0.0, -0.1, 0.1, -0.7, 0.7, 1.0, -1.0, 1.4, -1.3, 0.05, -0.05, 0.69]
    t[:6] = [0.0, -0.1, 0.1, -0.7, 0.7, -1.0]
    p, t = p.astype(np.float32), t.astype(np.float32)  # MMSA sees float32 model outputs
    got = sims_regression_metrics(torch.tensor(p), torch.tensor(t))
    assert_same(got, ref_sims(p, t), tol=1e-6)
    # the same numbers in float64 (bins then compared in float64 on both sides)
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    assert_same(sims_regression_metrics(torch.tensor(p64), torch.tensor(t64)),
                ref_sims(p64, t64))


def test_sims_bin_edges_and_clipping():
    # right-closed bins: 0 is negative; -0.1 the lowest 3-class bin, 0.1 the middle one;
    # -0.7 the lowest 5-class bin, 0.7 the fourth
    p = torch.tensor([0.0, -0.1, 0.1, -0.7, 0.7, -0.69])
    t = torch.tensor([0.0, -0.5, 0.05, -1.0, 0.5, -0.7])
    m = sims_regression_metrics(p, t)
    assert m["acc2"] == pytest.approx(1.0)
    assert m["acc3"] == pytest.approx(1.0)
    assert m["acc5"] == pytest.approx(5 / 6)  # -0.69 is in (-0.7, -0.1], -0.7 is not
    m = sims_regression_metrics(torch.tensor([3.0, -2.0]), torch.tensor([1.0, -1.0]))
    assert m["mae"] == 0.0  # clipped to [-1, 1] before the MAE


# ------------------------------------------------------------------ classification
@pytest.mark.parametrize("seed,c", [(0, 2), (1, 3), (2, 9), (3, 5)])
def test_classification_matches_sklearn(seed, c):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, 120)
    logits = rng.normal(size=(120, c)) + 1.5 * np.eye(c)[t] * rng.uniform(0, 1, (120, 1))
    got = classification_metrics(torch.tensor(logits), torch.tensor(t), c)
    assert_same(got, ref_classes(logits, t))


def test_classification_edge_cases_match_sklearn():
    # class 2 never predicted, class 3 never present, class 4 neither (it must not count)
    t = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 1, 3, 0, 0, 0, 1])
    logits = np.eye(5)[pred]
    got = classification_metrics(torch.tensor(logits), torch.tensor(t), 5)
    assert_same(got, ref_classes(logits, t))
    # labels instead of logits
    got = classification_metrics(torch.tensor(pred), torch.tensor(t), 5)
    assert_same(got, ref_classes(logits, t))


# ------------------------------------------------------------------ torchmetrics
REG = TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0))


@pytest.mark.parametrize("seed", range(3))
def test_collection_accumulates_batches_for_regression(seed):
    p, t = mosi_like(seed, n=173)
    coll = metric_collection(REG, prefix="val/")
    for chunk in np.array_split(np.arange(len(p)), 7):  # uneven batches
        coll.update(torch.tensor(p[chunk], dtype=torch.float32),
                    torch.tensor(t[chunk], dtype=torch.float32))
    got = {k.removeprefix("val/"): float(v) for k, v in coll.compute().items()}
    assert_same(got, ref_mosi(p, t), tol=1e-5)
    coll.reset()
    coll.update(torch.tensor(p[:50], dtype=torch.float32),
                torch.tensor(t[:50], dtype=torch.float32))
    got = {k.removeprefix("val/"): float(v) for k, v in coll.compute().items()}
    assert_same(got, ref_mosi(p[:50], t[:50]), tol=1e-5)


@pytest.mark.parametrize("kind,c", [("binary", 2), ("multiclass", 4)])
def test_collection_accumulates_batches_for_classes(kind, c):
    rng = np.random.default_rng(c)
    t = rng.integers(0, c, 97)
    logits = rng.normal(size=(97, c)).astype(np.float32)
    target = TargetSpec("y", kind, class_names=tuple("abcd"[:c]))
    coll = metric_collection(target)
    for chunk in np.array_split(np.arange(97), 5):
        coll.update(torch.tensor(logits[chunk]), torch.tensor(t[chunk]))
    got = {k: float(v) for k, v in coll.compute().items()}
    assert_same(got, ref_classes(logits, t), tol=1e-6)


def test_sims_targets_get_the_sims_set_accumulated_over_batches():
    sims = TargetSpec("sentiment", "regression", value_range=(-1.0, 1.0))
    assert metric_names(sims) == ["acc2", "acc3", "acc5", "f1", "mae", "corr"]
    assert HIGHER_IS_BETTER["acc2"] and HIGHER_IS_BETTER["f1"]
    rng = np.random.default_rng(7)
    t = (np.round(rng.uniform(-1, 1, 90) * 5) / 5).astype(np.float32)
    p = rng.normal(0, 0.8, 90).astype(np.float32)
    p[:4] = [0.1, -0.1, 0.7, -0.7]  # on the bin edges, binned in float32 as MMSA does
    coll = metric_collection(sims, prefix="test/")
    for chunk in np.array_split(np.arange(90), 4):
        coll.update(torch.tensor(p[chunk]), torch.tensor(t[chunk]))
    got = {k.removeprefix("test/"): float(v) for k, v in coll.compute().items()}
    assert_same(got, ref_sims(p, t), tol=1e-6)
    # other ranges keep the MOSI/MOSEI set
    assert metric_names(TargetSpec("y", "regression", value_range=(1.0, 9.0))) == metric_names(
        REG)
    assert metric_names(TargetSpec("y", "regression")) == metric_names(REG)


def test_names_directions_and_aliases():
    assert metric_names(REG) == ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3", "acc5",
                                 "acc7", "mae", "corr"]
    binary = TargetSpec("p", "binary", class_names=("n", "p"))
    assert metric_names(binary) == ["acc", "f1_macro", "f1_weighted"]
    assert HIGHER_IS_BETTER["mae"] is False
    assert all(HIGHER_IS_BETTER[k] for k in metric_names(REG) + metric_names(binary) if k != "mae")
    assert MMSA_ALIASES == {
        "acc2_has0": "Has0_acc_2", "f1_has0": "Has0_F1_score", "acc2_non0": "Non0_acc_2",
        "f1_non0": "Non0_F1_score", "acc5": "Mult_acc_5", "acc7": "Mult_acc_7", "mae": "MAE",
        "corr": "Corr"}
    assert set(metric_collection(REG, prefix="test/").keys()) == {
        f"test/{k}" for k in metric_names(REG)}
