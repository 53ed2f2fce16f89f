"""Every loss in ``distill/losses``: values on small hand-checked cases, gradients, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emodistill.data.spec import TargetSpec
from emodistill.distill.losses import (
    activation_divergence,
    contrastive_alignment,
    dictionary_contrastive,
    edge_weighted_distance,
    feature_distance,
    feature_kd_loss,
    margin_loss,
    margin_loss_loop,
    masked_mse,
    orthogonality_loss,
    pair_distance,
    present_task_loss,
    prior_penalty,
    soft_label_kd,
    task_loss,
)
from emodistill.errors import ConfigError

REG = TargetSpec("y", "regression", value_range=(-3.0, 3.0))
BIN = TargetSpec("y", "binary", class_names=("neg", "pos"))


def _hkd_label(student, teacher, *, temperature=2.0, regression="l1"):
    """HKD-MER's label-level KD: soft_label_kd with its defaults (T = 2, L1 for regression)."""
    return soft_label_kd(student, teacher, temperature=temperature, regression=regression)


# ------------------------------------------------------------------------------------ task
def test_task_loss_values():
    p, y = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    assert task_loss(p, y, REG).item() == pytest.approx(1.5)  # (1 + 2) / 2
    assert task_loss(p, y, REG, "mse").item() == pytest.approx(2.5)  # (1 + 4) / 2
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # -log(1/2) and -log(1/4), averaged
    assert task_loss(logits, torch.tensor([1, 1]), BIN).item() == pytest.approx(
        (math.log(2) + math.log(4)) / 2)


def test_present_task_loss_averages_over_present_samples_only():
    p, y = torch.tensor([0.0, 2.0, 5.0]), torch.tensor([1.0, 0.0, 0.0])
    present = torch.tensor([True, True, False])
    assert present_task_loss(p, y, present, REG).item() == pytest.approx(1.5)
    assert present_task_loss(p, y, present, REG, "mse").item() == pytest.approx(2.5)
    none = torch.zeros(3, dtype=torch.bool)
    assert present_task_loss(p, y, none, REG).item() == 0.0
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [9.0, -9.0]])
    got = present_task_loss(logits, torch.tensor([1, 0, 1]), present, BIN)
    assert got.item() == pytest.approx(math.log(2))
    # all present: equal to the plain task loss
    torch.testing.assert_close(present_task_loss(p, y, torch.ones(3, dtype=torch.bool), REG),
                               task_loss(p, y, REG))


# -------------------------------------------------------------------------------------- kd
def test_soft_label_kd_hand_value_and_temperature_scaling():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax = (3/4, 1/4)
    want = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_label_kd(s, t, temperature=1.0).item() == pytest.approx(want, rel=1e-6)
    # T = 2 on doubled logits gives the same distributions, scaled by T^2 = 4
    assert soft_label_kd(2 * s, 2 * t, temperature=2.0).item() == pytest.approx(4 * want, rel=1e-6)
    r_s, r_t = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0])
    assert soft_label_kd(r_s, r_t).item() == pytest.approx(2.5)  # mse: (1 + 4) / 2
    assert soft_label_kd(r_s, r_t, regression="l1").item() == pytest.approx(1.5)


def test_soft_label_kd_teacher_gradient_only_when_asked():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    soft_label_kd(s, t).backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    soft_label_kd(s, t, detach_teacher=False).backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


def test_label_loss_class_targets_is_scaled_kl_with_detached_teacher():
    torch.manual_seed(0)
    s = torch.randn(6, 3, requires_grad=True)
    t = torch.randn(6, 3, requires_grad=True)
    T = 3.0
    loss = _hkd_label(s, t, temperature=T)
    p = torch.softmax(t / T, -1)
    want = (p * (p.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    assert _hkd_label(t.detach(), t.detach()).item() == pytest.approx(0.0, abs=1e-6)


def test_label_loss_regression_targets():
    s, t = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    assert _hkd_label(s, t, regression="l1").item() == pytest.approx(1.0)
    assert _hkd_label(s, t, regression="mse").item() == pytest.approx(5.0 / 3)


def test_feature_distance_hand_values_and_shape_error():
    s, t = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert feature_distance(s, t, kind="mse").item() == pytest.approx(5 / 4)
    assert feature_distance(s, t, kind="l1").item() == pytest.approx(3 / 4)
    a, b = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert feature_distance(a, b, kind="cosine").item() == pytest.approx(0.5)  # (1 + 0) / 2
    with pytest.raises(ValueError, match="equal shapes"):
        feature_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="kind='kl'"):
        feature_distance(s, t, kind="kl")  # type: ignore[arg-type]


def test_contrastive_alignment_hand_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosines: 1 on the diagonal, 0 off it; logits / T = (1/T, 0) per row
    T = 0.5
    want = -math.log(math.exp(1 / T) / (math.exp(1 / T) + 1))
    assert contrastive_alignment(a, a.clone(), temperature=T).item() == pytest.approx(want)
    # rows are L2-normalised first
    assert contrastive_alignment(3 * a, a, temperature=T).item() == pytest.approx(want)
    assert contrastive_alignment(a, a, temperature=T, symmetric=True, detach_b=False).item() \
        == pytest.approx(want)


@pytest.mark.parametrize("kind", ["contrastive", "mse", "cosine", "l1"])
def test_feature_loss_detaches_teacher_and_trains_student(kind):
    torch.manual_seed(0)
    s = torch.randn(8, 16, requires_grad=True)
    t = torch.randn(8, 16, requires_grad=True)
    feature_kd_loss(s, t, kind=kind).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["mse", "cosine", "l1"])
