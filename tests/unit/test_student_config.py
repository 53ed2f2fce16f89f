"""Issue 15: a KD student's architecture can be changed from the CLI and a --config file."""

import pytest

from emodistill.config import compose, to_container
from emodistill.errors import ConfigError
from emodistill.training.run import prepare

DATA = ["dataset.n_subjects=3", "dataset.n_trials=5", "dataset.trial_seconds=4.0",
        "method.modality=eog"]


def _student(cfg):
    return to_container(cfg.method.student)


def test_student_name_override_takes_the_new_students_defaults():
    cfg = compose(dataset="synthetic_physio", method="hinton_kd",
                  overrides=[*DATA, "method.student.name=unimodal", "method.student.width=16"])
    st = _student(cfg)
    assert st["name"] == "unimodal" and st["width"] == 16 and st["encoder"] == "auto"
    assert "tokenizer" not in st and "kernel_size" not in st  # the old student's params are gone
    prep = prepare(cfg)  # builds: no "method 'unimodal' has no parameter(s) ['tokenizer', ...]"
    assert prep.cfg.method.student.name == "unimodal"


def test_student_changed_in_a_config_file(tmp_path):
    f = tmp_path / "student.yaml"
    f.write_text("method:\n  student:\n    name: unimodal\n    encoder: mlp\n")
    cfg = compose(dataset="synthetic_physio", method="kd_feature", config_file=f,
                  overrides=DATA)
    st = _student(cfg)
    assert st["name"] == "unimodal" and st["encoder"] == "mlp" and "tokenizer" not in st
    prepare(cfg)
    # a later override of the same student keeps the file's choice and adds to it
    cfg = compose(dataset="synthetic_physio", method="kd_feature", config_file=f,
                  overrides=[*DATA, "method.student.width=8"])
    assert _student(cfg)["encoder"] == "mlp" and _student(cfg)["width"] == 8


def test_unchanged_student_keeps_its_params_and_old_keys_are_refused():
    cfg = compose(dataset="synthetic_physio", method="hinton_kd",
                  overrides=[*DATA, "method.student.layers=2"])
    assert _student(cfg)["layers"] == 2 and _student(cfg)["width"] == 64
    with pytest.raises(ConfigError, match="no key 'method.student.tokenizer'"):
        compose(dataset="synthetic_physio", method="hinton_kd",
                overrides=[*DATA, "method.student.name=unimodal", "method.student.tokenizer=conv"])


def test_teacher_method_can_be_renamed_too():
    cfg = compose(dataset="synthetic_physio", method="hinton_kd",
                  overrides=[*DATA, "method.teacher.method.name=feature_fusion"])
    tm = to_container(cfg.method.teacher.method)
    assert tm["name"] == "feature_fusion" and "cross_layers" not in tm
