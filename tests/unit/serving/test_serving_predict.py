import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import emodistill
from emodistill.checkpoint import load_checkpoint
from emodistill.cli import main
from emodistill.data.formats.npz import save_npz
from emodistill.errors import DataFormatError, DataNotFoundError
from emodistill.serving.predict import SENTIMENT_SCALE, load, regression_label
from helpers.checkpoints import make_checkpoint, synthetic

BASELINES = [("unimodal", {"modality": "audio"}), ("early_fusion", {}),
             ("feature_fusion", {}), ("late_fusion", {})]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for name, params in BASELINES:
        out[name] = make_checkpoint(root / name / "model.pt", name, params=params)
    out["late_fusion_cls"] = make_checkpoint(root / "lf_cls" / "model.pt", "late_fusion",
                                             target="sentiment3")
    out["feature_fusion_vec"] = make_checkpoint(root / "ff_vec" / "model.pt", "feature_fusion",
                                                vectors=True, target="polarity")
    return out


def _engine_preds(path, ds):
    """What the training engine computes: stored normaliser, dataset batch, model."""
    ck = load_checkpoint(path)
    part = ck.standardizer.transform(ds)
    batch = part.batch(np.arange(len(ds)), ck.target.name).select(ck.model.modalities)
    with torch.no_grad():
        return ck.model.predict_values(ck.model(batch)).numpy()


@pytest.mark.parametrize("name", [b[0] for b in BASELINES])
def test_batch_size_one_from_arrays(ckpts, name):
    ds = synthetic()
    p = load(ckpts[name])
    i = 7
    arrays = {m: ds.features[m][i, : int(ds.mask[m][i].sum())].numpy() for m in p.modalities}
    res = p.predict(arrays)  # one sample: [t, D] sequences, unpadded
    assert len(res) == 1 and res.values.shape == (1,)
    expected = _engine_preds(ckpts[name], ds.subset([i]))
    np.testing.assert_allclose(res.values, expected, rtol=1e-5, atol=1e-5)
    rec = res.to_records()[0]
    assert rec["label"] in SENTIMENT_SCALE.values() and rec["modalities"] == p.modalities


@pytest.mark.parametrize("name", [b[0] for b in BASELINES])
def test_batch_matches_engine_path(ckpts, name):
    ds = synthetic()
    p = load(ckpts[name])
    res = p.predict(ds, batch_size=16)  # chunked
    np.testing.assert_allclose(res.values, _engine_preds(ckpts[name], ds), rtol=1e-5, atol=1e-5)
    assert res.ids == ds.ids.tolist()


def test_classification_output_has_class_names(ckpts):
    ds = synthetic()
    p = load(ckpts["late_fusion_cls"])
    res = p.predict(ds)
    assert res.values.shape == (len(ds), 3)
    np.testing.assert_allclose(res.values.sum(1), 1.0, atol=1e-5)
    rec = res.to_records()[0]
    assert set(rec["probabilities"]) == {"negative", "neutral", "positive"}
    assert rec["label"] == max(rec["probabilities"], key=rec["probabilities"].get)
    df = res.to_frame()
    assert {"p_negative", "p_neutral", "p_positive", "class_index"} <= set(df.columns)


def test_vector_inputs_one_sample_and_batch(ckpts):
    ds = synthetic(vectors=True)
    p = load(ckpts["feature_fusion_vec"])
    one = p.predict(text=ds.features["text"][0, 0].numpy(), audio=ds.features["audio"][0, 0])
    batch = p.predict(text=ds.features["text"][:5, 0].numpy(),
                      audio=ds.features["audio"][:5, 0].numpy())
    assert one.values.shape == (1, 2) and batch.values.shape == (5, 2)
    np.testing.assert_allclose(one.values[0], batch.values[0], atol=1e-6)
    assert one.labels[0] in ("negative", "non-negative")


# ------------------------------------------------------------ missing modalities
def test_late_fusion_missing_modality_equals_present_heads_only(ckpts):
    """Documented: late fusion averages the heads of the present modalities only."""
    ds = synthetic()
    p = load(ckpts["late_fusion"])
    sub = {"text": ds.features["text"][:6].numpy()}
    only_text = p.predict(sub, lengths={"text": ds.mask["text"][:6].sum(1).numpy()})
    batch = p.make_batch(sub, lengths={"text": ds.mask["text"][:6].sum(1).numpy()})
    with torch.no_grad():
        h = p.model.encoders["text"](batch.inputs["text"], batch.mask["text"])
        text_head = p.model.heads["text"](h).numpy()
    np.testing.assert_allclose(only_text.values, text_head, rtol=1e-5, atol=1e-6)
    assert all(r["modalities"] == ["text"] for r in only_text.to_records())
    # the same through presence flags: the given audio/vision values are ignored
    flagged = p.predict({m: ds.features[m][:6].numpy() * (1 if m == "text" else 100)
                         for m in p.modalities},
                        lengths={m: ds.mask[m][:6].sum(1).numpy() for m in p.modalities},
                        present={"audio": False, "vision": np.zeros(6, bool)})
    np.testing.assert_allclose(flagged.values, only_text.values, rtol=1e-5, atol=1e-6)


