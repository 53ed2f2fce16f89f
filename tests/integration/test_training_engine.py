"""Model selection on leaked validation and cross-fitted teachers, trained through the engine.

(Moved from tests/unit/training so that ``pytest tests/unit`` trains nothing.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emodistill.config import compose
from emodistill.errors import ConfigError
from emodistill.training.crossfit import CrossFitTeacher, group_values
from emodistill.training.loaders import batch_loader
from emodistill.training.run import prepare, run_experiment
from helpers import shared_path
from helpers.crossfit import crossfit_cfg
from helpers.selection import CARVE, FIXED
from helpers.selection import carved_leaky as _carved_leaky
from helpers.selection import small_cfg as _cfg


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


def test_no_training_sample_is_taught_by_a_member_that_saw_it(tmp_path):
    # kd_feature: the soft label (hinton_kd's term) and the feature term with one projection
    # per member
    cfg = crossfit_cfg(tmp_path, "kd_feature")
    res = run_experiment(cfg)
    fold = res.folds[0]
    teacher = fold.model.teacher
    assert isinstance(teacher, CrossFitTeacher) and teacher.n_members == 3
    assert len(fold.model.projector) == 3  # one projection per member's feature space
    prep = prepare(cfg)
    (f,) = prep.folds
    train = prep.dataset.subset(f.train)
    ids = train.ids.tolist()
    # routing: every training row goes to a member that was not trained on it
    for i, j in enumerate(teacher.train_assignment.tolist()):
        assert ids[i] not in teacher.member_train_ids[j]
    # ... and held out whole groups: no video of a row's member training set is its own
    vids = group_values(prep.dataset, "video")
    for j, seen in enumerate(teacher.member_train_ids):
        mine = [i for i, a in enumerate(teacher.train_assignment.tolist()) if a == j]
        assert not {vids[f.train[i]] for i in mine} & {vids[np.flatnonzero(
            prep.dataset.ids == s)[0]] for s in list(seen)[:50]}
    # the soft targets the student reads on training batches are the owning member's outputs
    # (standardised exactly as the engine does)
    from emodistill.data.normalize import Standardizer

    std = Standardizer.fit(train)
    batch = next(iter(batch_loader(std.transform(train), "polarity", batch_size=32,
                                   shuffle=True, seed=0)))
    fold.model.train()
    t_out = fold.model.teacher_outputs(batch)
    member = teacher.train_assignment[batch.index]
    torch.testing.assert_close(t_out.aux["crossfit_member"], member)
    with torch.no_grad():
        for j in range(3):
            sel = member == j
            if sel.any():
                own = teacher.members[j](teacher.member_batch(batch, j)).preds[sel]
                torch.testing.assert_close(t_out.preds[sel], own)
    # recorded: crossfit.json per fold and the teacher's held-out metrics in results.json
    record = json.loads((res.path / f.name / "teacher" / "crossfit.json").read_text())
    assert record["k"] == 3 and sum(m["n_heldout"] for m in record["members"]) == len(f.train)
    payload = json.loads((res.path / "results.json").read_text())
    assert payload["teacher"]["crossfit"] == 3 and "acc" in payload["teacher"]["heldout"][f.name]
