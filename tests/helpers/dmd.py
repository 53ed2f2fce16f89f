"""Small DMD-family inputs shared by tests/unit/models/test_dmd.py and test_dhmd.py."""

from __future__ import annotations

import torch

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec

REG = TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0))
BIN = TargetSpec("polarity", "binary", class_names=("negative", "positive"))
SMALL = {"width": 8, "heads": 2, "layers": 1, "mem_layers": 1, "homo_gd_width": 4,
         "hetero_gd_width": 4, "kernel_size": 3}


def toy_spec(shapes, targets=(REG, BIN)):
    return DatasetSpec("toy", tuple(ModalitySpec(m, d, t) for m, (t, d) in shapes.items()),
                       tuple(targets))


def toy_batch(spec, B=6, target="sentiment", lengths=None, present=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs, mask, pres = {}, {}, {}
    for ms in spec.modalities:
        ln = torch.full((B,), ms.seq_len) if lengths is None else lengths[ms.name]
        m = torch.arange(ms.seq_len)[None] < ln[:, None]
        p = torch.ones(B, dtype=torch.bool) if present is None else present[ms.name]
        m = m & p[:, None]
        inputs[ms.name] = torch.randn(B, ms.seq_len, ms.dim, generator=g) * m[..., None]
        mask[ms.name], pres[ms.name] = m, p
    if target == "sentiment":
        y = torch.randint(-3, 4, (B,), generator=g).float()  # repeated values: margin positives
    else:
        y = torch.randint(0, 2, (B,), generator=g)
    return Batch(inputs, mask, pres, y, torch.arange(B))


#: modality -> (seq_len, dim) layouts
SHAPES = {
    "aligned": {"text": (12, 20), "audio": (12, 5), "vision": (12, 7)},
    "unaligned": {"text": (10, 20), "audio": (15, 5), "vision": (13, 7)},
    "utterance": {"text": (1, 100), "audio": (1, 73), "vision": (1, 100)},
    "two_modalities": {"text": (9, 12), "audio": (11, 5)},
    "four_modalities": {"eeg": (6, 10), "eog": (6, 4), "gsr": (6, 2), "text": (6, 3)},
}
