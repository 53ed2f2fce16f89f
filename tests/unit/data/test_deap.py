"""DEAP loader tests on small sXX.dat files written with the real layout.

The files are Python-2-style pickles (str keys and array buffers stored as
py2 ``str``, ``numpy.core.multiarray`` globals), as the official files are,
with the real DEAP ratings of the first participants (in video order) from
../shared/data/deap_metadata/participant_ratings.csv. Only the number of
samples per trial is smaller than the real 8064.
"""

import codecs
import io
import pickle
import struct

import numpy as np
import pandas as pd
import pytest

from emodistill.data.cache import FeatureCache
from emodistill.data.formats.deap import DEAP_CHANNELS, load_deap, read_deap_file
from emodistill.data.protocols import make_folds
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError, UnsafePickleError
from helpers import shared_path

N_SAMPLES = 384 + 256  # 3 s baseline + 2 s (the real files have 384 + 7680)


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: str as byte strings, numpy.core globals."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _string(self, raw):
        if self.proto >= 1:
            n = len(raw)
            head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else (
                pickle.BINSTRING + struct.pack("<i", n))
            self.write(head + raw)
        else:
            self.write(pickle.STRING + b"'" + codecs.escape_encode(raw)[0] + b"'\n")

    def save_bytes(self, obj):
        self._string(obj)
        self.memoize(obj)

    def save_str(self, obj):
        self._string(obj.encode("latin1"))
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def write_py2_pickle(path, obj, protocol=2):
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol).dump(obj)
    path.write_bytes(buf.getvalue())


def real_ratings(participant):
    df = pd.read_csv(shared_path("deap_metadata", "participant_ratings.csv"))
    df = df[df["participant"] == participant].sort_values("video")  # .dat trials: video order
    assert df["video"].tolist() == list(range(1, 41))
    return df[["Valence", "Arousal", "Dominance", "Liking"]].to_numpy(np.float64)


def channel_signal(subject, n_trials=40):
    """data[t, c, s] = 1000 c + 10 t + subject + a 10 Hz sine scaled by the valence rating."""
    t = np.arange(N_SAMPLES) / 128.0
    base = (1000.0 * np.arange(40)[None, :, None] + 10.0 * np.arange(n_trials)[:, None, None]
            + subject)
    return base + np.sin(2 * np.pi * 10 * t)[None, None, :]


@pytest.fixture(scope="module")
def deap_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("deap") / "data_preprocessed_python"
    root.mkdir()
    for s in (1, 2, 3):
        data = channel_signal(s)
        data[:, 36, :] = 2e5 + 1e3 * s  # GSR stored as a resistance in Ohm
        write_py2_pickle(root / f"s{s:02d}.dat", {"labels": real_ratings(s), "data": data},
                         protocol=0 if s == 3 else 2)
    return root.parent


def test_reads_python2_pickles_with_the_real_layout(deap_root):
    for name in ("s01.dat", "s03.dat"):  # binary protocol 2 and text protocol 0
        data, labels = read_deap_file(deap_root / "data_preprocessed_python" / name)
        assert data.shape == (40, 40, N_SAMPLES) and data.dtype == np.float64
        assert labels.shape == (40, 4) and labels.dtype == np.float64


def test_channel_groups_trials_and_labels(deap_root):
    ds = load_deap(deap_root, channel_groups=["eeg", "eog", "gsr", "temp"], chunk_size=128)
    assert len(ds) == 3 * 40
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [
        ("eeg", N_SAMPLES, 32), ("eog", N_SAMPLES, 2), ("gsr", N_SAMPLES, 1),
        ("temp", N_SAMPLES, 1)]
    assert ds.ids[0] == "s01_t01" and ds.ids[-1] == "s03_t40"
    row = 40 + 4  # s02, trial 5 (= video 5)
    expect = channel_signal(2)[4]
    np.testing.assert_allclose(ds.features["eeg"][row].numpy(), expect[:32].T, rtol=1e-6)
    np.testing.assert_allclose(ds.features["eog"][row].numpy(), expect[32:34].T, rtol=1e-6)
    np.testing.assert_allclose(ds.features["temp"][row, :, 0].numpy(), expect[39], rtol=1e-6)
    assert float(ds.features["gsr"][row, 0, 0]) == pytest.approx(2e5 + 2e3)
    ratings = real_ratings(2)[4]
    assert ds.targets["valence_rating"][row].item() == pytest.approx(ratings[0])
    assert ds.targets["liking_rating"][row].item() == pytest.approx(ratings[3])
    assert ds.targets["arousal"][row].item() == int(ratings[1] > 5)
    assert ds.groups["subject"][row] == "s02" and ds.groups["trial"][row] == "05"
    assert ds.info["channels"]["eog"] == ["hEOG", "vEOG"]
    assert {t.name for t in ds.spec.targets} >= {"valence", "arousal", "dominance", "liking"}


def test_label_threshold_follows_the_config(deap_root):
    ratings = np.concatenate([real_ratings(s)[:, 0] for s in (1, 2, 3)])
    strict = load_deap(deap_root, channel_groups=["gsr"], chunk_size=128)
    torcheeg = load_deap(deap_root, channel_groups=["gsr"], chunk_size=128, comparison=">=")
    np.testing.assert_array_equal(strict.targets["valence"].numpy(), ratings > 5)
    np.testing.assert_array_equal(torcheeg.targets["valence"].numpy(), ratings >= 5)
    low = load_deap(deap_root, channel_groups=["gsr"], chunk_size=128, threshold=4.5)
    np.testing.assert_array_equal(low.targets["valence"].numpy(), ratings > 4.5)


