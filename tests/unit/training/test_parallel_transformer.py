"""Transformer encoder layers on the parallel path (training/parallel_attention.py).

Bit for bit (``torch.equal``), one member's sequential model against the stacked (vmap)
path as the engine runs it (member draws, ``vmapped_attention``): one training step
(outputs, loss, every gradient, the parameters after one AdamW step) with and without
dropout (attention dropout included), and an evaluation forward (the fused encoder layer
a sequential fit runs without gradient). Pre-norm GELU layers in ``nn.TransformerEncoder``
(encoder ``transformer``) and post-norm ReLU layers (``physio_teacher``: per-modality
blocks and a cross-modal layer), at the batch sizes of a fit (32, and a last batch of 1).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import stack_module_state
from torch.nn.utils.stateless import _reparametrize_module

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.models import build_method
from emodistill.training import parallel as P
from emodistill.training.parallel_attention import (
    MemberEncoderLayer,
    swap_transformer_layers,
    vmapped_attention,
)
from emodistill.training.parallel_batchnorm import swap_batch_norms
from emodistill.training.parallel_kernels import member_kernels, swap_kernels
from emodistill.training.parallel_pointwise import member_pointwise

N = 3


def _text_models(dropout: float):
    spec = DatasetSpec("x", (ModalitySpec("text", 384, 12), ModalitySpec("audio", 73, 1)),
                       (TargetSpec("sentiment", "regression", (-3.0, 3.0)),))
    params = {"modalities": ["text", "audio"], "dropout": dropout, "encoder": "transformer",
              "width": 32}
    return spec, "feature_fusion", params


def _physio_models(dropout: float):
    spec = DatasetSpec("p", (ModalitySpec("eeg", 4, 96), ModalitySpec("gsr", 1, 96)),
                       (TargetSpec("valence", "binary", class_names=("low", "high")),),
                       ("subject", "trial"))
    params = {"width": 16, "heads": 2, "layers": 2, "head_width": 16, "dropout": dropout,
              "head_dropout": dropout}
    return spec, "physio_teacher", params


def _setup(kind: str, dropout: float, b: int):
    spec, method, params = (_text_models if kind == "text" else _physio_models)(dropout)
    models = []
    for s in range(N):
        torch.manual_seed(100 + s)
        models.append(build_method(method, spec=spec, target=spec.targets[0], params=params))
    g = torch.Generator().manual_seed(0)
    inputs = {m.name: torch.randn(N, b, m.seq_len, m.dim, generator=g) for m in spec.modalities}
    mask = {}
    for m in spec.modalities:
        lens = torch.randint(max(1, m.seq_len // 2), m.seq_len + 1, (N, b), generator=g)
        mask[m.name] = torch.arange(m.seq_len)[None, None] < lens[..., None]
    target = (torch.randn(N, b, generator=g) if spec.targets[0].kind == "regression"
              else torch.randint(0, 2, (N, b), generator=g))
    batch = {"inputs": inputs, "mask": mask,
             "present": {m: torch.ones(N, b, dtype=torch.bool) for m in inputs},
             "target": target, "index": torch.arange(b)[None].expand(N, -1)}
    states = [torch.Generator().manual_seed(500 + j).get_state() for j in range(N)]
    return models, batch, states


def _member_batch(batch, j) -> Batch:
    return Batch(inputs={m: v[j] for m, v in batch["inputs"].items()},
                 mask={m: v[j] for m, v in batch["mask"].items()},
                 present={m: v[j] for m, v in batch["present"].items()},
                 target=batch["target"][j], index=batch["index"][j])


def _sequential(model, batch, state, train: bool):
    m = copy.deepcopy(model).train(train)
    torch.set_rng_state(state)  # the global stream the fit's dropout draws from
    if not train:
        with torch.no_grad():  # as Lightning's validation: the fused layer
            out = m(batch)
            return out.preds, m.loss(batch, out)["loss"], None, None
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-4)
    out = m(batch)
    loss = m.loss(batch, out)["loss"]
    loss.backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    opt.step()
    return out.preds.detach(), loss.detach(), grads, {k: p.detach().clone()
                                                       for k, p in m.state_dict().items()}


def _member_masks(base, params, buffers, batch, states):
    """The engine's masks for one step: probe, one draw per member, memory order → logical."""
    one = {k: v[0].detach().clone() for k, v in {**params, **buffers}.items()}
    P._DRAWS.record = []
    try:
        with torch.no_grad(), _reparametrize_module(base, one):
            base.train()
            base(_member_batch(batch, 0))
        rec = list(P._DRAWS.record)
    finally:
        P._DRAWS.record = None
    gens = []
    for st in states:
        gens.append(torch.Generator())
        gens[-1].set_state(st)
    plan = P._mask_plan([[(p, shape) for p, shape, _ in rec]])
    keep = P._draw_keep(plan, gens)
    zero = torch.zeros(())
    return [P._to_logical(torch.where(keep[:, off:off + math.prod(shape)].reshape(-1, *shape),
                                      torch.ones(()).div_(1 - p), zero), perm)
            for (p, shape, off), (_, _, perm) in zip(plan.steps[0], rec, strict=True)]


