"""Sweeps sharing one --storage never mix: the study is named after, and bound to, what it
sweeps; the winner is written to a file."""

from __future__ import annotations

import json

import optuna
import pytest

from emodistill.errors import ConfigError
from emodistill.training.sweep import run_sweep

SPACE = {"train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}}
TINY = ["dataset.n=120", "train.max_epochs=1", "train.progress_bar=false",
        "train.save_checkpoint=false", "method.width=8"]


def test_two_methods_sharing_a_storage_get_two_studies_and_a_best_file(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    common = dict(dataset="synthetic", space=SPACE, n_trials=1, overrides=TINY,
                  storage=storage, output_dir=tmp_path / "runs")
    a = run_sweep(method="late_fusion", **common)
    b = run_sweep(method="early_fusion", **common)
    assert a.study_name != b.study_name
    assert a.study_name.startswith("synthetic-late_fusion-")
    assert b.study_name.startswith("synthetic-early_fusion-")
    assert len(optuna.load_study(study_name=b.study_name, storage=storage).trials) == 1
    best = json.loads((tmp_path / "runs" / f"{b.study_name}-best.json").read_text())
    assert best["best_params"] == b.best_params and best["best_value"] == b.best_value
    assert best["sweep"]["method"] == "early_fusion" and best["trials"] == 1
    # the same name for another sweep is refused, naming what differs
    with pytest.raises(ConfigError, match="late_fusion.*there.*early_fusion.*here"):
        run_sweep(method="early_fusion", study_name=a.study_name, **common)
    # the same sweep again joins its study
    again = run_sweep(method="late_fusion", **common)
    assert again.study_name == a.study_name and len(again.trials) == 2
