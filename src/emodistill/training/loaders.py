"""DataLoaders that gather whole batches by index (no per-sample Python loop)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from emodistill.data.batch import Batch, ContextLayout
from emodistill.data.dataset import MultimodalDataset

__all__ = ["batch_loader", "BucketBatchSampler", "video_batch_loader"]


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


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length (for dynamically padded token inputs).

    Each epoch: a seeded permutation of the rows is cut into chunks of
    ``batch_size * bucket_batches`` rows, each chunk is sorted by length and cut
    into batches, and the batches are shuffled. Every row is used once per epoch;
    a batch's longest utterance is then close to its shortest, so padding to the
    longest in the batch wastes little.

    Parameters
    ----------
    lengths : Tensor
        ``[N]`` real tokens per row.
    batch_size : int
        Rows per batch.
    bucket_batches : int
        Batches per sorted chunk (larger = tighter lengths, less randomness).
    generator : torch.Generator
        Seeded generator (advances every epoch).
    """

    def __init__(self, lengths: Tensor, batch_size: int, bucket_batches: int,
                 generator: torch.Generator) -> None:
        self.lengths = torch.as_tensor(lengths).cpu()
        self.batch_size, self.chunk = batch_size, batch_size * max(1, bucket_batches)
        self.generator = generator

    def __len__(self) -> int:
        n, bs, c = len(self.lengths), self.batch_size, self.chunk
        return (n // c) * (-(-c // bs)) + (-(-(n % c) // bs))

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(len(self.lengths), generator=self.generator)
        batches: list[list[int]] = []
        for s in range(0, len(perm), self.chunk):
            idx = perm[s:s + self.chunk]
            idx = idx[torch.argsort(self.lengths[idx], stable=True)]
            batches += [idx[i:i + self.batch_size].tolist()
                        for i in range(0, len(idx), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def batch_loader(
    ds: MultimodalDataset, target: str, *, batch_size: int, shuffle: bool, seed: int = 0,
    bucket_batches: int = 0,
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
    bucket_batches : int
        With ``shuffle`` and a token-id modality: group rows of similar token
        length (:class:`BucketBatchSampler`, chunks of ``bucket_batches``
        batches); 0 = plain shuffling.
    """
    rows = range(len(ds))
    tokens = [m.name for m in ds.spec.modalities if m.is_tokens]
    if shuffle and bucket_batches > 0 and tokens:
        batches: Sampler = BucketBatchSampler(
            ds.mask[tokens[0]].sum(1), batch_size, bucket_batches,
            torch.Generator().manual_seed(seed))
    else:
        sampler = (
            RandomSampler(rows, generator=torch.Generator().manual_seed(seed))
            if shuffle
            else SequentialSampler(rows)
        )
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return DataLoader(
        _BatchView(ds, target),
        sampler=batches,
        batch_size=None,
        collate_fn=_identity,
    )


class _VideoView(Dataset):
    """``view[list_of_videos]`` → one :class:`Batch` of their utterances with a layout."""

    def __init__(self, ds: MultimodalDataset, target: str, videos: list[np.ndarray]) -> None:
        self.ds, self.target, self.videos = ds, target, videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, which: list[int]) -> Batch:  # type: ignore[override]
        device = self.ds.targets[self.target].device
        chosen = [self.videos[i] for i in which]
        rows = torch.as_tensor(np.concatenate(chosen), device=device)
        b = self.ds.batch(rows, self.target)
        b.context = ContextLayout.from_lengths([len(v) for v in chosen], device=device)
        return b


class _VideoPacker(torch.utils.data.Sampler):
    """Batches of whole videos holding up to ``batch_size`` utterances (reshuffled per epoch).

    Videos are taken in (shuffled) order and added to the current batch while it stays
    within ``batch_size`` utterances; a video longer than that is a batch of its own.

    A shuffled packer has no ``__len__``: the number of batches changes from epoch to
    epoch, and Lightning, given a length, validates at batch ``len`` rather than at the
    real last batch (an epoch with fewer batches ended without validation, and early
    stopping counted the previous epoch's stale value). Without a length Lightning
    validates when the loader is exhausted. The unshuffled packer (:class:`_OrderedVideoPacker`)
    has an exact length.
    """

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int) -> None:
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def _pack(self, order: list[int]) -> list[list[int]]:
        batches: list[list[int]] = [[]]
        used = 0
        for v in order:
            n = self.lengths[v]
            if batches[-1] and used + n > self.batch_size:
                batches.append([])
                used = 0
            batches[-1].append(v)
            used += n
        return batches

    def __iter__(self):  # noqa: D105
        n = len(self.lengths)
        order = (torch.randperm(n, generator=self.generator).tolist() if self.shuffle
                 else list(range(n)))
        yield from self._pack(order)


class _OrderedVideoPacker(_VideoPacker):
    """:class:`_VideoPacker` in video order: the same batches every pass, an exact length."""

    def __len__(self) -> int:  # noqa: D105
        return len(self._pack(list(range(len(self.lengths)))))


def video_batch_loader(
    ds: MultimodalDataset, target: str, videos: list[np.ndarray], *, batch_size: int,
    shuffle: bool, seed: int = 0,
) -> DataLoader:
    """Build a loader yielding batches of whole videos (utterance context).

    Parameters
    ----------
    ds : MultimodalDataset
        The (already normalised) split.
    target : str
        Target name placed in ``Batch.target``.
    videos : list of np.ndarray
        Row indices of each video in utterance order
        (:func:`emodistill.data.context.group_videos`).
    batch_size : int
        Utterances per batch, as without context: whole videos are packed into a
        batch while it holds at most ``batch_size`` utterances (a longer video is
        a batch of its own). Each batch holds the videos' utterances flat (in
        video and utterance order) and a :class:`~emodistill.data.batch.ContextLayout`.
    shuffle : bool
        Shuffle the videos each epoch with a generator seeded by ``seed``. The number
        of batches then changes from epoch to epoch and the loader has no length, so
        that Lightning validates after the real last batch of each epoch.
    """
    lengths = [len(v) for v in videos]
    sampler = (_VideoPacker(lengths, batch_size, True, seed) if shuffle
               else _OrderedVideoPacker(lengths, batch_size, False, seed))
    return DataLoader(
        _VideoView(ds, target, videos),
        sampler=sampler,
        batch_size=None,
        collate_fn=_identity,
    )
