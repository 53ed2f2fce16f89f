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


TARGET3 = TargetSpec("emotion", "multiclass", class_names=("a", "b", "c"))


def _spec3(d: int = 20) -> DatasetSpec:
    return DatasetSpec("t", (ModalitySpec("frontal4", d, 1),), (TARGET3,), ("subject",))


@pytest.mark.parametrize("target,spec,factor", [(TARGET, _spec, 1.0), (TARGET3, _spec3, 2.0)])
def test_linear_c_penalty_is_one_over_c_n_scaled_to_the_train_size(target, spec, factor):
    # two classes: 1/(C N) ||W||^2 (scikit-learn's one vector = W1 - W0); more: 1/(2 C N)
    torch.manual_seed(0)
    b = _batch(torch.randn(8, 1, 20), torch.randint(0, target.n_outputs, (8,)))
    for params, path in (({"layers": 0, "members": 2}, "out"),
                         ({"skip_linear": True, "members": 2, "width": 4}, "skip")):
        plain = build_method("eeg_mlp", spec=spec(), target=target, params=params)
        pen = build_method("eeg_mlp", spec=spec(), target=target,
                           params={**params, "linear_c": 0.01, "train_size": 250})
        pen.load_state_dict(plain.state_dict())
        assert pen.linear_l2 == pytest.approx(1.0 / (factor * 0.01 * 250))
        w = getattr(pen, path).weight  # [K, I, C]
        expect = w.pow(2).sum((1, 2)).mean() / (factor * 0.01 * 250)
        diff = pen.loss(b, pen(b))["loss"] - plain.loss(b, plain(b))["loss"]
        torch.testing.assert_close(diff, expect)
        # the strength follows the training size: twice the trials, half the penalty
        big = build_method("eeg_mlp", spec=spec(), target=target,
                           params={**params, "linear_c": 0.01, "train_size": 500})
        assert big.linear_l2 == pytest.approx(pen.linear_l2 / 2)


def test_linear_c_optimum_is_scikit_learns_logistic_regression_at_that_c():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    n, c = 300, 0.01
    x = torch.randn(n, 1, 20, generator=g, dtype=torch.float64)
    y = (x[:, 0, 0] + 0.5 * x[:, 0, 1] + torch.randn(n, generator=g, dtype=torch.float64) > 0)
    m = build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={"layers": 0, "linear_c": c, "train_size": n}).double()
    b = _batch(x, y.long())
    opt = torch.optim.LBFGS(m.parameters(), max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = m.loss(b, m(b))["loss"]
        loss.backward()
        return loss

    m.train()
    for _ in range(5):
        opt.step(closure)
    sk = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(x[:, 0].numpy(), y.numpy())
    w = m.out.weight.detach()[0]  # [I, 2]
    # the loss is computed in float32 (the model's cross-entropy): agreement to ~1e-4; the
    # other convention (1/(2 C N) on two classes) is ~0.2 off here
    torch.testing.assert_close(w[:, 1] - w[:, 0], torch.tensor(sk.coef_[0]), atol=1e-3, rtol=0)


def test_bad_linear_c_values_are_refused_naming_them():
    lin = {"layers": 0}
    with pytest.raises(ConfigError, match=r"linear_l2=0.5 and linear_c=0.01 are both set"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={**lin, "linear_l2": 0.5, "linear_c": 0.01})
    for bad in (0, -1.0, [], [0.1, 0.0], True, "0.1", float("inf")):
        with pytest.raises(ConfigError, match="eeg_mlp: linear_c="):
            build_method("eeg_mlp", spec=_spec(), target=TARGET, params={**lin, "linear_c": bad})
    with pytest.raises(ConfigError, match="linear_c=0.1 with layers=1"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET, params={"linear_c": 0.1})
    with pytest.raises(ConfigError, match="for a regression target use linear_l2"):
        build_method("eeg_mlp", spec=_spec(), target=REG, params={**lin, "linear_c": 0.1})
    with pytest.raises(ConfigError, match="train_size=0"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={**lin, "linear_c": 0.1, "train_size": 0})
    with pytest.raises(ConfigError, match="is a grid, chosen per fold"):
        build_method("eeg_mlp", spec=_spec(), target=TARGET,
                     params={**lin, "linear_c": [0.1, 1.0], "train_size": 10})
    # a grid (or one C) without the fold's size builds (a config check, a loaded checkpoint)
    # and predicts, but does not train
    m = build_method("eeg_mlp", spec=_spec(), target=TARGET, params={**lin, "linear_c": [0.1, 1]})
    b = _batch(torch.randn(4, 1, 20), torch.randint(0, 2, (4,)))
    m.eval()
    m.loss(b, m(b))
    m.train()
    with pytest.raises(ConfigError, match="needs the fold's training size"):
        m.loss(b, m(b))
