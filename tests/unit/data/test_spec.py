"""The data contract: ModalitySpec, TargetSpec, DatasetSpec."""

from __future__ import annotations

import json

import pytest

from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError

SPEC = DatasetSpec(
    "toy",
    (ModalitySpec("text", 32, 16), ModalitySpec("audio", 5), ModalitySpec("vision", 20, 50)),
    (TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0)),
     TargetSpec("polarity", "binary", class_names=("negative", "non-negative")),
     TargetSpec("emotion", "multiclass", class_names=("a", "b", "c", "d"))),
    ("video", "speaker"),
)


def test_modality_defaults_and_validation():
    assert ModalitySpec("eeg", 160).seq_len == 1  # utterance/trial vectors are length 1
    for dim, seq in ((0, 1), (3, 0), (-1, 2)):
        with pytest.raises(ConfigError, match=f"dim={dim} and seq_len={seq}"):
            ModalitySpec("x", dim, seq)


def test_target_kinds_and_widths():
    reg, binary, multi = SPEC.targets
    assert (reg.num_classes, reg.n_outputs) == (0, 1)
    assert (binary.num_classes, binary.n_outputs) == (2, 2)
    assert (multi.num_classes, multi.n_outputs) == (4, 4)
    with pytest.raises(ConfigError, match="kind='ordinal'"):
        TargetSpec("y", "ordinal")
    with pytest.raises(ConfigError, match="needs class_names"):
        TargetSpec("y", "multiclass")
    with pytest.raises(ConfigError, match="exactly 2 class_names"):
        TargetSpec("y", "binary", class_names=("a", "b", "c"))


def test_lookup_errors_list_valid_names():
    assert SPEC.modality("audio").dim == 5
    assert SPEC.target().name == "sentiment"  # None = the first target
    assert SPEC.target("emotion").kind == "multiclass"
    with pytest.raises(ConfigError, match=r"no modality 'eeg'.*\['text', 'audio', 'vision'\]"):
        SPEC.modality("eeg")
    with pytest.raises(ConfigError, match=r"no target 'valence'.*'sentiment', 'polarity'"):
        SPEC.target("valence")


def test_select_keeps_canonical_order():
    sub = SPEC.select(["vision", "text"])
    assert sub.modality_names == ["text", "vision"]
    assert sub.targets == SPEC.targets and sub.group_keys == SPEC.group_keys
    assert SPEC.select(None) is SPEC
    with pytest.raises(ConfigError, match="'gsr'"):
        SPEC.select(["text", "gsr"])


def test_dict_round_trip_through_json():
    d = json.loads(json.dumps(SPEC.to_dict()))
    assert DatasetSpec.from_dict(d) == SPEC
    assert hash(DatasetSpec.from_dict(d)) == hash(SPEC)  # frozen, hashable


def test_specs_are_immutable():
    with pytest.raises(AttributeError):
        SPEC.modalities[0].dim = 3  # type: ignore[misc]
