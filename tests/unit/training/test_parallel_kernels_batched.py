"""Checked batched member kernels (training/parallel_kernels.py): batched only where bit-equal.

The exact path runs a batched formulation of a member op (``baddbmm``/``bmm`` for linear,
``native_layer_norm`` + ``addcmul`` for layer norm, a stacked ``matmul``) where a run-time
check on random arguments of the same layout found it equal to the member loop, and the
loop elsewhere. Every result here is compared with ``torch.equal`` against each member's
own unbatched op (forward and gradients).
"""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap
from torch.nn import functional as F

from emodistill.training import parallel_kernels as K
from emodistill.training.parallel_kernels import (
    LINEAR,
    MATMUL,
    Batched,
    batched_verdicts,
    checked_batching,
    layer_norm_batched,
    member_op,
)

N = 4


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    batched_verdicts().clear()
    yield
    batched_verdicts().clear()


def _run(fn, args, batched):
    """The vmapped member op on ``args`` with grads; returns (out, grads, grad_fn name)."""
    args = [a.detach().clone().requires_grad_(True) for a in args]
    out = vmap(lambda *a: member_op(fn, *a, batched=batched))(*args)
    go = torch.randn_like(out)
    return out, torch.autograd.grad(out, args, go), type(out.grad_fn).__name__, args, go


def _assert_each_member_equal(fn, args, out, grads, go):
    for j in range(N):
        one = [a[j].detach().clone().requires_grad_(True) for a in args]
        want = fn(*one)
        assert torch.equal(out[j], want)
        for g, w in zip(grads, torch.autograd.grad(want, one, go[j]), strict=True):
            assert torch.equal(g[j], w)


def _kinds():
    return {(k[0], k[1], ok) for k, ok in batched_verdicts().items()}


@pytest.mark.parametrize(("rows", "k", "o"), [(32, 384, 128), (5, 160, 128), (64, 128, 2)])
def test_linear_runs_batched_where_checked_equal_and_equals_each_member(rows, k, o):
    torch.manual_seed(0)
    args = [torch.randn(N, rows, 1, k), torch.randn(N, o, k), torch.randn(N, o)]
    out, grads, node, args, go = _run(F.linear, args, LINEAR)
    assert node == "_BatchedBackward", node  # the checked formulation ran, not the loop
    assert _kinds() == {("fwd", "linear", True), ("bwd", "linear", True)}
    _assert_each_member_equal(F.linear, args, out, grads, go)


def test_one_output_column_is_not_equal_batched_and_falls_back_to_the_loop():
    # unbatched: a gemv for one output column; baddbmm rounds otherwise (measured)
    torch.manual_seed(0)
    args = [torch.randn(N, 64, 128), torch.randn(N, 1, 128), torch.randn(N, 1)]
    out, grads, node, args, go = _run(F.linear, args, LINEAR)
    assert node == "_LoopedBackward", node
    assert _kinds() == {("fwd", "linear", False)}
    _assert_each_member_equal(F.linear, args, out, grads, go)
    # the batched formulation really differs here (so the test above can fail)
    x, w, b = (a.detach() for a in args)
    assert not torch.equal(K._linear(x, w, b), K._loop_no_grad(F.linear, [x, w, b]))


def test_layer_norm_and_matmul_run_batched_and_equal_each_member():
    torch.manual_seed(0)
    ln = layer_norm_batched((128,), 1e-5)

    def fn(a, w, b):
        return F.layer_norm(a, (128,), w, b, 1e-5)

    args = [torch.randn(N, 28, 1, 128), torch.randn(N, 128), torch.randn(N, 128)]
    out, grads, node, args, go = _run(fn, args, ln)
    assert node == "_BatchedBackward"
    _assert_each_member_equal(fn, args, out, grads, go)
    args = [torch.randn(N, 3, 2, 7, 16), torch.randn(N, 3, 2, 16, 7)]
    out, grads, node, args, go = _run(torch.matmul, args, MATMUL)
    assert node == "_BatchedBackward"
    _assert_each_member_equal(torch.matmul, args, out, grads, go)


def _in_double(x, w, b):  # the same product, rounded once from float64: other values
    return torch.baddbmm(b.double().unsqueeze(1), x.double(), w.double().transpose(1, 2)).to(
        x.dtype)


