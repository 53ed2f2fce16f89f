"""Config composition: order, defaults, overrides, typos with valid names."""

from __future__ import annotations

import pytest
import yaml

from emodistill.config import GROUPS, compose, list_configs, to_container
from emodistill.errors import ConfigError, UnknownNameError


def test_groups_ship_their_configs():
    assert GROUPS == ("dataset", "method", "experiment")
    assert {"synthetic", "mosi", "mosei", "sims", "mosi_utterance", "deap_bandpower",
            "mahnob_bandpower", "npz"} <= set(list_configs("dataset"))
    assert {"unimodal", "early_fusion", "feature_fusion", "late_fusion"} <= set(
        list_configs("method"))
    assert "default" in list_configs("experiment")


def test_base_defaults():
    cfg = compose()
    assert cfg.dataset.name == "synthetic" and cfg.method.name == "feature_fusion"
    assert cfg.dataset_config == "synthetic" and cfg.method_config == "feature_fusion"
    assert cfg.experiment == "default"
    assert cfg.train.max_epochs == 60 and cfg.seed == 1111


def test_composition_order(tmp_path):
    """base < dataset < method < experiment < --config file < overrides."""
    assert compose().train.monitor == "val/task_loss"
    # a dataset file overrides base
    assert compose(dataset="mosi_utterance").protocol.split == "poria"
    assert compose(dataset="deap_bandpower").protocol.name == "loso"
    # an experiment overrides dataset and base
    exp = compose(experiment="deap_eeg")
    assert exp.train.batch_size == 64 and exp.train.max_epochs == 40
    assert exp.experiment == "deap_eeg"
    # a user file overrides the experiment; overrides override the file
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"train": {"max_epochs": 7, "lr": 0.5},
                                    "method": {"width": 16}}))
    cfg = compose(experiment="deap_eeg", config_file=user)
    assert (cfg.train.max_epochs, cfg.train.lr, cfg.train.batch_size) == (7, 0.5, 64)
    assert cfg.method.width == 16
    cfg = compose(experiment="deap_eeg", config_file=user, overrides=["train.max_epochs=3"])
    assert cfg.train.max_epochs == 3 and cfg.train.lr == 0.5
    # later overrides win over earlier ones
    assert compose(overrides=["seed=1", "seed=2"]).seed == 2


def test_experiment_defaults_and_explicit_names():
    cfg = compose(experiment="mosi_poria")
    assert cfg.dataset.name == "mosi_utterance" and cfg.method.name == "feature_fusion"
    assert cfg.train.lr == pytest.approx(1e-4)
    # -d / -m win over the experiment's defaults; the experiment's keys still apply
    cfg = compose(experiment="mosi_poria", dataset="synthetic", method="late_fusion")
    assert cfg.dataset.name == "synthetic" and cfg.method.name == "late_fusion"
    assert cfg.method.aux_weight == 1.0 and cfg.train.lr == pytest.approx(1e-4)


def test_override_values_are_typed():
    cfg = compose(overrides=[
        "train.lr=3e-4", "train.max_epochs=2", "train.progress_bar=false",
        "dataset.modalities=[text,audio]", "dataset.target=null", "run_name=my-run",
        "train.gradient_clip_val=1.5", "+method.note=inf",
    ])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.max_epochs == 2 and cfg.train.progress_bar is False
    assert list(cfg.dataset.modalities) == ["text", "audio"]
    assert cfg.dataset.target is None and cfg.run_name == "my-run"
    assert cfg.method.note == "inf"  # only numerals become floats


def test_plus_adds_keys_nested_too():
    cfg = compose(dataset="deap_bandpower", overrides=["+protocol.k=5", "+train.extra.deep=1"])
    assert cfg.protocol.k == 5 and cfg.train.extra.deep == 1
    assert to_container(cfg)["train"]["extra"] == {"deep": 1}


@pytest.mark.parametrize("override,valid_under,some_valid", [
    ("train.lrr=1", "train", "'lr'"),
    ("trian.lr=1", "", "'train'"),
    ("method.widht=4", "method", "'width'"),
    ("protocol.k=5", "protocol", "'name'"),  # k exists only for k-fold protocols: use +
    ("dataset.root=../x", "dataset", "'n'"),  # synthetic data has no root
])
def test_typo_in_override_key_lists_valid_keys(override, valid_under, some_valid):
    with pytest.raises(ConfigError) as e:
        compose(overrides=[override])
    msg = str(e.value)
    key = override.split("=")[0]
    assert f"no key {key!r}" in msg and some_valid in msg and f"+{key}=" in msg
    assert (f"under {valid_under}:" in msg) == bool(valid_under)


def test_override_without_equals():
    with pytest.raises(ConfigError, match="must look like key=value"):
        compose(overrides=["train.lr"])


@pytest.mark.parametrize("group,name,close", [
    ("dataset", "mosi_utterances", "mosi_utterance"),
    ("method", "late_fusoin", "late_fusion"),
    ("experiment", "mosi_poira", "mosi_poria"),
])
def test_typo_in_config_names_lists_valid_names(group, name, close):
    with pytest.raises(UnknownNameError) as e:
        compose(**{group: name})
    msg = str(e.value)
    assert f"unknown {group} config {name!r}" in msg
    assert f"Did you mean {close!r}" in msg
    assert f"Valid {group}s: " in msg and all(n in msg for n in list_configs(group))


def test_bad_user_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        compose(config_file=bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at top level"):
        compose(config_file=listy)


def test_shipped_configs_hold_no_absolute_paths():
    from emodistill.config import _config_dir

    for f in _config_dir().rglob("*.yaml"):
        text = f.read_text()
        for line in text.splitlines():
            value = line.split("#", 1)[0]
            assert ": /" not in value and ":/" not in value.replace("://", ""), (f.name, line)


def test_a_mapping_override_replaces_a_list_and_merges_into_a_mapping():
    # dataset.montages is [] by default; a user montage is a mapping (docs/data/eeg.md)
    cfg = compose(dataset="deap_bandpower",
                  overrides=["dataset.montages={mine: [O1, O2, P7, P8]}"])
    assert to_container(cfg.dataset.montages) == {"mine": ["O1", "O2", "P7", "P8"]}
    cfg = compose(dataset="deap_bandpower", method="eeg_hinton_kd",
                  overrides=["method.teacher.method={width: 3}"])
    assert cfg.method.teacher.method.width == 3 and cfg.method.teacher.method.modality == "eeg"
