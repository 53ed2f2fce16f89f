"""Toy HKD-MER inputs shared by the HKD-MER unit tests (three modalities, a few rows)."""

from __future__ import annotations

import numpy as np
import torch

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.models import build_method
from emodistill.models.hkd_mer import HKDMER

__all__ = ["toy_spec", "toy_batch", "toy_model"]


# --------------------------------------------------------------------------- model
def toy_spec(n_classes: int | None = 2) -> tuple[DatasetSpec, TargetSpec]:
    target = (TargetSpec("y", "regression", value_range=(-3.0, 3.0)) if n_classes is None
              else TargetSpec("y", "binary" if n_classes == 2 else "multiclass",
                              class_names=tuple(f"c{i}" for i in range(n_classes))))
    spec = DatasetSpec(name="toy", modalities=(ModalitySpec("text", 6, 1),
                                               ModalitySpec("audio", 4, 5),
                                               ModalitySpec("vision", 3, 1)),
                       targets=(target,), group_keys=("video",))
    return spec, target


def toy_batch(spec: DatasetSpec, n: int = 8, *, missing: dict[str, list[int]] | None = None,
           regression: bool = False):
    g = torch.Generator().manual_seed(1)
    feats = {m.name: torch.randn(n, m.seq_len, m.dim, generator=g).numpy()
             for m in spec.modalities}
    present = {m.name: np.ones(n, bool) for m in spec.modalities}
    for m, rows in (missing or {}).items():
        present[m][rows] = False
    y = (np.linspace(-2, 2, n).astype(np.float32) if regression else np.arange(n) % 2)
    ds = MultimodalDataset(spec, feats, targets={"y": y}, ids=[f"s{i}" for i in range(n)],
                           groups={"video": np.arange(n)}, present=present)
    return ds.batch(torch.arange(n), "y")


def toy_model(spec, target, **params) -> HKDMER:
    torch.manual_seed(0)
    params.setdefault("hidden", 16)
    params.setdefault("dominant", "text")
    return build_method("hkd_mer", spec=spec, target=target, params=params)  # type: ignore[return-value]