def test_feature_fusion_missing_modality_is_zero_feature(ckpts):
    """Documented: an absent modality contributes a zero feature vector."""
    ds = synthetic()
    p = load(ckpts["feature_fusion"])
    full = {m: ds.features[m][:6].numpy() for m in p.modalities}
    lengths = {m: ds.mask[m][:6].sum(1).numpy() for m in p.modalities}
    res = p.predict({k: v for k, v in full.items() if k != "audio"}, lengths=lengths)
    noise = dict(full, audio=np.random.default_rng(0).normal(size=full["audio"].shape))
    flagged = p.predict(noise, lengths=lengths, present={"audio": False})
    np.testing.assert_allclose(res.values, flagged.values, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        out = p.forward(p.make_batch(full, lengths=lengths, present={"audio": False}))
    assert torch.count_nonzero(out.features["audio"]) == 0
    assert not np.allclose(res.values, p.predict(full, lengths=lengths).values)


def test_per_sample_presence_mixed_batch(ckpts):
    ds = synthetic()
    p = load(ckpts["late_fusion"])
    arrays = {m: ds.features[m][:4].numpy() for m in p.modalities}
    pres = {"text": [True, False, True, False], "audio": [True, True, False, False]}
    res = p.predict(arrays, present=pres)
    assert [r["modalities"] for r in res.to_records()] == [
        ["text", "audio", "vision"], ["audio", "vision"], ["text", "vision"], ["vision"]]
    solo = p.predict({"vision": arrays["vision"][3:4]})
    np.testing.assert_allclose(res.values[3], solo.values[0], rtol=1e-5, atol=1e-6)


def test_unimodal_needs_its_modality(ckpts):
    ds = synthetic()
    p = load(ckpts["unimodal"])
    assert p.modalities == ["audio"]
    with pytest.raises(DataFormatError, match=r"none of the model's modalities \['audio'\]"):
        p.predict(text=ds.features["text"][:2].numpy())
    with pytest.raises(DataFormatError, match="not inputs of this model"):
        p.predict(text=ds.features["text"][:2].numpy(), audio=ds.features["audio"][:2].numpy())
    # a dataset or file with more modalities is fine: the extra ones are ignored
    assert len(p.predict(ds.subset([0, 1]))) == 2


def test_input_errors_name_the_problem(ckpts):
    ds = synthetic()
    p = load(ckpts["feature_fusion"])
    with pytest.raises(DataFormatError, match="D = 16"):
        p.predict(audio=np.zeros((2, 24, 15)))
    with pytest.raises(DataFormatError, match="longer than the trained maximum T = 24"):
        p.predict(audio=np.zeros((2, 30, 16)))
    with pytest.raises(DataFormatError, match="different batch sizes"):
        p.predict(text=ds.features["text"][:2].numpy(), audio=ds.features["audio"][:3].numpy())
    with pytest.raises(DataFormatError, match="present\\['audio'\\]"):
        p.predict(audio=ds.features["audio"][:2].numpy(), present={"audio": [True] * 3})
    with pytest.raises(DataFormatError, match="lengths"):
        p.predict(audio=ds.features["audio"][:2].numpy(), lengths={"audio": [30, 2]})
    with pytest.raises(DataFormatError, match="modalities=\\['gsr'\\]"):
        p.predict(ds, modalities=["gsr"])


def test_nonfinite_inputs_are_repaired_like_the_loaders(ckpts, caplog):
    p = load(ckpts["feature_fusion"])
    x = np.ones((1, 24, 16), np.float32)
    x[0, 3, 2] = np.inf
    with caplog.at_level("WARNING"):
        res = p.predict(audio=x)
    assert np.isfinite(res.values).all() and "non-finite" in caplog.text


def test_modalities_option_restricts_inputs(ckpts):
    ds = synthetic()
    p = load(ckpts["late_fusion"])
    a = p.predict(ds, modalities=["audio"])
    b = p.predict(audio=ds.features["audio"].numpy(),
                  lengths={"audio": ds.mask["audio"].sum(1).numpy()})
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-6)


def test_npz_file_and_cli(ckpts, tmp_path):
    ds = synthetic().subset(range(5))
    path = save_npz(ds, tmp_path / "in.npz")
    p = load(ckpts["late_fusion"])
    from_file = p.predict(path)
    np.testing.assert_allclose(from_file.values, p.predict(ds).values, atol=1e-6)
    assert from_file.ids == ds.ids.tolist()
    out = tmp_path / "pred.json"
    assert main(["predict", str(ckpts["late_fusion"]), "--input", str(path),
                 "--modalities", "text", "--output", str(out)]) == 0
    recs = json.loads(out.read_text())
    assert len(recs) == 5 and all(r["modalities"] == ["text"] for r in recs)
    np.testing.assert_allclose([r["score"] for r in recs],
                               p.predict(path, modalities=["text"]).values, atol=1e-6)
    assert main(["predict", str(ckpts["late_fusion"]), "--input", str(tmp_path / "no.npz")]) == 2


def test_load_accepts_a_fold_folder_and_top_level_alias(ckpts):
    p = emodistill.load(ckpts["late_fusion"].parent)
    assert p.method == "late_fusion" and "late_fusion" in repr(p)
    with pytest.raises(DataNotFoundError):
        load(ckpts["late_fusion"].parent / "missing.pt")


def test_package_import_stays_light():
    code = ("import sys, emodistill; assert callable(emodistill.load); "
            "assert 'torch' not in sys.modules, 'torch imported at package import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_regression_label_names():
    from emodistill.data.spec import TargetSpec

    mosi = TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0))
    assert [regression_label(v, mosi) for v in (-2.7, -0.4, 0.6, 1.49, 9.0)] == [
        "strongly negative", "neutral", "weakly positive", "weakly positive",
        "strongly positive"]
    other = TargetSpec("valence", "regression")
    assert [regression_label(v, other) for v in (-0.1, 0.0, 2.0)] == [
        "negative", "neutral", "positive"]