def test_a_formulation_that_rounds_otherwise_is_refused_and_the_loop_runs():
    torch.manual_seed(0)
    wrong = Batched("in_double", _in_double)
    args = [torch.randn(N, 32, 384), torch.randn(N, 128, 384), torch.randn(N, 128)]
    out, grads, node, args, go = _run(F.linear, args, wrong)
    assert node == "_LoopedBackward"
    assert _kinds() == {("fwd", "in_double", False)}
    _assert_each_member_equal(F.linear, args, out, grads, go)
    x, w, b = (a.detach() for a in args)
    assert not torch.equal(_in_double(x, w, b), K._loop_no_grad(F.linear, [x, w, b]))


class _OffGrad(torch.autograd.Function):
    """Linear with the right forward and a weight gradient one ulp off."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return K._linear(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        with torch.enable_grad():
            xx, ww = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
            bb = torch.zeros(w.shape[:2], requires_grad=True)
            gx, gw, gb = torch.autograd.grad(K._linear(xx, ww, bb), (xx, ww, bb), g)
        return gx, torch.nextafter(gw, torch.full_like(gw, float("inf"))), gb


def test_a_backward_that_rounds_otherwise_falls_back_to_the_member_loop():
    torch.manual_seed(0)
    off = Batched("off_grad", lambda x, w, b: _OffGrad.apply(x, w, b))
    args = [torch.randn(N, 16, 64), torch.randn(N, 32, 64), torch.randn(N, 32)]
    out, grads, node, args, go = _run(F.linear, args, off)
    assert node == "_BatchedBackward"  # forward checked equal
    assert _kinds() == {("fwd", "off_grad", True), ("bwd", "off_grad", False)}
    _assert_each_member_equal(F.linear, args, out, grads, go)


def test_verdicts_are_cached_per_signature_and_alignment():
    torch.manual_seed(0)
    w, b = torch.randn(N, 16, 32), torch.randn(N, 16)
    with torch.no_grad():
        vmap(lambda *a: member_op(F.linear, *a, batched=LINEAR))(torch.randn(N, 8, 32), w, b)
        assert len(batched_verdicts()) == 1
        vmap(lambda *a: member_op(F.linear, *a, batched=LINEAR))(torch.randn(N, 8, 32), w, b)
        assert len(batched_verdicts()) == 1  # same signature: no new check
        x = torch.randn(N * 8 * 32 + 1)[1:].view(N, 8, 32)  # 4 bytes off the boundary
        vmap(lambda *a: member_op(F.linear, *a, batched=LINEAR))(x, w, b)
        assert len(batched_verdicts()) == 2
        vmap(lambda *a: member_op(F.linear, *a, batched=LINEAR))(x[:3], w[:3], b[:3])
        assert len(batched_verdicts()) == 3  # the member count is part of the signature


def test_checks_leave_the_global_random_stream_alone():
    torch.manual_seed(123)
    x = [torch.randn(N, 8, 1, 32).requires_grad_(True), torch.randn(N, 16, 32).requires_grad_(True),
         torch.randn(N, 16).requires_grad_(True)]
    go = torch.randn(N, 8, 1, 16)
    before = torch.get_rng_state()
    out = vmap(lambda *a: member_op(F.linear, *a, batched=LINEAR))(*x)
    torch.autograd.grad(out, x, go)
    assert _kinds() == {("fwd", "linear", True), ("bwd", "linear", True)}  # checks ran
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("pool", [None, 64])  # 64: tensors larger than the pool
def test_random_arguments_keep_the_layout(monkeypatch, pool):
    if pool is not None:
        monkeypatch.setattr(K, "_POOLS", {})
        monkeypatch.setattr(K, "POOL_SIZE", pool)
    t = torch.randn(5, 7)[1:, ::2].t()  # strided, off the boundary
    e = torch.randn(1, 7).expand(4, 7)  # stride 0
    for like in (t, e, torch.randn(3, 2, 5), torch.randn(10, 30)):
        r = K._random_like(like)
        assert r.shape == like.shape and r.stride() == like.stride()
        assert r.data_ptr() % 64 == like.data_ptr() % 64
        assert r.abs().max() <= 2 and r.unique().numel() > 1
    if pool is not None:  # the longer pool is kept for the next check, not rebuilt
        grown = K._POOLS[(torch.float32, "cpu")]
        assert grown.numel() >= 2 * 300 and torch.equal(grown[:64], grown[64:128])
        assert K._random_like(torch.randn(10, 30)) is not None
        assert K._POOLS[(torch.float32, "cpu")] is grown


def test_checked_batching_false_is_the_plain_member_loop():
    args = [torch.randn(N, 8, 32), torch.randn(N, 16, 32), torch.randn(N, 16)]
    with checked_batching(False):
        _, _, node, _, _ = _run(F.linear, args, LINEAR)
    assert node == "_LoopedBackward" and not batched_verdicts()
