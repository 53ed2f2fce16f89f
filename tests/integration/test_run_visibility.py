"""Seeing the run while it runs: a log line per epoch off a terminal, a bar with loss and
metric on one (epochs from 1), TensorBoard events with every loss and KD term, the model's
own values and the learning rate; MLflow refused with its extra named when absent."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from emodistill.cli import main
from helpers.tensorboard import event_scalars

TINY = ["-m", "hinton_kd", "method.modality=audio", "dataset.n=120", "train.max_epochs=2",
        "method.student.width=8", "method.teacher.method.width=8", "run_name=r"]


def test_off_a_terminal_one_line_per_epoch_and_tensorboard_gets_every_term(capsys, tmp_path):
    pytest.importorskip("tensorboardX")
    assert main(["train", *TINY, f"output_dir={tmp_path}"]) == 0
    err = capsys.readouterr().err
    for who in ("standard/teacher", "r/standard"):  # the teacher's fit and the student's
        for e in (1, 2):
            assert f"{who}: epoch {e}/2: train/loss=" in err
    assert "epoch 0/" not in err and "val/task_loss=" in err and "it/s" not in err
    tags = event_scalars(tmp_path / "r" / "standard" / "tensorboard")
    for tag in ("train/loss", "train/task_loss", "train/kd", "val/kd", "val/acc",
                "model/teacher_gate_audio"):
        assert len(tags.get(tag, [])) >= 2, tag
    assert any(t.startswith("lr-AdamW") and v for t, v in tags.items())  # one per param group
    assert (tmp_path / "r" / "standard" / "teacher" / "tensorboard").is_dir()
    assert (tmp_path / "r" / "standard" / "metrics.csv").is_file()  # CSV always


def test_on_a_terminal_the_bar_counts_from_one_and_shows_loss_and_metric(capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert main(["train", "-m", "late_fusion", "dataset.n=120", "train.max_epochs=2",
                 "method.width=8", "train.tracker=none", f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out  # Lightning draws its bar on stdout
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "Epoch 0" not in out
    assert "loss=" in out and "val/task_loss=" in out
    assert not (tmp_path / "tensorboard").exists()
    assert not list(tmp_path.rglob("tensorboard"))  # tracker=none


def test_tracker_values_are_checked_before_the_run_folder(capsys, tmp_path):
    rc = main(["train", *TINY, "train.tracker=wandb", f"output_dir={tmp_path}"])
    assert rc == 2 and "train.tracker='wandb'" in capsys.readouterr().err
    if importlib.util.find_spec("mlflow") is None:
        rc = main(["train", *TINY, "train.tracker=mlflow", f"output_dir={tmp_path}"])
        assert rc == 2 and "emodistill[mlflow]" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
