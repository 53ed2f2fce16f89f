"""Feedback strategies checked against independent computations on a toy linear task."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from emodistill.data.batch import Batch
from emodistill.distill.feedback import (
    FEEDBACK,
    FeedbackSettings,
    build_feedback,
    virtual_step,
)
from emodistill.errors import ConfigError, UnknownNameError
from emodistill.models.base import ModelOutput

T = 2.0


def soft_label_kd(student, teacher, *, temperature, detach_teacher=True):
    """Hinton KL in float64 (the library's version computes in float32, too coarse for
    finite differences)."""
    if detach_teacher:
        teacher = teacher.detach()
    q = torch.softmax(teacher / temperature, -1)
    log_p = torch.log_softmax(student / temperature, -1)
    return (q * (q.log() - log_p)).sum(-1).mean() * temperature**2


def batch(n: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 3, generator=g, dtype=torch.float64)
    return Batch({"x": x}, {"x": torch.ones(n, 1, dtype=torch.bool)},
                 {"x": torch.ones(n, dtype=torch.bool)},
                 torch.randint(0, 2, (n,), generator=g), torch.arange(n))


class Toy:
    """A linear student (with batch norm) and a linear teacher implementing FeedbackTask."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.s = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
        self.t = nn.Linear(3, 2).double()

    def student_module(self):
        return self.s

    def student_params(self):
        return dict(self.s.named_parameters())

    def teacher_forward(self, b):
        return ModelOutput(preds=self.t(b.inputs["x"][:, 0]))

    def teacher_task_loss(self, out, b):
        return F.cross_entropy(out.preds, b.target)

    def _s(self, params, b):
        return functional_call(self.s, params, (b.inputs["x"][:, 0],))

    def teaching_loss(self, params, b, t_out, *, detach_teacher):
        return soft_label_kd(self._s(params, b), t_out.preds, temperature=T,
                             detach_teacher=detach_teacher)

    def labelled_loss(self, params, b):
        return F.cross_entropy(self._s(params, b), b.target)

    def divergence(self, params, b, t_out):
        with torch.no_grad():
            s = self._s(params, b)
        return soft_label_kd(s, t_out.preds, temperature=T, detach_teacher=False)


SET = FeedbackSettings(lookahead_lr=0.5, weight=2.0, teacher_task_weight=0.3)


def test_registry_and_settings():
    assert {"first_order", "lookahead"} <= set(FEEDBACK.names())
    with pytest.raises(UnknownNameError, match="first_order"):
        build_feedback("mpl2")
    with pytest.raises(ConfigError, match="lookahead_lr"):
        FeedbackSettings(lookahead_lr=0.0)


def test_virtual_step_is_one_sgd_step_and_keeps_parameters():
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    new = virtual_step({"w": w}, (w ** 2).sum(), 0.25, create_graph=False)
    assert torch.allclose(new["w"], torch.tensor([0.5, -1.0]))
    assert torch.equal(w.data, torch.tensor([1.0, -2.0])) and w.grad is None


def test_lookahead_gradient_matches_finite_differences_of_the_meta_objective():
    toy = Toy()
    teach, lab = batch(8, 1), batch(8, 2)
    s_before = copy.deepcopy(toy.s.state_dict())
    res = build_feedback("lookahead")(toy, teach, lab, SET)
    res.loss.backward(inputs=list(toy.t.parameters()))  # as MKD does: the teacher only
    grad = toy.t.weight.grad.clone()
    assert toy.s.training  # the student's mode is restored after the eval-mode look-ahead
    for k, v in toy.s.state_dict().items():  # and its weights and statistics are untouched
        assert torch.equal(v, s_before[k]), k

    def objective(weight: torch.Tensor) -> torch.Tensor:
        tp = {"weight": weight, "bias": toy.t.bias.detach()}
        t_teach = functional_call(toy.t, tp, (teach.inputs["x"][:, 0],))
        t_lab = functional_call(toy.t, tp, (lab.inputs["x"][:, 0],))
        params = {k: v.detach().requires_grad_() for k, v in toy.s.named_parameters()}
        toy.s.eval()
        loss = soft_label_kd(toy._s(params, teach), t_teach, temperature=T)  # teacher fixed
        g = torch.autograd.grad(loss, list(params.values()))
        new = {k: p - SET.lookahead_lr * gi for (k, p), gi in zip(params.items(), g, strict=True)}
        after = F.cross_entropy(toy._s(new, lab), lab.target)
        return SET.teacher_task_weight * F.cross_entropy(t_lab, lab.target) + SET.weight * after

    w0, eps = toy.t.weight.detach().clone(), 1e-6
    num = torch.zeros_like(w0)
    for idx in [(0, 0), (1, 2), (0, 1)]:
        d = torch.zeros_like(w0)
        d[idx] = eps
        num[idx] = (objective(w0 + d) - objective(w0 - d)) / (2 * eps)
        assert torch.allclose(grad[idx], num[idx], rtol=1e-4, atol=1e-8), idx


