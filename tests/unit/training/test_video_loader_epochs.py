"""A shuffled video loader validates after every epoch, whatever its batch count that epoch.

The packing of whole videos into batches changes with the shuffle, so the number of
batches changes from epoch to epoch. Lightning validates at batch ``len(loader)`` when the
loader has a length; with the old fixed estimate an epoch with fewer batches ended without
validation (MOSI fine-tuning with ``context=birnn``: 5 of 22 epochs). This checks, with a
real Lightning loop, that every epoch is validated once, after its last batch.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.training.loaders import video_batch_loader

VEC = {"text": (1, 6, 1.2), "audio": (1, 4, 0.5)}
LENGTHS = [1, 5, 2, 6, 3, 4, 1, 5, 2, 3, 4]  # 36 utterances in videos of unequal length


class _Probe(L.LightningModule):
    """Counts the training batches of each epoch and records when validation runs."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = 0
        self.per_epoch: list[int] = []
        self.validated: list[tuple[int, int]] = []  # (epoch, batches seen when validating)

    def on_train_epoch_start(self) -> None:
        self.seen = 0

    def training_step(self, batch, batch_idx):
        self.seen += 1
        return (self.w - 1.0).pow(2).sum()

    def on_train_epoch_end(self) -> None:
        self.per_epoch.append(self.seen)

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.validated.append((self.current_epoch, self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loaders(seed: int):
    ds = make_synthetic_mer(sum(LENGTHS), seed=0, modalities=VEC, samples_per_video=1)
    videos = np.split(np.arange(sum(LENGTHS)), np.cumsum(LENGTHS)[:-1])
    train = video_batch_loader(ds, "sentiment", videos, batch_size=7, shuffle=True, seed=seed)
    valid = video_batch_loader(ds, "sentiment", videos, batch_size=7, shuffle=False)
    return train, valid


def test_every_epoch_is_validated_after_its_last_batch(tmp_path):
    train, valid = _loaders(seed=3)
    counts = [sum(1 for _ in train) for _ in range(6)]
    assert len(set(counts)) > 1, counts  # the shuffle really changes the batch count
    assert len(valid) == sum(1 for _ in valid)  # the ordered loader's length is exact
    train, valid = _loaders(seed=3)  # fresh generator: the same six epochs as counted
    probe = _Probe()
    L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
              default_root_dir=tmp_path).fit(probe, train, valid)
    assert probe.per_epoch == counts
    assert probe.validated == list(enumerate(counts))  # once per epoch, after all its batches
