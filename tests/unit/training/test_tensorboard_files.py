"""The TensorBoard logger never overwrites an event file: a fit's events survive the test
stage's writer even when both open within the same second (tensorboardX names its files by
the second and the host only)."""

from __future__ import annotations

import pytest

from emodistill.training.loggers import _TensorBoard
from helpers.tensorboard import event_scalars


def test_events_logged_after_a_close_go_to_a_new_file(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    import tensorboardX.event_file_writer as efw

    monkeypatch.setattr(efw.time, "time", lambda: 1_700_000_000.0)  # every file: one second
    logger = _TensorBoard(tmp_path)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.finalize("success")  # end of fit
    logger.log_metrics({"test/acc": 0.5}, step=1)
    logger.finalize("success")  # end of test
    assert {"train/loss", "test/acc"} <= set(event_scalars(tmp_path / "tensorboard"))
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
