"""Member kernels (training/parallel_kernels.py): one stacked step equals each member's own step.

Bit for bit (``torch.equal``): forward outputs, loss, every gradient and the parameters after
one AdamW step, one member's sequential model against the stacked (vmap) path, on
token-shaped inputs (``[T x 384]`` with a mask of varying lengths, as
``dataset.text_level=tokens``) and pooled ones.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import stack_module_state, vmap
from torch.nn import functional as F
from torch.nn.utils.stateless import _reparametrize_module

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.models import build_method
from emodistill.training import parallel as P
from emodistill.training.parallel_kernels import (
    _at_offset_of,
    _stack_like,
    member_kernels,
    member_op,
    swap_kernels,
)

N = 3


def _members(t_text: int, encoder: str, b: int = 32, method: str = "feature_fusion"):
    spec = DatasetSpec("x", (ModalitySpec("text", 384, t_text), ModalitySpec("audio", 73, 1)),
                       (TargetSpec("sentiment", "regression", (-3.0, 3.0)),))
    models = []
    for s in range(N):
        torch.manual_seed(100 + s)
        models.append(build_method(method, spec=spec, target=spec.targets[0], params={
            "modalities": ["text", "audio"], "dropout": 0.0, "encoder": encoder,
            "width": 128}))
    g = torch.Generator().manual_seed(0)
    inputs = {"text": torch.randn(N, b, t_text, 384, generator=g),
              "audio": torch.randn(N, b, 1, 73, generator=g)}
    lens = torch.randint(min(3, t_text), t_text + 1, (N, b), generator=g)
    mask = {"text": torch.arange(t_text)[None, None] < lens[..., None],
            "audio": torch.ones(N, b, 1, dtype=torch.bool)}
    batch = {"inputs": inputs, "mask": mask,
             "present": {m: torch.ones(N, b, dtype=torch.bool) for m in inputs},
             "target": torch.randn(N, b, generator=g), "index": torch.arange(b)[None].expand(N, -1)}
    return models, batch


def _member_batch(batch, j):
    return Batch(inputs={m: v[j] for m, v in batch["inputs"].items()},
                 mask={m: v[j] for m, v in batch["mask"].items()},
                 present={m: v[j] for m, v in batch["present"].items()},
                 target=batch["target"][j], index=batch["index"][j])


def _sequential_step(model, batch):
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-4)
    out = m(batch)
    loss = m.loss(batch, out)["loss"]
    loss.backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    opt.step()
    return out.preds.detach(), loss.detach(), grads, {k: p.detach().clone()
                                                       for k, p in m.named_parameters()}


def _stacked_step(models, batch, *, exact=True):
    params, buffers = stack_module_state([copy.deepcopy(m) for m in models])
    flat = P._FlatParams(params)  # the engine's layout: views of one [N, P] buffer
    params = flat.params
    assert all(v[j].data_ptr() % 64 == 0 for v in params.values() for j in range(N))
    base = copy.deepcopy(models[0])
    P._swap_dropout(base)
    if exact:
        assert swap_kernels(base) > 0
    base.train()

    def f(p, b, bt):
        bt = Batch(**bt)
        with _reparametrize_module(base, {**p, **b}):
            out = base(bt)
            return out.preds, base.loss(bt, out)["loss"]

    preds, loss = P._vmap0(f, (params, buffers, batch))
    loss.sum().backward()
    grads = {k: v.grad.clone() for k, v in params.items()}
    opt = P._StackedAdam({"flat": flat.data}, {"optimizer": "adamw", "weight_decay": 1e-4})
    opt.step({"flat": flat.data}, [1e-3] * N, {"flat": flat.grad})
    return preds.detach(), loss.detach(), grads, {k: v.detach() for k, v in params.items()}


@pytest.mark.parametrize(("t_text", "encoder", "b"), [(20, "auto", 32), (20, "auto", 1),
                                                      (1, "auto", 32), (1, "auto", 1),
                                                      (12, "mlp", 32)])
def test_one_stacked_step_equals_each_members_sequential_step_bit_for_bit(t_text, encoder, b):
    # auto: a conv encoder on the [T x 384] tokens (the token-level case), an MLP on pooled;
    # b=1 (the last batch of 1281 rows in 32s): members' [1 x 73] slices are 292 bytes apart,
    # off the 64-byte boundary a sequential fit's tensors start on
    models, batch = _members(t_text, encoder, b)
    preds, loss, grads, params = _stacked_step(models, batch)
    for j, model in enumerate(models):
        s_preds, s_loss, s_grads, s_params = _sequential_step(model, _member_batch(batch, j))
        assert torch.equal(preds[j], s_preds)
        assert torch.equal(loss[j], s_loss)
        bad = [k for k in s_grads if not torch.equal(grads[k][j], s_grads[k])]
        assert not bad, f"gradients differ: {bad}"
        bad = [k for k in s_params if not torch.equal(params[k][j], s_params[k])]
        assert not bad, f"parameters after one AdamW step differ: {bad}"


def test_member_op_runs_the_unbatched_kernels_forward_and_backward():
    # shapes where the batched rules round otherwise on CPU: a bias added after bmm (K=384),
    # one output column (a gemv unbatched), a grouped convolution
    torch.manual_seed(0)
    x = torch.randn(N, 5, 7, 384)
    cases = [
        (F.linear, [x, torch.randn(N, 128, 384), torch.randn(N, 128)]),
        (F.linear, [x, torch.randn(N, 1, 384), torch.randn(N, 1)]),
        (lambda a, w, b: F.layer_norm(a, (384,), w, b), [x, torch.randn(N, 384),
                                                         torch.randn(N, 384)]),
        (lambda a, w, b: F.conv1d(a.transpose(1, 2), w, b, padding=1),
         [x, torch.randn(N, 64, 384, 3) * 0.05, torch.randn(N, 64)]),
    ]
    for fn, args in cases:
        args = [a.requires_grad_(True) for a in args]
        out = vmap(lambda *a, fn=fn: member_op(fn, *a))(*args)
        go = torch.randn_like(out)
        got = torch.autograd.grad(out, args, go)
        for j in range(N):
            one = [a[j].detach().clone().requires_grad_(True) for a in args]
            want = fn(*one)
            assert torch.equal(out[j], want)
            for g, w in zip(got, torch.autograd.grad(want, one, go[j]), strict=True):
                assert torch.equal(g[j], w)


def test_member_op_is_the_plain_op_outside_vmap_and_without_grad():
    w = torch.randn(N, 4, 6)
    x = torch.randn(N, 2, 6)
    plain = member_op(F.linear, x[0], w[0])
    assert torch.equal(plain, F.linear(x[0], w[0]))
    with torch.no_grad():
        out = vmap(lambda a, b: member_op(F.linear, a, b))(x, w)
    assert not out.requires_grad
    assert all(torch.equal(out[j], F.linear(x[j], w[j])) for j in range(N))


def test_stacked_outputs_keep_each_members_memory_layout():
    ts = [torch.randn(4, 3).t() for _ in range(2)]  # transposed: [3, 4] with strides (1, 3)
    st = _stack_like(ts)
    assert st.shape == (2, 3, 4) and st[0].stride() == ts[0].stride()
    assert all(torch.equal(st[j], ts[j]) for j in range(2))
    assert _stack_like([torch.ones(2, 2)] * 2).is_contiguous()


def test_swap_kernels_swaps_plain_layers_only():
    class Sub(nn.Linear):
        pass

    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 3), Sub(4, 4))
    assert swap_kernels(m) == 3
    assert type(m[3]) is Sub
    assert [k for k, _ in m.named_parameters()] == [k for k, _ in nn.Sequential(
        nn.Linear(3, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 3), Sub(4, 4)).named_parameters()]


def test_a_member_slice_is_copied_to_the_offset_member_0_has():
    x = torch.randn(3, 73)  # rows 292 bytes apart
    for j in range(3):
        y = _at_offset_of(x[j], x[0])
        assert y.data_ptr() % 64 == x[0].data_ptr() % 64
        assert torch.equal(y, x[j]) and y.stride() == x[j].stride()
    t = torch.randn(5, 7)[1:, ::2].t()  # a strided view off the boundary
    y = _at_offset_of(t, torch.empty(4))
    assert y.data_ptr() % 64 == 0 and torch.equal(y, t) and y.stride() == t.stride()
    e = torch.randn(1, 7).expand(4, 7)[1:]  # stride 0 kept
    assert _at_offset_of(e, torch.empty(1)).stride() == e.stride()


def test_member_kernels_false_leaves_the_batched_op():
    w = torch.randn(N, 4, 6, requires_grad=True)
    x = torch.randn(N, 2, 6)

    def f(a, b):
        return member_op(F.linear, a, b)

    looped = vmap(f)(x, w)
    with member_kernels(False):
        batched = vmap(f)(x, w)
    assert "Looped" in type(looped.grad_fn).__name__
    assert "Looped" not in type(batched.grad_fn).__name__
    assert torch.equal(batched, vmap(F.linear)(x, w))


@pytest.mark.parametrize(("setting", "device", "exact", "want"), [
    ("auto", "cpu", None, True), ("auto", "cuda", None, False),
    ("batched", "cpu", None, False), ("exact", "cuda", None, True),
    ("batched", "cpu", True, True),  # an explicit argument wins over the config
])
def test_parallel_kernels_setting_chooses_the_kernels(setting, device, exact, want):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"train": {"parallel_kernels": setting}})
    assert P._exact_kernels(cfg, torch.device(device), exact) is want


def test_parallel_kernels_bad_value_is_refused_by_name():
    from emodistill.config import compose
    from emodistill.errors import ConfigError
    from emodistill.training.run import _check_train_cfg

    cfg = compose(dataset="synthetic", method="late_fusion",
                  overrides=["train.parallel_kernels=fast"])
    with pytest.raises(ConfigError,
                       match=r"train.parallel_kernels='fast'; use one of auto, exact, batched"):
        _check_train_cfg(cfg)
