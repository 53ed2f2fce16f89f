"""MAHNOB-HCI loader tests on tiny BDF sessions written with pyEDFlib.

The fixture mirrors the real layout: ``Sessions/<id>/Part_<p>_S_Trial<k>_emotion.bdf``
with the 47 BioSemi channels (32 EEG, EXG1-8, GSR1-2, Erg1-2, Resp, Temp, Status)
at 256 Hz, a pre-stimulus period, the stimulus and a post-stimulus period, the
stimulus onset/offset as status events with the upper status bits set, and a
``session.xml`` with the felt* attributes. Only the durations are shorter than
the real ones (30 s before and after the stimulus).
"""

import numpy as np
import pytest

pyedflib = pytest.importorskip("pyedflib", reason="the 'eeg' extra (pyedflib) is not installed")

from emodistill.data.cache import FeatureCache  # noqa: E402
from emodistill.data.formats.mahnob import (  # noqa: E402
    find_stimulus,
    load_mahnob,
    read_session_xml,
)
from emodistill.data.protocols import make_folds  # noqa: E402
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError  # noqa: E402
from helpers.mahnob import PRE, UPPER_BITS, write_bdf, write_xml  # noqa: E402

# session id: (subject, stimulus seconds, valence, arousal, dominance, predictability, emo, video)
SESSIONS = {
    "2": (1, 4.0, 7, 3, 5, 6, 4, "52.avi"),
    "4": (1, 5.0, 2, 8, 3, 4, 3, "80.avi"),
    "6": (1, 6.0, 5, 6, 7, 5, 0, "69.avi"),
    "132": (2, 4.0, 8, 7, 6, 6, 11, "52.avi"),
    "134": (2, 5.0, 3, 2, 4, 2, 5, "80.avi"),
    "136": (2, 4.5, 6, 5, 5, 7, 12, "69.avi"),
    "262": (3, 4.0, 1, 9, 2, 3, 6, "52.avi"),
    "264": (3, 4.0, 9, 1, 8, 8, 1, "80.avi"),
    "266": (3, 5.0, 4, 4, 4, 4, 2, "69.avi"),
}


@pytest.fixture(scope="module")
def mahnob_root(tmp_path_factory):
    import warnings

    root = tmp_path_factory.mktemp("mahnob")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyEDFlib: header fields truncated to 8 chars
        for sid, (subj, secs, v, a, d, p, emo, video) in SESSIONS.items():
            folder = root / "Sessions" / sid
            folder.mkdir(parents=True)
            bdf = f"Part_{subj}_S_Trial{int(sid) % 10}_emotion.bdf"
            write_bdf(folder / bdf, secs, v)
            write_xml(folder / "session.xml", sid, subj, v, a, d, p, emo, video, bdf, cut=secs)
        other = root / "Sessions" / "1000"  # a non-emotion session: skipped
        other.mkdir()
        write_xml(other / "session.xml", "1000", 1, 0, 0, 0, 0, 0, "x.avi", "none.bdf",
                   emotion=False)
    return root


def _load(root, **kw):
    return load_mahnob(root, baseline_seconds=PRE, chunk_size=128, **kw)


def test_session_xml_and_status_events(mahnob_root):
    meta = read_session_xml(mahnob_root / "Sessions" / "4" / "session.xml")
    assert (meta["feltVlnc"], meta["feltArsl"], meta["subject"]) == ("2", "8", "1")
    assert meta["bdf"] == "Part_1_S_Trial4_emotion.bdf" and meta["mediaFile"] == "80.avi"
    st = np.full(100, UPPER_BITS)
    st[20:25] += 1
    st[60:65] += 2
    assert find_stimulus(st) == (20, 60)
    with pytest.raises(DataFormatError, match="two"):
        find_stimulus(np.full(100, UPPER_BITS))


def test_loads_stimulus_segments_with_labels_and_groups(mahnob_root):
    ds = _load(mahnob_root, channel_groups=["eeg", "gsr"])
    assert len(ds) == len(SESSIONS) and ds.info["skipped"] == {
        "1000": "no feltArsl/feltVlnc in session.xml (not an emotion trial)"}
    assert ds.ids.tolist() == [f"session{s}" for s in SESSIONS]
    assert (ds.spec.modality("eeg").dim, ds.spec.modality("gsr").dim) == (32, 1)
    lengths = ds.mask["eeg"].sum(1).numpy()
    expect = [int((PRE + s[1]) * 128) for s in SESSIONS.values()]
    assert lengths.tolist() == expect  # baseline + stimulus, resampled to 128 Hz
    # the GSR ramp holds the recording time in ms: the trial starts PRE s before the onset
    gsr = ds.features["gsr"][1, :, 0].numpy()
    assert gsr[64] == pytest.approx(1000 * 64 / 128, abs=1.0)
    assert gsr[lengths[1] - 64] == pytest.approx(1000 * (lengths[1] - 64) / 128, abs=1.0)
    val = [s[2] for s in SESSIONS.values()]
    assert ds.targets["valence"].tolist() == [int(v > 5) for v in val]
    assert ds.targets["valence_rating"].tolist() == val
    assert ds.targets["predictability"].tolist() == [int(s[5] > 5) for s in SESSIONS.values()]
    emo = ds.spec.target("emotion")
    assert emo.class_names == ("neutral", "anger", "disgust", "fear", "joy", "sadness",
                               "surprise", "amusement", "anxiety")
    assert ds.targets["emotion"].tolist()[:2] == [4, 3]  # joy, fear
    assert ds.groups["subject"].tolist() == ["s01"] * 3 + ["s02"] * 3 + ["s03"] * 3
    assert ds.groups["video"].tolist()[:2] == ["52.avi", "80.avi"]
    # EEG: the 10 Hz sine survives resampling with its amplitude (5 + valence)
    fp1 = ds.features["eeg"][0, 128:384, 0].numpy()
    assert np.sqrt(2) * fp1.std() == pytest.approx(5 + 7, rel=0.1)


