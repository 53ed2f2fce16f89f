"""The batch contract shared by every model and loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Batch", "ContextLayout"]


@dataclass
class ContextLayout:
    """Where the utterances of a batch sit in their videos (utterance context).

    A contextual batch holds ``B`` whole videos. Its per-utterance tensors stay
    flat (``N`` real utterances, the concatenation of the videos in order, each
    video's utterances in utterance order), so every method, loss and metric
    works on utterances unchanged; the layout maps them to ``[B, U, ...]``.

    Attributes
    ----------
    rows : Tensor
        ``[B, U]`` int64 position of utterance ``u`` of video ``b`` in the flat
        batch (0 on padding).
    mask : Tensor
        ``[B, U]`` bool, True on real utterances (``U`` = longest video).
    """

    rows: Tensor
    mask: Tensor

    @classmethod
    def from_lengths(cls, lengths: list[int] | Tensor,
                     device: torch.device | str | None = None) -> ContextLayout:
        """Layout of consecutive videos with ``lengths`` utterances each (``[B]``)."""
        ln = torch.as_tensor(lengths, dtype=torch.long, device=device)
        if ln.ndim != 1 or ln.numel() == 0 or bool((ln < 1).any()):
            raise ValueError(f"video lengths must be >= 1, one per video; got {ln.tolist()}")
        U = int(ln.max())
        steps = torch.arange(U, device=ln.device)
        mask = steps[None, :] < ln[:, None]
        start = torch.cumsum(ln, 0) - ln
        rows = torch.where(mask, start[:, None] + steps[None, :], torch.zeros_like(steps)[None])
        return cls(rows=rows, mask=mask)

    @classmethod
    def singletons(cls, n: int, device: torch.device | str | None = None) -> ContextLayout:
        """Every utterance its own video (a context of one): ``[N, 1]``."""
        return cls(rows=torch.arange(n, device=device)[:, None],
                   mask=torch.ones(n, 1, dtype=torch.bool, device=device))

    @property
    def n_videos(self) -> int:
        """Number of videos ``B``."""
        return int(self.mask.shape[0])

    @property
    def n_utterances(self) -> int:
        """Number of real utterances ``N``."""
        return int(self.mask.sum())

    def to_videos(self, x: Tensor) -> Tensor:
        """``[N, ...]`` per-utterance tensor → ``[B, U, ...]`` (zeros on padding)."""
        out = x[self.rows]
        m = self.mask.reshape(*self.mask.shape, *([1] * (x.ndim - 1)))
        return out * m.to(out.dtype)

    def to_utterances(self, x: Tensor) -> Tensor:
        """``[B, U, ...]`` → ``[N, ...]`` real utterances in flat-batch order."""
        flat = torch.empty(self.n_utterances, *x.shape[2:], dtype=x.dtype, device=x.device)
        flat[self.rows[self.mask]] = x[self.mask]
        return flat

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ContextLayout:
        """Return the layout on ``device``."""
        return ContextLayout(self.rows.to(device, non_blocking=non_blocking),
                             self.mask.to(device, non_blocking=non_blocking))


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
    context : ContextLayout, optional
        For utterance context: the ``[videos, U]`` layout of the ``B`` utterances
        (``B`` here counts utterances). ``None``: every utterance stands alone.
    """

    inputs: dict[str, Tensor]
    mask: dict[str, Tensor]
    present: dict[str, Tensor]
    target: Tensor
    index: Tensor
    context: ContextLayout | None = None

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
            context=None if self.context is None else self.context.to(device, non_blocking),
        )

    def select(self, modalities: list[str]) -> Batch:
        """Return a view of the batch restricted to ``modalities``."""
        return Batch(
            inputs={m: self.inputs[m] for m in modalities},
            mask={m: self.mask[m] for m in modalities},
            present={m: self.present[m] for m in modalities},
            target=self.target,
            index=self.index,
            context=self.context,
        )
