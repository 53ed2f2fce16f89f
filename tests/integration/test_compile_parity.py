"""``train.compile=true`` is an opt-in speed-up: same training, same numbers (within tolerance)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emodistill.cli import main

# no dropout: compiled code draws dropout masks from other random streams than eager code
RUN = ["train", "-m", "late_fusion", "dataset.n=200", "train.max_epochs=2",
       "train.progress_bar=false", "method.width=16", "method.layers=1",
       "method.dropout=0.0", "run_name=r"]


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    pytest.importorskip("torch._inductor")
    results = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        assert main([*RUN, f"train.compile={flag}", f"output_dir={out}"]) == 0
        results[flag] = (
            json.loads((out / "r" / "results.json").read_text())["mean"],
            pd.read_csv(out / "r" / "standard" / "predictions.csv"),
            pd.read_csv(out / "r" / "standard" / "metrics.csv"),
        )
    (m_e, p_e, h_e), (m_c, p_c, h_c) = results["false"], results["true"]
    assert list(p_e["id"]) == list(p_c["id"])
    prob = [c for c in p_e.columns if c.startswith("p_")]
    assert prob, p_e.columns
    assert (p_e[prob] - p_c[prob]).abs().to_numpy().max() < 1e-3
    assert h_e["val/task_loss"].to_numpy() == pytest.approx(h_c["val/task_loss"].to_numpy(),
                                                            abs=1e-4)
    for k in m_e:
        assert m_c[k] == pytest.approx(m_e[k], abs=0.01), k
