import numpy as np
import pytest

from emodistill.data.physio_features import (
    DEFAULT_BANDS,
    band_power,
    cached_trial_features,
    differential_entropy,
    feature_names,
    resolve_feature_kinds,
    time_stats,
    trial_window_features,
    window_features,
)
from emodistill.data.windowing import WindowConfig
from emodistill.errors import ConfigError

FS = 128.0


def _sine(freq, amp=1.0, seconds=4.0):
    t = np.arange(int(seconds * FS)) / FS
    return amp * np.sin(2 * np.pi * freq * t)


def test_band_power_of_a_sine_lands_in_its_band():
    bp = band_power(_sine(10.0, amp=3.0), FS)  # alpha
    names = list(DEFAULT_BANDS)
    assert bp.shape == (len(names),)
    assert bp[names.index("alpha")] == pytest.approx(3.0**2 / 2, rel=0.05)  # A^2 / 2
    others = np.delete(bp, names.index("alpha"))
    assert (others < 0.01 * bp[names.index("alpha")]).all()


def test_band_power_of_white_noise_is_its_variance_share():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 512))
    bp = band_power(x, FS, bands={"all": (0.0, 64.0)}, welch_seconds=1.0)
    assert bp.mean() == pytest.approx(1.0, rel=0.05)  # Parseval
    half = band_power(x, FS, bands={"low": (0.0, 32.0)})
    assert half.mean() == pytest.approx(0.5, rel=0.07)


def test_differential_entropy_is_the_gaussian_entropy_of_the_band_power():
    rng = np.random.default_rng(1)
    x = 2.0 * rng.standard_normal((50, 512))
    de = differential_entropy(x, FS)
    bp = band_power(x, FS)
    np.testing.assert_allclose(de, 0.5 * np.log(2 * np.pi * np.e * bp), rtol=1e-6)
    # full-band DE of N(0, 4) white noise is 0.5 log(2 pi e 4)
    full = differential_entropy(x, FS, bands={"all": (0, 64)}).mean()
    assert full == pytest.approx(0.5 * np.log(2 * np.pi * np.e * 4.0), abs=0.05)


def test_time_stats_of_a_ramp():
    x = 2.0 + 0.5 * np.arange(256) / FS  # 0.5 units per second
    s = time_stats(x, FS)
    assert s[0] == pytest.approx(x.mean())
    assert s[2] == pytest.approx(2.0) and s[3] == pytest.approx(x.max())
    assert s[4] == pytest.approx(0.5)
    assert s[5] == pytest.approx(0.5 / FS)


def test_flattened_features_are_band_major():
    # channel 0: theta sine; channel 1: beta sine; channel 2: silent
    w = np.stack([_sine(6.0, seconds=2), _sine(20.0, seconds=2), np.zeros(256)], axis=-1)
    f = window_features(w[None], "band_power", FS)  # [1, 4 * 3]
    names = feature_names("band_power", ["a", "b", "c"])
    assert names[:3] == ["theta_a", "theta_b", "theta_c"] and len(names) == f.shape[1]
    top = [names[i] for i in np.argsort(f[0])[-2:]]
    assert set(top) == {"theta_a", "beta_b"}
    assert f.dtype == np.float32
    assert window_features(w[None], "stats", FS).shape == (1, 6 * 3)


def test_a_band_without_frequency_bins_is_an_error():
    with pytest.raises(ConfigError, match="Nyquist"):
        band_power(_sine(10.0), FS, bands={"high": (70.0, 90.0)})
    with pytest.raises(ConfigError, match="low < high"):
        band_power(_sine(10.0), FS, bands={"bad": (8.0, 4.0)})


def test_trial_window_features_group_windows_by_trial():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 640, 2))
    lengths = np.array([640, 384, 100])
    cfg = WindowConfig(chunk_size=128, baseline_samples=128)
    f, n = trial_window_features(x, lengths, cfg, "de", FS)
    assert n.tolist() == [4, 2, 0]
    assert f.shape == (3, 4, 4 * 2)
    np.testing.assert_allclose(f[1, 1], window_features(x[1:2, 256:384], "de", FS)[0], rtol=1e-5)
    assert not f[1, 2:].any() and not f[2].any()


def test_subtract_features_removes_the_baseline_features():
    # a stationary trial: baseline and stimulus have the same spectrum, so DE - baseline DE ~ 0
    x = np.tile(_sine(10.0, amp=5.0, seconds=1.0), 6)[None, :, None]
    cfg = WindowConfig(chunk_size=128, baseline_samples=256, baseline="subtract_features")
    f, n = trial_window_features(x, np.array([768]), cfg, "de", FS)
    assert n.tolist() == [4]
    alpha = list(DEFAULT_BANDS).index("alpha")
    assert np.abs(f[0, :, alpha]).max() < 1e-3
    plain, _ = trial_window_features(x, np.array([768]), WindowConfig(128, 0, 256), "de", FS)
    assert plain[0, 0, alpha] > 1.0


def test_resolve_feature_kinds():
    assert resolve_feature_kinds(None, ["eeg", "gsr"]) == {"eeg": "raw", "gsr": "raw"}
    assert resolve_feature_kinds("de", ["eeg"]) == {"eeg": "de"}
    assert resolve_feature_kinds({"gsr": "stats"}, ["eeg", "gsr"]) == {"eeg": "raw", "gsr": "stats"}
    with pytest.raises(ConfigError, match="not loaded"):
        resolve_feature_kinds({"ecg": "stats"}, ["eeg"])
    with pytest.raises(ConfigError, match="band_power"):
        resolve_feature_kinds("psd", ["eeg"])


def test_cached_trial_features_without_cache_matches_direct():
    rng = np.random.default_rng(3)
    trials = {"eeg": rng.standard_normal((2, 256, 3)), "gsr": rng.standard_normal((2, 256, 1))}
    cfg = WindowConfig(chunk_size=128)
    out = cached_trial_features(trials, np.array([256, 256]), kinds={"eeg": "de", "gsr": "raw"},
                                window=cfg, fs=FS)
    assert set(out) == {"eeg", "n_windows"}
    direct, n = trial_window_features(trials["eeg"], np.array([256, 256]), cfg, "de", FS)
    np.testing.assert_array_equal(out["eeg"], direct)
    assert out["n_windows"].tolist() == n.tolist() == [2, 2]
