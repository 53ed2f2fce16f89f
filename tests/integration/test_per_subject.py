"""Per-subject models (protocol.per_subject): one model per subject, metrics pooled per fold."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError
from emodistill.training.parallel import run_parallel
from emodistill.training.pooling import pooled_metrics
from emodistill.training.run import prepare, run_experiment

OVER = ["dataset.n_subjects=3", "dataset.n_trials=6", "dataset.features=log_band_power",
        "+protocol.k=2", "+protocol.per_subject=true", "protocol.subject_norm=transductive",
        "method.modality=eeg", "train.max_epochs=3", "train.patience=1",
        "train.progress_bar=false"]


def _cfg(method, extra=()):
    return compose(dataset="synthetic_physio", method=method, overrides=[*OVER, *extra])


def _check_pooled(res, ds):
    payload = json.loads((res.path / "results.json").read_text())
    assert list(payload["folds"]) == ["fold0", "fold1"]
    assert payload["per_subject"] == {"pooled_folds": ["fold0", "fold1"], "models": 6}
    assert sorted(payload["members"]) == [f"fold{i}/subjects0{s}" for i in (0, 1)
                                          for s in (1, 2, 3)]
    prep = prepare(compose(dataset="synthetic_physio", method="logistic", overrides=OVER), ds)
    pooled = {f.name: f for f in prepare(compose(
        dataset="synthetic_physio", method="logistic",
        overrides=[o for o in OVER if "per_subject" not in o]), ds).folds}
    for fold in res.folds:
        preds = pd.read_csv(fold.path / "predictions.csv")
        # the pooled fold tests the pooled protocol's test trials (ids <trial>_w<window>)
        trials = sorted({i.rsplit("_w", 1)[0] for i in preds["id"]})
        assert trials == sorted(ds.ids[pooled[fold.fold].test]) and preds["id"].is_unique
        assert fold.test == pytest.approx(pooled_metrics(prep.target, preds))
        assert json.loads((fold.path / "test_metrics.json").read_text()) == fold.test
        assert fold.sizes["test"] == len(preds)
    for m in res.members:
        subject = m.fold.split("/")[1].removeprefix("subject")
        # what the subject's model saw: its own samples only (subject_norm.json counts them)
        seen = json.loads((m.path / "subject_norm.json").read_text())["samples_per_subject"]
        assert list(seen) == [subject]
        assert sum(m.sizes.values()) == seen[subject]
        ids = pd.read_csv(m.path / "predictions.csv")["id"]  # s01_t03_w0: subject s01
        assert {i.split("_")[0] for i in ids} == {subject}
    assert res.mean == pytest.approx(payload["mean"])


def test_reference_method_per_subject_pools_each_folds_predictions(tmp_path):
    cfg = _cfg("logistic")
    ds = build_dataset(to_container(cfg.dataset))
    res = run_experiment(cfg, dataset=ds, output_dir=tmp_path)
    assert len(res.members) == 6 and len(res.folds) == 2
    _check_pooled(res, ds)


def test_neural_method_per_subject_parallel_matches_sequential(tmp_path):
    cfg = _cfg("eeg_mlp", ["method.members=2"])
    ds = build_dataset(to_container(cfg.dataset))
    seq = run_experiment(cfg, dataset=ds, output_dir=tmp_path / "seq")
    par = run_parallel([cfg], dataset=ds, output_dir=tmp_path / "par")[0]
    for res in (seq, par):
        _check_pooled(res, ds)
    for a, b in zip(seq.members + seq.folds, par.members + par.folds, strict=True):
        assert a.fold == b.fold and a.sizes == b.sizes
        assert b.test == pytest.approx(a.test, abs=1e-5)


def test_per_subject_only_with_subject_dependent_and_one_pool_selectable():
    with pytest.raises(ConfigError, match="per_subject=True needs protocol.name=subject_dep"):
        prepare(_cfg("logistic", ["protocol.name=loso"]))
    prep = prepare(_cfg("logistic", ["protocol.fold=fold1"]))
    assert {f.pool for f in prep.folds} == {"fold1"} and len(prep.folds) == 3
