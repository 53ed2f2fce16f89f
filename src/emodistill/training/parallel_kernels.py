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
gradients keep each member's memory layout. Most elementwise ops and reductions over
non-member dims stay batched: they round per element as the unbatched op does. The
exceptions, pointwise ops whose vector and scalar CPU loops round differently (so a
member's result depends on where its elements fall in the stacked loop: ``sigmoid``,
``silu``, tanh-GELU, ...) and cross-entropy's batch mean, run per member through
:mod:`.parallel_pointwise`; batch norm through :mod:`.parallel_batchnorm`.
Outside ``vmap`` (shape probes) the layers are the plain modules.

Alignment matters too: MKL's ``gemm``/``gemv`` round differently for operands that start
at other offsets from a 64-byte boundary (measured: a ``[1 x 384]`` input one float off
gives another ``addmm`` result). A member's slice of a stacked tensor starts ``j`` member
strides after member 0's, so each member's arguments (and, in backward, its gradient) are
copied, where needed, to the offset member 0's slice has; member 0 has the layout of the
sequential fit's tensors (fresh stacked activations; parameters padded to 64 bytes by
the engine's flat buffer).

Batched where shown equal. A loop over members costs a Python call, an autograd graph
and a stack per member and op. For linear and layer-norm layers (and the attention's
matmuls) a *batched formulation* (:class:`Batched`) is tried first: ``baddbmm`` with the
bias as its input where a member runs ``addmm``, and ``bmm`` for the backward products;
a non-affine ``native_layer_norm`` then ``addcmul(bias, y, weight)`` (the fused kernel's
rounding) for the layer-norm forward, whose backward runs the unbatched
``native_layer_norm_backward`` per member without autograd graphs; ``torch.matmul`` on
the stacked tensors. Whether a formulation rounds as the member loop does depends on the
kernel ATen and MKL pick, which they pick from shapes, strides, dtype, each operand's
offset from a 64-byte boundary, the thread count and the CPU, not from the values.
Measured on the dev CPU: ``baddbmm`` equals ``addmm`` on every tested shape with more
than one output column except a 1-row batch with 2 columns; for one output column (a
``gemv`` unbatched) neither the forward nor the weight gradient is equal.

So the choice is a check at run time, once per *signature*: the formulation and its
constants, device, thread count, every argument's shape (the member count included),
strides, dtype and offset from a 64-byte boundary, which arguments need a gradient (e.g.
``matmul`` folds by it) and, for backward, the incoming gradient's layout. The
formulation and the member loop (the very code that runs otherwise) are run on random
arguments of that exact layout (uniform in [-2, 2), full mantissas: windows of a pool
drawn once from a private generator, so the global random stream is untouched); outputs
and gradients are compared with ``torch.equal`` and on their strides (so downstream
kernels see the layout they see in the loop), over as many draws as it takes to compare
at least :data:`CHECK_ELEMENTS` elements of every compared tensor (at most
:data:`CHECK_MAX_DRAWS` draws). Another operation order rounds a sizeable share of
full-mantissa elements otherwise, so it cannot pass by chance on that many; the actual
values could (integer-valued inputs sum exactly in any order), hence random ones. A
formulation that raises on a layout counts as unequal. Verdicts are cached
(:func:`batched_verdicts`): the forward one at a signature's first call, the backward one
at its first backward with that gradient layout; where the backward one fails, the
member loop recomputes each member's forward and runs its backward. Where a formulation
is not equal the op loops over members as before; convolutions always do.
:func:`checked_batching` switches the formulations off (the plain member loop).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["swap_kernels", "member_op", "member_kernels", "checked_batching", "Batched",
           "LINEAR", "MATMUL", "layer_norm_batched", "batched_verdicts", "dims_by_stride",
           "unpermute", "member_layers_here", "swap_classes", "ALIGN_BYTES", "CHECK_ELEMENTS",
           "CHECK_MAX_DRAWS", "POOL_SIZE"]

#: the boundary a fresh CPU tensor starts on (c10's ``gAlignment``)
ALIGN_BYTES = 64


