"""Transformer encoder layers on the parallel path: each member runs its sequential fit's code.

``nn.TransformerEncoderLayer`` picks its computation at run time, and a CPU fit runs three
different ones (a dispatch log, torch 2.13; ``benchmarks/parallel.md``, "Transformer
layers made exact"):

* training without attention dropout: ``F.multi_head_attention_forward`` with the
  flash-attention CPU kernel (``_scaled_dot_product_flash_attention_for_cpu``, forward and
  backward) and the in-projection as ``mm`` + ``add_`` (its input is the transposed query);
* training with attention dropout: the math kernel of ``scaled_dot_product_attention``
  (which draws the dropout of the attention weights inside);
* evaluation without gradient (validation, test, a distillation teacher): the fused
  ``torch._transformer_encoder_layer_fwd`` (native multi-head attention, masked softmax,
  ``addmm`` with a fused activation).

Under ``vmap`` none of these runs as the sequential fit runs it: the in-projection's
``F.linear`` becomes a batched ``bmm`` (measured: other ``in_proj_weight`` gradients),
flash attention has no batching rule, and the engine runs attention through the math
kernel with the fused layer off (:func:`vmapped_attention`). So
:class:`MemberEncoderLayer` (swapped in by ``__class__``, parameter names stay) runs the
whole layer once per member instead (:func:`member_module`, built on
:func:`~emodistill.training.parallel_kernels.member_op`): with that member's parameters,
under the attention settings in force when the parallel step began (the fast-path flag
and the SDPA backends a sequential fit would run under), so torch picks the path and the
kernels the sequential fit picks, and backward runs each member's own graph. The layer's
dropout draws (its ``nn.Dropout`` modules and the attention dropout, member draws of
:mod:`.parallel`) are handed to each member's call as that member's masks.

Outside ``vmap``, inside a member's call, or with batched kernels
(``member_kernels(False)``), the layer is the plain ``nn.TransformerEncoderLayer``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel
from torch.nn.utils.stateless import _reparametrize_module

from emodistill.training import parallel_kernels as _pk
from emodistill.training.parallel_kernels import member_layers_here, member_op, swap_classes

__all__ = ["MemberEncoderLayer", "member_module", "member_sdpa", "grad_needed",
           "swap_transformer_layers", "vmapped_attention"]

#: the sequential fit's attention settings (fast-path flag, SDPA backends) while the
#: engine's vmapped step runs under its own (set by :func:`vmapped_attention`)
_SEQUENTIAL: list[tuple[bool, list[SDPBackend]] | None] = [None]


@contextlib.contextmanager
def vmapped_attention() -> Iterator[None]:
    """Within: attention for ``vmap`` (math kernel, no fused layer); member calls as before.

    The settings in force on entry are the ones a sequential fit runs under; each
    member's call of a :class:`MemberEncoderLayer` runs under them again.
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    was = _SEQUENTIAL[0]
    _SEQUENTIAL[0] = (fast, _cur_sdpa_kernel_backends())
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        _SEQUENTIAL[0] = was


