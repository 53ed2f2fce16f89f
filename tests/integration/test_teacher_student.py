"""Teacher → student through the real engine: feedback sees training data only, teacher
checkpoints are reusable, students deploy without their teacher, MER and physio data."""

from __future__ import annotations

import pytest
import torch
import yaml

from emodistill.checkpoint import load_checkpoint
from emodistill.config import compose
from emodistill.distill.feedback import FEEDBACK
from emodistill.training.lit import LitMER
from emodistill.training.run import run_experiment
from helpers import shared_path

TINY = dict(width=8, layers=1, heads=2, head_width=8, vector_tokens=2, kernel_size=8, stride=8)


def tiny_config(tmp_path, name: str) -> str:
    """A --config file shrinking the student and teacher of KD method ``name``."""
    method: dict = {"student": TINY, "teacher": {"method": TINY}}
    if name in ("physio_student", "physio_teacher"):
        method = dict(TINY)
    path = tmp_path / f"tiny_{name}.yaml"
    path.write_text(yaml.safe_dump({"method": method}))
    return str(path)


def common(tmp_path) -> list[str]:
    return ["train.max_epochs=2", "train.progress_bar=false", f"output_dir={tmp_path}"]


def rows(batch) -> set[bytes]:
    x = batch.inputs["audio"].detach().cpu()
    return {x[i].numpy().tobytes() for i in range(x.shape[0])}


@pytest.mark.parametrize("strategy", ["first_order", "lookahead"])
def test_feedback_uses_training_rows_only_and_changes_the_teacher(tmp_path, monkeypatch, strategy):
    seen: dict[str, set[bytes]] = {"train": set(), "val": set(), "test": set(), "feedback": set()}

    def spy_stage(stage, fn):
        def wrapped(self, batch, batch_idx):
            seen[stage] |= rows(batch)
            return fn(self, batch, batch_idx)
        return wrapped

    for stage, attr in (("train", "training_step"), ("val", "validation_step"),
                        ("test", "test_step")):
        monkeypatch.setattr(LitMER, attr, spy_stage(stage, getattr(LitMER, attr)))
    cls = FEEDBACK.get(strategy)
    real_call = cls.__call__

    def spy_feedback(self, task, teach, labelled, settings):
        seen["feedback"] |= rows(teach) | rows(labelled)
        return real_call(self, task, teach, labelled, settings)

    monkeypatch.setattr(cls, "__call__", spy_feedback)
    cfg = compose(dataset="synthetic", method="mkd", config_file=tiny_config(tmp_path, "mkd"),
                  overrides=["dataset.n=160", "method.modality=audio",
                             # MER data: the teacher on every modality (mkd's default is EEG + EOG)
                             "method.teacher.method.modalities=null",
                             f"method.feedback={strategy}", *common(tmp_path)])
    res = run_experiment(cfg)
    assert seen["feedback"] and seen["val"] and seen["test"]
    assert seen["feedback"] <= seen["train"]
    assert not seen["feedback"] & (seen["val"] | seen["test"])
    # the teacher trained before distillation (saved) differs from the one after feedback
    fold = res.folds[0]
    saved = load_checkpoint(fold.path / "teacher" / "model.pt").model.state_dict()
    after = fold.model.teacher.state_dict()
    assert any(not torch.equal(saved[k], after[k].cpu()) for k in saved)
    # the student checkpoint holds the student only and runs without a teacher
    ck = load_checkpoint(fold.path / "model.pt")
    assert ck.model.teacher is None and ck.model.modalities == ["audio"]
    assert {k.split(".")[0] for k in ck.payload["state_dict"]} == {"student", "projector"}


def test_student_run_loads_a_saved_teacher(tmp_path):
    t_cfg = compose(dataset="synthetic", method="physio_teacher",
                    config_file=tiny_config(tmp_path, "physio_teacher"),
                    overrides=["dataset.n=160", *common(tmp_path / "t")])
    teacher_run = run_experiment(t_cfg)
    s_cfg = compose(dataset="synthetic", method="kd_feature",
                    config_file=tiny_config(tmp_path, "kd_feature"),
                    overrides=["dataset.n=160", "method.modality=vision",
                               f"method.teacher.checkpoint={teacher_run.path}",
                               *common(tmp_path / "s")])
    res = run_experiment(s_cfg)
    fold = res.folds[0]
    assert not (fold.path / "teacher").exists()  # loaded, not retrained
    teacher = fold.model.teacher
    want = load_checkpoint(teacher_run.folds[0].path / "model.pt").model.state_dict()
    assert all(torch.equal(v.cpu(), want[k]) for k, v in teacher.state_dict().items())
    assert fold.model.teacher_dim == teacher.fused_dim == 3 * TINY["width"]
    ck = load_checkpoint(fold.path / "model.pt")
    assert ck.model.projector is None and ck.model.modalities == ["vision"]


