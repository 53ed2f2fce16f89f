"""Batch-norm layers that, under ``vmap``, run each member's own batch-norm kernel.

``F.batch_norm`` under ``vmap`` folds the members into the channels (one batch norm over
``N * C`` channels), whose CPU kernel rounds otherwise than one member's batch norm
(measured, torch 2.13: outputs and input/weight gradients of a ``[32, 16, 32, 125]``
``BatchNorm2d`` in training differ by about one ulp; ``physio_*``'s convolution
tokeniser). The layers swapped in here (by ``__class__``, so parameter and buffer names
stay) call ``F.batch_norm`` once per member through
:func:`~emodistill.training.parallel_kernels.member_op`; in training the member's
running statistics are updated by that call, on its own slices of the stacked buffers
(written back where ``member_op`` handed the call a realigned copy). Outside ``vmap`` or
with batched kernels they are the plain modules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from emodistill.training import parallel_kernels as _pk
from emodistill.training.parallel_kernels import member_layers_here, member_op, swap_classes

__all__ = ["swap_batch_norms"]


def _stacked(t: Tensor) -> Tensor:
    """Return the ``[N, ...]`` tensor under a (one-level) ``vmap`` wrapper, members first."""
    bdim = torch._C._functorch.maybe_get_bdim(t)
    return torch._C._functorch.get_unwrapped(t).movedim(bdim, 0)


class _MemberBatchNorm(nn.modules.batchnorm._BatchNorm):
    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if not member_layers_here(x, self.weight, self.running_mean):
            return super().forward(x)
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            if self.momentum is None:
                raise ValueError(f"{type(self).__name__}(momentum=None): a cumulative average "
                                 "has no member kernel; set a momentum or train with "
                                 "--parallel off")
            self.num_batches_tracked.add_(1)
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        stats = [self.running_mean, self.running_var]
        if self.training and not self.track_running_stats:
            stats = [None, None]
        if bn_training and any(s is not None and not _pk._is_batched(s) for s in stats):
            raise ValueError(f"{type(self).__name__}: running statistics shared by the "
                             "members cannot be updated per member; stack them too")
        raw = [None if s is None or not bn_training else _stacked(s) for s in stats]
        pos = [0]

        def one(a: Tensor, w: Tensor | None, b: Tensor | None, mean: Tensor | None,
                var: Tensor | None) -> Tensor:
            out = F.batch_norm(a, mean, var, w, b, bn_training, factor, self.eps)
            j = pos[0]
            pos[0] += 1
            for r, s in zip(raw, (mean, var), strict=True):  # the member's updated statistics
                if r is not None and s is not None and r[j].data_ptr() != s.data_ptr():
                    # .data: no version bump (the kernel's own update makes none either),
                    # so a graph that saved these statistics stays valid
                    r.data[j].copy_(s)
            return out

        return member_op(one, x, self.weight, self.bias, *stats)


class _MemberBatchNorm1d(_MemberBatchNorm, nn.BatchNorm1d):
    pass


class _MemberBatchNorm2d(_MemberBatchNorm, nn.BatchNorm2d):
    pass


_SWAPS: dict[type, type] = {nn.BatchNorm1d: _MemberBatchNorm1d,
                            nn.BatchNorm2d: _MemberBatchNorm2d}


def swap_batch_norms(module: nn.Module) -> int:
    """Make every plain ``BatchNorm1d``/``BatchNorm2d`` of ``module`` a member layer (in place).

    Returns the number of layers swapped.
    """
    return swap_classes(module, _SWAPS)
