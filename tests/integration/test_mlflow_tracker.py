"""``train.tracker=mlflow`` logs every epoch's values to a local SQLite store (runs only
where MLflow is installed: ``pip install 'emodistill[mlflow]'``; CI checks the refusal
without it in test_run_visibility.py)."""

from __future__ import annotations

import pytest

from emodistill.cli import main


def test_mlflow_store_gets_each_epoch_and_the_test_metrics(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="MLflow not installed (extra 'mlflow')")
    assert main(["train", "-m", "late_fusion", "dataset.n=120", "train.max_epochs=2",
                 "method.width=8", "train.tracker=mlflow", "run_name=r",
                 f"output_dir={tmp_path}"]) == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("synthetic-default")  # <dataset>-<experiment>
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "r/standard"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
    assert {"val/acc", "test/acc", "train/task_loss"} <= set(run.data.metrics)
    assert run.data.params["method.name"] == "late_fusion"
