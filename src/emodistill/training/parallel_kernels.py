"""Member kernels: linear, layer-norm and convolution layers that round as a sequential fit does.

Under ``torch.func.vmap`` a layer with stacked weights does not run the kernel a
sequential fit runs: ``F.linear`` becomes ``bmm`` + ``add`` (where an unbatched fit runs
``addmm``, which adds the bias inside the BLAS call, or a ``gemv`` for one output
column), ``F.layer_norm`` becomes a non-affine layer norm followed by ``mul`` and ``add``
(where the CPU kernel applies weight and bias fused), and ``F.conv1d`` becomes one
grouped convolution over the members. Each rounds differently, by about one ulp, and
backward inherits the difference (measured: ``benchmarks/parallel.md``, "A parity limit
found by the lead"). Training amplifies those ulps until early stopping picks other epochs.

The layers swapped in here (by ``__class__``, so parameter names stay) run, under
``vmap``, the very same kernel per member: the vmap rule of :class:`_MemberCall` hands
the stacked ``[N, ...]`` tensors to :class:`_Looped`, which calls the layer's own
functional op once per member on that member's slices (each under its own autograd
graph), and whose backward runs those graphs (one ``autograd.grad`` call for all
members), so the gradients are the unbatched backward kernels' too. Outputs and
gradients keep each member's memory layout. Elementwise ops and reductions over
non-member dims stay batched: they round per element as the unbatched op does.
Outside ``vmap`` (shape probes) the layers are the plain modules.

Alignment matters too: MKL's ``gemm``/``gemv`` round differently for operands that start
at other offsets from a 64-byte boundary (measured: a ``[1 x 384]`` input one float off
gives another ``addmm`` result). A member's slice of a stacked tensor starts ``j`` member
strides after member 0's, so each member's arguments (and, in backward, its gradient) are
copied, where needed, to the offset member 0's slice has; member 0 has the layout of the
sequential fit's tensors (fresh stacked activations; parameters padded to 64 bytes by
the engine's flat buffer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["swap_kernels", "member_op", "member_kernels", "dims_by_stride", "unpermute",
           "ALIGN_BYTES"]

#: the boundary a fresh CPU tensor starts on (c10's ``gAlignment``)
ALIGN_BYTES = 64


_LOOP = [True]  # member_kernels(False) makes member_op the plain (batched) op under vmap


@contextlib.contextmanager
def member_kernels(enabled: bool = True) -> Iterator[None]:
    """Within: ``member_op`` under ``vmap`` loops over members (``True``) or is batched."""
    was = _LOOP[0]
    _LOOP[0] = enabled
    try:
        yield
    finally:
        _LOOP[0] = was


def _is_batched(t: Any) -> bool:
    return isinstance(t, Tensor) and torch._C._functorch.is_batchedtensor(t)


def member_op(fn: Callable[..., Tensor], *args: Tensor | None) -> Tensor:
    """``fn(*args)``; under ``vmap``, once per member with the unbatched kernel.

    Parameters
    ----------
    fn : callable
        A function of tensors (``None`` allowed) returning one tensor.
    *args : Tensor or None
        Its arguments; under ``vmap`` any of them may be batched over the members.
    """
    if _LOOP[0] and any(_is_batched(a) for a in args):
        return _MemberCall.apply(fn, *args)
    return fn(*args)


def _at_offset_of(t: Tensor, like: Tensor) -> Tensor:
    """``t``, or a copy of it (same strides) starting at ``like``'s offset from 64 bytes."""
    want = like.data_ptr() % ALIGN_BYTES
    if t.data_ptr() % ALIGN_BYTES == want or t.numel() == 0:
        return t
    es = t.element_size()
    span = 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride(), strict=True))
    buf = torch.empty(span + ALIGN_BYTES // es, dtype=t.dtype, device=t.device)
    shift = ((want - buf.data_ptr() % ALIGN_BYTES) % ALIGN_BYTES) // es
    # the raw window t spans (gaps and stride-0 dims included), so the strides stay
    buf[shift:shift + span].copy_(t.as_strided((span,), (1,)))
    return buf.as_strided(t.shape, t.stride(), shift)


def _member_args(args: Sequence[Tensor | None], j: int) -> list[Tensor | None]:
    """Member ``j``'s slices of stacked ``args``, each at the offset member 0's slice has."""
    return [None if x is None else _at_offset_of(x[j], x[0]) for x in args]


def dims_by_stride(strides: Sequence[int]) -> tuple[int, ...]:
    """Dims from outermost to innermost in memory, for a tensor with these ``strides``."""
    return tuple(sorted(range(len(strides)), key=lambda d: (-strides[d], d)))


def unpermute(stacked: Tensor, perm: Sequence[int]) -> Tensor:
    """``[N, *shape in the dim order perm]`` → ``[N, *logical shape]`` (a view)."""
    inv = sorted(range(len(perm)), key=lambda i: perm[i])
    return stacked.permute(0, *(1 + j for j in inv))


def _stack_like(ts: Sequence[Tensor]) -> Tensor:
    """Stack ``ts`` into ``[N, ...]`` giving every slice the memory layout of ``ts[0]``."""
    perm = dims_by_stride(ts[0].stride())
    if perm == tuple(range(ts[0].dim())):
        return torch.stack(list(ts))
    return unpermute(torch.stack([t.permute(perm) for t in ts]), perm)


class _Looped(torch.autograd.Function):
    """``fn`` once per member on stacked ``[N, ...]`` arguments, each with its own graph."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., Tensor], *args: Tensor | None) -> Tensor:
        n = next(a for a in args if a is not None).shape[0]
        need = [a is not None and a.requires_grad for a in args]
        ins: list[list[Tensor | None]] = []
        outs: list[Tensor] = []
        with torch.enable_grad():
            for j in range(n):
                a = [None if x is None else x.detach().requires_grad_(r)
                     for x, r in zip(_member_args(args, j), need, strict=True)]
                ins.append(a)
                outs.append(fn(*a))
        ctx.ins, ctx.outs, ctx.need = ins, outs, need
        return _stack_like([o.detach() for o in outs])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        ins, outs, need = ctx.ins, ctx.outs, ctx.need
        leaves = [x for a in ins for x, r in zip(a, need, strict=True) if r]
        got = iter(torch.autograd.grad(outs, leaves, [_at_offset_of(grad[j], grad[0])
                                                      for j in range(len(outs))],
                                       allow_unused=True))
        per = [[next(got) if r else None for r in need] for _ in ins]
        res: list[Tensor | None] = [None]  # fn
        for i, r in enumerate(need):
            if not r:
                res.append(None)
                continue
            gs = [p[i] for p in per]
            if any(g is None for g in gs):  # an argument fn did not use
                like = ins[0][i]
                assert like is not None
                gs = [torch.zeros_like(like) if g is None else g for g in gs]
            res.append(_stack_like(gs))
        ctx.ins = ctx.outs = None  # free the member graphs
        return tuple(res)


class _MemberCall(torch.autograd.Function):
    """``fn(*args)``; its vmap rule runs :class:`_Looped` on the stacked tensors."""

    generate_vmap_rule = False

    @staticmethod
    def forward(fn: Callable[..., Tensor], *args: Tensor | None) -> Tensor:  # type: ignore[override]
        return fn(*args)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:  # noqa: D102
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:  # pragma: no cover - only used under vmap
        raise RuntimeError("member_op is differentiable only under vmap (the parallel path)")

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], fn: Callable[..., Tensor],
             *args: Tensor | None) -> tuple[Tensor, int]:
        n = info.batch_size
        st = [None if a is None else (a.movedim(d, 0) if d is not None
                                      else a.expand(n, *a.shape))
              for a, d in zip(args, in_dims[1:], strict=True)]
        if torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in st):
            return _Looped.apply(fn, *st), 0
        with torch.no_grad():
            return _stack_like([fn(*_member_args(st, j)) for j in range(n)]), 0


class _MemberLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return member_op(F.linear, x, self.weight, self.bias)


class _MemberLayerNorm(nn.LayerNorm):
    def _fn(self, x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, w, b, self.eps)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return member_op(self._fn, x, self.weight, self.bias)


class _MemberConv1d(nn.Conv1d):
    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return member_op(self._conv_forward, x, self.weight, self.bias)


class _MemberConv2d(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return member_op(self._conv_forward, x, self.weight, self.bias)


_SWAPS: dict[type, type] = {nn.Linear: _MemberLinear, nn.LayerNorm: _MemberLayerNorm,
                            nn.Conv1d: _MemberConv1d, nn.Conv2d: _MemberConv2d}


def swap_kernels(module: nn.Module) -> int:
    """Make every plain ``Linear``/``LayerNorm``/``Conv1d``/``Conv2d`` of ``module`` a member layer.

    In place; only exact types are swapped (a subclass may have its own forward).
    Returns the number of layers swapped.
    """
    n = 0
    for m in module.modules():
        new = _SWAPS.get(type(m))
        if new is not None:
            m.__class__ = new
            n += 1
    return n