@contextlib.contextmanager
def _sequential_attention() -> Iterator[None]:
    """Within: the attention settings recorded by :func:`vmapped_attention` (if any)."""
    seq = _SEQUENTIAL[0]
    if seq is None:  # not inside the engine's step: the current settings are the fit's
        yield
        return
    fast, backends = seq
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fast)
    try:
        with sdpa_kernel(backends) if backends else contextlib.nullcontext():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def member_module(module: nn.Module, call: Callable[..., Tensor],
                  tensors: Sequence[Tensor | None], n_draws: int) -> Tensor:
    """``call(*tensors)`` once per member, ``module`` holding that member's parameters.

    Parameters
    ----------
    module : nn.Module
        A module whose parameters and buffers are stacked ``[N, ...]`` (under ``vmap``).
    call : callable
        Runs ``module``'s own forward on ``tensors`` (unbatched, one member's) and returns
        one tensor.
    tensors : sequence of Tensor or None
        The call's tensor arguments (batched over the members, or not).
    n_draws : int
        How many member dropout masks the call consumes (the next ones of the step);
        each member's call gets its own slices of them.

    Returns
    -------
    Tensor
        The members' outputs, stacked under ``vmap`` as ``member_op`` stacks them.

    Raises
    ------
    RuntimeError
        When a member's call consumes another number of masks than ``n_draws``.
    """
    from emodistill.training.parallel import _DRAWS  # the member draws (imports this module)

    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    keys = list(state)
    masks = _DRAWS.masks[_DRAWS.pos:_DRAWS.pos + n_draws]
    if len(masks) != n_draws:
        raise RuntimeError(f"{type(module).__name__}: {n_draws} dropout masks needed, "
                           f"{len(masks)} left in this step's draws")
    _DRAWS.pos += n_draws
    n_t, n_k = len(tensors), len(keys)

    def one(*args: Tensor | None) -> Tensor:
        outer = _DRAWS.masks, _DRAWS.pos
        _DRAWS.masks, _DRAWS.pos = list(args[n_t + n_k:]), 0  # type: ignore[arg-type]
        try:
            with _reparametrize_module(module, dict(zip(keys, args[n_t:n_t + n_k],
                                                        strict=True))), _sequential_attention():
                out = call(*args[:n_t])
            if _DRAWS.pos != n_draws:
                raise RuntimeError(f"{type(module).__name__} drew {_DRAWS.pos} dropout masks "
                                   f"in one member's call, {n_draws} were handed to it")
        finally:
            _DRAWS.masks, _DRAWS.pos = outer
        return out

    return member_op(one, *tensors, *(state[k] for k in keys), *masks)


def _requires_grad(t: Tensor) -> bool:
    """``t.requires_grad`` of the tensor under ``vmap``'s wrappers (they report ``False``)."""
    while _pk._is_batched(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t.requires_grad


def grad_needed(*tensors: Tensor | None) -> bool:
    """Whether autograd records an op on ``tensors`` (grad mode on, one of them requiring it)."""
    return torch.is_grad_enabled() and any(t is not None and _requires_grad(t) for t in tensors)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    with _sequential_attention():
        return F.scaled_dot_product_attention(q, k, v, mask)


def member_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, mask)`` (no dropout), once per member.

    Each member's call runs under the sequential fit's attention settings, so it runs the
    kernel the fit runs (on CPU, ``_scaled_dot_product_flash_attention_for_cpu``), and
    its backward that kernel's backward.

    Parameters
    ----------
    q, k, v : Tensor
        ``[B, H, L, D]``, ``[B, H, S, D]``, ``[B, H, S, D]`` (batched over the members).
    mask : Tensor or None
        Additive float mask broadcastable to ``[B, H, L, S]``.
    """
    return member_op(_sdpa, q, k, v, mask)


def _draws(p: float) -> int:
    return int(0.0 < p < 1.0)  # as _member_drop: p = 0 and p = 1 draw nothing


class MemberEncoderLayer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` run once per member under ``vmap`` (see module doc)."""

    def _n_draws(self) -> int:
        """Member dropout masks one training forward consumes (attention, then the blocks)."""
        if not self.training:
            return 0
        return (_draws(float(self.self_attn.dropout))
                + sum(_draws(float(getattr(d, "p", 0.0)))
                      for d in (self.dropout1, self.dropout, self.dropout2)))

    def forward(self, src: Tensor, src_mask: Tensor | None = None,  # noqa: D102
                src_key_padding_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if (not member_layers_here(src, self.linear1.weight)
                or grad_needed(src, *self.parameters())):
            # training: the parent's forward; its attention (a member attention, see
            # parallel._MemberAttention) and linear/norm layers run per member, while the
            # residual sums stay in the outer graph, so gradients sum in the fit's order
            return super().forward(src, src_mask, src_key_padding_mask, is_causal)

        def call(x: Tensor, mask: Tensor | None, pad: Tensor | None) -> Tensor:
            return nn.TransformerEncoderLayer.forward(self, x, mask, pad, is_causal)

        return member_module(self, call, (src, src_mask, src_key_padding_mask), self._n_draws())


def swap_transformer_layers(module: nn.Module) -> int:
    """Make each plain ``nn.TransformerEncoderLayer`` of ``module`` (itself too) a member layer.

    In place; only the exact type is swapped. Returns the number of layers swapped.
    """
    return swap_classes(module, {nn.TransformerEncoderLayer: MemberEncoderLayer})