#: a check compares at least this many elements of every output and gradient ...
CHECK_ELEMENTS = 256
#: ... over at most this many random draws
CHECK_MAX_DRAWS = 32
#: random values kept for the checks (per dtype and device; 16 MiB of float32)
POOL_SIZE = 1 << 22

_LOOP = [True]  # member_kernels(False) makes member_op the plain (batched) op under vmap
_CHECKED = [True]  # checked_batching(False): always the member loop
_VERDICTS: dict[tuple, bool] = {}
_POOLS: dict[tuple, Tensor] = {}
_OFFSETS = random.Random(0)


@contextlib.contextmanager
def member_kernels(enabled: bool = True) -> Iterator[None]:
    """Within: ``member_op`` under ``vmap`` loops over members (``True``) or is batched."""
    was = _LOOP[0]
    _LOOP[0] = enabled
    try:
        yield
    finally:
        _LOOP[0] = was


@contextlib.contextmanager
def checked_batching(enabled: bool = True) -> Iterator[None]:
    """Within: member kernels use a :class:`Batched` formulation where checked equal (``True``).

    ``False`` runs every member kernel as the plain member loop (the reference the
    checks compare against; slower, the same values).
    """
    was = _CHECKED[0]
    _CHECKED[0] = enabled
    try:
        yield
    finally:
        _CHECKED[0] = was


def batched_verdicts() -> dict[tuple, bool]:
    """Return the cached check verdicts: signature → whether the formulation is equal.

    A signature is ``("fwd", name, params, device, threads, layouts, needs_grad or
    None)`` or ``("bwd", name, params, device, threads, layouts, needs_grad,
    grad_layout)``; the dict is live (clear it to check again).
    """
    return _VERDICTS


@dataclass(frozen=True)
class Batched:
    """A batched formulation of one member op, used where it is checked bit-equal.

    Attributes
    ----------
    name : str
        Names the formulation in the check's signature.
    fn : callable
        ``fn(*stacked)``: the op on ``[N, ...]`` arguments (``None`` allowed), returning
        ``[N, ...]``; differentiable (autograd) in every floating argument.
    params : tuple
        The op's hashable constants (e.g. a layer norm's shape and eps); part of the
        signature.
    applies : callable, optional
        ``applies(*stacked) -> bool``: whether ``fn`` is meant for these arguments at
        all (e.g. per-member matrices, not vectors); default: always.
    """

    name: str
    fn: Callable[..., Tensor]
    params: tuple = ()
    applies: Callable[..., bool] | None = None


def _is_batched(t: Any) -> bool:
    return isinstance(t, Tensor) and torch._C._functorch.is_batchedtensor(t)


def member_layers_here(*tensors: Tensor | None) -> bool:
    """Whether a member layer loops here: member kernels on and one of ``tensors`` batched."""
    return _LOOP[0] and any(_is_batched(t) for t in tensors)


def member_op(fn: Callable[..., Tensor], *args: Tensor | None,
              batched: Batched | None = None) -> Tensor:
    """``fn(*args)``; under ``vmap``, once per member with the unbatched kernel.

    Parameters
    ----------
    fn : callable
        A function of tensors (``None`` allowed) returning one tensor.
    *args : Tensor or None
        Its arguments; under ``vmap`` any of them may be batched over the members.
    batched : Batched, optional
        A batched formulation of ``fn``, used instead of the loop for the arguments'
        signature where the run-time check found it bit-equal (module doc).
    """
    if member_layers_here(*args):
        return _MemberCall.apply(fn, batched, *args)
    return fn(*args)


