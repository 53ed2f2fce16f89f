"""HKD-MER: attention fusion, dominant-modality choice, ablations.

Its losses are tested in ``tests/unit/distill/test_losses.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from emodistill.config import load_group, to_container
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.protocols import Fold
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.distill.losses import soft_label_kd
from emodistill.errors import ConfigError
from emodistill.models import build_method
from emodistill.models.base import FoldContext
from emodistill.models.hkd_mer import HKDMER, ModalityAttention, choose_dominant
from emodistill.training.run import Prepared, fold_context
from helpers.hkd_mer import toy_batch as _batch
from helpers.hkd_mer import toy_model as _model
from helpers.hkd_mer import toy_spec as _spec

CONFIGS = Path(__file__).resolve().parents[3] / "src" / "emodistill" / "configs" / "method"


# --------------------------------------------------------------------------- losses
def test_forward_shapes_heads_and_attention():
    spec, target = _spec(3)
    model = _model(spec, target).eval()
    batch = _batch(spec, missing={"audio": [0, 1]})
    out = model(batch)
    assert out.preds.shape == (8, 3)
    assert set(out.logits) == {"text", "audio", "vision"}
    assert all(v.shape == (8, 3) for v in out.logits.values())
    att = torch.stack([out.aux[f"sample_attention_{m}"] for m in model.modalities], -1)
    assert torch.allclose(att.sum(-1), torch.ones(8))
    assert (att[:2, 1] == 0).all() and (att[2:, 1] > 0).all()  # absent audio gets no weight
    probs = out.aux["sample_head_audio"]
    assert probs.shape == (8, 3) and torch.allclose(probs.sum(-1), torch.ones(8))
    assert "attention_audio" not in model.epoch_logs()  # forward alone records nothing
    model.loss(batch, out)  # validation step
    assert model.epoch_logs()["attention_audio"] == pytest.approx(att[:, 1].mean().item())
    assert "attention_audio" not in model.epoch_logs()  # reset after reading


def test_attention_with_no_modality_present_gives_zeros():
    att = ModalityAttention(4, 3)
    fused, w = att(torch.randn(2, 3, 4), torch.tensor([[False] * 3, [True, False, True]]))
    assert torch.isfinite(fused).all() and (fused[0] == 0).all() and (w[0] == 0).all()
    assert w[1].sum().item() == pytest.approx(1.0) and w[1, 1] == 0


@pytest.mark.parametrize("term", ["feature_kd", "label_kd"])
def test_kd_terms_never_reach_the_dominant_modality(term):
    spec, target = _spec(2)
    model = _model(spec, target, dominant="audio").train()
    batch = _batch(spec)
    losses = model.loss(batch, model(batch))
    losses[term].backward()
    for name, p in model.named_parameters():
        if name.startswith(("encoders.audio.", "heads.audio.")):
            assert p.grad is None or p.grad.abs().sum() == 0, name
    weak = "encoders.text." if term == "feature_kd" else "heads.text."
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters() if n.startswith(weak))


def test_zero_weights_remove_kd_from_the_objective_but_still_measure_it():
    spec, target = _spec(None)
    model = _model(spec, target, feature_weight=0.0, label_weight=0.0).train()
    batch = _batch(spec, regression=True)
    losses = model.loss(batch, model(batch))
    assert losses["loss"].item() == pytest.approx((losses["task"] + losses["unimodal"]).item())
    assert losses["feature_kd"].item() > 0 and not losses["feature_kd"].requires_grad
    full = _model(spec, target, feature_weight=0.5, label_weight=2.0).train()
    fl = full.loss(batch, full(batch))
    want = fl["task"] + fl["unimodal"] + 0.5 * fl["feature_kd"] + 2.0 * fl["label_kd"]
    assert fl["loss"].item() == pytest.approx(want.item(), rel=1e-6)


def test_kd_uses_only_rows_where_both_modalities_are_present():
    spec, target = _spec(2)
    model = _model(spec, target, label_temperature=2.0).train()
    batch = _batch(spec, missing={"vision": [0, 1, 2, 3]})
    out = model(batch)
    losses = model.loss(batch, out)
    assert all(torch.isfinite(v) for v in losses.values())
    lo, keep = out.logits, torch.arange(4, 8)
    want = (soft_label_kd(lo["audio"], lo["text"], temperature=2.0, regression="l1")
            + soft_label_kd(lo["vision"][keep], lo["text"][keep], temperature=2.0,
                            regression="l1"))
    assert losses["label_kd"].item() == pytest.approx(want.item(), rel=1e-5)
    absent = _batch(spec, missing={"vision": list(range(8))})
    out = model(absent)
    only_audio = soft_label_kd(out.logits["audio"], out.logits["text"], temperature=2.0,
                               regression="l1")
    assert model.loss(absent, out)["label_kd"].item() == pytest.approx(only_audio.item(), rel=1e-5)


def test_concat_fusion_has_no_attention_outputs():
    spec, target = _spec(2)
    model = _model(spec, target, fusion="concat").eval()
    out = model(_batch(spec))
    assert out.preds.shape == (8, 2) and out.fused.shape == (8, 3 * 16)
    assert not any(k.startswith("sample_attention") for k in out.aux)


@pytest.mark.parametrize("bad,match", [
    ({"dominant": "eeg"}, "dominant='eeg'"), ({"feature_kd": "kl"}, "feature_kd"),
    ({"fusion": "sum"}, "fusion"), ({"label_weight": -1.0}, "label_weight"),
    ({"feature_temperature": 0.0}, "feature_temperature"),
    ({"dominant_probe": "oracle"}, "dominant_probe"),
])
def test_bad_parameters_are_config_errors(bad, match):
    spec, target = _spec(2)
    with pytest.raises(ConfigError, match=match):
        _model(spec, target, **bad)


def test_auto_dominant_stands_in_first_and_checkpoint_buffer_restores_the_choice():
    spec, target = _spec(2)
    auto = _model(spec, target, dominant="auto")
    assert auto.dominant == "text" and auto.weak == ["audio", "vision"]
    chosen = _model(spec, target, dominant="vision")
    state = chosen.state_dict()
    assert int(state["dominant_index"]) == 2
    auto.load_state_dict(state)  # same shapes whatever the dominant modality
    assert auto.dominant == "vision"


# ------------------------------------------------------------------- dominant choice
def _probe_data(regression: bool = False, out: Path = Path("unused"), cfg=None,
                same: bool = False) -> FoldContext:
    """``a`` predicts the label on train+valid only; ``b`` predicts it on train+test only.

    A choice that looked at the test part would pick ``b`` (``same``: b is a copy of a).
    """
    rng = np.random.default_rng(0)
    n_tr, n_va, n_te = 120, 60, 60
    n = n_tr + n_va + n_te
    y = rng.integers(0, 2, n)
    sign = 2.0 * y - 1.0
    a = rng.standard_normal((n, 4))
    b = rng.standard_normal((n, 4))
    tr, va, te = np.arange(n_tr), np.arange(n_tr, n_tr + n_va), np.arange(n_tr + n_va, n)
    a[np.r_[tr, va], 0] += 3 * sign[np.r_[tr, va]]
    b[np.r_[tr, te], 0] += 3 * sign[np.r_[tr, te]]
    b[va, 0] += 3 * rng.choice([-1.0, 1.0], n_va)  # b is pure noise on valid
    if same:
        b = a.copy()
    target = (TargetSpec("y", "regression", value_range=(-3.0, 3.0)) if regression
              else TargetSpec("y", "binary", class_names=("neg", "pos")))
    spec = DatasetSpec(name="probe", modalities=(ModalitySpec("b", 4, 1), ModalitySpec("a", 4, 1)),
                       targets=(target,), group_keys=("video",))
    y_t = sign.astype(np.float32) if regression else y
    ds = MultimodalDataset(spec, {"a": a, "b": b}, targets={"y": y_t},
                           ids=[f"s{i}" for i in range(n)], groups={"video": np.arange(n)})
    cfg = cfg if cfg is not None else OmegaConf.create({"seed": 1, "dataset": {"normalize": True}})
    fold = Fold("f", tr, va, te, "video")
    return fold_context(Prepared(cfg, ds, target, ["b", "a"], [fold]), fold, out)


@pytest.mark.parametrize("regression", [False, True])
def test_linear_probe_picks_the_best_modality_on_valid_never_test(regression):
    ctx = _probe_data(regression)
    assert set(ctx.parts) == {"train", "valid"}  # the test part is not even handed over
    rec = choose_dominant(ctx, ["b", "a"], probe="linear")
    assert rec["dominant"] == "a" and rec["part"] == "valid"
    assert rec["metric"] == ("mae" if regression else "acc")
    if regression:
        assert rec["scores"]["a"] < rec["scores"]["b"]
    else:
        assert rec["scores"]["a"] > 0.9 and rec["scores"]["b"] < 0.75


def test_ties_go_to_the_first_modality():
    ctx = _probe_data(same=True)
    assert choose_dominant(ctx, ["b", "a"])["dominant"] == "b"
    assert choose_dominant(ctx, ["a", "b"])["dominant"] == "a"


def test_prepare_fold_records_the_choice(tmp_path):
    params = {"dominant": "auto", "dominant_probe": "linear", "modalities": ["b", "a"]}
    assert HKDMER.prepare_fold(_probe_data(out=tmp_path / "f"), params) == {"dominant": "a"}
    rec = json.loads((tmp_path / "f" / "dominant.json").read_text())
    assert rec["dominant"] == "a" and rec["how"] == "auto" and set(rec["scores"]) == {"a", "b"}
    fixed = HKDMER.prepare_fold(_probe_data(out=tmp_path / "g"), {**params, "dominant": "b"})
    assert fixed == {"dominant": "b"}
    assert json.loads((tmp_path / "g" / "dominant.json").read_text())["how"] == "fixed in config"


# ----------------------------------------------------------------------- configs
@pytest.mark.parametrize("name,changed", [
    ("hkd_mer_no_feature_kd", {"feature_weight": 0.0}),
    ("hkd_mer_no_label_kd", {"label_weight": 0.0}),
    ("hkd_mer_no_kd", {"feature_weight": 0.0, "label_weight": 0.0}),
    ("hkd_mer_concat", {"fusion": "concat"}),
])
def test_ablation_configs_differ_from_the_main_config_only_where_intended(name, changed):
    main = to_container(load_group("method", "hkd_mer"))["method"]
    abl = to_container(load_group("method", name))["method"]
    assert {k: v for k, v in abl.items() if main.get(k) != v} == changed
    assert set(abl) == set(main)


def test_main_config_builds_the_documented_defaults():
    spec, target = _spec(2)
    params = dict(yaml.safe_load((CONFIGS / "hkd_mer.yaml").read_text())["method"])
    params.pop("name")
    model = build_method("hkd_mer", spec=spec, target=target, params=params)
    assert isinstance(model, HKDMER) and model.fusion == "attention"
