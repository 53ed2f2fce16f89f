"""Baselines the seed papers compare against: unimodal, early, feature and late fusion."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.models.base import METHODS, Head, MERModel, ModelOutput, single_modality
from emodistill.models.encoders import build_encoder, masked_max, masked_mean

__all__ = ["EncodersMixin", "Unimodal", "EarlyFusion", "FeatureFusion", "LateFusion"]


class EncodersMixin(MERModel):
    """A :class:`MERModel` with one encoder per modality (shared by most methods).

    Parameters
    ----------
    encoder : str
        Encoder name in :data:`~emodistill.models.blocks.ENCODERS` or ``auto``.
    width : int
        Encoder width ``H``.
    layers : int
        Encoder depth.
    dropout : float
        Dropout in encoders and heads.
    encoder_params : dict, optional
        Extra encoder keyword arguments (``kernel_size``, ``heads``...).
    """

    def __init__(self, *, encoder: str = "auto", width: int = 128, layers: int = 2,
                 dropout: float = 0.1, encoder_params: dict[str, Any] | None = None,
                 **base: Any) -> None:
        super().__init__(**base)
        self.width = width
        self.dropout = dropout
        self.encoders = nn.ModuleDict({
            m.name: build_encoder(encoder, m.dim, m.seq_len, width=width,
                                  layers=layers, dropout=dropout,
                                  **(encoder_params or {}))
            for m in self.spec.modalities
        })

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        """Modality → ``[B, H]`` features, zero where the modality is absent."""
        return {
            m: self.encoders[m](batch.inputs[m], batch.mask[m])
            * batch.present[m][:, None].to(batch.inputs[m].dtype)
            for m in self.modalities
        }


@METHODS.register("unimodal")
class Unimodal(EncodersMixin):
    """One modality: encoder + head.

    Parameters
    ----------
    modality : str
        The modality to use (required unless the dataset has only one).
    """

    parallel_ok = True
    context_sites = ("head",)

    def __init__(self, *, modality: str | None = None, **kw: Any) -> None:
        spec = kw["spec"]
        modality = single_modality(spec, modality, "unimodal")
        kw["modalities"] = [modality]
        super().__init__(**kw)
        self.modality = modality
        self.head = Head(self.width, self.n_outputs, hidden=self.width, dropout=self.dropout)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        h = self.encode(batch)[self.modality]
        return ModelOutput(preds=self.head(h), features={self.modality: h}, fused=h)


@METHODS.register("feature_fusion")
class FeatureFusion(EncodersMixin):
    """Intermediate fusion: per-modality encoders, concatenated features, joint head."""

    parallel_ok = True
    context_sites = ("head",)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        n = len(self.modalities)
        self.head = Head(n * self.width, self.n_outputs, hidden=self.width,
                         dropout=self.dropout)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        feats = self.encode(batch)
        fused = torch.cat([feats[m] for m in self.modalities], -1)
        return ModelOutput(preds=self.head(fused), features=feats, fused=fused)


@METHODS.register("early_fusion")
class EarlyFusion(MERModel):
    """Input-level fusion: concatenate the raw inputs, then one encoder and head.

    Aligned sequences (all of one length) are concatenated step by step along
    the feature axis and encoded as one sequence; otherwise each modality is
    summarised by its mean and max over real steps (a vector, for length-1
    inputs just the vector) and the concatenation goes through an MLP.

    Parameters
    ----------
    encoder, width, layers, dropout : see :class:`EncodersMixin`.
    """

    parallel_ok = True
    context_sites = ("head",)

    def __init__(self, *, encoder: str = "auto", width: int = 128, layers: int = 2,
                 dropout: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        lens = {m.seq_len for m in self.spec.modalities}
        self.aligned = len(lens) == 1
        T = lens.pop() if self.aligned else 1
        per_step = [m.dim if (self.aligned or m.seq_len == 1) else 2 * m.dim
                    for m in self.spec.modalities]
        self.encoder = build_encoder(encoder, sum(per_step), T, width=width,
                                     layers=layers, dropout=dropout)
        self.head = Head(width, self.n_outputs, hidden=width, dropout=dropout)

    def _inputs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        if self.aligned:
            x = torch.cat([batch.inputs[m] for m in self.modalities], -1)
            mask = torch.stack([batch.mask[m] for m in self.modalities]).any(0)
            return x, mask
        parts = []
        for m in self.spec.modalities:
            x, mk = batch.inputs[m.name], batch.mask[m.name]
            parts.append(x[:, 0] if m.seq_len == 1 else
                         torch.cat([masked_mean(x, mk), masked_max(x, mk)], -1))
        x = torch.cat(parts, -1)[:, None]
        return x, torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        h = self.encoder(*self._inputs(batch))
        return ModelOutput(preds=self.head(h), fused=h)


@METHODS.register("late_fusion")
class LateFusion(EncodersMixin):
    """Decision-level fusion: one head per modality, predictions averaged.

    The fused prediction is the mean of the per-modality outputs over the
    modalities present for each sample (logits for classification).

    Parameters
    ----------
    aux_weight : float
        Weight of the mean per-modality task loss added to the fused task loss.
    """

    parallel_ok = True
    context_sites = ("heads.*",)

    def __init__(self, *, aux_weight: float = 1.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.aux_weight = aux_weight
        self.heads = nn.ModuleDict({
            m: Head(self.width, self.n_outputs, hidden=self.width, dropout=self.dropout)
            for m in self.modalities
        })

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        feats = self.encode(batch)
        logits = {m: self.heads[m](feats[m]) for m in self.modalities}
        w = torch.stack([batch.present[m] for m in self.modalities], -1).to(feats[
            self.modalities[0]].dtype)  # [B, M]
        w = w / w.sum(-1, keepdim=True).clamp(min=1.0)
        stacked = torch.stack([logits[m] for m in self.modalities], 1)  # [B, M(, C)]
        wb = w if stacked.ndim == 2 else w[..., None]
        preds = (stacked * wb).sum(1)
        return ModelOutput(preds=preds, features=feats, logits=logits)

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:  # noqa: D102
        t = self.task(out.preds, batch.target)
        aux = torch.stack([self.task(out.logits[m], batch.target) for m in self.modalities]).mean()
        return {"loss": t + self.aux_weight * aux, "task": t, "unimodal": aux}
