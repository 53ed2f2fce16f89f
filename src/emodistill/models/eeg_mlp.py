"""A small, strongly regularised MLP (or an average of several) for EEG band-feature tables.

The band tables have a few hundred trials per fold and 20-160 features: the generic
``unimodal`` MLP (two 128-wide layers with LayerNorm, a 128-wide head) fits the training
subjects within one or two epochs and stays below a linear probe. ``eeg_mlp`` is the small
model the field uses on such tables, with the usual regularisers as options:

* ``input_dropout``: dropout on the input features (each band value of each electrode is
  dropped independently; a cheap feature-bagging regulariser);
* ``input_noise``: Gaussian noise of this standard deviation added to the (standardised)
  inputs during training;
* ``layers`` GELU layers of ``width`` units with ``dropout`` (``layers: 0`` is a linear model,
  a torch logistic regression);
* ``label_smoothing`` in the cross-entropy;
* ``members``: ``K`` independent MLPs (own initialisation and dropout masks, trained on the
  same batches, each with its own loss) whose logits are averaged: a bagging-style average
  that lowers the variance of a small network, inside one model (so it trains, checkpoints
  and distils like any method);
* ``skip_linear``: a wide-and-deep form, ``logits = W x + MLP(x)``: a linear path on the raw
  inputs (no input dropout or noise; the logistic model) plus the MLP as a non-linear
  residual branch whose output layer starts at zero, so the model starts linear and the
  branch grows only where the data pay for it;
* ``linear_l2``: an L2 penalty ``linear_l2 * ||W||^2`` on the linear path's weights (bias
  not penalised) added to the training loss, the logistic row's shrinkage inside the model
  (``linear_l2 = 1 / (2 C N)`` matches scikit-learn's ``C`` on ``N`` training trials,
  e.g. ``C = 0.001``, ``N = 430`` → 1.16). It applies to the skip path with
  ``skip_linear``, to the whole model with ``layers: 0``.

For regression targets ``label_smoothing`` must be 0; the task loss is the mean of the
members' losses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, MERModel, ModelOutput, single_modality

__all__ = ["EEGMLP", "MemberLinear"]


class MemberLinear(nn.Module):
    """``K`` independent linear maps applied side by side: ``[B, K, I]`` → ``[B, K, O]``.

    Initialised like ``K`` separate ``nn.Linear(I, O)`` layers (uniform ±1/sqrt(I)).

    Parameters
    ----------
    members, in_dim, out_dim : int
        ``K``, ``I`` and ``O``.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        # contiguous: a dropout after this layer then draws its mask in the row-major order
        # of a plain tensor (what the parallel engine's per-member masks reproduce)
        return (torch.einsum("bki,kio->bko", x, self.weight) + self.bias).contiguous()