def test_first_order_is_h_times_divergence_gradient():
    toy = Toy()
    teach, lab = batch(8, 3), batch(8, 4)
    s_before = copy.deepcopy(toy.s.state_dict())
    res = build_feedback("first_order")(toy, teach, lab, SET)
    res.loss.backward()
    grad = toy.t.weight.grad.clone()

    # independent computation: a copy of the student takes one SGD step on the KD loss
    tmp = copy.deepcopy(toy.s).eval()
    x_t, x_l = teach.inputs["x"][:, 0], lab.inputs["x"][:, 0]
    with torch.no_grad():
        q = toy.t(x_t)
        before = F.cross_entropy(tmp(x_l), lab.target)
    opt = torch.optim.SGD(tmp.parameters(), lr=SET.lookahead_lr)
    soft_label_kd(tmp(x_t), q, temperature=T).backward()
    opt.step()
    with torch.no_grad():
        after = F.cross_entropy(tmp(x_l), lab.target)
    h = after - before
    assert res.stats["h"] == pytest.approx(float(h), rel=1e-6)
    assert res.stats["student_before"] == pytest.approx(float(before), rel=1e-9)

    toy.t.zero_grad()
    toy.s.eval()
    with torch.no_grad():
        p_s = toy.s(x_t)
    want = (SET.teacher_task_weight * F.cross_entropy(toy.t(x_l), lab.target)
            + SET.weight * h * soft_label_kd(p_s, toy.t(x_t), temperature=T, detach_teacher=False))
    want.backward()
    assert torch.allclose(grad, toy.t.weight.grad, rtol=1e-6)
    for k, v in toy.s.state_dict().items():
        assert torch.equal(v, s_before[k]), k


def test_first_order_sign_pushes_targets_away_when_the_step_helped():
    """h < 0 (the temporary student improved): the teacher's targets move away from the
    student's prediction, i.e. further in the direction that helped."""
    toy = Toy()
    teach = lab = batch(16, 5)
    # make the teacher a good labeller so that learning from it helps the student
    with torch.no_grad():
        x = lab.inputs["x"][:, 0]
        sol = torch.linalg.lstsq(x, F.one_hot(lab.target, 2).double() * 6 - 3).solution
        toy.t.weight.copy_(sol.T)
        toy.t.bias.zero_()
    res = build_feedback("first_order")(toy, teach, lab,
                                        FeedbackSettings(lookahead_lr=0.5, weight=1.0,
                                                         teacher_task_weight=0.0))
    assert res.stats["h"] < 0
    res.loss.backward()
    with torch.no_grad():
        step = {"weight": toy.t.weight - 1e-2 * toy.t.weight.grad,
                "bias": toy.t.bias - 1e-2 * toy.t.bias.grad}
        toy.s.eval()
        p_s = toy.s(x)
        d0 = soft_label_kd(p_s, toy.t(x), temperature=T)
        d1 = soft_label_kd(p_s, functional_call(toy.t, step, (x,)), temperature=T)
    assert d1 > d0