def test_feature_distance_is_zero_for_identical_features(kind):
    x = torch.randn(5, 7)
    assert feature_kd_loss(x, x.clone(), kind=kind).item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_feature_loss_prefers_matched_pairs():
    torch.manual_seed(0)
    t = torch.randn(16, 32)
    matched = feature_kd_loss(t + 0.01 * torch.randn(16, 32), t, temperature=0.1)
    shuffled = feature_kd_loss(t[torch.randperm(16)], t, temperature=0.1)
    assert matched < 0.1 < shuffled
    # a lower temperature sharpens the matched case further
    assert feature_kd_loss(t, t, temperature=0.05) < feature_kd_loss(t, t, temperature=0.5)


def test_feature_loss_rejects_unknown_kind():
    with pytest.raises(ConfigError, match="feature_kd='kl'"):
        feature_kd_loss(torch.randn(2, 3), torch.randn(2, 3), kind="kl")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ decoupling (DMD)
def test_masked_mse_ignores_padded_steps():
    a = torch.zeros(1, 3, 2)
    b = torch.zeros(1, 3, 2)
    b[0, 0] = torch.tensor([1.0, 3.0])  # real step: squared errors 1 and 9
    b[0, 2] = 100.0  # padded step
    mask = torch.tensor([[True, True, False]])
    assert masked_mse(a, b, mask).item() == pytest.approx(10 / 4)  # 2 real steps x 2 channels
    assert masked_mse(a, b, torch.zeros(1, 3, dtype=torch.bool)).item() == 0.0


def test_margin_loss_hand_value_and_gradient():
    # anchor 0 and 1 share label 0 (cos 1), anchor 2 has label 1 and is orthogonal to both
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    y = torch.tensor([0.0, 0.0, 1.0])
    # anchors 0, 1: max(0, 0.15 * 1 - 1 + 0) = 0; anchor 2 has no positive: skipped
    assert margin_loss(f, y).item() == pytest.approx(0.0, abs=1e-6)
    # scale 2: each of anchors 0, 1 pays 2 - 1 + 0 = 1
    loss = margin_loss(f, y, scale=2.0)
    assert loss.item() == pytest.approx(1.0, rel=1e-6)
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    torch.testing.assert_close(margin_loss_loop(f.detach(), y, scale=2.0), loss.detach())
    # an invalid (absent) vector takes no part: dropping the negative leaves no pair
    assert margin_loss(f, y, torch.tensor([True, True, False]), scale=2.0).item() == 0.0


def test_margin_loss_vectorised_equals_loop():
    g = torch.Generator().manual_seed(0)
    for trial in range(4):
        n = 12 + 3 * trial
        feats = torch.randn(n, 5, generator=g)
        labels = torch.randint(-2, 3, (n,), generator=g).float() * 0.5
        valid = torch.rand(n, generator=g) > 0.2 if trial % 2 else None
        got = margin_loss(feats, labels, valid, chunk=7)
        want = margin_loss_loop(feats, labels, valid)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_margin_loss_edge_cases():
    feats = torch.randn(4, 3)
    assert margin_loss(feats, torch.zeros(4)).item() == 0.0  # no negatives anywhere
    assert margin_loss(feats, torch.arange(4.0)).item() == 0.0  # no positives anywhere
    # a pair of identical vectors with equal labels and a distant negative: zero loss
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert margin_loss(f, torch.tensor([1.0, 1.0, -1.0])).item() == pytest.approx(0.0, abs=1e-6)
    # swapping the labels makes the hinge active: margin 0.15*2 + 2 (cos gap)
    assert margin_loss(f, torch.tensor([1.0, -1.0, 1.0])).item() > 1.0


def test_orthogonality_loss_modes():
    s = torch.zeros(2, 3, 4)
    s[..., 0] = 1.0
    c = torch.zeros(2, 3, 4)
    c[..., 1] = 1.0
    mask = torch.ones(2, 3, dtype=torch.bool)
    r = torch.rand(2, 3, 4) + 0.1
    for mode in ("step", "sample", "batch_axis"):
        assert orthogonality_loss(s, c, mask, mode).item() == pytest.approx(0.0)
        assert orthogonality_loss(r, r, mask, mode).item() == pytest.approx(1.0)
        assert orthogonality_loss(r, -r, mask, mode).item() == pytest.approx(0.0)  # only cos>0
    # the legacy mode takes the cosine across the batch axis, per (step, channel)
    want = torch.nn.functional.cosine_similarity(r, r.flip(0), dim=0).clamp(min=0).mean()
    torch.testing.assert_close(orthogonality_loss(r, r.flip(0), mask, "batch_axis"), want)
    # the masked step is ignored in "step" mode
    c2 = c.clone()
    c2[0, 2] = s[0, 2]
    mask[0, 2] = False
    assert orthogonality_loss(s, c2, mask, "step").item() == pytest.approx(0.0)
    with pytest.raises(ConfigError):
        orthogonality_loss(s, c, mask, "channel")


