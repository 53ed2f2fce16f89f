"""Reading a run is separate from rendering it; only the embedding step loads a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emodistill.report.embedding import compute_embeddings
from emodistill.report.html import render_report
from emodistill.report.reader import read_report, read_target
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


def test_render_needs_no_embeddings_and_the_model_step_is_explicit(run):
    data = read_report(run)
    assert compute_embeddings(data, "none") == {}
    page = render_report(data)
    assert "Confusion matrices" in page and "Learned features" not in page
    embs = compute_embeddings(data, "pca", max_points=50)
    (emb,) = embs.values()
    assert emb.points.shape == (min(50, len(data.runs[0].records[0].predictions)), 2)
    assert "Learned features" in render_report(data, embs)
    # a method without a checkpoint gets the reason instead of a plot (rendered as a note:
    # tests/integration/test_report_html.py)
    (run / "standard" / "model.pt").rename(run / "standard" / "moved.pt")
    try:
        assert list(compute_embeddings(read_report(run), "pca").values()) == [
            "no model.pt (train.save_checkpoint=false): embedding skipped"]
    finally:
        (run / "standard" / "moved.pt").rename(run / "standard" / "model.pt")