def _at_offset_of(t: Tensor, like: Tensor) -> Tensor:
    """``t``, or a copy of it (same strides) starting at ``like``'s offset from 64 bytes."""
    want = like.data_ptr() % ALIGN_BYTES
    if t.data_ptr() % ALIGN_BYTES == want or t.numel() == 0:
        return t
    es = t.element_size()
    span = _span(t)
    buf = torch.empty(span + ALIGN_BYTES // es, dtype=t.dtype, device=t.device)
    shift = ((want - buf.data_ptr() % ALIGN_BYTES) % ALIGN_BYTES) // es
    # the raw window t spans (gaps and stride-0 dims included), so the strides stay
    buf[shift:shift + span].copy_(t.as_strided((span,), (1,)))
    return buf.as_strided(t.shape, t.stride(), shift)


def _span(t: Tensor) -> int:
    """Elements from ``t``'s first to its last (strides and gaps included)."""
    return 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride(), strict=True))


def _slices(x: Tensor) -> Sequence[Tensor]:
    """Every member's slice of stacked ``x``, each at the offset member 0's slice has."""
    views = x.unbind(0)
    if (x.stride(0) * x.element_size()) % ALIGN_BYTES == 0:  # all at member 0's offset
        return views
    return [_at_offset_of(v, views[0]) for v in views]


def _per_member(args: Sequence[Tensor | None]) -> list[list[Tensor | None]]:
    """``[member][argument]``: :func:`_slices` of every stacked argument (``None`` kept)."""
    n = next(a for a in args if a is not None).shape[0]
    cols = [[None] * n if x is None else _slices(x) for x in args]
    return [list(row) for row in zip(*cols, strict=True)]


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


# -- the member loop ---------------------------------------------------------------------------


def _loop_forward(fn: Callable[..., Tensor], args: Sequence[Tensor | None],
                  need: Sequence[bool]) -> tuple[list[list[Tensor | None]], list[Tensor]]:
    """Each member's ``fn`` on its slices (at member 0's offset), each with its own graph."""
    ins: list[list[Tensor | None]] = []
    outs: list[Tensor] = []
    with torch.enable_grad():
        for member in _per_member([None if x is None else x.detach() for x in args]):
            a = [None if x is None else x.detach().requires_grad_(r)
                 for x, r in zip(member, need, strict=True)]
            ins.append(a)
            outs.append(fn(*a))
    return ins, outs


def _loop_backward(ins: list[list[Tensor | None]], outs: list[Tensor], need: Sequence[bool],
                   grad: Tensor) -> list[Tensor | None]:
    """Stacked gradients of the member graphs of :func:`_loop_forward` (``None`` if not needed)."""
    leaves = [x for a in ins for x, r in zip(a, need, strict=True) if r]
    got = iter(torch.autograd.grad(outs, leaves, list(_slices(grad)), allow_unused=True))
    per = [[next(got) if r else None for r in need] for _ in ins]
    res: list[Tensor | None] = []
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
    return res


def _loop_no_grad(fn: Callable[..., Tensor], args: Sequence[Tensor | None]) -> Tensor:
    with torch.no_grad():
        return _stack_like([fn(*member) for member in _per_member(args)])


def _needs(args: Sequence[Tensor | None]) -> list[bool]:
    return [a is not None and a.requires_grad for a in args]


