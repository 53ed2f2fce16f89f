"""Feature standardisation fitted on the training part only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emodistill.data.dataset import MultimodalDataset

__all__ = ["Standardizer"]


@dataclass
class Standardizer:
    """Per-modality, per-feature z-scoring.

    Statistics are computed over the real (unpadded, present) time steps of the
    training samples only; padding and absent modalities stay exactly zero.
    Token-id modalities (int64) are left as they are.

    Attributes
    ----------
    mean, std : dict of str to Tensor
        Modality → ``[D]`` statistics.
    """

    mean: dict[str, Tensor]
    std: dict[str, Tensor]

    @classmethod
    def fit(cls, ds: MultimodalDataset, eps: float = 1e-6) -> Standardizer:
        """Fit on every sample of ``ds`` (pass the training subset)."""
        mean, std = {}, {}
        for name, x in ds.features.items():
            if not x.is_floating_point():  # token ids are not standardised
                continue
            m = ds.mask[name]
            rows = x[m]  # [n_steps, D]
            if rows.shape[0] == 0:
                mean[name] = torch.zeros(x.shape[-1])
                std[name] = torch.ones(x.shape[-1])
                continue
            mu = rows.double().mean(0)
            sd = rows.double().std(0, unbiased=False)
            mean[name] = mu.float().cpu()
            std[name] = torch.where(sd < eps, torch.ones_like(sd), sd).float().cpu()
        return cls(mean, std)

    def transform_inputs(
        self, inputs: dict[str, Tensor], mask: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Standardise raw ``[B, T, D]`` inputs, keeping masked steps at zero."""
        out = {}
        for k, x in inputs.items():
            if k not in self.mean or not x.is_floating_point():  # token ids pass through
                out[k] = x
                continue
            mu, sd = self.mean[k].to(x.device), self.std[k].to(x.device)
            out[k] = (x - mu) / sd * mask[k][..., None]
        return out

    def transform(self, ds: MultimodalDataset) -> MultimodalDataset:
        """Return a standardised copy of ``ds``."""
        return ds.with_features(self.transform_inputs(ds.features, ds.mask))

    def to_dict(self) -> dict[str, Any]:
        """Checkpoint-safe form (lists of floats)."""
        return {
            "mean": {k: v.tolist() for k, v in self.mean.items()},
            "std": {k: v.tolist() for k, v in self.std.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Inverse of :meth:`to_dict`."""
        return cls(
            {k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in d["mean"].items()},
            {k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in d["std"].items()},
        )