def _stacked(models, batch, states, train: bool):
    params, buffers = stack_module_state([copy.deepcopy(m) for m in models])
    flat = P._FlatParams(params)  # the engine's layout: views of one [N, P] buffer
    params = flat.params
    base = copy.deepcopy(models[0])
    P._swap_dropout(base)
    assert swap_kernels(base) > 0
    swap_batch_norms(base)
    assert any(isinstance(m, MemberEncoderLayer) for m in base.modules())
    masks = _member_masks(base, params, buffers, batch, states) if train else []
    base.train(train)

    def f(p, b, bt, m):
        P._DRAWS.masks, P._DRAWS.pos = m, 0
        bt = Batch(**bt)
        with _reparametrize_module(base, {**p, **b}):
            out = base(bt)
            return out.preds, base.loss(bt, out)["loss"]

    with vmapped_attention(), member_pointwise():
        if not train:
            with torch.no_grad():
                return (*P._vmap0(f, (params, buffers, batch, masks)), None, None)
        preds, loss = P._vmap0(f, (params, buffers, batch, masks))
        loss.sum().backward()
    grads = {k: v.grad.clone() for k, v in params.items()}
    opt = P._StackedAdam({"flat": flat.data}, {"optimizer": "adamw", "weight_decay": 1e-4})
    opt.step({"flat": flat.data}, [1e-3] * N, {"flat": flat.grad})
    state = {**params, **buffers}  # weights after the step, batch-norm statistics
    return preds.detach(), loss.detach(), grads, {k: v.detach() for k, v in state.items()}


@pytest.mark.parametrize(("kind", "dropout", "b", "train"), [
    ("text", 0.0, 32, True), ("text", 0.0, 1, True), ("text", 0.2, 32, True),
    ("text", 0.2, 1, True), ("text", 0.2, 32, False),
    ("physio", 0.0, 32, True), ("physio", 0.2, 32, True), ("physio", 0.2, 1, True),
    ("physio", 0.2, 8, False),
])
def test_stacked_transformer_step_equals_each_members_sequential_step_bit_for_bit(
        kind, dropout, b, train):
    models, batch, states = _setup(kind, dropout, b)
    preds, loss, grads, params = _stacked(models, batch, states, train)
    for j, model in enumerate(models):
        s_preds, s_loss, s_grads, s_params = _sequential(model, _member_batch(batch, j),
                                                         states[j], train)
        assert torch.equal(preds[j], s_preds)
        assert torch.equal(loss[j], s_loss)
        if not train:
            continue
        bad = [k for k in s_grads if not torch.equal(grads[k][j], s_grads[k])]
        assert not bad, f"gradients differ: {bad}"
        bad = [k for k in s_params if not torch.equal(params[k][j], s_params[k])]
        assert not bad, f"parameters after one AdamW step differ: {bad}"


def test_a_member_layer_runs_each_member_under_the_sequential_attention_settings():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(16, 2, 16, 0.0, batch_first=True) for _ in range(N)]
    params, _ = stack_module_state(layers)
    base = copy.deepcopy(layers[0])
    assert swap_transformer_layers(base) == 1 and type(base) is MemberEncoderLayer
    P._swap_dropout(base)
    assert type(base.self_attn) is P._MemberAttention
    x = torch.randn(N, 4, 5, 16)

    def f(p, x):
        return torch.func.functional_call(base, p, (x,))

    for train, want in ((True, "flash_attention"), (False, "_transformer_encoder_layer_fwd")):
        base.train(train)
        with Log() as log, vmapped_attention(), torch.set_grad_enabled(train):
            torch.func.vmap(f)(params, x)
        assert sum(want in o for o in log.ops) == N  # once per member, as the sequential fit
    with member_kernels(False), Log() as log, vmapped_attention():  # batched: math kernel
        torch.func.vmap(f)(params, x)
    assert not any("flash" in o or "encoder_layer_fwd" in o for o in log.ops)


