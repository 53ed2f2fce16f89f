"""Small untrained checkpoints written through the public checkpoint API (fast, no training)."""

from __future__ import annotations

from pathlib import Path

import torch

from emodistill.checkpoint import save_checkpoint
from emodistill.config import compose, to_container
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.data.normalize import Standardizer
from emodistill.models import build_method

#: vector (utterance-level) modalities: name -> (seq_len, dim, snr)
VECTORS = {"text": (1, 8, 1.0), "audio": (1, 5, 0.5)}


def synthetic(vectors: bool = False, n: int = 60, seed: int = 3):
    return make_synthetic_mer(n, seed=seed, modalities=VECTORS if vectors else None)


def make_checkpoint(path: Path, method: str, *, target: str = "sentiment", vectors: bool = False,
                    params: dict | None = None, seed: int = 0) -> Path:
    """Write ``model.pt`` for ``method`` built on synthetic data (random weights, fitted norm)."""
    ds = synthetic(vectors)
    torch.manual_seed(seed)
    overrides = [f"dataset.target={target}", "dataset.n=60", "dataset.seed=3"]
    if vectors:
        overrides.append("+dataset.modalities_spec={text: [1, 8, 1.0], audio: [1, 5, 0.5]}")
    cfg = to_container(compose(dataset="synthetic", method=method, overrides=overrides))
    p = {"width": 16, "dropout": 0.0, **(params or {})}
    cfg["method"].update(p)
    model = build_method(method, spec=ds.spec, target=ds.spec.target(target),
                         params={k: v for k, v in cfg["method"].items() if k != "name"})
    with torch.no_grad():  # make heads non-trivial (default init is already random)
        for prm in model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    std = Standardizer.fit(ds.subset(range(40)))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model.eval(), config=cfg, standardizer=std,
                    meta={"fold": "standard", "data_fingerprint": ds.fingerprint()})
    return path
