import numpy as np
import pytest

from emodistill.data.formats._physio import PhysioOptions
from emodistill.data.formats.physio_synthetic import (
    EEG_CHANNELS_32,
    SYNTHETIC_PHYSIO_OPTIONS,
    make_synthetic_physio,
)
from emodistill.data.physio_features import band_power
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError


@pytest.fixture(scope="module")
def default_physio():
    return make_synthetic_physio()


def test_contract_of_the_default_dataset(default_physio):
    ds = default_physio
    assert ds.spec.name == "synthetic_physio" and len(ds) == 8 * 10
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [
        ("eeg", 1024, 32), ("eog", 1024, 2), ("gsr", 1024, 1)]
    v = ds.spec.target("valence")
    assert v.kind == "binary" and v.class_names == ("low", "high")
    assert ds.spec.target("arousal").kind == "binary"
    assert set(ds.spec.group_keys) == {"subject", "trial"}
    assert len(np.unique(ds.groups["subject"])) == 8
    assert ds.ids[0] == "s01_t01" and len(set(ds.ids)) == len(ds)
    assert ds.info["channels"]["eeg"] == list(EEG_CHANNELS_32)
    w = ds.post_split(ds)
    assert [(m.name, m.seq_len, m.dim) for m in w.spec.modalities] == [
        ("eeg", 256, 32), ("eog", 256, 2), ("gsr", 256, 1)]
    assert len(w) == 8 * 10 * 4


def test_same_seed_same_bytes_other_seed_other_data():
    a = make_synthetic_physio(2, 3, trial_seconds=2.0, eeg_channels=4, chunk_size=128)
    b = make_synthetic_physio(2, 3, trial_seconds=2.0, eeg_channels=4, chunk_size=128)
    c = make_synthetic_physio(2, 3, trial_seconds=2.0, eeg_channels=4, chunk_size=128, seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def big():
    # many trials, no private modality noise: the label effects must be plainly visible
    return make_synthetic_physio(4, 40, trial_seconds=4.0, modality_noise=0.0, seed=5)


def test_eeg_band_power_depends_on_the_ratings(big):
    x = big.features["eeg"].numpy().transpose(0, 2, 1)  # [N, C, T]
    bp = np.log(band_power(x, 128.0, bands={"alpha": (8, 13), "beta": (13, 30)}))
    idx = {n: i for i, n in enumerate(EEG_CHANNELS_32)}
    left = bp[:, [idx[c] for c in ("F3", "F7", "AF3")], 0].mean(1)
    right = bp[:, [idx[c] for c in ("F4", "F8", "AF4")], 0].mean(1)
    val = big.targets["valence_rating"].numpy()
    aro = big.targets["arousal_rating"].numpy()
    assert _corr(right - left, val) > 0.6  # frontal alpha asymmetry
    assert _corr(bp[:, :, 1].mean(1), aro) > 0.5  # beta with arousal
    assert abs(_corr(right - left, aro)) < 0.35


def test_eog_and_gsr_are_correlated_with_the_labels(big):
    aro = big.targets["arousal_rating"].numpy()
    val = big.targets["valence_rating"].numpy()
    veog = big.features["eog"].numpy()[:, :, 1]
    heog = big.features["eog"].numpy()[:, :, 0]
    blink_energy = np.log((np.diff(veog, axis=1) ** 2).mean(1))
    assert _corr(blink_energy, aro) > 0.3
    sacc = np.log(np.abs(np.diff(heog, axis=1)).max(1))
    assert _corr(sacc, val) > 0.3
    gsr = big.features["gsr"].numpy()[:, :, 0]
    subj = big.groups["subject"]
    level = gsr.mean(1)
    within = level - np.array([level[subj == s].mean() for s in subj])  # remove subject level
    assert _corr(within, aro) > 0.5


def test_baseline_segment_and_feature_mode():
    ds = make_synthetic_physio(2, 3, trial_seconds=4.0, baseline_seconds=2.0, eeg_channels=6,
                               chunk_size=128, features={"eeg": "de", "gsr": "stats"},
                               feature_layout="bands", baseline="subtract_features")
    assert ds.info["baseline_samples"] == 256
    mods = {m.name: (m.seq_len, m.dim) for m in ds.spec.modalities}
    assert mods == {"eeg": (4, 24), "eog": (768, 2), "gsr": (4, 6)}  # 4 windows per trial
    w = ds.post_split(ds)
    assert {m.name: (m.seq_len, m.dim) for m in w.spec.modalities} == {
        "eeg": (4, 6), "eog": (128, 2), "gsr": (6, 1)}
    assert len(w) == 2 * 3 * 4


def test_channel_groups_and_errors():
    ds = make_synthetic_physio(2, 2, trial_seconds=2.0, eeg_channels=3, chunk_size=128,
                               channel_groups=["eeg", "gsr"])
    assert ds.spec.modality_names == ["eeg", "gsr"]
    with pytest.raises(ConfigError, match="choose from"):
        make_synthetic_physio(2, 2, channel_groups=["ecg"])
    with pytest.raises(ConfigError, match="feature mode"):
        make_synthetic_physio(2, 2, trial_seconds=2.0, baseline_seconds=1.0, chunk_size=64,
                              baseline="subtract_features")


def test_registered_dataset_reads_its_config():
    ds = build_dataset({"name": "synthetic_physio", "n_subjects": 2, "n_trials": 2,
                        "trial_seconds": 2.0, "eeg_channels": 2, "target": "arousal",
                        "modalities": None, "normalize": True})
    assert len(ds) == 4 and ds.post_split is not None


@pytest.mark.parametrize("protocol, n_folds", [("subject_dependent", 5), ("loso", 3)])
def test_config_switches_protocol_with_one_override(protocol, n_folds):
    from emodistill.config import compose
    from emodistill.training.run import prepare

    cfg = compose(dataset="synthetic_physio", method="unimodal", overrides=[
        f"protocol.name={protocol}", "dataset.n_subjects=3", "dataset.n_trials=5",
        "dataset.trial_seconds=2.0", "dataset.eeg_channels=2", "dataset.chunk_size=128",
        "method.modality=eeg"])
    prep = prepare(cfg)
    assert len(prep.folds) == n_folds


def test_physio_options_object_and_keywords_are_one_thing():
    kw = dict(chunk_size=128, overlap=64, threshold=4.0, comparison=">=")
    by_kw = make_synthetic_physio(2, 2, trial_seconds=2.0, eeg_channels=3, **kw)
    opts = PhysioOptions(**{**vars(SYNTHETIC_PHYSIO_OPTIONS), **kw})
    by_obj = make_synthetic_physio(2, 2, trial_seconds=2.0, eeg_channels=3, options=opts)
    assert by_kw.fingerprint() == by_obj.fingerprint()
    assert by_kw.info == by_obj.info
    w = by_kw.post_split(by_kw)
    assert len(w) == 2 * 2 * 3  # 256 samples, 128-sample windows every 64: three per trial
    with pytest.raises(ConfigError, match="'synthetic_physio'.*unexpected keyword.*'chunk'"):
        build_dataset({"name": "synthetic_physio", "chunk": 3})
