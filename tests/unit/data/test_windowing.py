import numpy as np
import pytest

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.protocols import make_folds
from emodistill.data.spec import TargetSpec
from emodistill.data.windowing import (
    WindowConfig,
    Windower,
    binarize_ratings,
    build_physio_dataset,
    cut_windows,
    rating_targets,
)
from emodistill.errors import ConfigError, DataFormatError, EmptySplitError


def _trials(n=3, t=20, c=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, t, c)).astype(np.float32)


def test_starts_drop_keep_overlap_and_cap():
    w = WindowConfig(chunk_size=4, overlap=0, baseline_samples=6)
    assert w.starts(20).tolist() == [6, 10, 14]  # 18 + 4 > 20: no partial window
    assert WindowConfig(chunk_size=4, baseline_samples=6, baseline="keep").starts(20).tolist() == [
        0, 4, 8, 12, 16]
    assert WindowConfig(chunk_size=4, overlap=2).starts(10).tolist() == [0, 2, 4, 6]
    assert WindowConfig(chunk_size=4, max_windows=2).starts(20).tolist() == [0, 4]
    assert WindowConfig(chunk_size=8, baseline_samples=6).starts(13).size == 0


@pytest.mark.parametrize("kw, word", [
    ({"chunk_size": 4, "overlap": 4}, "overlap"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"baseline": "subtract_mean"}, "needs a baseline"),
    ({"chunk_size": 8, "baseline_samples": 4, "baseline": "subtract_template"}, "subtract_mean"),
    ({"baseline": "remove"}, "drop"),
    ({"max_windows": 0}, "max_windows"),
])
def test_window_config_errors_name_the_fix(kw, word):
    with pytest.raises(ConfigError, match=word):
        WindowConfig(**kw)


def test_cut_windows_are_the_trial_slices():
    x = _trials()
    lengths = np.array([20, 13, 7])
    cfg = WindowConfig(chunk_size=4, overlap=1, baseline_samples=2)
    w, ti, wi = cut_windows(x, lengths, cfg)
    assert w.shape[1:] == (4, 2) and w.dtype == np.float32
    for row, (i, k) in enumerate(zip(ti, wi, strict=True)):
        s = 2 + 3 * k
        np.testing.assert_array_equal(w[row], x[i, s:s + 4])
    # trial 0 (20): starts 2, 5, 8, 11, 14; trial 1 (13): 2, 5, 8; trial 2 (7): 2
    assert np.bincount(ti).tolist() == [5, 3, 1]


def test_baseline_subtraction_modes():
    x = _trials(n=2, t=24, c=3)
    lengths = np.array([24, 24])
    mean_cfg = WindowConfig(chunk_size=4, baseline_samples=8, baseline="subtract_mean")
    w, ti, wi = cut_windows(x, lengths, mean_cfg)
    raw, _, _ = cut_windows(x, lengths, mean_cfg, subtract_baseline=False)
    np.testing.assert_allclose(w, raw - x[ti, :8].mean(1, keepdims=True), atol=1e-6)
    # TorchEEG BaselineRemoval: mean of the baseline cut into chunk-sized pieces
    tmpl_cfg = WindowConfig(chunk_size=4, baseline_samples=8, baseline="subtract_template")
    w2, ti2, _ = cut_windows(x, lengths, tmpl_cfg)
    template = (x[:, 0:4] + x[:, 4:8]) / 2
    np.testing.assert_allclose(w2, raw - template[ti2], atol=1e-6)
    assert w2[0].shape == (4, 3)


def _trial_dataset(lengths=(20, 12, 3), t=20):
    n = len(lengths)
    x = _trials(n=n, t=t, c=2)
    targets, specs = rating_targets({"valence": np.array([7.0, 5.0, 2.0][:n])})
    return build_physio_dataset(
        "toy", signals={"eeg": x}, lengths={"eeg": np.array(lengths)}, targets=targets,
        target_specs=specs, ids=[f"s1_t{i}" for i in range(n)],
        groups={"subject": np.array(["s1"] * n), "trial": np.array([f"t{i}" for i in range(n)])},
        window=WindowConfig(chunk_size=4, baseline_samples=4), info={"note": "toy"},
    ), x


