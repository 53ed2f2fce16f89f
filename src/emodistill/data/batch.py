"""The batch contract shared by every model and loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Batch"]


@dataclass
class Batch:
    """A mini-batch of multimodal samples.

    Attributes
    ----------
    inputs : dict of str to Tensor
        Modality name → features ``[B, T, D]`` (float). Padded steps and absent
        modalities are zeros.
    mask : dict of str to Tensor
        Modality name → padding mask ``[B, T]`` (bool, True on real steps).
    present : dict of str to Tensor
        Modality name → presence mask ``[B]`` (bool, False where the modality is
        missing for that sample).
    target : Tensor
        ``[B]`` float regression values or int64 class indices.
    index : Tensor
        ``[B]`` int64 row indices into the dataset the batch came from.
    """

    inputs: dict[str, Tensor]
    mask: dict[str, Tensor]
    present: dict[str, Tensor]
    target: Tensor
    index: Tensor

    @property
    def size(self) -> int:
        """Number of samples ``B``."""
        return int(self.index.shape[0])

    @property
    def modalities(self) -> list[str]:
        """Names of the modalities carried by the batch."""
        return list(self.inputs)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Return the batch with every tensor moved to ``device``."""

        def mv(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}

        return Batch(
            inputs=mv(self.inputs),
            mask=mv(self.mask),
            present=mv(self.present),
            target=self.target.to(device, non_blocking=non_blocking),
            index=self.index.to(device, non_blocking=non_blocking),
        )

    def select(self, modalities: list[str]) -> Batch:
        """Return a view of the batch restricted to ``modalities``."""
        return Batch(
            inputs={m: self.inputs[m] for m in modalities},
            mask={m: self.mask[m] for m in modalities},
            present={m: self.present[m] for m in modalities},
            target=self.target,
            index=self.index,
        )
