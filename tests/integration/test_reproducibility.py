"""Same seed → identical run; different seed → different run (CPU)."""

from __future__ import annotations

import pandas as pd
import pytest

from emodistill.config import compose
from emodistill.training.run import run_experiment


def _run(tmp_path, seed, name):
    cfg = compose(dataset="synthetic", method="feature_fusion", overrides=[
        "dataset.n=200", "dataset.target=sentiment", "train.max_epochs=2",
        "train.progress_bar=false", "method.width=16", "method.layers=1",
        "method.dropout=0.3", f"seed={seed}", f"output_dir={tmp_path}", f"run_name={name}",
        "train.save_checkpoint=false",
    ])
    res = run_experiment(cfg)
    fold = res.folds[0].path
    return (pd.read_csv(fold / "predictions.csv"), pd.read_csv(fold / "metrics.csv"),
            res.folds[0].test)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    return {k: _run(tmp, seed, k) for k, seed in (("a", 7), ("b", 7), ("c", 8))}


def test_same_seed_gives_identical_predictions_and_history(runs):
    (pa, ha, ta), (pb, hb, tb) = runs["a"], runs["b"]
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    assert ta == tb


def test_different_seed_gives_different_predictions(runs):
    (pa, _, ta), (pc, _, tc) = runs["a"], runs["c"]
    assert list(pa["id"]) == list(pc["id"]) and list(pa["target"]) == list(pc["target"])
    assert (pa["prediction"] != pc["prediction"]).mean() > 0.9
    assert ta != tc