def test_physio_windows_teacher_to_single_group_student(tmp_path):
    cfg = compose(dataset="synthetic_physio", method="hinton_kd",
                  config_file=tiny_config(tmp_path, "hinton_kd"),
                  overrides=["dataset.n_subjects=3", "dataset.n_trials=5",
                             "dataset.trial_seconds=4.0", "dataset.eeg_channels=4",
                             "protocol.fold=fold0", "method.modality=gsr",
                             *common(tmp_path)])
    res = run_experiment(cfg)
    fold = res.folds[0]
    assert fold.model.modalities == ["gsr"]
    assert fold.model.teacher.modalities == ["eeg", "eog", "gsr"]
    assert set(fold.test) >= {"acc", "f1_macro"}


PHYSIO_TINY = ["dataset.n_subjects=3", "dataset.n_trials=5", "dataset.trial_seconds=4.0",
               "dataset.eeg_channels=4", "protocol.fold=fold0", "method.modality=gsr",
               "method.feedback_every=0"]


@pytest.mark.parametrize(("override", "want"), [
    ([], ["eeg", "eog"]),  # docs/methods/mkd.md: MKD's teacher is EEG + EOG
    (["method.teacher.method.modalities=null"], ["eeg", "eog", "gsr"]),  # the old teacher
])
def test_mkd_teacher_reads_the_documented_modalities_by_default(tmp_path, override, want):
    # synthetic_physio's channel_groups are eeg, eog, gsr (for the other methods and students)
    cfg = compose(dataset="synthetic_physio", method="mkd",
                  config_file=tiny_config(tmp_path, "mkd"),
                  overrides=[*PHYSIO_TINY, *override, "train.max_epochs=1",
                             "train.progress_bar=false", f"output_dir={tmp_path}"])
    assert list(cfg.dataset.channel_groups) == ["eeg", "eog", "gsr"]
    res = run_experiment(cfg)
    fold = res.folds[0]
    assert fold.model.teacher.modalities == want
    assert fold.model.modalities == ["gsr"]
    ck = load_checkpoint(fold.path / "teacher" / "model.pt")
    assert ck.model.modalities == ck.payload["modalities"] == want
    # the run's resolved config records the teacher's set (null = every modality)
    r_cfg = yaml.safe_load((res.path / "config.yaml").read_text())
    assert r_cfg["method"]["teacher"]["method"]["modalities"] == (None if override else want)


def test_mkd_teacher_on_data_without_eeg_or_eog_is_refused_naming_the_fix(tmp_path):
    from emodistill.errors import ConfigError
    from emodistill.training.run import prepare

    cfg = compose(dataset="synthetic", method="mkd", overrides=["method.modality=audio"])
    with pytest.raises(ConfigError, match=r"has no \['eeg', 'eog'\].*modalities=null"):
        prepare(cfg)


@pytest.mark.shared_data
def test_mosi_trimodal_teacher_to_vision_student(tmp_path):
    root = shared_path("mosi_utterance")
    cfg = compose(dataset="mosi_utterance", method="hinton_kd",
                  config_file=tiny_config(tmp_path, "hinton_kd"),
                  overrides=[f"dataset.root={root}", "method.modality=vision",
                             "train.max_epochs=1", "train.progress_bar=false",
                             # the Poria validation videos are leaked: the fixed recipe
                             "train.selection=last", "train.scheduler=none",
                             "train.recipe_from=test", f"output_dir={tmp_path}"])
    res = run_experiment(cfg)
    fold = res.folds[0]
    assert fold.model.teacher.modalities == ["text", "audio", "vision"]
    assert fold.model.modalities == ["vision"]
    assert 0.0 <= fold.test["acc"] <= 1.0
