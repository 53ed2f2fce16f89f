"""DataLoaders that gather whole batches by index (no per-sample Python loop)."""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset

__all__ = ["batch_loader"]


class _BatchView(Dataset):
    """``view[list_of_rows]`` → one :class:`Batch` (the sampler yields index lists)."""

    def __init__(self, ds: MultimodalDataset, target: str) -> None:
        self.ds, self.target = ds, target

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, rows: list[int]) -> Batch:  # type: ignore[override]
        device = self.ds.targets[self.target].device
        return self.ds.batch(torch.as_tensor(rows, device=device), self.target)


def _identity(b: Batch) -> Batch:
    return b


def batch_loader(
    ds: MultimodalDataset, target: str, *, batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader:
    """Build a loader yielding :class:`Batch` objects of ``batch_size`` rows of ``ds``.

    Parameters
    ----------
    ds : MultimodalDataset
        The (already normalised) split.
    target : str
        Target name placed in ``Batch.target``.
    batch_size : int
        Rows per batch; the last batch may be smaller.
    shuffle : bool
        Shuffle rows each epoch with a generator seeded by ``seed``.
    """
    rows = range(len(ds))
    sampler = (
        RandomSampler(rows, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else SequentialSampler(rows)
    )
    return DataLoader(
        _BatchView(ds, target),
        sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=False),
        batch_size=None,
        collate_fn=_identity,
    )