class _Looped(torch.autograd.Function):
    """``fn`` once per member on stacked ``[N, ...]`` arguments, each with its own graph."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., Tensor], *args: Tensor | None) -> Tensor:
        need = _needs(args)
        ins, outs = _loop_forward(fn, args, need)
        ctx.ins, ctx.outs, ctx.need = ins, outs, need
        return _stack_like([o.detach() for o in outs])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        res = _loop_backward(ctx.ins, ctx.outs, ctx.need, grad)
        ctx.ins = ctx.outs = None  # free the member graphs
        return (None, *res)


# -- the checked batched formulations ----------------------------------------------------------


def _layout(t: Tensor | None) -> tuple | None:
    if t is None:
        return None
    return (tuple(t.shape), t.stride(), t.dtype, t.data_ptr() % ALIGN_BYTES)


def _signature(b: Batched, args: Sequence[Tensor | None]) -> tuple:
    dev = next(a for a in args if a is not None).device
    return (b.name, b.params, str(dev), torch.get_num_threads(),
            tuple(_layout(a) for a in args))


def _pool(dtype: torch.dtype, device: torch.device, at_least: int = 0) -> Tensor:
    """Return the cached uniform values in [-2, 2) (own generator), ``at_least`` of them.

    :data:`POOL_SIZE` values, repeated to a longer pool (kept) when a check needs one.
    """
    key = (dtype, str(device))
    p = _POOLS.get(key)
    if p is None:
        g = torch.Generator().manual_seed(len(_POOLS))
        p = torch.empty(POOL_SIZE, dtype=dtype).uniform_(-2.0, 2.0, generator=g).to(device)
        _POOLS[key] = p
    if p.numel() < at_least:
        p = _POOLS[key] = p[:POOL_SIZE].repeat(-(-at_least // POOL_SIZE))
    return p


def _random_like(t: Tensor | None) -> Tensor | None:
    """Random values in ``t``'s exact layout: shape, strides, offset from 64 bytes.

    A read-only window of a pool of uniform values in [-2, 2) at a random start (each call
    another window), so a check draws no random numbers; the pool is at least twice the
    tensor's span (values recur every :data:`POOL_SIZE` elements).
    """
    if t is None:
        return None
    span = _span(t) if t.numel() else 0
    es = t.element_size()
    pad = ALIGN_BYTES // es
    pool = _pool(t.dtype, t.device, 2 * (span + 2 * pad))
    start = _OFFSETS.randrange(pool.numel() - span - pad)
    start += ((t.data_ptr() - pool.data_ptr() - start * es) % ALIGN_BYTES) // es
    return pool.as_strided(t.shape, t.stride(), start)


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b)


def _draws(*ts: Tensor | None) -> int:
    least = min((t.numel() for t in ts if t is not None), default=1)
    return min(CHECK_MAX_DRAWS, max(1, math.ceil(CHECK_ELEMENTS / max(least, 1))))


def _forward_equal(b: Batched, fn: Callable[..., Tensor], args: Sequence[Tensor | None],
                   need: Sequence[bool] | None) -> bool:
    """Whether ``b.fn`` equals the member loop for ``args``' signature (checked once).

    ``need``: which arguments require a gradient (the check runs as the call will, with
    autograd: some kernels choose by it), ``None`` without autograd.
    """
    if any(a is not None and not a.is_floating_point() for a in args):
        return False
    key = ("fwd", *_signature(b, args), None if need is None else tuple(need))
    ok = _VERDICTS.get(key)
    if ok is None:
        ok = _check(lambda: _forward_draw(b, fn, args, need))
        _VERDICTS[key] = ok
    return ok


def _check(draw: Callable[[], tuple[bool, int]]) -> bool:
    """Run ``draw`` (→ equal?, draws needed) until unequal or enough draws; errors: unequal."""
    try:
        ok, draws = draw()
        for _ in range(1, draws):
            if not ok:
                break
            ok, _ = draw()
    except RuntimeError:  # the formulation does not take this layout: the member loop
        return False
    return ok


def _leaves(args: Sequence[Tensor | None], need: Sequence[bool]) -> list[Tensor | None]:
    return [None if a is None else a.detach().requires_grad_(q)
            for a, q in zip(args, need, strict=True)]


def _forward_draw(b: Batched, fn: Callable[..., Tensor], args: Sequence[Tensor | None],
                  need: Sequence[bool] | None) -> tuple[bool, int]:
    r = [_random_like(a) for a in args]
    if need is None:
        want = _loop_no_grad(fn, r)
        with torch.no_grad():
            got = b.fn(*r)
    else:
        _, outs = _loop_forward(fn, r, need)
        want = _stack_like([o.detach() for o in outs])
        with torch.enable_grad():
            got = b.fn(*_leaves(r, need)).detach()
    return _same(got, want), _draws(want)


def _backward_equal(b: Batched, fn: Callable[..., Tensor], args: Sequence[Tensor | None],
                    need: Sequence[bool], grad: Tensor) -> bool:
    """Whether ``b.fn``'s gradients equal the member loop's for this signature (checked once)."""
    key = ("bwd", *_signature(b, args), tuple(need), _layout(grad))
    ok = _VERDICTS.get(key)
    if ok is None:
        ok = _check(lambda: _backward_draw(b, fn, args, need, grad))
        _VERDICTS[key] = ok
    return ok


def _backward_draw(b: Batched, fn: Callable[..., Tensor], args: Sequence[Tensor | None],
                   need: Sequence[bool], grad: Tensor) -> tuple[bool, int]:
    r = [_random_like(a) for a in args]
    g = _random_like(grad)
    assert g is not None
    ins, outs = _loop_forward(fn, r, need)
    want = _loop_backward(ins, outs, need, g)
    leaves = _leaves(r, need)
    with torch.enable_grad():
        out = b.fn(*leaves)
    got = _grads(out, leaves, need, g)
    ok = _same(out.detach(), _stack_like([o.detach() for o in outs])) and all(
        _same(x, y) for x, y in zip(got, want, strict=True))
    return ok, _draws(*want)


def _grads(out: Tensor, leaves: Sequence[Tensor | None], need: Sequence[bool],
           grad: Tensor) -> list[Tensor | None]:
    """Gradients of ``out`` for the needed ``leaves`` (zeros if unused; None if not needed)."""
    want = [x for x, r in zip(leaves, need, strict=True) if r]
    got = iter(torch.autograd.grad(out, want, grad, allow_unused=True))
    res: list[Tensor | None] = []
    for x, r in zip(leaves, need, strict=True):
        if not r:
            res.append(None)
            continue
        g = next(got)
        assert x is not None
        res.append(torch.zeros_like(x) if g is None else g)
    return res


class _Batched(torch.autograd.Function):
    """``b.fn`` on the stacked arguments (forward checked equal); backward checked per layout."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., Tensor], b: Batched, *args: Tensor | None) -> Tensor:
        need = _needs(args)
        leaves = _leaves(args, need)
        with torch.enable_grad():
            out = b.fn(*leaves)
        ctx.fn, ctx.b, ctx.leaves, ctx.out, ctx.need = fn, b, leaves, out, need
        return out.detach()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        fn, b, leaves, out, need = ctx.fn, ctx.b, ctx.leaves, ctx.out, ctx.need
        ctx.leaves = ctx.out = None
        if _backward_equal(b, fn, leaves, need, grad):
            res = _grads(out, leaves, need, grad)
        else:  # the member loop, recomputing each member's forward
            args = [None if a is None else a.detach() for a in leaves]
            ins, outs = _loop_forward(fn, args, need)
            res = _loop_backward(ins, outs, need, grad)
        return (None, None, *res)


