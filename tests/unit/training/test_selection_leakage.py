"""Leakage covers validation: selecting on a leaked validation part is refused; the fixed
recipe (train.selection=last) runs and is recorded in the run folder and the report."""

from __future__ import annotations

import numpy as np
import pytest

from emodistill.data.protocols import Fold
from emodistill.errors import ConfigError
from emodistill.training.run import prepare
from emodistill.training.selection import fold_leaks, selection_record
from helpers.selection import CARVE, FIXED
from helpers.selection import carved_leaky as _carved_leaky
from helpers.selection import small_cfg as _cfg


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


def test_best_selection_record_on_clean_data():
    rec = selection_record({"selection": "best", "monitor": "val/task_loss", "mode": "min",
                            "patience": 10, "max_epochs": 60}, [])
    assert rec["valid_leaked_for"] == [] and "early stopping after 10" in rec["summary"]


NO_VALID_CFG = [*CARVE, "+protocol.valid_fraction=0"]


def test_no_valid_part_allows_only_the_fixed_recipe(tmp_path):
    ds = _carved_leaky()
    with pytest.raises(ConfigError, match=r"valid_fraction=0 leaves no validation part, but "
                                          r"train.selection=best.*train.selection=last"):
        prepare(_cfg(tmp_path, *NO_VALID_CFG), ds)
    with pytest.raises(ConfigError, match=r"valid_fraction=0.*scheduler=plateau"):
        prepare(_cfg(tmp_path, *NO_VALID_CFG, "train.selection=last"), ds)
    prep = prepare(_cfg(tmp_path, *NO_VALID_CFG, *FIXED), ds)
    (f,) = prep.folds
    assert prep.no_valid and len(f.valid) == 0 and prep.valid_leaked == []
    carved = prepare(_cfg(tmp_path, *CARVE, *FIXED), ds)
    (c,) = carved.folds
    assert not carved.no_valid and f.test.tolist() == c.test.tolist()
    assert f.train.tolist() == sorted(c.train.tolist() + c.valid.tolist())


def test_no_valid_part_refuses_every_choice_made_on_validation(tmp_path):
    ds = _carved_leaky()
    # HKD-MER's dominant modality, a reference method's grid, the teacher's selection
    with pytest.raises(ConfigError, match=r"dominant modality.*valid_fraction=0 leaves none.*"
                                          r"method.dominant=text"):
        prepare(_cfg(tmp_path, *NO_VALID_CFG, *FIXED, method="hkd_mer"), ds)
    assert prepare(_cfg(tmp_path, *NO_VALID_CFG, *FIXED, "method.dominant=text",
                        method="hkd_mer"), ds).no_valid
    with pytest.raises(ConfigError, match=r"chosen from a grid.*valid_fraction=0"):
        prepare(_cfg(tmp_path, *NO_VALID_CFG, *FIXED, method="logistic"), ds)
    with pytest.raises(ConfigError, match=r"valid_fraction=0.*select the teacher"):
        prepare(_cfg(tmp_path, *NO_VALID_CFG, *FIXED, "method.modality=audio",
                     "+method.teacher.train.selection=best", method="hinton_kd"), ds)
    from emodistill.training import sweep

    orig = sweep.build_dataset
    sweep.build_dataset = lambda _cfg: ds
    try:
        with pytest.raises(ConfigError, match=r"sweep's objective.*valid_fraction=0"):
            sweep._check("synthetic", "late_fusion", None, [*NO_VALID_CFG, *FIXED], {})
    finally:
        sweep.build_dataset = orig


def test_no_valid_selection_record():
    train = {"selection": "last", "max_epochs": 6, "recipe_from": "x"}
    rec = selection_record(train, [], no_valid=True)
    assert rec["valid_part"] is False
    assert rec["summary"].startswith("no validation part: fixed recipe trained on all training "
                                     "data: the weights after exactly 6 epochs")
    assert selection_record(train, [])["valid_part"] is True
