"""Export says what it is doing (a line before, one after with the elapsed time)."""

from __future__ import annotations

import logging

from emodistill.serving.export import export_model
from helpers.checkpoints import make_checkpoint


def test_export_logs_start_and_elapsed(tmp_path, caplog):
    ck = make_checkpoint(tmp_path / "model.pt", "late_fusion")
    with caplog.at_level(logging.INFO, logger="emodistill"):
        export_model(ck, tmp_path / "m.torchscript.pt", format="torchscript")
    msgs = [r.getMessage() for r in caplog.records]
    start = next(i for i, m in enumerate(msgs) if m.startswith("exporting late_fusion"))
    end = next(i for i, m in enumerate(msgs) if m.startswith("exported late_fusion"))
    assert start < end and "torchscript" in msgs[start] and msgs[end].endswith(" s")