def test_windower_builds_window_samples_with_trial_targets_and_groups(caplog):
    ds, x = _trial_dataset()
    assert ds.spec.modality("eeg").seq_len == 20 and len(ds) == 3
    w = ds.post_split(ds)
    assert w.post_split is None  # never windowed twice
    assert w.spec.modality("eeg").seq_len == 4 and w.spec.modality("eeg").dim == 2
    # trial 0 (20 samples): 4 windows after the 4-sample baseline; trial 1 (12): 2; trial 2: 0
    assert w.ids.tolist() == ["s1_t0_w0", "s1_t0_w1", "s1_t0_w2", "s1_t0_w3",
                              "s1_t1_w0", "s1_t1_w1"]
    assert w.groups["trial"].tolist() == ["t0"] * 4 + ["t1"] * 2
    assert w.targets["valence"].tolist() == [1] * 4 + [0] * 2  # 7 > 5 high; 5 is low
    assert w.targets["valence_rating"].tolist() == [7.0] * 4 + [5.0] * 2
    np.testing.assert_array_equal(w.features["eeg"][5].numpy(), x[1, 8:12])
    assert bool(w.mask["eeg"].all())
    assert w.info["windowing"]["window"]["chunk_size"] == 4
    assert "shorter than one window" in caplog.text


def test_windower_on_a_part_with_no_full_window_raises():
    ds, _ = _trial_dataset()
    with pytest.raises(EmptySplitError, match="chunk_size"):
        ds.post_split(ds.subset([2]))


def test_windower_unrolls_feature_sequences_and_reshapes_bands():
    n, wmax, k, c = 2, 3, 4, 5
    feats = np.arange(n * wmax * k * c, dtype=np.float32).reshape(n, wmax, k * c)
    targets, specs = rating_targets({"arousal": np.array([3.0, 8.0])})
    ds = build_physio_dataset(
        "toy", signals={"eeg": feats}, lengths={"eeg": np.array([3, 2])}, targets=targets,
        target_specs=specs, ids=["a", "b"], groups={"subject": np.array(["1", "1"]),
                                                    "trial": np.array(["a", "b"])},
        window=WindowConfig(chunk_size=8), feature_steps={"eeg": k},
    )
    w = ds.post_split(ds)
    assert len(w) == 5 and w.spec.modality("eeg").seq_len == k
    assert w.spec.modality("eeg").dim == c
    np.testing.assert_array_equal(w.features["eeg"][4].numpy(), feats[1, 1].reshape(k, c))


def test_windower_rejects_modalities_covering_different_spans():
    targets, specs = rating_targets({"valence": np.array([3.0])})
    ds = MultimodalDataset(
        build_physio_dataset(
            "toy", signals={"eeg": _trials(1, 16, 2), "gsr": _trials(1, 16, 1)},
            lengths={"eeg": np.array([16]), "gsr": np.array([8])}, targets=targets,
            target_specs=specs, ids=["a"], groups={"subject": np.array(["1"])},
            window=WindowConfig(chunk_size=4),
        ).spec,
        {"eeg": _trials(1, 16, 2), "gsr": _trials(1, 16, 1)},
        targets=targets, ids=["a"], lengths={"eeg": np.array([16]), "gsr": np.array([8])},
    )
    with pytest.raises(DataFormatError, match="different window counts"):
        Windower(WindowConfig(chunk_size=4))(ds)


