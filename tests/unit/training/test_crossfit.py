"""Cross-fitted teachers: no training sample's soft target comes from a teacher that saw it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emodistill.config import compose
from emodistill.data.synthetic import make_synthetic_mer
from emodistill.errors import ConfigError
from emodistill.training.crossfit import CrossFitTeacher, crossfit_folds, group_values
from emodistill.training.loaders import batch_loader
from emodistill.training.run import prepare, run_experiment


def _cfg(tmp_path, method="hinton_kd", *extra):
    return compose(dataset="synthetic", method=method, overrides=[
        "dataset.n=240", "+protocol.valid_group=video", "method.modality=audio",
        "method.student.name=unimodal", "method.teacher.method.name=feature_fusion",
        "method.teacher.crossfit=3", "train.max_epochs=1", "train.progress_bar=false",
        "train.save_checkpoint=false", f"output_dir={tmp_path}", *extra])


def _strip(cfg):
    """Keep only the params unimodal / feature_fusion accept (the yaml has physio ones)."""
    from omegaconf import OmegaConf

    cfg.method.student = OmegaConf.create({"name": "unimodal", "width": 8})
    cfg.method.teacher.method = OmegaConf.create({"name": "feature_fusion", "width": 8})
    return cfg


def test_no_training_sample_is_taught_by_a_member_that_saw_it(tmp_path):
    # kd_feature: the soft label (hinton_kd's term) and the feature term with one projection
    # per member
    cfg = _strip(_cfg(tmp_path, "kd_feature"))
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


def test_crossfit_folds_partition_the_training_groups():
    ds = make_synthetic_mer(200, seed=2)
    from emodistill.data.protocols import make_folds

    (f,) = make_folds(ds, "split", split="standard", valid_group="video")
    members = crossfit_folds(ds, f, 4)
    held = np.concatenate([m.test for m in members])
    assert sorted(held.tolist()) == sorted(f.train.tolist())
    vids = ds.groups["video"]
    for m in members:
        assert not set(vids[m.train]) & set(vids[m.test])
        np.testing.assert_array_equal(m.valid, f.valid)


def test_crossfit_refused_where_it_cannot_hold(tmp_path):
    cfg = _strip(_cfg(tmp_path, "hinton_kd", "method.teacher.crossfit=1"))
    with pytest.raises(ConfigError, match="crossfit=1"):
        prepare(cfg)
    cfg = compose(dataset="synthetic", method="mkd", overrides=[
        "method.modality=audio", "method.teacher.crossfit=2"])
    with pytest.raises(ConfigError, match="feedback.*kd_feature"):
        prepare(cfg)
