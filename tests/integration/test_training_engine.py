"""Model selection on leaked validation and cross-fitted teachers, trained through the engine.

(Moved from tests/unit/training so that ``pytest tests/unit`` trains nothing.)
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
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


def test_no_valid_part_trains_on_train_and_carved_valid_and_says_so(tmp_path):
    from emodistill.checkpoint import load_checkpoint
    from emodistill.data.normalize import Standardizer
    from emodistill.report.html import build_report
    from emodistill.training.selection import NO_VALID

    ds = _carved_leaky()
    carved = prepare(_cfg(tmp_path, *CARVE, *FIXED), ds).folds[0]
    cfg = _cfg(tmp_path, *CARVE, *FIXED, "+protocol.valid_fraction=0", "train.max_epochs=2",
               "train.save_checkpoint=true")
    res = run_experiment(cfg, dataset=ds)
    (fold,) = res.folds
    assert fold.sizes == {"train": len(carved.train) + len(carved.valid), "valid": 0,
                          "test": len(carved.test)}
    assert fold.best_epoch == 1 and fold.epochs == 2 and np.isnan(fold.best_val)
    # the features were standardised with the statistics of train + the carved valid rows
    std = load_checkpoint(fold.path / "model.pt").standardizer
    whole = Standardizer.fit(ds.subset(np.sort(np.concatenate([carved.train, carved.valid]))))
    for m in std.mean:
        torch.testing.assert_close(std.mean[m], whole.mean[m])
    # the test part is the carved run's test part, read once
    pred = pd.read_csv(fold.path / "predictions.csv")
    assert sorted(pred["id"]) == sorted(ds.ids[carved.test])
    assert not [c for c in pd.read_csv(fold.path / "metrics.csv").columns
                if c.startswith("val/")]  # no validation loop at all
    sel = json.loads((res.path / "results.json").read_text())["selection"]
    assert sel["valid_part"] is False and sel["summary"].startswith(NO_VALID)
    text = build_report(res.path, output=tmp_path / "report.html", embedding="none").read_text()
    assert f"Model selection: {NO_VALID}" in text and "no validation curve" in text


def test_no_valid_part_with_context_and_a_crossfitted_teacher(tmp_path):
    no_valid = ["protocol.name=group_kfold", "+protocol.group=video", "+protocol.k=2",
                "+protocol.valid_fraction=0", "protocol.fold=fold0", "train.selection=last",
                "train.scheduler=none"]
    res = run_experiment(crossfit_cfg(tmp_path, "hinton_kd", *no_valid))
    (fold,) = res.folds
    assert fold.sizes["valid"] == 0 and isinstance(fold.model.teacher, CrossFitTeacher)
    record = json.loads((res.path / fold.fold / "teacher" / "crossfit.json").read_text())
    assert sum(m["n_heldout"] for m in record["members"]) == fold.sizes["train"]
    member = json.loads((res.path / fold.fold / "teacher" / "member0" / "fold_result.json")
                        .read_text())
    assert member["sizes"]["valid"] == 0
    # utterance context, sequence mode: whole videos, an empty valid part
    vec = "+dataset.modalities_spec={text: [1, 6, 1.2], audio: [1, 4, 0.5]}"
    cfg = compose(dataset="synthetic", method="dmd", overrides=[
        "dataset.n=120", vec, "train.max_epochs=1", "train.progress_bar=false",
        "train.batch_size=8", "method.context=sequence", "method.context_params.window=2",
        "train.save_checkpoint=false", f"output_dir={tmp_path}", *no_valid])
    res = run_experiment(cfg)
    assert res.folds[0].sizes["valid"] == 0
    assert len(pd.read_csv(res.folds[0].path / "predictions.csv")) == res.folds[0].sizes["test"]


@pytest.mark.shared_data
def test_poria_without_a_validation_part(tmp_path):
    root = shared_path("mosi_utterance")
    over = [f"dataset.root={root}", "method.width=8", "train.max_epochs=1",
            "train.save_checkpoint=false", f"output_dir={tmp_path}"]
    carved = prepare(compose(experiment="mosi_poria", method="late_fusion",
                             overrides=over)).folds[0]
    cfg = compose(experiment="mosi_poria", method="late_fusion",
                  overrides=[*over, "protocol.valid_fraction=0"])
    (fold,) = prepare(cfg).folds
    assert (len(fold.train), len(fold.valid), len(fold.test)) == (1447, 0, 752)
    assert fold.test.tolist() == carved.test.tolist()
    assert len(carved.train) + len(carved.valid) == 1447
    with pytest.raises(ConfigError, match=r"valid_fraction=0 leaves no validation part.*"
                                          r"selection=best"):
        prepare(compose(experiment="mosi_poria", method="late_fusion",
                        overrides=[*over, "protocol.valid_fraction=0", "train.selection=best"]))
    res = run_experiment(cfg)
    assert res.folds[0].sizes == {"train": 1447, "valid": 0, "test": 752}


def test_a_crossfitted_logistic_teacher_never_teaches_a_row_it_was_fitted_on(tmp_path):
    # KD from a fitted reference model (eeg_hinton_kd_logistic_crossfit): k logistic fits per
    # fold, each training row's soft target from the fit whose training groups exclude it
    from emodistill.data.normalize import Standardizer
    from emodistill.models.reference import Logistic

    cfg = compose(dataset="synthetic", method="eeg_hinton_kd_logistic_crossfit", overrides=[
        "dataset.n=240", "+protocol.valid_group=video", "method.modality=audio",
        "method.teacher.method.modality=null", "method.teacher.method.C=[0.01,1.0]",
        "method.student.width=8", "train.max_epochs=1", "train.progress_bar=false",
        "train.save_checkpoint=false", f"output_dir={tmp_path}"])
    res = run_experiment(cfg)
    teacher = res.folds[0].model.teacher
    assert isinstance(teacher, CrossFitTeacher) and teacher.n_members == 3
    assert all(isinstance(m, Logistic) for m in teacher.members)
    prep = prepare(cfg)
    (f,) = prep.folds
    train = prep.dataset.subset(f.train)
    ids = train.ids.tolist()
    vids = group_values(prep.dataset, "video")
    vid_of = dict(zip(prep.dataset.ids.tolist(), vids.tolist(), strict=True))
    owner = teacher.train_assignment.tolist()
    assert sorted(set(owner)) == [0, 1, 2]
    for j, seen in enumerate(teacher.member_train_ids):
        mine = [ids[i] for i, a in enumerate(owner) if a == j]
        assert mine and not set(mine) & seen  # no row taught by a fit that saw it...
        assert not {vid_of[s] for s in mine} & {vid_of[s] for s in seen}  # ...nor its video
    # the soft targets read on training batches are each row's own member's outputs, and a
    # member's output differs from the other members' (they are different fits)
    batch = next(iter(batch_loader(Standardizer.fit(train).transform(train), "polarity",
                                   batch_size=64, shuffle=True, seed=0)))
    res.folds[0].model.train()
    t_out = res.folds[0].model.teacher_outputs(batch)
    member = teacher.train_assignment[batch.index]
    torch.testing.assert_close(t_out.aux["crossfit_member"], member)
    with torch.no_grad():
        outs = [teacher.members[j](teacher.member_batch(batch, j)).preds for j in range(3)]
    for j in range(3):
        sel = member == j
        torch.testing.assert_close(t_out.preds[sel], outs[j][sel])
        assert not torch.allclose(outs[j], outs[(j + 1) % 3])
