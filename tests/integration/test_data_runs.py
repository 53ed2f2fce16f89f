"""Data pipelines through the whole engine (moved from tests/unit/data/: they train)."""

from __future__ import annotations

import pandas as pd

from emodistill.config import compose
from emodistill.training.run import run_experiment
from helpers.mmsa import make_mmsa, write


def test_engine_windows_each_part_after_the_split(tmp_path):
    cfg = compose(dataset="synthetic_physio", method="unimodal", overrides=[
        "dataset.n_subjects=3", "dataset.n_trials=5", "dataset.trial_seconds=4.0",
        "dataset.eeg_channels=4", "dataset.chunk_size=128", "method.modality=gsr",
        "method.width=16", "train.max_epochs=1", "train.progress_bar=false",
        "protocol.fold=fold0", f"output_dir={tmp_path}",
    ])
    res = run_experiment(cfg)
    fold = res.folds[0]
    assert sum(fold.sizes.values()) == 3 * 5 * 4  # windows, not trials
    pred = pd.read_csv(fold.path / "predictions.csv")
    assert pred["id"].str.contains("_w").all()


def test_sims_run_reports_the_sims_metrics(tmp_path):
    p = write(tmp_path / "sims.pkl", make_mmsa("sims_unaligned", seed=4))
    cfg = compose(dataset="sims", method="late_fusion", overrides=[
        f"dataset.path={p}", "method.width=8", "method.layers=1", "train.max_epochs=1",
        "train.progress_bar=false", f"output_dir={tmp_path / 'runs'}"])
    res = run_experiment(cfg)
    assert set(res.mean) == {"acc2", "acc3", "acc5", "f1", "mae", "corr"}
