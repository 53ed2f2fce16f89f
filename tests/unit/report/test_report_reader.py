"""Reading a run needs no torch (render + model step: tests/integration/test_report_html)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emodistill.report.reader import read_target
from helpers.report_runs import write_run

SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("r") / "run", target="sentiment3")


def test_reader_gives_plain_data_without_importing_torch(run):
    code = ("import sys, json\nfrom emodistill.report.reader import read_report\n"
            "d = read_report(sys.argv[1])\nf = d.runs[0].records[0]\n"
            "print(json.dumps([d.kind, f.name, len(f.metrics), len(f.predictions),"
            " f.target.kind, list(f.target.class_names), f.has_model,"
            " sorted(m for m in ('torch', 'lightning') if m in sys.modules)]))\n")
    p = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
    assert p.returncode == 0, p.stderr
    kind, fold, n_epochs, n_test, tkind, names, has_model, heavy = json.loads(p.stdout)
    assert (kind, fold, n_epochs, tkind, has_model, heavy) == (
        "run", "standard", 6, "multiclass", True, [])
    assert names == ["negative", "neutral", "positive"] and n_test > 0


def test_target_is_read_from_the_checkpoint_as_torch_stored_it(run):
    import torch

    stored = torch.load(run / "standard" / "model.pt", weights_only=True)["target"]
    t = read_target(run / "standard" / "model.pt")
    assert (t.name, t.kind, list(t.class_names)) == (
        stored["name"], stored["kind"], stored["class_names"])
    assert read_target(run / "nope.pt") is None
    (run / "bad.pt").write_bytes(b"not a zip")
    assert read_target(run / "bad.pt") is None
