"""The synthetic MER generator: contract, determinism, missing modalities, difficulty."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emodistill.data.formats.synthetic import DEFAULT_SYNTHETIC_MODALITIES, make_synthetic_mer
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError


def test_contract(synthetic_small):
    ds = synthetic_small
    assert len(ds) == 240
    for m, (T, D, _) in DEFAULT_SYNTHETIC_MODALITIES.items():
        spec = ds.spec.modality(m)
        assert (spec.seq_len, spec.dim) == (T, D)
        assert ds.features[m].shape == (240, T, D)
        length = ds.mask[m].sum(1).numpy()
        assert length.min() >= T // 2 and length.max() == T  # variable-length real sequences
        # real steps first, padding after and exactly zero
        assert (ds.mask[m].numpy() == (np.arange(T)[None] < length[:, None])).all()
        assert (ds.features[m].numpy()[~ds.mask[m].numpy()] == 0).all()
    assert [t.name for t in ds.spec.targets] == ["sentiment", "polarity", "sentiment3"]
    assert set(ds.spec.group_keys) == {"video", "speaker"}


def test_targets(synthetic_small):
    y = synthetic_small.targets["sentiment"].numpy()
    assert y.min() >= -3 and y.max() <= 3
    np.testing.assert_allclose(y * 5, np.round(y * 5), atol=1e-4)  # 0.2 grid
    assert (y == 0).any() and (y < 0).any() and (y > 0).any()
    np.testing.assert_array_equal(synthetic_small.targets["polarity"].numpy(), y >= 0)
    np.testing.assert_array_equal(synthetic_small.targets["sentiment3"].numpy(),
                                  np.sign(np.round(y)) + 1)


def test_split_by_whole_videos(synthetic_small):
    ds = synthetic_small
    vid, part = ds.groups["video"], ds.splits["standard"]
    for v in np.unique(vid):
        assert len(set(part[vid == v])) == 1
    frac = {s: (part == s).mean() for s in ("train", "valid", "test")}
    assert frac["train"] == pytest.approx(0.7, abs=0.05)
    assert frac["test"] == pytest.approx(0.2, abs=0.05)
    # two videos per speaker
    for s in np.unique(ds.groups["speaker"]):
        assert len(np.unique(vid[ds.groups["speaker"] == s])) == 2


def test_deterministic_from_seed():
    a, b = make_synthetic_mer(80, seed=11), make_synthetic_mer(80, seed=11)
    c = make_synthetic_mer(80, seed=12)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    for m in a.features:
        assert np.array_equal(a.features[m].numpy(), b.features[m].numpy())
        assert not np.array_equal(a.features[m].numpy(), c.features[m].numpy())
    np.testing.assert_array_equal(a.splits["standard"], b.splits["standard"])


@pytest.mark.parametrize("rate", [0.3, 0.6, 0.9])
def test_missing_modalities_keep_one_present(rate):
    ds = make_synthetic_mer(400, seed=1, missing_rate=rate)
    present = np.stack([ds.present[m].numpy() for m in ds.spec.modality_names])
    assert present.any(0).all()  # every sample keeps at least one modality
    for i, m in enumerate(ds.spec.modality_names):
        if m != "text":  # the dominant one is topped up where everything was dropped
            assert present[i].mean() == pytest.approx(1 - rate, abs=0.07)
        absent = ~present[i]
        assert absent.any()
        assert not ds.mask[m][absent].any()
        assert (ds.features[m][absent] == 0).all()


def test_options():
    ds = make_synthetic_mer(30, seed=0, modalities={"eeg": (8, 5, 1.0), "eog": (1, 3, 0.5)},
                            dominant="eeg", variable_length=False)
    assert ds.spec.modality_names == ["eeg", "eog"]
    assert ds.mask["eeg"].all() and ds.mask["eog"].all()
    with pytest.raises(ConfigError, match="dominant='audio'"):
        make_synthetic_mer(30, modalities={"eeg": (8, 5, 1.0)}, dominant="audio")
    with pytest.raises(ConfigError, match="missing_rate=1.0"):
        make_synthetic_mer(30, missing_rate=1.0)


def test_registry_builds_custom_modalities():
    ds = build_dataset({"name": "synthetic", "n": 40, "seed": 2, "dominant": "a",
                        "modalities_spec": {"a": [4, 6, 1.0], "b": [1, 2, 0.3]}})
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [("a", 4, 6), ("b", 1, 2)]


def _pooled(ds, m):
    x, mk = ds.features[m].numpy(), ds.mask[m].numpy()[..., None]
    return (x * mk).sum(1) / np.maximum(mk.sum(1), 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_fusion_beats_the_best_single_modality(seed):
    """A linear probe on mean-pooled features: all modalities > every single one."""
    ds = make_synthetic_mer(1500, seed=seed)
    part, y = ds.splits["standard"], ds.targets["polarity"].numpy()
    train, test = part != "test", part == "test"
    feats = {m: _pooled(ds, m) for m in ds.spec.modality_names}
    feats["fusion"] = np.concatenate(list(feats.values()), 1)

    def probe(x):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        return clf.fit(x[train], y[train]).score(x[test], y[test])

    acc = {m: probe(x) for m, x in feats.items()}
    best_single = max(v for k, v in acc.items() if k != "fusion")
    assert acc["fusion"] > best_single + 0.03, acc
    # the dominant modality is the most informative single one, and none is useless
    assert best_single == acc["text"], acc
    assert min(acc.values()) > 0.55, acc