def test_windows_cover_the_stimulus_only(mahnob_root):
    ds = _load(mahnob_root, channel_groups=["gsr"])
    w = ds.post_split(ds)
    per_trial = [int(s[1]) for s in SESSIONS.values()]  # whole 1 s windows of the stimulus
    assert len(w) == sum(per_trial)
    first = w.features["gsr"][0, :, 0].numpy()
    assert first[0] == pytest.approx(1000 * PRE, abs=1.0)  # starts at the onset
    capped = _load(mahnob_root, channel_groups=["gsr"], max_windows=2)
    assert len(capped.post_split(capped)) == 2 * len(SESSIONS)


def test_mne_backend_reads_the_same_signals(mahnob_root):
    pytest.importorskip("mne", reason="the 'eeg' extra (mne) is not installed")
    a = _load(mahnob_root, channel_groups=["eeg", "gsr"], sessions=["2"])
    b = _load(mahnob_root, channel_groups=["eeg", "gsr"], sessions=["2"], backend="mne")
    for m in ("eeg", "gsr"):
        np.testing.assert_allclose(a.features[m].numpy(), b.features[m].numpy(), atol=0.05)


def test_feature_mode_caches_each_session(mahnob_root, tmp_path):
    kw = dict(channel_groups=["eeg"], features="de", cache_dir=tmp_path)
    ds = _load(mahnob_root, **kw)
    assert ds.info["feature_cache"]["misses"] == len(SESSIONS)
    assert _load(mahnob_root, **kw).info["feature_cache"]["hits"] == len(SESSIONS)
    assert len(FeatureCache(tmp_path).manifests()) == len(SESSIONS)
    assert ds.mask["eeg"].sum(1).tolist() == [int(s[1]) for s in SESSIONS.values()]
    assert len(ds.post_split(ds)) == sum(int(s[1]) for s in SESSIONS.values())


@pytest.mark.parametrize("protocol, params", [("subject_dependent", {"k": 3}), ("loso", {})])
def test_protocols_keep_sessions_whole(mahnob_root, protocol, params):
    ds = _load(mahnob_root, channel_groups=["gsr"])
    folds = make_folds(ds, protocol, valid_fraction=0.5, **params)
    assert len(folds) == 3
    for fold in folds:
        owner = {}
        for part in ("train", "valid", "test"):
            for wid in ds.post_split(ds.subset(getattr(fold, part))).ids:
                trial = wid.rsplit("_w", 1)[0]
                assert owner.setdefault(trial, part) == part


def test_errors_name_the_fix(mahnob_root, tmp_path):
    with pytest.raises(ConfigError, match="no EOG channel"):
        _load(mahnob_root, channel_groups=["eog"])
    with pytest.raises(DataFormatError, match="not in the BDF"):
        _load(mahnob_root, channel_groups=["eog"], channels={"eog": ["hEOG"]})
    with pytest.raises(DataFormatError, match="lower baseline_seconds"):
        load_mahnob(mahnob_root, baseline_seconds=30.0)
    with pytest.raises(DataNotFoundError, match="session"):
        load_mahnob(tmp_path)
    with pytest.raises(DataNotFoundError, match="not found"):
        _load(mahnob_root, sessions=["9"])
    custom = _load(mahnob_root, channel_groups=["eog"], channels={"eog": ["EXG4", "EXG5"]},
                   sessions=["2"])
    assert custom.spec.modality("eog").dim == 2


def test_registered_config_loads(mahnob_root):
    from emodistill.config import compose, to_container
    from emodistill.data.registry import build_dataset

    cfg = compose(dataset="mahnob", method="unimodal", overrides=[
        f"dataset.root={mahnob_root}", "dataset.baseline_seconds=2.0", "dataset.chunk_size=128",
        "dataset.sessions=['2','4']"])
    ds = build_dataset(to_container(cfg.dataset))
    assert len(ds) == 2 and ds.spec.modality_names == ["eeg"]