def test_windows_drop_the_3s_baseline(deap_root):
    ds = load_deap(deap_root, channel_groups=["eeg"], chunk_size=128, subjects=[1])
    w = ds.post_split(ds)
    assert len(w) == 40 * 2 and w.ids[1] == "s01_t01_w1"
    first = w.features["eeg"][0].numpy()
    np.testing.assert_allclose(first, channel_signal(1)[0, :32, 384:512].T, rtol=1e-6)
    mean = load_deap(deap_root, channel_groups=["eeg"], chunk_size=128, subjects=[1],
                     baseline="subtract_mean")
    wm = mean.post_split(mean)
    base = channel_signal(1)[0, :32, :384].mean(1)
    # float32 storage of values near 3e4: 0.002 resolution
    np.testing.assert_allclose(wm.features["eeg"][0].numpy(), first - base[None], atol=1e-2)


def test_gsr_conductance_and_subject_selection(deap_root):
    ds = load_deap(deap_root, channel_groups=["gsr"], subjects=["s02", 3], chunk_size=128,
                   gsr_unit="microsiemens")
    assert sorted(set(ds.groups["subject"])) == ["s02", "s03"]
    assert float(ds.features["gsr"][0, 0, 0]) == pytest.approx(1e6 / (2e5 + 2e3), rel=1e-5)
    with pytest.raises(DataNotFoundError, match="available"):
        load_deap(deap_root, subjects=[7])


def test_feature_mode_is_cached_per_subject(deap_root, tmp_path):
    kw = dict(channel_groups=["eeg", "gsr"], features={"eeg": "de", "gsr": "stats"},
              chunk_size=128, cache_dir=tmp_path)
    ds = load_deap(deap_root, **kw)
    assert {m.name: (m.seq_len, m.dim) for m in ds.spec.modalities} == {
        "eeg": (2, 4 * 32), "gsr": (2, 6)}
    assert ds.info["feature_cache"]["misses"] == 3
    again = load_deap(deap_root, **kw)
    assert again.info["feature_cache"] == {**ds.info["feature_cache"], "hits": 3, "misses": 0}
    assert again.fingerprint() == ds.fingerprint()
    changed = load_deap(deap_root, **{**kw, "welch_seconds": 0.5})
    assert changed.info["feature_cache"]["misses"] == 3
    assert len(FeatureCache(tmp_path).manifests()) == 6
    w = ds.post_split(ds)
    assert len(w) == 3 * 40 * 2 and w.spec.modality("eeg").seq_len == 1
    bands = load_deap(deap_root, channel_groups=["eeg"], features="de", chunk_size=128,
                      feature_layout="bands", cache=False)
    wb = bands.post_split(bands.subset(np.arange(3)))
    assert (wb.spec.modality("eeg").seq_len, wb.spec.modality("eeg").dim) == (4, 32)


@pytest.mark.parametrize("protocol, params", [("subject_dependent", {"k": 5}), ("loso", {})])
def test_protocols_keep_every_window_of_a_trial_together(deap_root, protocol, params):
    ds = load_deap(deap_root, channel_groups=["gsr"], chunk_size=128)
    for fold in make_folds(ds, protocol, valid_fraction=0.2, **params):
        seen = {}
        for part in ("train", "valid", "test"):
            w = ds.post_split(ds.subset(getattr(fold, part)))
            for trial in {i.rsplit("_w", 1)[0] for i in w.ids}:
                assert trial not in seen, f"{trial} in {seen.get(trial)} and {part}"
                seen[trial] = part
        assert len(seen) == len(ds)


def test_layout_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    write_py2_pickle(bad / "s01.dat", {"data": np.zeros((4, 32, 100)), "labels": np.ones((4, 4))})
    with pytest.raises(DataFormatError, match="40 channels"):
        load_deap(bad)
    write_py2_pickle(bad / "s01.dat", {"data": np.zeros((4, 40, 100)), "labels": np.ones((4, 2))})
    with pytest.raises(DataFormatError, match="valence, arousal"):
        load_deap(bad)
    write_py2_pickle(bad / "s01.dat", {"data": np.zeros((4, 40, 100))})
    with pytest.raises(DataFormatError, match="labels"):
        load_deap(bad)
    (bad / "s01.dat").write_bytes(b"cos\nsystem\n(S'echo hacked'\ntR.")
    with pytest.raises(UnsafePickleError, match="os.system"):
        load_deap(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="sXX.dat"):
        load_deap(empty)
    with pytest.raises(ConfigError, match="dataset.root"):
        load_deap(None)


def test_config_errors(deap_root):
    with pytest.raises(ConfigError, match="valid"):
        load_deap(deap_root, channel_groups=["ecg"])
    with pytest.raises(ConfigError, match="unknown DEAP channel"):
        load_deap(deap_root, channel_groups=["eeg"], channels={"eeg": ["Fp1", "X9"]})
    with pytest.raises(ConfigError, match="no 512-sample window"):
        load_deap(deap_root, chunk_size=512)
    with pytest.raises(ConfigError, match="feature mode"):
        load_deap(deap_root, chunk_size=128, baseline="subtract_features")
    sub = load_deap(deap_root, channel_groups=["eeg"], channels={"eeg": ["Fp1", "Fp2", "Cz"]},
                    chunk_size=128, subjects=[1])
    assert sub.spec.modality("eeg").dim == 3 and sub.info["channels"]["eeg"] == ["Fp1", "Fp2", "Cz"]
    assert DEAP_CHANNELS[36] == "GSR"


def test_registered_config_loads(deap_root):
    from emodistill.config import compose, to_container

    cfg = compose(dataset="deap", method="unimodal", overrides=[
        f"dataset.root={deap_root}", "dataset.chunk_size=128", "dataset.subjects=[1]"])
    ds = build_dataset(to_container(cfg.dataset))
    assert len(ds) == 40 and ds.spec.modality_names == ["eeg", "eog", "gsr"]