@pytest.mark.parametrize("fn", [torch.sigmoid, lambda x: x.sigmoid(), nn.functional.silu,
                                nn.functional.elu, nn.functional.softplus, nn.functional.mish,
                                lambda x: nn.functional.gelu(x, approximate="tanh"),
                                lambda x: x.abs() ** 1.5])
def test_position_sensitive_pointwise_ops_run_per_member_forward_and_backward(fn):
    # [72] per member: not a whole number of vector blocks, so the batched loop puts other
    # elements of a member into its scalar tail than the member's own call does
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = (torch.randn(N, 72, generator=g) * 3).requires_grad_(True)
        with member_pointwise():
            out = torch.func.vmap(fn)(x)
        go = torch.randn(out.shape, generator=g)
        (got,) = torch.autograd.grad(out, x, go)
        for j in range(N):
            one = x[j].detach().clone().requires_grad_(True)
            want = fn(one)
            assert torch.equal(out[j], want)
            assert torch.equal(got[j], torch.autograd.grad(want, one, go[j])[0])


def test_member_pointwise_leaves_other_calls_alone():
    x = torch.randn(N, 5)
    with member_pointwise():
        y = torch.func.vmap(lambda a: torch.sigmoid(a) + a ** 2.0)(x)  # pow 2: not routed
        assert torch.equal(torch.sigmoid(x), x.sigmoid())  # outside vmap: the plain op
    assert torch.equal(y, torch.sigmoid(x) + x ** 2.0)


def test_erf_gelu_stays_batched_and_equals_each_members_own_call():
    # erf-GELU rounds alike in the vector loop and the scalar tail, so it is not routed
    # per member (the default nn.GELU of the MLP encoders); tanh-GELU is
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            self.n += func is torch.ops.aten.gelu.default
            return func(*args, **(kwargs or {}))

    g = torch.Generator().manual_seed(1)
    x = (torch.randn(N, 72, generator=g) * 3).requires_grad_(True)
    with member_pointwise(), Count() as erf:
        out = torch.func.vmap(nn.functional.gelu)(x)
    with member_pointwise(), Count() as tanh:
        torch.func.vmap(lambda a: nn.functional.gelu(a, approximate="tanh"))(x)
    assert (erf.n, tanh.n) == (1, N)
    go = torch.randn(out.shape, generator=g)
    (got,) = torch.autograd.grad(out, x, go)
    for j in range(N):
        one = x[j].detach().clone().requires_grad_(True)
        want = nn.functional.gelu(one)
        assert torch.equal(out[j], want)
        assert torch.equal(got[j], torch.autograd.grad(want, one, go[j])[0])


@pytest.mark.parametrize("channels", [16, 5])
def test_batch_norm_in_training_is_each_members_own_kernel_and_statistics(channels):
    # 5 channels: member 1's running statistics start 20 bytes off the 64-byte boundary,
    # so member_op hands the kernel a realigned copy and the update is written back
    torch.manual_seed(0)
    norms = [nn.BatchNorm2d(channels) for _ in range(N)]
    for j, m in enumerate(norms):
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_()
            m.running_mean.fill_(0.1 * j)
    params, buffers = stack_module_state(norms)
    base = copy.deepcopy(norms[0])
    assert swap_batch_norms(base) == 1
    x = torch.randn(N, 24, channels, 32, 29, requires_grad=True)

    def f(p, b, a):
        return torch.func.functional_call(base, {**p, **b}, (a,))

    out = torch.func.vmap(f)(params, buffers, x)
    go = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, params["weight"], params["bias"]], go)
    for j, m in enumerate(norms):
        a = x[j].detach().clone().requires_grad_(True)
        want = m(a)
        assert torch.equal(out[j], want)
        for g, w in zip(got, torch.autograd.grad(want, [a, m.weight, m.bias], go[j]),
                        strict=True):
            assert torch.equal(g[j], w)
        for k in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(buffers[k][j], getattr(m, k)), k


def test_cross_entropy_under_vmap_is_each_members_own_mean():
    from emodistill.distill.losses.task import task_loss

    spec = TargetSpec("valence", "binary", class_names=("low", "high"))
    g = torch.Generator().manual_seed(0)
    for b in (5, 8, 24, 32):
        logits = torch.randn(N, b, 2, generator=g)
        target = torch.randint(0, 2, (N, b), generator=g)
        with member_pointwise():
            got = torch.func.vmap(lambda p, t: task_loss(p, t, spec))(logits, target)
        for j in range(N):
            assert torch.equal(got[j], nn.functional.cross_entropy(logits[j], target[j]))
