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
