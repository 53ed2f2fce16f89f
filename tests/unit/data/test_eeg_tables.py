"""EEG band-feature tables (DEAP, MAHNOB-HCI) on the real files, and broken copies."""

from __future__ import annotations

import numpy as np
import pytest

from emodistill.config import compose
from emodistill.data.formats.eeg_tables import EMOTION_CODES, load_eeg_bandpower
from emodistill.data.protocols import make_folds
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError
from emodistill.training.run import prepare
from helpers import shared_path

pytestmark = pytest.mark.shared_data
FILES = ("EEG_feature.txt", "subject_video.txt", "valence_arousal_label.txt")


@pytest.fixture(scope="module")
def deap_root():
    return shared_path("eeg_bandpower", "DEAP")


@pytest.fixture(scope="module")
def deap(deap_root):
    return load_eeg_bandpower(deap_root)


@pytest.fixture(scope="module")
def mahnob():
    return load_eeg_bandpower(shared_path("eeg_bandpower", "MAHNOB-HCI"), name="mahnob_bandpower")


def test_deap_counts_groups_and_majority(deap):
    assert len(deap) == 1216
    assert [(m.name, m.seq_len, m.dim) for m in deap.spec.modalities] == [("eeg", 1, 160)]
    assert len(np.unique(deap.groups["subject"])) == 32
    assert len(np.unique(deap.groups["video"])) == 38
    assert len(set(deap.ids.tolist())) == 1216  # one trial per subject and video
    assert set(deap.spec.group_keys) == {"subject", "video", "trial"}
    assert [t.name for t in deap.spec.targets] == ["valence", "arousal"]
    for t, majority in (("valence", 0.553), ("arousal", 0.597)):
        y = deap.targets[t].numpy()
        assert set(np.unique(y)) == {0, 1}
        assert round(float(max(y.mean(), 1 - y.mean())), 3) == majority
    assert np.isfinite(deap.features["eeg"].numpy()).all()


def test_deap_label_coding(deap_root, deap):
    # file: 1 = positive / high, 2 = negative / low; targets: 1 = high, 0 = low
    va = np.loadtxt(deap_root / "valence_arousal_label.txt")
    np.testing.assert_array_equal(deap.targets["valence"].numpy(), (va[:, 0] == 1).astype(int))
    np.testing.assert_array_equal(deap.targets["arousal"].numpy(), (va[:, 1] == 1).astype(int))
    assert deap.spec.target("valence").class_names == ("low", "high")


def test_band_layout_is_band_major(deap_root):
    flat = load_eeg_bandpower(deap_root)
    bands = load_eeg_bandpower(deap_root, layout="bands")
    assert bands.spec.modality("eeg").seq_len == 5 and bands.spec.modality("eeg").dim == 32
    f, b = flat.features["eeg"][:, 0].numpy(), bands.features["eeg"].numpy()
    np.testing.assert_array_equal(b[:, 0], f[:, :32])  # theta: columns 1-32
    np.testing.assert_array_equal(b[:, 4], f[:, 128:])  # gamma: columns 129-160


def test_mahnob_counts_and_emotion_target(mahnob):
    ds = mahnob
    assert len(ds) == 533
    assert len(np.unique(ds.groups["subject"])) == 27
    assert len(np.unique(ds.groups["video"])) == 20
    emo = ds.spec.target("emotion")
    assert emo.kind == "multiclass" and emo.num_classes == 9
    assert set(emo.class_names) == set(EMOTION_CODES.values())
    codes = np.loadtxt(shared_path("eeg_bandpower", "MAHNOB-HCI", "EEG_emotion_category.txt"))
    names = [emo.class_names[i] for i in ds.targets["emotion"].numpy()]
    assert names == [EMOTION_CODES[int(c)] for c in codes]


def test_loso_on_deap(deap):
    folds = make_folds(deap, "loso", valid_fraction=0.15)
    subj = deap.groups["subject"]
    assert len(folds) == 32
    tested = []
    for f in folds:
        te = set(subj[f.test])
        assert len(te) == 1
        assert not te & set(subj[f.train]) and not te & set(subj[f.valid])
        assert not set(subj[f.train]) & set(subj[f.valid])
        assert len(f.train) + len(f.valid) + len(f.test) == 1216
        tested += list(te)
    assert sorted(tested) == sorted(set(subj))


def test_subject_dependent_on_deap(deap):
    cfg = compose(dataset="deap_bandpower", method="feature_fusion",
                  overrides=["protocol.name=subject_dependent", "+protocol.k=5",
                             "method.width=8"])
    folds = prepare(cfg, deap).folds
    subj, trial = deap.groups["subject"], deap.ids
    assert len(folds) == 5
    all_test = np.concatenate([f.test for f in folds])
    assert sorted(all_test) == list(range(1216))  # test parts partition the data
    for f in folds:
        assert set(subj[f.test]) == set(subj[f.train]) == set(subj)
        parts = [set(trial[getattr(f, k)]) for k in ("train", "valid", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


# ------------------------------------------------------------------ broken copies
@pytest.fixture
def copy(deap_root, tmp_path):
    dst = tmp_path / "deap"
    dst.mkdir()
    (dst / "EEG_feature.txt").symlink_to(deap_root / "EEG_feature.txt")
    for f in FILES[1:]:
        (dst / f).write_bytes((deap_root / f).read_bytes())
    return dst


def _edit(path, row, text):
    lines = path.read_text().splitlines()
    lines[row] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("value", ["3\t1", "0\t2", "1\t-1"])
def test_label_outside_one_two(copy, value):
    _edit(copy / "valence_arousal_label.txt", 9, value)
    with pytest.raises(DataFormatError, match=r"row 10 holds .*only 1 .*and 2"):
        load_eeg_bandpower(copy)


def test_fractional_label_is_not_truncated(copy):
    _edit(copy / "valence_arousal_label.txt", 4, "1.5\t1")
    with pytest.raises(DataFormatError,
                       match=r"valence_arousal_label.txt: row 5 column 1 holds 1.5"):
        load_eeg_bandpower(copy)


def test_non_numeric_label(copy):
    _edit(copy / "valence_arousal_label.txt", 2, "high\tlow")
    with pytest.raises(DataFormatError, match="not a numeric"):
        load_eeg_bandpower(copy)


def test_row_counts_differ(copy):
    p = copy / "subject_video.txt"
    p.write_text("\n".join(p.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(DataFormatError,
                       match=r"row counts differ \(features 1216, subject_video 1213"):
        load_eeg_bandpower(copy)


def test_wrong_column_count(copy):
    _edit(copy / "subject_video.txt", 0, "1\t5\t7")
    with pytest.raises(DataFormatError):
        load_eeg_bandpower(copy)


def test_unknown_emotion_code(copy):
    codes = ["0", "4"] * 608
    codes[100] = "7"
    (copy / "EEG_emotion_category.txt").write_text("\n".join(codes) + "\n")
    with pytest.raises(DataFormatError, match=r"unknown emotion codes \[7\]"):
        load_eeg_bandpower(copy)


def test_missing_file_and_bad_options(copy, tmp_path):
    (copy / "subject_video.txt").unlink()
    with pytest.raises(DataNotFoundError, match="subject_video.txt"):
        load_eeg_bandpower(copy)
    with pytest.raises(ConfigError, match="layout='grid'"):
        load_eeg_bandpower(copy, layout="grid")
    with pytest.raises(ConfigError, match="dataset.root"):
        load_eeg_bandpower(None)
    with pytest.raises(DataNotFoundError):
        load_eeg_bandpower(tmp_path / "nowhere")
