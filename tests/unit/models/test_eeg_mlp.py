"""The regularised (and member-averaged) MLP for EEG band-feature tables."""

from __future__ import annotations

import pytest
import torch

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError
from emodistill.models import build_method

TARGET = TargetSpec("valence", "binary", class_names=("low", "high"))
REG = TargetSpec("score", "regression")


def _spec(d: int = 20) -> DatasetSpec:
    return DatasetSpec("t", (ModalitySpec("frontal4", d, 1),), (TARGET, REG), ("subject",))


def _batch(x: torch.Tensor, y: torch.Tensor) -> Batch:
    b = x.shape[0]
    return Batch(inputs={"frontal4": x}, mask={"frontal4": torch.ones(b, 1, dtype=torch.bool)},
                 present={"frontal4": torch.ones(b, dtype=torch.bool)}, target=y,
                 index=torch.arange(b))


def test_members_are_independent_and_their_logits_averaged():
    torch.manual_seed(0)
    m = build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={"members": 3, "width": 8, "dropout": 0.0})
    m.eval()
    b = _batch(torch.randn(5, 1, 20), torch.tensor([0, 1, 1, 0, 1]))
    out = m(b)
    per = out.aux["member_logits"]
    assert per.shape == (5, 3, 2) and out.preds.shape == (5, 2)
    torch.testing.assert_close(out.preds, per.mean(1))
    assert out.fused.shape == (5, 8)
    # member 1's own loss term has no gradient into members 0 and 2
    m.zero_grad()
    torch.nn.functional.cross_entropy(per[:, 1], b.target).backward()
    w = m.body[0].weight.grad
    assert w[1].abs().sum() > 0 and w[0].abs().sum() == 0 and w[2].abs().sum() == 0
    # the optimised loss is the mean of the members' losses, not the average's loss
    losses = m.loss(b, out)
    expect = torch.stack([torch.nn.functional.cross_entropy(per[:, i], b.target)
                          for i in range(3)]).mean()
    torch.testing.assert_close(losses["loss"], expect)
    torch.testing.assert_close(losses["task"],
                               torch.nn.functional.cross_entropy(out.preds, b.target))


def test_layers_zero_is_linear_and_noise_only_in_training():
    m = build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={"layers": 0, "input_noise": 1.0})
    x = torch.randn(4, 1, 20)
    b = _batch(x, torch.zeros(4, dtype=torch.long))
    m.eval()
    a, c = m(b).preds, m(_batch(2 * x, b.target)).preds
    torch.testing.assert_close(c - m.out.bias[0], 2 * (a - m.out.bias[0]))  # linear in x
    m.train()
    assert not torch.allclose(m(b).preds, a)  # noise (and nothing else) in training


def test_label_smoothing_is_the_smoothed_cross_entropy_and_is_checked():
    spec = _spec()
    m = build_method("eeg_mlp", spec=spec, target=TARGET,
                     params={"layers": 0, "label_smoothing": 0.2})
    m.eval()
    b = _batch(torch.randn(16, 1, 20), torch.randint(0, 2, (16,)))
    out = m(b)
    logp = out.preds.log_softmax(-1)
    nll = -logp.gather(1, b.target[:, None])[:, 0]
    expect = (0.8 * nll - 0.2 * logp.mean(-1)).mean()  # (1-e) CE + e * uniform CE
    torch.testing.assert_close(m.loss(b, out)["loss"], expect)
    with pytest.raises(ConfigError, match="label_smoothing applies to classes only"):
        build_method("eeg_mlp", spec=spec, target=REG, params={"label_smoothing": 0.1})
    with pytest.raises(ConfigError, match="input_dropout=1.5"):
        build_method("eeg_mlp", spec=spec, target=TARGET, params={"input_dropout": 1.5})


def test_skip_linear_starts_linear_on_the_raw_inputs_and_the_branch_learns():
    torch.manual_seed(0)
    m = build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={"skip_linear": True, "members": 2, "width": 8,
                             "input_dropout": 0.9, "dropout": 0.5})
    x = torch.randn(6, 1, 20)
    b = _batch(x, torch.tensor([0, 1, 1, 0, 1, 0]))
    m.train()  # input dropout and dropout on: the linear path sees the raw inputs
    lin = torch.einsum("bi,kio->bko", x.reshape(6, 20), m.skip.weight) + m.skip.bias
    torch.testing.assert_close(m(b).aux["member_logits"], lin)  # residual branch starts at 0
    torch.testing.assert_close(m(b).preds, lin.mean(1))
    # the residual branch's output layer receives a gradient: it can grow
    out = m(b)
    m.loss(b, out)["loss"].backward()
    assert m.out.weight.grad.abs().sum() > 0 and m.skip.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="skip_linear=true with layers=0"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={"skip_linear": True, "layers": 0})


def test_linear_l2_is_added_to_the_loss_of_the_linear_path_only():
    torch.manual_seed(0)
    b = _batch(torch.randn(8, 1, 20), torch.randint(0, 2, (8,)))
    for params, path in (({"layers": 0, "members": 3}, "out"),
                         ({"skip_linear": True, "members": 3, "width": 4}, "skip")):
        plain = build_method("eeg_mlp", spec=_spec(), target=TARGET, params=params)
        pen = build_method("eeg_mlp", spec=_spec(), target=TARGET,
                           params={**params, "linear_l2": 0.5})
        pen.load_state_dict(plain.state_dict())
        plain.eval()
        pen.eval()
        w = getattr(pen, path).weight  # [K, I, C]
        expect = 0.5 * w.pow(2).sum((1, 2)).mean()
        diff = pen.loss(b, pen(b))["loss"] - plain.loss(b, plain(b))["loss"]
        torch.testing.assert_close(diff, expect)
        assert pen.loss(b, pen(b))["task"] == plain.loss(b, plain(b))["task"]  # task unchanged
    with pytest.raises(ConfigError, match="linear_l2=0.5 with layers=1"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET, params={"linear_l2": 0.5})
    with pytest.raises(ConfigError, match="linear_l2=-1"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={"layers": 0, "linear_l2": -1.0})
