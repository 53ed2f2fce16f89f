"""Ops whose CPU result depends on where an element sits: run per member under vmap.

A CPU pointwise kernel runs a vectorised loop over the contiguous elements and a scalar
loop for the rest (the tail), and for some ops the two round differently (a
vector ``exp`` inside ``sigmoid``, ``silu``, ``elu``, ``softplus``, ``mish``, tanh-GELU, a
fractional ``pow``). Stacked under ``vmap``, a member's elements are one stretch of a
longer loop, so other elements fall into the tail than in its own fit: about one ulp,
data-dependent (measured, torch 2.13, AVX512: ``sigmoid`` of ``[72]`` per member differed
in 53 of 150 member-draws, its gradient in 18 of 60; ``exp``, ``tanh``, ``log``, erf-GELU,
``softmax``, ``log_softmax`` and arithmetic never did; ``benchmarks/parallel.md``,
"Transformer layers made exact"). The default erf-GELU therefore stays batched (again 0 of
140,000 elements apart, forward and backward, against 2,800-22,000 for tanh-GELU;
``parallel.md``, "Cuts of 2026-12-03"); only ``F.gelu(..., approximate="tanh")`` runs per
member. The physio teacher's modality gate (a ``sigmoid``)
made one member's first step differ.

:class:`member_pointwise` (a ``TorchFunctionMode``, entered by the engine around its
vmapped call) routes these ops, when their input is batched over the members, through
:func:`~emodistill.training.parallel_kernels.member_op`: each member's own kernel on its
own tensor, forward and backward. So do the batch-mean losses of :data:`REDUCING`
(``cross_entropy``: the batched ``nll_loss`` sums the mean in another order). Everything
else passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from emodistill.training import parallel_kernels as _pk
from emodistill.training.parallel_kernels import member_op

__all__ = ["member_pointwise", "SENSITIVE", "REDUCING"]

#: unary ops (first argument the tensor) whose vector and scalar CPU loops round differently
SENSITIVE: frozenset[Callable[..., Any]] = frozenset({
    torch.sigmoid, Tensor.sigmoid, torch.special.expit, F.sigmoid,
    F.silu, F.elu, F.selu, F.celu, F.softplus, F.mish,
})
_POW = frozenset({torch.pow, Tensor.pow, Tensor.__pow__})
#: batch-mean losses whose batched rule sums in another order than the member's own kernel
#: (``nll_loss``: the value apart for 5 of 9 member-batches of 5, 8, 32 rows; its gradient
#: equal); every tensor argument is handed to the member's call
REDUCING: frozenset[Callable[..., Any]] = frozenset({F.cross_entropy, F.nll_loss})


def _routed(func: Callable[..., Any], args: tuple, kwargs: dict) -> bool:
    if not args or not _pk._is_batched(args[0]) or not args[0].is_floating_point():
        return False
    if func in SENSITIVE:
        return True
    if func is F.gelu:  # tanh-GELU only: erf-GELU rounds alike in both loops
        return kwargs.get("approximate", args[1] if len(args) > 1 else "none") == "tanh"
    if func in REDUCING:
        return not any(isinstance(v, Tensor) for v in kwargs.values())
    if func in _POW and len(args) > 1 and isinstance(args[1], float):
        return not float(args[1]).is_integer()  # x ** 2 is a product: no tail effect
    return False


class member_pointwise(TorchFunctionMode):  # noqa: N801 - used as a context manager
    """Within (and with member kernels on): the ops of :data:`SENSITIVE` once per member."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if _pk._LOOP[0] and _routed(func, args, kwargs):
            where = [i for i, a in enumerate(args) if isinstance(a, Tensor)]

            def one(*ts: Tensor) -> Tensor:
                a = list(args)
                for i, t in zip(where, ts, strict=True):
                    a[i] = t
                return func(*a, **kwargs)

            return member_op(one, *(args[i] for i in where))
        return func(*args, **kwargs)
