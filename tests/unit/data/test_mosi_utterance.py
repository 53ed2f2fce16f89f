"""MOSI utterance features (Poria et al. 2017) on the real files in ../shared/data."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from emodistill.config import compose
from emodistill.data.formats.mosi_utterance import load_mosi_utterance
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError
from emodistill.training.run import prepare
from helpers import shared_path

pytestmark = pytest.mark.shared_data

DROPPED = {"5W7Z1C_fDaE_24", "BioHAh1qJAQ_30", "lXPQBPVc5Cw_30", "2WGyTLYerpo_44"}


@pytest.fixture(scope="module")
def root():
    return shared_path("mosi_utterance")


@pytest.fixture(scope="module")
def polarity(root):
    return load_mosi_utterance(root)


@pytest.fixture(scope="module")
def sentiment(root):
    return load_mosi_utterance(root, target="sentiment")


def test_poria_split_counts(polarity):
    ds = polarity
    assert len(ds) == 2199
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [
        ("text", 1, 100), ("audio", 1, 73), ("vision", 1, 100)]
    part = ds.splits["poria"]
    assert (part == "train").sum() == 1447 and (part == "test").sum() == 752
    vid = ds.groups["video"]
    train_v, test_v = set(vid[part == "train"]), set(vid[part == "test"])
    assert len(train_v) == 62 and len(test_v) == 31 and not train_v & test_v
    y = ds.targets["polarity"].numpy()
    assert round(float(y[part == "test"].mean()), 3) == 0.621  # 62.1% positive
    assert ds.spec.target().name == "polarity"
    assert len(set(ds.ids.tolist())) == 2199


def test_features_are_finite_and_not_constant(polarity):
    for m, x in polarity.features.items():
        assert np.isfinite(x.numpy()).all(), m
        # (32 of the 100 3D-CNN video features are dead ReLUs, constant 0)
        assert x[:, 0].std(0).gt(0).sum() > 0.6 * x.shape[-1], m


def test_standard_split_from_label_file(polarity):
    std = polarity.splits["standard"]
    counts = {s: int((std == s).sum()) for s in ("train", "valid", "test", "")}
    assert counts == {"train": 1281, "valid": 229, "test": 685, "": 4}
    assert set(polarity.ids[std == ""]) == DROPPED


def test_sentiment_join_drops_and_logs_four_ids(root, caplog):
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        ds = load_mosi_utterance(root, target="sentiment")
    assert len(ds) == 2195
    assert set(ds.info["dropped_ids"]) == DROPPED
    assert not DROPPED & set(ds.ids.tolist())
    msgs = [r.getMessage() for r in caplog.records if "no continuous label" in r.getMessage()]
    assert msgs and all(i in msgs[0] for i in DROPPED)
    assert ds.spec.target().name == "sentiment"


def test_sentiment_values_agree_with_binary_labels(sentiment):
    s = sentiment.targets["sentiment"].numpy()
    p = sentiment.targets["polarity"].numpy()
    assert s.min() >= -3 and s.max() <= 3 and np.isfinite(s).all()
    # the binary label is negative vs non-negative of the continuous score on every row
    np.testing.assert_array_equal(p, (s >= 0).astype(int))
    assert len(np.unique(s)) > 20


def _cfg(root, *overrides, method="late_fusion"):
    return compose(dataset="mosi_utterance", method=method,
                   overrides=[f"dataset.root={root}", "method.width=8", *overrides])


FIXED = ["train.selection=last", "train.scheduler=none", "train.recipe_from=test"]


def test_poria_protocol_carves_validation_by_whole_videos(root, polarity):
    (fold,) = prepare(_cfg(root, *FIXED), polarity).folds
    vid = polarity.groups["video"]
    part = polarity.splits["poria"]
    assert len(fold.test) == 752 and len(fold.train) + len(fold.valid) == 1447
    assert set(fold.test) == set(np.flatnonzero(part == "test"))
    tr, va, te = (set(vid[getattr(fold, k)]) for k in ("train", "valid", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert 5 <= len(va) <= 15  # ~15% of 62 train videos


@pytest.mark.parametrize("method", ["late_fusion", "early_fusion", "feature_fusion"])
def test_standard_split_refused_for_learned_features(root, polarity, method):
    cfg = _cfg(root, "protocol.split=standard", method=method)
    with pytest.raises(ConfigError, match=r"leaky for \['text', 'vision'\].*allow_leaky"):
        prepare(cfg, polarity)


def test_standard_split_refused_for_unimodal_text(root, polarity):
    cfg = _cfg(root, "protocol.split=standard", "method.modality=text", method="unimodal")
    with pytest.raises(ConfigError, match=r"leaky for \['text'\]"):
        prepare(cfg, polarity)


def test_standard_split_allowed_when_explicitly_leaky(root, polarity):
    (fold,) = prepare(_cfg(root, "protocol.split=standard", "protocol.allow_leaky=true"),
                      polarity).folds
    assert (len(fold.train), len(fold.valid), len(fold.test)) == (1281, 229, 685)


def test_standard_split_allowed_for_audio_only(root, polarity):
    cfg = _cfg(root, "protocol.split=standard", "method.modality=audio", method="unimodal")
    (fold,) = prepare(cfg, polarity).folds
    assert len(fold.test) == 685
    cfg = _cfg(root, "protocol.split=standard", "dataset.modalities=[audio]",
               method="feature_fusion")
    assert prepare(cfg, polarity).modalities == ["audio"]


# ------------------------------------------------------------------ broken copies
@pytest.fixture
def copy(root, tmp_path):
    dst = tmp_path / "mosi"
    dst.mkdir()
    for f in ("transcripts.csv", "text_train.csv", "text_test.csv", "mosi_standard_labels.csv"):
        shutil.copy(root / f, dst / f)
    for d in ("audio", "video"):
        shutil.copytree(root / d, dst / d)
    return dst


def test_copy_loads_like_the_original(copy, polarity):
    assert load_mosi_utterance(copy).fingerprint() == polarity.fingerprint()


def _rewrite(path, fn):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def test_wrong_column_count_names_file_and_width(copy):
    _rewrite(copy / "video" / "video_test0.csv",
             lambda ls: [",".join(line.split(",")[1:]) for line in ls])
    with pytest.raises(DataFormatError, match=r"video_test0\.csv.*100 columns, expected 101"):
        load_mosi_utterance(copy)


def test_misaligned_labels_are_detected(copy):
    def swap(lines):
        lab = [line.rsplit(",", 1)[1] for line in lines]
        j = next(i for i in range(1, len(lab)) if lab[i] != lab[0])
        lines[0], lines[j] = lines[j], lines[0]
        return lines

    _rewrite(copy / "audio" / "audio_train0.csv", swap)
    with pytest.raises(DataFormatError, match="audio disagree.*not row-aligned"):
        load_mosi_utterance(copy)


def test_row_counts_differ(copy):
    _rewrite(copy / "audio" / "audio_test0.csv", lambda ls: ls[:-1])
    with pytest.raises(DataFormatError, match=r"row counts differ \(text 752, audio 751"):
        load_mosi_utterance(copy)


def test_non_numeric_csv(copy):
    _rewrite(copy / "text_test.csv", lambda ls: ["a,b,c"] + ls[1:])
    with pytest.raises(DataFormatError, match=r"text_test\.csv.*numeric CSV"):
        load_mosi_utterance(copy)


def test_row_index_outside_transcripts(copy):
    _rewrite(copy / "transcripts.csv", lambda ls: ls[:1000])
    with pytest.raises(DataFormatError, match="row index outside transcripts.csv"):
        load_mosi_utterance(copy)


def test_transcripts_wrong_columns(copy):
    _rewrite(copy / "transcripts.csv", lambda ls: [line.rsplit(",", 1)[0] for line in ls])
    with pytest.raises(DataFormatError, match="expected 4 columns.*found 3"):
        load_mosi_utterance(copy)


def test_missing_feature_file(copy):
    (copy / "audio" / "audio_test0.csv").unlink()
    with pytest.raises(DataNotFoundError, match="audio_test0.csv"):
        load_mosi_utterance(copy)


def test_sentiment_needs_label_file(copy):
    (copy / "mosi_standard_labels.csv").unlink()
    ds = load_mosi_utterance(copy)  # polarity still works, without a standard split
    assert "standard" not in ds.splits and len(ds) == 2199
    with pytest.raises(DataFormatError, match="mosi_standard_labels.csv"):
        load_mosi_utterance(copy, target="sentiment")


def test_label_file_wrong_columns(copy):
    _rewrite(copy / "mosi_standard_labels.csv", lambda ls: ["id,text,score,split"] + ls[1:])
    with pytest.raises(DataFormatError, match="id,text,label,mode"):
        load_mosi_utterance(copy)


def test_bad_root_and_target(tmp_path):
    with pytest.raises(ConfigError, match="dataset.root"):
        load_mosi_utterance(None)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_mosi_utterance(tmp_path / "absent")
    with pytest.raises(ConfigError, match="'valence'"):
        load_mosi_utterance(tmp_path, target="valence")
