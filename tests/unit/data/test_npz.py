"""The generic npz format: round trip, hand-written files, refusals, atomic save."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.config import compose
from emodistill.data.formats import npz as npz_mod
from emodistill.data.formats.npz import load_npz, save_npz
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError
from emodistill.training.run import prepare


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_mer(60, seed=5, missing_rate=0.3, samples_per_video=4)


def _equal(a, b):
    assert a.spec.modalities == b.spec.modalities
    assert [(t.name, t.kind, t.class_names, t.value_range) for t in a.spec.targets] == [
        (t.name, t.kind, t.class_names, t.value_range) for t in b.spec.targets]
    assert a.spec.group_keys == b.spec.group_keys
    np.testing.assert_array_equal(a.ids, b.ids)
    for d in ("features", "mask", "present", "targets"):
        da, db = getattr(a, d), getattr(b, d)
        assert list(da) == list(db)
        for k in da:
            assert da[k].dtype == db[k].dtype, (d, k)
            torch.testing.assert_close(da[k], db[k], rtol=0, atol=0)
    for d in ("groups", "splits"):
        da, db = getattr(a, d), getattr(b, d)
        assert list(da) == list(db)
        for k in da:
            np.testing.assert_array_equal(da[k].astype(str), db[k].astype(str))


def test_round_trip_is_exact(ds, tmp_path):
    assert (~ds.present["audio"]).any()  # the fixture exercises missing modalities
    p = save_npz(ds, tmp_path / "mine.npz")
    back = load_npz(p, name="synthetic")
    _equal(ds, back)
    assert back.fingerprint() == ds.fingerprint()
    assert back.spec.target().name == ds.spec.target().name == "sentiment"
    assert load_npz(p).spec.name == "mine"  # default name: the file stem
    # readable without pickle, as documented
    with np.load(p, allow_pickle=False) as z:
        assert z["text"].dtype == np.float32 and z["id"].dtype.kind == "U"


def test_through_the_registry_and_protocol(ds, tmp_path):
    p = save_npz(ds, tmp_path / "mine.npz")
    cfg = compose(dataset="npz", method="feature_fusion",
                  overrides=[f"dataset.path={p}", "method.width=8"])
    prep = prepare(cfg)
    (fold,) = prep.folds
    std = ds.splits["standard"]
    np.testing.assert_array_equal(fold.test, np.flatnonzero(std == "test"))
    assert build_dataset({"name": "npz", "path": str(p)}).fingerprint() == ds.fingerprint()


def _minimal(n=6, **extra):
    rng = np.random.default_rng(0)
    arrays = {
        "modalities": np.array(["eeg", "gsr"]),
        "eeg": rng.standard_normal((n, 4, 3)).astype(np.float32),
        "gsr": rng.standard_normal((n, 2)),  # [N, D] means T = 1
        "id": np.array([f"t{i}" for i in range(n)]),
        "target_valence": np.array([0, 1] * (n // 2)),
        "classes_valence": np.array(["low", "high"]),
        "target_score": rng.uniform(1, 9, n),
        "range_score": np.array([1.0, 9.0]),
        "group_subject": np.array(["s1", "s1", "s2", "s2", "s3", "s3"][:n]),
        "eeg_lengths": np.array([4, 3, 2, 4, 1, 4][:n]),
        "gsr_present": np.array([True, False, True, True, True, True][:n]),
        "split_mine": np.array(["train", "train", "valid", "valid", "test", ""][:n]),
    }
    arrays.update(extra)
    return arrays


def _write(tmp_path, arrays, name="data.npz"):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def test_hand_written_file(tmp_path):
    ds = load_npz(_write(tmp_path, _minimal()))
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [
        ("eeg", 4, 3), ("gsr", 1, 2)]
    assert [(t.name, t.kind) for t in ds.spec.targets] == [("valence", "binary"),
                                                            ("score", "regression")]
    assert ds.spec.target("score").value_range == (1.0, 9.0)
    np.testing.assert_array_equal(ds.mask["eeg"].sum(1).numpy(), [4, 3, 2, 4, 1, 4])
    assert ds.present["gsr"].tolist() == [True, False, True, True, True, True]
    assert not ds.mask["gsr"][1].any() and (ds.features["gsr"][1] == 0).all()
    assert (ds.features["eeg"][4, 1:] == 0).all()  # padding beyond the length is zero
    assert ds.spec.group_keys == ("subject",)
    assert ds.splits["mine"].tolist() == ["train", "train", "valid", "valid", "test", ""]


def test_multiclass_target(tmp_path):
    ds = load_npz(_write(tmp_path, _minimal(target_emotion=np.array([0, 1, 2, 2, 1, 0]),
                                            classes_emotion=np.array(["a", "b", "c"]))))
    assert ds.spec.target("emotion").kind == "multiclass"


def test_object_arrays_are_refused(tmp_path):
    p = _write(tmp_path, _minimal(id=np.array([f"t{i}" for i in range(6)], dtype=object)))
    with pytest.raises(DataFormatError, match="without pickle.*dtype=str"):
        load_npz(p)


@pytest.mark.parametrize("drop,match", [
    ("id", "needs arrays 'modalities' and 'id'"),
    ("modalities", "needs arrays 'modalities' and 'id'"),
    ("eeg", r"modalities \['eeg'\] are listed but have no array"),
    ("classes_valence", "class target 'valence' needs classes_valence"),
])
def test_missing_arrays(tmp_path, drop, match):
    arrays = _minimal()
    del arrays[drop]
    with pytest.raises(DataFormatError, match=match):
        load_npz(_write(tmp_path, arrays))


def test_no_target(tmp_path):
    arrays = {k: v for k, v in _minimal().items() if not k.startswith(("target_", "classes_",
                                                                          "range_"))}
    with pytest.raises(DataFormatError, match="no target_<name>"):
        load_npz(_write(tmp_path, arrays))


@pytest.mark.parametrize("key,value,match", [
    ("eeg", np.zeros(6, dtype=np.float32), r"\[N, T, D\] or \[N, D\].*'eeg': \(6,\)"),
    ("gsr", np.zeros((5, 2)), r"'gsr' has shape \(5, 1, 2\); expected \[6"),
    ("eeg_lengths", np.array([4, 3, 2, 4, 1, 9]), r"eeg_lengths must be \[6\] ints in \[0, 4\]"),
    ("target_valence", np.array([0, 1, 2, 0, 1, 0]), "class index 2 at id 't2'"),
    ("target_score", np.array([1.0, 2.0, 10.0, 3.0, 4.0, 5.0]), r"10\.0 at id 't2'"),
    ("split_mine", np.array(["train", "dev", "test", "", "", ""]), r"\['dev'\]"),
    ("eeg", np.full((6, 4, 3), np.nan, dtype=np.float32), "NaN/inf"),
])
def test_bad_values(tmp_path, key, value, match):
    with pytest.raises(DataFormatError, match=match):
        load_npz(_write(tmp_path, _minimal(**{key: value})))


def test_unreadable_files(tmp_path):
    good = _write(tmp_path, _minimal()).read_bytes()
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match="trunc.npz: not a readable .npz"):
        load_npz(trunc)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(DataFormatError, match="single array"):
        load_npz(single)
    with pytest.raises(DataNotFoundError, match="absent.npz"):
        load_npz(tmp_path / "absent.npz")
    with pytest.raises(ConfigError, match="dataset.path"):
        load_npz(None)


def test_save_is_atomic(ds, tmp_path, monkeypatch):
    target = tmp_path / "out.npz"

    def boom(f, **arrays):
        f.write(b"PK\x03\x04 partial zip")
        raise OSError("disk full")

    monkeypatch.setattr(npz_mod.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_npz(ds, target)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary is left

    monkeypatch.undo()
    save_npz(ds, target)
    before = target.read_bytes()
    monkeypatch.setattr(npz_mod.np, "savez", boom)
    with pytest.raises(OSError):
        save_npz(ds, target)
    assert target.read_bytes() == before  # an existing file is never half-overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