# ------------------------------------------------------------------ graph (DMD's GD units)
def test_l1_distance_sums_over_features():
    a, b = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    assert pair_distance(a, b, "l1").tolist() == [[3.0, 3.0]]
    with pytest.raises(ConfigError):
        pair_distance(a, b, "hamming")


def test_pair_distance_hand_values():
    s = torch.tensor([[[3.0, 4.0]]])  # one edge, one sample
    t = torch.tensor([[[0.0, 0.0]]])
    assert pair_distance(s, t, "l2").item() == pytest.approx(25.0)
    assert pair_distance(s, t, "mse").item() == pytest.approx(12.5)
    u = torch.tensor([[[4.0, 3.0]]])  # cos(s, u) = 24 / 25
    assert pair_distance(s, u, "cosine").item() == pytest.approx(1 / 25)
    assert pair_distance(s, u, "min_cosine").item() == pytest.approx(24 / 25)
    assert pair_distance(s, -u, "min_cosine").item() == 0.0  # only cos > 0 counts


def test_edge_weighted_distance_and_min_cosine_reduction():
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one edge, two samples
    t = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    w = torch.tensor([[0.5, 1.0]])
    # l1 distances (1, 1): mean_b(w * d) = (0.5 + 1) / 2
    assert edge_weighted_distance(s, t, w, "l1").item() == pytest.approx(0.75)
    # min_cosine multiplies the batch means: mean(w) * mean(max(0, cos))
    tc = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert edge_weighted_distance(s, tc, w, "min_cosine").item() == pytest.approx(0.75 * 0.5)
    valid = torch.tensor([[True], [False]])  # [B, E]: sample 1 has an absent endpoint
    got = edge_weighted_distance(s, tc, w, "min_cosine", valid)
    assert got.item() == pytest.approx(0.75 * 1.0)


def test_prior_penalty_hand_value():
    edges = torch.tensor([[0.2, 0.8], [0.4, 0.6]])  # batch mean (0.3, 0.7)
    assert prior_penalty(edges, torch.tensor([0.5, 0.5])).item() == pytest.approx(0.08)


# ----------------------------------------------------------------------- dictionary (DHMD)
def test_contrastive_matches_shared_symmetric_infonce_for_two_modalities():
    torch.manual_seed(2)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    got = dictionary_contrastive({"a": a, "b": b}, temperature=0.2)
    want = contrastive_alignment(a, b, temperature=0.2, detach_b=False, symmetric=True)
    torch.testing.assert_close(got, want)


def test_contrastive_is_low_for_aligned_and_high_for_shuffled_pairs():
    f = torch.eye(6)
    aligned = dictionary_contrastive({"a": f, "b": f, "c": f}, temperature=0.1)
    shuffled = dictionary_contrastive({"a": f, "b": f[torch.randperm(6)], "c": f}, temperature=0.1)
    assert aligned < 0.01 < 1.0 < shuffled


def test_contrastive_ignores_absent_samples_and_uses_pair_weights():
    torch.manual_seed(3)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    present = {"a": torch.tensor([1, 1, 1, 1, 0], dtype=torch.bool),
               "b": torch.ones(5, dtype=torch.bool)}
    l1 = dictionary_contrastive({"a": a, "b": b}, present)
    a2 = a.clone()
    a2[4] = 50.0
    b2 = b.clone()
    b2[4] = -50.0  # b's sample 4 has no partner: neither anchor nor candidate
    l2 = dictionary_contrastive({"a": a2, "b": b2}, present)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(l1, dictionary_contrastive({"a": a[:4], "b": b[:4]}))
    # zero weight on one direction leaves the other direction's InfoNCE
    only_ab = dictionary_contrastive({"a": a, "b": b}, pair_weights={("b", "a"): 0.0})
    want = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
        / 0.1, torch.arange(5))
    torch.testing.assert_close(only_ab, want)


def test_contrastive_detach_teacher_blocks_the_teacher_gradient():
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    dictionary_contrastive({"a": a, "b": b}, pair_weights={("b", "a"): 0.0},
                           detach_teacher=True).backward()
    assert a.grad.abs().sum() > 0 and (b.grad is None or not b.grad.any())


def test_activation_divergence():
    one_hot = {"a": torch.tensor([[1.0, 0.0]]), "b": torch.tensor([[0.0, 1.0]])}
    assert activation_divergence(one_hot).item() == pytest.approx(math.log(2))  # disjoint
    p = torch.softmax(torch.randn(4, 6), -1)
    assert activation_divergence({"a": p, "b": p.clone()}).item() == pytest.approx(0, abs=1e-6)
    q = torch.softmax(torch.randn(4, 6) * 3, -1)
    js = activation_divergence({"a": p, "b": q})
    assert 0 < js.item() <= np.log(2) + 1e-6
