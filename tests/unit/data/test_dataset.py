"""MultimodalDataset: checks against the spec, masks, subsets, batches, fingerprints."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import DataFormatError, EmptySplitError

N = 6
SPEC = DatasetSpec(
    "toy",
    (ModalitySpec("seq", 3, 4), ModalitySpec("vec", 2)),
    (TargetSpec("score", "regression", value_range=(-1.0, 1.0)),
     TargetSpec("cls", "multiclass", class_names=("a", "b", "c"))),
    ("video",),
)


def arrays(**over):
    rng = np.random.default_rng(0)
    a = {
        "features": {"seq": rng.standard_normal((N, 4, 3)), "vec": rng.standard_normal((N, 2))},
        "targets": {"score": np.linspace(-1, 1, N), "cls": np.array([0, 1, 2, 0, 1, 2])},
        "ids": [f"i{k}" for k in range(N)],
        "groups": {"video": np.array(["v0", "v0", "v1", "v1", "v2", "v2"])},
        "lengths": {"seq": np.array([4, 3, 2, 1, 0, 4])},
        "present": {"vec": np.array([True, True, False, True, True, True])},
        "splits": {"std": np.array(["train", "train", "valid", "test", "test", ""])},
    }
    a.update(over)
    return a


def build(**over):
    a = arrays(**over)
    return MultimodalDataset(SPEC, a.pop("features"), **a)


def test_shapes_masks_and_padding():
    ds = build()
    assert ds.features["seq"].shape == (N, 4, 3) and ds.features["seq"].dtype == torch.float32
    assert ds.features["vec"].shape == (N, 1, 2)  # [N, D] -> T = 1
    np.testing.assert_array_equal(ds.mask["seq"].sum(1).numpy(), [4, 3, 2, 1, 0, 4])
    assert (ds.features["seq"][~ds.mask["seq"]] == 0).all()
    assert ds.present["vec"].tolist() == [True, True, False, True, True, True]
    assert not ds.mask["vec"][2].any() and (ds.features["vec"][2] == 0).all()
    assert ds.present["seq"].all()
    assert ds.targets["cls"].dtype == torch.int64 and ds.targets["score"].dtype == torch.float32


def test_short_sequences_are_right_padded():
    short = np.ones((N, 2, 3))
    ds = build(features={"seq": short, "vec": np.ones((N, 2))}, lengths=None)
    assert ds.features["seq"].shape == (N, 4, 3)
    assert (ds.features["seq"][:, 2:] == 0).all()


@pytest.mark.parametrize("over,match", [
    ({"features": {"seq": np.ones((N, 4, 3))}}, r"modality 'vec' declared in the spec but not"),
    ({"features": {"seq": np.ones((N, 4, 5)), "vec": np.ones((N, 2))}},
     r"'seq' has shape \(6, 4, 5\); expected \[6, <= 4, 3\]"),
    ({"features": {"seq": np.ones((N, 9, 3)), "vec": np.ones((N, 2))}}, r"<= 4"),
    ({"features": {"seq": np.ones((N - 1, 4, 3)), "vec": np.ones((N, 2))}}, r"\[6, <= 4, 3\]"),
    ({"features": {"seq": np.full((N, 4, 3), np.inf), "vec": np.ones((N, 2))}},
     "NaN/inf.*repair_nonfinite"),
    ({"lengths": {"seq": np.array([4, 3, 2, 1, 0, 5])}},
     r"seq_lengths must be \[6\] ints in \[0, 4\]"),
    ({"lengths": {"seq": np.array([4, 3, 2, 1, 0, -1])}}, r"seq_lengths"),
    ({"present": {"vec": np.ones(N - 1, dtype=bool)}}, r"presence of 'vec' must have shape \[6\]"),
    ({"targets": {"score": np.zeros(N)}}, r"target 'cls' missing"),
    ({"targets": {"score": np.zeros(N + 1), "cls": np.zeros(N)}}, r"'score' has shape \(7,\)"),
    ({"targets": {"score": np.array([0, 0, np.nan, 0, 0, 0]), "cls": np.zeros(N)}}, "NaN/inf"),
    ({"targets": {"score": np.array([0, 0, 1.5, 0, 0, 0]), "cls": np.zeros(N)}},
     r"1 values of target 'score' lie outside \[-1.0, 1.0\] \(e.g. 1.5 at id 'i2'\)"),
    ({"targets": {"score": np.zeros(N), "cls": np.array([0, 1, 2, 3, 0, 0])}},
     r"class index 3 at id 'i3'; valid indices are 0..2 \(a, b, c\)"),
    ({"targets": {"score": np.zeros(N), "cls": np.array([0, 1, -1, 0, 0, 0])}}, "class index -1"),
    ({"targets": {"score": np.zeros(N), "cls": np.array([0, 0.5, 1, 0, 0, 0])}},
     "must hold integer class indices"),
    ({"targets": {"score": np.zeros(N), "cls": np.array(["a", "b", "c", "a", "b", "c"])}},
     "must hold integer class indices"),
    ({"groups": {"video": np.array(["v"] * (N - 1))}}, r"group 'video' must have shape \(6,\)"),
    ({"splits": {"std": np.array(["train", "dev", "test", "", "", ""])}}, r"found \['dev'\]"),
])
def test_bad_input_is_named(over, match):
    with pytest.raises(DataFormatError, match=match):
        build(**over)


def test_float_class_labels_with_integer_values_are_accepted():
    ds = build(targets={"score": np.zeros(N), "cls": np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])})
    assert ds.targets["cls"].tolist() == [0, 1, 2, 0, 1, 2]


def test_subset_copies_rows():
    ds = build()
    sub = ds.subset([4, 1])
    assert sub.ids.tolist() == ["i4", "i1"] and len(sub) == 2
    assert sub.groups["video"].tolist() == ["v2", "v0"]
    assert sub.splits["std"].tolist() == ["test", "train"]
    torch.testing.assert_close(sub.features["seq"], ds.features["seq"][[4, 1]])
    sub.features["seq"][:] = 7.0
    assert not (ds.features["seq"] == 7.0).any()  # no data shared for writing
    with pytest.raises(EmptySplitError, match="no samples"):
        ds.subset([])
    # a boolean mask selects rows, it is not read as the indices 0 and 1
    by_mask = ds.subset(ds.splits["std"] == "test")
    assert by_mask.ids.tolist() == ["i3", "i4"]
    with pytest.raises(EmptySplitError):
        ds.subset(np.zeros(N, dtype=bool))
    with pytest.raises(DataFormatError, match=r"boolean subset mask has shape \(3,\)"):
        ds.subset(np.ones(3, dtype=bool))


def test_batch_and_its_views():
    ds = build()
    b = ds.batch(np.array([0, 2, 5]), "cls")
    assert isinstance(b, Batch) and b.size == 3 and b.modalities == ["seq", "vec"]
    assert b.inputs["seq"].shape == (3, 4, 3) and b.mask["seq"].shape == (3, 4)
    assert b.present["vec"].tolist() == [True, False, True]
    assert b.target.tolist() == [0, 2, 2] and b.index.tolist() == [0, 2, 5]
    s = b.select(["vec"])
    assert s.modalities == ["vec"] and s.target is b.target
    moved = b.to("cpu")
    assert moved.inputs["seq"].device.type == "cpu"
    torch.testing.assert_close(moved.inputs["seq"], b.inputs["seq"])


def test_fingerprint_is_content_addressed():
    a, b = build(), build()
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    feats = {k: v.clone() for k, v in a.features.items()}
    feats["seq"][0, 0, 0] += 1e-3
    assert a.with_features(feats).fingerprint() != a.fingerprint()
    assert a.subset([0, 1]).fingerprint() != a.fingerprint()
    c = build(targets={"score": np.linspace(-1, 1, N)[::-1].copy(),
                       "cls": np.array([0, 1, 2, 0, 1, 2])})
    assert c.fingerprint() != a.fingerprint()


def test_with_features_keeps_masks():
    ds = build()
    out = ds.with_features({k: torch.ones_like(v) for k, v in ds.features.items()})
    assert (out.features["seq"][~ds.mask["seq"]] == 0).all()
    assert (out.features["seq"][ds.mask["seq"]] == 1).all()


def test_summary():
    s = build().summary()
    assert s["n_samples"] == N and s["dataset"] == "toy"
    assert s["modalities"]["seq"]["shape"] == [N, 4, 3]
    assert s["modalities"]["vec"]["present"] == 5
    assert s["targets"]["cls"]["counts"] == {"a": 2, "b": 2, "c": 2}
    assert s["targets"]["score"]["min"] == -1.0
    assert s["splits"]["std"] == {"train": 2, "valid": 1, "test": 2}
    assert s["groups"] == {"video": 3}
    assert s["fingerprint"] == build().fingerprint()


def test_repair_nonfinite_counts_logs_and_copies(caplog):
    x = np.array([[1.0, -np.inf], [np.nan, np.inf]])
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        fixed, count = repair_nonfinite(x, what="toy audio")
    assert count == 3 and fixed.dtype == np.float32
    np.testing.assert_array_equal(fixed, [[1, 0], [0, 0]])
    assert np.isinf(x[0, 1])  # the input is not modified
    assert "toy audio: replaced 3 non-finite" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        same, count = repair_nonfinite(np.ones(3), what="clean")
    assert count == 0 and caplog.text == ""
    _, c = repair_nonfinite(np.array([np.nan]), what="x", fill=-1.0)
    assert c == 1
