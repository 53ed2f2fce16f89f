"""Methods trained through the whole engine: what a run folder records for DMD and HKD-MER.

(Moved from tests/unit/models/: they train, so they belong to the integration lane.)
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emodistill.checkpoint import load_checkpoint
from emodistill.config import compose
from emodistill.training.run import run_experiment

#: a tiny DMD (the sizes of tests/unit/models/test_dmd.py)
DMD_SMALL = {"width": 8, "heads": 2, "layers": 1, "mem_layers": 1, "homo_gd_width": 4,
             "hetero_gd_width": 4, "kernel_size": 3}


def test_dmd_run_logs_edges_and_per_sample_edges(tmp_path):
    cfg = compose(dataset="synthetic", method="dmd", overrides=[
        "dataset.n=120", "dataset.target=sentiment", "train.max_epochs=2",
        "train.progress_bar=false", "train.batch_size=16", f"output_dir={tmp_path}",
        *[f"method.{k}={v}" for k, v in DMD_SMALL.items()],
    ])
    res = run_experiment(cfg)
    fold = res.folds[0].path
    metrics = pd.read_csv(fold / "metrics.csv")
    cols = [c for c in metrics.columns if c.startswith("model/gd_homo/")]
    assert len(cols) == 6
    assert metrics[cols].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-4)
    preds = pd.read_csv(fold / "predictions.csv")
    assert {f"sample_gd_hetero_edges_{k}" for k in range(6)} <= set(preds.columns)
    from emodistill.report.edges import plot_gd_edges

    assert plot_gd_edges(fold / "metrics.csv", tmp_path / "e.png").is_file()


def test_hkd_mer_run_records_dominant_attention_heads_and_reloads(tmp_path):
    cfg = compose(dataset="synthetic", method="hkd_mer", overrides=[
        "dataset.n=200", "train.max_epochs=2", "train.progress_bar=false", "method.width=16",
        f"output_dir={tmp_path}"])
    fold = run_experiment(cfg).folds[0]
    rec = json.loads((fold.path / "dominant.json").read_text())
    assert rec["how"] == "auto" and rec["part"] == "valid"
    pred = pd.read_csv(fold.path / "predictions.csv")
    att = pred[[f"sample_attention_{m}" for m in ("text", "audio", "vision")]].to_numpy()
    assert np.allclose(att.sum(1), 1.0, atol=1e-5)
    assert {"sample_head_audio_0", "sample_head_audio_1"} <= set(pred.columns)
    hist = pd.read_csv(fold.path / "metrics.csv")
    assert {"model/dominant_index", "model/attention_text", "val/feature_kd"} <= set(hist.columns)
    ck = load_checkpoint(fold.path / "model.pt")
    assert ck.model.dominant == rec["dominant"]
    assert ck.config["method"]["dominant"] == "auto"