@METHODS.register("eeg_mlp")
class EEGMLP(MERModel):
    """Regularised MLP on one flat feature modality, optionally an average of ``K`` members.

    Parameters
    ----------
    modality : str, optional
        The feature modality (required when the data has several).
    width : int
        Width of each hidden layer.
    layers : int
        Hidden layers per member (0 = a linear model).
    dropout : float
        Dropout after each hidden layer.
    input_dropout : float
        Dropout on the input features.
    input_noise : float
        Standard deviation of Gaussian noise added to the inputs in training.
    label_smoothing : float
        Label smoothing of the cross-entropy, in ``[0, 1)`` (classification only).
    members : int
        Number ``K`` of independent MLPs whose logits are averaged.
    skip_linear : bool
        Add a linear path on the raw inputs to the MLP's output (wide-and-deep; needs
        ``layers >= 1``); the MLP's output layer is initialised at zero.
    linear_l2 : float
        L2 penalty on the linear path's weights (the skip path, or the model with
        ``layers: 0``), added to the training loss.
    """

    parallel_ok = True

    def __init__(self, *, modality: str | None = None, width: int = 32, layers: int = 1,
                 dropout: float = 0.5, input_dropout: float = 0.0, input_noise: float = 0.0,
                 label_smoothing: float = 0.0, members: int = 1, skip_linear: bool = False,
                 linear_l2: float = 0.0, **base: Any) -> None:
        spec = base["spec"]
        modality = single_modality(spec, modality, "eeg_mlp")
        ms = spec.modality(modality)
        base["modalities"] = [modality]
        super().__init__(**base)
        if members < 1 or layers < 0 or (layers and width < 1):
            raise ConfigError(f"eeg_mlp: members={members}, layers={layers}, width={width}; "
                              "need members >= 1, layers >= 0 and width >= 1")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout),
                        ("label_smoothing", label_smoothing)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"eeg_mlp: {name}={p}; it must be in [0, 1)")
        if skip_linear and not layers:
            raise ConfigError("eeg_mlp: skip_linear=true with layers=0 is two linear maps; use "
                              "layers >= 1 (the residual branch) or skip_linear=false")
        if linear_l2 < 0 or (linear_l2 and layers and not skip_linear):
            raise ConfigError(f"eeg_mlp: linear_l2={linear_l2} with layers={layers}, "
                              f"skip_linear={skip_linear}; it must be >= 0 and needs a linear "
                              "path (layers=0 or skip_linear=true)")
        if input_noise < 0:
            raise ConfigError(f"eeg_mlp: input_noise={input_noise}; it must be >= 0")
        if label_smoothing and self.target.kind == "regression":
            raise ConfigError("eeg_mlp: label_smoothing applies to classes only; set it to 0 "
                              "for a regression target")
        self.modality = modality
        self.members = members
        self.in_dim = ms.seq_len * ms.dim
        self.input_noise = float(input_noise)
        self.label_smoothing = float(label_smoothing)
        self.in_drop = nn.Dropout(input_dropout)
        blocks: list[nn.Module] = []
        d = self.in_dim
        for _ in range(layers):
            blocks += [MemberLinear(members, d, width), nn.GELU(), nn.Dropout(dropout)]
            d = width
        self.body = nn.Sequential(*blocks)
        self.out = MemberLinear(members, d, self.n_outputs)
        self.feature_dim = d
        self.linear_l2 = float(linear_l2)
        self.skip: MemberLinear | None = None
        if skip_linear:
            self.skip = MemberLinear(members, self.in_dim, self.n_outputs)
            with torch.no_grad():  # the residual branch starts at zero: the model starts linear
                self.out.weight.zero_()
                self.out.bias.zero_()

    def member_logits(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Per-member outputs ``[B, K, C]`` (``C = 1``: regression) and features ``[B, K, F]``."""
        raw = batch.inputs[self.modality].reshape(-1, self.in_dim)
        x = raw
        if self.training and self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x)
        x = self.in_drop(x)
        h = self.body(x[:, None].expand(-1, self.members, -1))
        logits = self.out(h)
        if self.skip is not None:
            logits = logits + self.skip(raw[:, None].expand(-1, self.members, -1))
        return logits, h

    def weight_penalty(self) -> Tensor:
        """``linear_l2 * ||W||^2`` of the linear path, averaged over members (0 when off)."""
        w = (self.skip if self.skip is not None else self.out).weight  # [K, I, C]
        return self.linear_l2 * w.pow(2).sum((1, 2)).mean()

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        logits, h = self.member_logits(batch)
        present = batch.present[self.modality][:, None].to(h.dtype)
        z = h.mean(1) * present  # [B, F]: the members' mean feature
        preds = logits.mean(1)
        preds = preds.squeeze(-1) if self.n_outputs == 1 else preds
        return ModelOutput(preds=preds, features={self.modality: z}, fused=z,
                           aux={"member_logits": logits})

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:
        """Mean of the members' own losses (each learns alone); ``task``: the average's."""
        logits = out.aux["member_logits"]  # [B, K, C]
        k = logits.shape[1]
        if self.target.kind == "regression":
            per = torch.stack([self.task(logits[:, i, 0], batch.target) for i in range(k)]).mean()
        else:
            target = batch.target.long()[:, None].expand(-1, k).reshape(-1)
            per = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target,
                                              label_smoothing=self.label_smoothing)
        if self.linear_l2:
            per = per + self.weight_penalty()
        return {"loss": per, "task": self.task(out.preds, batch.target)}