def test_binarize_threshold_and_comparison():
    r = np.array([1.0, 4.99, 5.0, 5.01, 9.0])
    assert binarize_ratings(r).tolist() == [0, 0, 0, 1, 1]
    assert binarize_ratings(r, comparison=">=").tolist() == [0, 0, 1, 1, 1]  # TorchEEG
    assert binarize_ratings(r, threshold=4.5).tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(ConfigError, match=">="):
        binarize_ratings(r, comparison="gt")


def test_rating_targets_checks_the_scale():
    t, specs = rating_targets({"valence": np.array([1.0, 9.0]), "arousal": np.array([5.5, 2])})
    assert [s.name for s in specs] == ["valence", "arousal", "valence_rating", "arousal_rating"]
    assert specs[0] == TargetSpec("valence", "binary", class_names=("low", "high"))
    with pytest.raises(DataFormatError, match="outside"):
        rating_targets({"valence": np.array([0.0, 5.0])})


@pytest.fixture(scope="module")
def physio_small():
    from emodistill.data.formats.physio_synthetic import make_synthetic_physio

    return make_synthetic_physio(4, 6, trial_seconds=4.0, eeg_channels=4, chunk_size=128)


def _trial_of(window_ids):
    return {i.rsplit("_w", 1)[0] for i in window_ids}


@pytest.mark.parametrize("protocol, params", [
    ("subject_dependent", {"k": 3, "valid_fraction": 0.2}),
    ("loso", {"valid_fraction": 0.34}),
])
def test_protocols_on_windowed_data_never_share_a_trial(physio_small, protocol, params):
    ds = physio_small
    folds = make_folds(ds, protocol, **params)
    assert len(folds) == (3 if protocol == "subject_dependent" else 4)
    for fold in folds:
        parts = {k: ds.post_split(ds.subset(getattr(fold, k))) for k in ("train", "valid", "test")}
        trials = {k: _trial_of(v.ids) for k, v in parts.items()}
        assert not trials["train"] & trials["valid"]
        assert not trials["train"] & trials["test"]
        assert not trials["valid"] & trials["test"]
        # every window of a trial is in its trial's part (4 s trial / 1 s windows = 4)
        for k, v in parts.items():
            assert len(v) == 4 * len(getattr(fold, k))
            assert set(v.groups["subject"]) == set(ds.groups["subject"][getattr(fold, k)])
        if protocol == "loso":
            subj = {k: set(v.groups["subject"]) for k, v in parts.items()}
            assert len(subj["test"]) == 1 and not subj["test"] & (subj["train"] | subj["valid"])
        else:  # subject-dependent: every subject is tested and trained on
            assert set(parts["test"].groups["subject"]) == set(ds.groups["subject"])
            assert set(parts["train"].groups["subject"]) == set(ds.groups["subject"])


def test_windower_keeps_missing_modalities_missing():
    x, g = _trials(3, 12, 2), _trials(3, 12, 1, seed=1)
    targets, specs = rating_targets({"valence": np.array([2.0, 6.0, 8.0])})
    spec = build_physio_dataset(
        "toy", signals={"eeg": x, "gsr": g}, lengths={"eeg": np.full(3, 12),
                                                     "gsr": np.full(3, 12)},
        targets=targets, target_specs=specs, ids=["a", "b", "c"],
        groups={"subject": np.array(["1", "1", "1"])}, window=WindowConfig(chunk_size=4),
    ).spec
    ds = MultimodalDataset(spec, {"eeg": x, "gsr": g}, targets=targets, ids=["a", "b", "c"],
                           present={"gsr": np.array([True, False, True])})
    w = Windower(WindowConfig(chunk_size=4))(ds)
    assert len(w) == 9
    assert w.present["gsr"].tolist() == [True] * 3 + [False] * 3 + [True] * 3
    assert not w.features["gsr"][3:6].any()
    np.testing.assert_array_equal(w.features["gsr"][7].numpy(), g[2, 4:8])
    np.testing.assert_array_equal(w.features["eeg"][4].numpy(), x[1, 4:8])
