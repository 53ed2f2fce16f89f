"""Leakage covers validation: selecting on a leaked validation part is refused; the fixed
recipe (train.selection=last) runs and is recorded in the run folder and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodistill.config import compose
from emodistill.data.protocols import Fold
from emodistill.data.synthetic import make_synthetic_mer
from emodistill.errors import ConfigError
from emodistill.training.run import prepare, run_experiment
from emodistill.training.selection import fold_leaks, selection_record
from helpers import shared_path

FIXED = ["train.selection=last", "train.scheduler=none",
         "train.recipe_from=mosi_raw_features poria (test)"]


def _cfg(tmp_path, *overrides, method="late_fusion", dataset="synthetic"):
    small = [] if method == "hinton_kd" else ["method.width=8"]
    return compose(dataset=dataset, method=method, overrides=[
        *small, "train.max_epochs=2", "train.progress_bar=false",
        "train.save_checkpoint=false", f"output_dir={tmp_path}", *overrides])


def _carved_leaky(n=160):
    """Synthetic data whose `standard` train rows are label-seen for text; valid carved."""
    ds = make_synthetic_mer(n, seed=1)
    lab = ds.splits["standard"].copy()
    lab[lab == "valid"] = "train"
    ds.splits["standard"] = lab
    ds.info["leaky_splits"] = {"standard": {"train": ["text"]}}
    return ds


CARVE = ["+protocol.valid_group=video"]


def test_fold_leaks_reads_parts_and_both_declaration_forms():
    ds = _carved_leaky()
    f = Fold("x", np.array([0, 1]), np.flatnonzero(ds.splits["standard"] == "train")[:3],
             np.flatnonzero(ds.splits["standard"] == "test"), "id")
    assert fold_leaks(ds, f, ["text", "audio"]) == {"valid": ["text"], "test": []}
    ds.info["leaky_splits"] = {"standard": ["audio"]}  # list form: the whole split
    assert fold_leaks(ds, f, ["text", "audio"], split="standard") == {
        "valid": ["audio"], "test": ["audio"]}


def test_carved_validation_of_a_leaked_train_split_refuses_best_selection(tmp_path):
    ds = _carved_leaky()
    with pytest.raises(ConfigError, match=r"leaked for \['text'\].*selection=last.*"
                                          r"recipe_from.*leak-free features"):
        prepare(_cfg(tmp_path, *CARVE), ds)
    # a modality that is not leaked is fine
    assert prepare(_cfg(tmp_path, *CARVE, "dataset.modalities=[audio,vision]"),
                   ds).valid_leaked == []
    # the plateau scheduler also reads the validation metric; the recipe must be named
    with pytest.raises(ConfigError, match="scheduler=plateau"):
        prepare(_cfg(tmp_path, *CARVE, "train.selection=last"), ds)
    with pytest.raises(ConfigError, match="recipe_from"):
        prepare(_cfg(tmp_path, *CARVE, "train.selection=last", "train.scheduler=none"), ds)
    with pytest.raises(ConfigError, match="train.selection='first'; use one of best, last"):
        prepare(_cfg(tmp_path, "train.selection=first"), ds)


def test_dominant_choice_teacher_selection_and_sweep_refused_on_leaked_valid(tmp_path):
    ds = _carved_leaky()
    with pytest.raises(ConfigError, match=r"dominant modality.*method.dominant=text"):
        prepare(_cfg(tmp_path, *CARVE, *FIXED, method="hkd_mer"), ds)
    assert prepare(_cfg(tmp_path, *CARVE, *FIXED, "method.dominant=text", method="hkd_mer"), ds)
    with pytest.raises(ConfigError, match="the teacher"):
        prepare(_cfg(tmp_path, *CARVE, *FIXED, "method.modality=audio",
                     "+method.teacher.train.selection=best", method="hinton_kd"), ds)
    from emodistill.training import sweep

    class _Data:  # the sweep builds its data from the config: hand it the leaky one
        @staticmethod
        def build(_cfg):
            return ds

    orig = sweep.build_dataset
    sweep.build_dataset = _Data.build
    try:
        with pytest.raises(ConfigError, match="sweep's objective"):
            sweep._check("synthetic", "late_fusion", None, [*CARVE, *FIXED], {})
    finally:
        sweep.build_dataset = orig


def test_fixed_recipe_runs_and_is_recorded(tmp_path):
    ds = _carved_leaky()
    res = run_experiment(_cfg(tmp_path, *CARVE, *FIXED, "train.max_epochs=3"), dataset=ds)
    assert res.folds[0].best_epoch == 2 and res.folds[0].epochs == 3  # the last, no selection
    payload = json.loads((res.path / "results.json").read_text())
    sel = payload["selection"]
    assert sel["selection"] == "last" and sel["valid_leaked_for"] == ["text"]
    assert sel["recipe_from"] == "mosi_raw_features poria (test)"
    assert "fixed recipe" in sel["summary"] and "LEAKED" in sel["summary"]
    assert "recipe_from: mosi_raw_features poria (test)" in (res.path / "config.yaml").read_text()
    from emodistill.report.html import build_report

    text = build_report(res.path, output=tmp_path / "report.html",
                        embedding="none").read_text()
    assert "Model selection: fixed recipe" in text and "LEAKED" in text


def test_best_selection_record_on_clean_data():
    rec = selection_record({"selection": "best", "monitor": "val/task_loss", "mode": "min",
                            "patience": 10, "max_epochs": 60}, [])
    assert rec["valid_leaked_for"] == [] and "early stopping after 10" in rec["summary"]


@pytest.mark.shared_data
def test_poria_features_refuse_validation_selection_and_run_the_fixed_recipe(tmp_path):
    root = shared_path("mosi_utterance")
    with pytest.raises(ConfigError, match=r"leaked for \['text', 'vision'\].*selection=last"):
        prepare(_cfg(tmp_path, f"dataset.root={root}", dataset="mosi_utterance"))
    # the project's experiment carries the fixed recipe
    cfg = compose(experiment="mosi_poria", method="late_fusion", overrides=[
        f"dataset.root={root}", "method.width=8", "train.max_epochs=1",
        "train.save_checkpoint=false", f"output_dir={tmp_path}"])
    assert cfg.train.selection == "last" and cfg.train.recipe_from
    res = run_experiment(cfg)
    sel = json.loads((res.path / "results.json").read_text())["selection"]
    assert sel["valid_leaked_for"] == ["text", "vision"] and sel["selection"] == "last"