class _MemberCall(torch.autograd.Function):
    """``fn(*args)``; its vmap rule runs the checked formulation or :class:`_Looped`."""

    generate_vmap_rule = False

    @staticmethod
    def forward(fn: Callable[..., Tensor], b: Batched | None,  # type: ignore[override]
                *args: Tensor | None) -> Tensor:
        return fn(*args)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:  # noqa: D102
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:  # pragma: no cover - only used under vmap
        raise RuntimeError("member_op is differentiable only under vmap (the parallel path)")

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], fn: Callable[..., Tensor],
             b: Batched | None, *args: Tensor | None) -> tuple[Tensor, int]:
        n = info.batch_size
        st = [None if a is None else (a.movedim(d, 0) if d is not None
                                      else a.expand(n, *a.shape))
              for a, d in zip(args, in_dims[2:], strict=True)]
        grad = torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in st)
        if (b is not None and _CHECKED[0] and (b.applies is None or b.applies(*st))
                and _forward_equal(b, fn, st, _needs(st) if grad else None)):
            if grad:
                return _Batched.apply(fn, b, *st), 0
            with torch.no_grad():
                return b.fn(*st), 0
        if grad:
            return _Looped.apply(fn, *st), 0
        return _loop_no_grad(fn, st), 0


# -- the formulations --------------------------------------------------------------------------


