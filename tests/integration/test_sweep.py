import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from emodistill.errors import ConfigError
from emodistill.training.sweep import load_space, run_sweep

pytest.importorskip("optuna")


def test_sweep_optimises_validation_not_test(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    study = run_sweep(
        dataset="synthetic", method="feature_fusion", space=load_space(space), n_trials=2,
        overrides=["dataset.n=200", "train.max_epochs=1", "train.progress_bar=false",
                   "train.save_checkpoint=false"],
        output_dir=tmp_path / "runs",
    )
    assert len(study.trials) == 2
    for t in study.trials:
        # the objective is the validation value the trial's run recorded for its selected
        # checkpoints; the test numbers are only attributes
        saved = json.loads((Path(t.user_attrs["run_dir"]) / "results.json").read_text())
        assert t.value == pytest.approx(np.mean([f["best_val"] for f in saved["folds"].values()]))
        assert t.user_attrs["test_mean"]["acc"] == pytest.approx(saved["mean"]["acc"])
    assert study.best_value == min(t.value for t in study.trials)


def test_space_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train.lr: {type: gaussian}\n")
    with pytest.raises(ConfigError, match="train.lr"):
        load_space(bad)


def test_ray_sweep_runs_trials_in_ray_workers_and_selects_on_validation(tmp_path, ray_local):
    from emodistill.training.sweep import run_ray_sweep

    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                     "method.width: {type: categorical, choices: [16, 32]}\n")
    grid = run_ray_sweep(
        dataset="synthetic", method="feature_fusion", space=load_space(space), n_trials=2,
        overrides=["dataset.n=200", "train.max_epochs=1", "train.progress_bar=false",
                   "train.save_checkpoint=false"],
        output_dir=tmp_path / "runs", study_name="t", max_concurrent=2,
    )
    assert not grid.errors and len(grid) == 2
    seen = set()
    for r in grid:
        # each trial trained the sampled config in its own run folder; the objective is the
        # validation value that run recorded, the test numbers are only reported beside it
        saved = json.loads((Path(r.metrics["run_dir"]) / "results.json").read_text())
        assert r.metrics["best_val"] == pytest.approx(
            np.mean([f["best_val"] for f in saved["folds"].values()]))
        assert r.metrics["test_acc"] == pytest.approx(saved["mean"]["acc"])
        cfg = yaml.safe_load((Path(r.metrics["run_dir"]) / "config.yaml").read_text())
        assert cfg["train"]["lr"] == pytest.approx(r.config["train.lr"])
        assert cfg["method"]["width"] == r.config["method.width"]
        seen.add(r.metrics["run_dir"])
    assert len(seen) == 2
    best = grid.get_best_result()
    assert best.metrics["best_val"] == min(r.metrics["best_val"] for r in grid)