class _BatchedLinear(torch.autograd.Function):
    """``F.linear`` per member as ``baddbmm`` (bias the input, as ``addmm`` adds it) / ``bmm``.

    Backward: ``g @ w``, ``g^T @ x`` and the row sum of ``g``, batched (the products
    ``addmm``'s backward runs per member).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
        n, k = x.shape[0], x.shape[-1]
        x2 = x.reshape(n, -1, k)
        wt = w.transpose(1, 2)
        out = torch.bmm(x2, wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), x2, wt)
        ctx.save_for_backward(x2, w)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        return out.view(*x.shape[:-1], w.shape[1])

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x2, w = ctx.saved_tensors
        g2 = g.reshape(g.shape[0], -1, g.shape[-1])
        gx = torch.bmm(g2, w).view(ctx.x_shape) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g2.transpose(1, 2), x2) if ctx.needs_input_grad[1] else None
        gb = g2.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _linear_applies(x: Tensor, w: Tensor, bias: Tensor | None = None) -> bool:
    return x.dim() >= 2 and w.dim() == 3 and (bias is None or bias.dim() == 2)


def _linear(x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    return _BatchedLinear.apply(x, w, bias)


#: ``F.linear(x, w, b)`` per member
LINEAR = Batched("linear", _linear, applies=_linear_applies)


def _matmul_applies(a: Tensor, b: Tensor) -> bool:
    return a.dim() >= 3 and b.dim() >= 3  # per-member matrices (not vectors)


#: ``torch.matmul(a, b)`` per member on matrices: the stacked matmul (one more batch dim)
MATMUL = Batched("matmul", torch.matmul, applies=_matmul_applies)


class _BatchedLayerNorm(torch.autograd.Function):
    """Affine ``F.layer_norm`` per member: non-affine norm, then ``addcmul(b, y, w)``.

    Backward: the unbatched ``native_layer_norm_backward`` once per member (as autograd
    calls it for a sequential fit), without building per-member graphs.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, shape: tuple[int, ...],
                eps: float) -> Tensor:
        y, mean, rstd = torch.native_layer_norm(x, shape, None, None, eps)
        view = (w.shape[0],) + (1,) * (x.dim() - 1 - len(shape)) + tuple(shape)
        ctx.save_for_backward(x, w, b, mean, rstd)
        ctx.shape = shape
        return torch.addcmul(b.reshape(view), y, w.reshape(view))

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, w, b, mean, rstd = ctx.saved_tensors
        mask = list(ctx.needs_input_grad[:3])
        per = [torch.ops.aten.native_layer_norm_backward(gj, xj, ctx.shape, mj, rj, wj, bj, mask)
               for gj, xj, mj, rj, wj, bj in _per_member([g, x, mean, rstd, w, b])]
        return (*(_stack_like([p[i] for p in per]) if mask[i] else None for i in range(3)),
                None, None)


def layer_norm_batched(shape: Sequence[int], eps: float) -> Batched:
    """Return the checked formulation of ``F.layer_norm(x, shape, w, b, eps)`` (affine)."""
    shp = tuple(int(s) for s in shape)

    def fn(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return _BatchedLayerNorm.apply(x, w, b, shp, eps)

    def applies(x: Tensor, w: Tensor | None, b: Tensor | None) -> bool:
        return w is not None and b is not None and x.dim() > len(shp) + 1

    return Batched("layer_norm", fn, (shp, float(eps)), applies)


class _MemberLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return member_op(F.linear, x, self.weight, self.bias, batched=LINEAR)


class _MemberLayerNorm(nn.LayerNorm):
    def _fn(self, x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, w, b, self.eps)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return member_op(self._fn, x, self.weight, self.bias,
                         batched=layer_norm_batched(self.normalized_shape, self.eps))


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
    return swap_classes(module, _SWAPS)


def swap_classes(module: nn.Module, swaps: dict[type, type]) -> int:
    """Give every submodule of ``module`` whose exact type is a key of ``swaps`` its value.

    By ``__class__`` (in place), so parameter and buffer names stay. Returns the number of
    modules swapped.
    """
    n = 0
    for m in module.modules():
        new = swaps.get(type(m))
        if new is not None:
            m.__class__ = new
            n += 1
    return n
