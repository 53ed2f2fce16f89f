"""kd_feature with ``feature_loss: contrastive`` (HKD-MER's feature-level KD, InfoNCE)."""

import math

import pytest
import torch

from emodistill.config import load_group, to_container
from emodistill.errors import ConfigError
from emodistill.models import build_method
from helpers.mkd import TARGET, make_batch, spec

SMALL = dict(width=16, layers=1, heads=2, head_width=16, kernel_size=8, stride=4)
STUDENT = {"name": "physio_student", **SMALL}


def _model(**kw):
    torch.manual_seed(0)
    t = build_method("physio_teacher", spec=spec(), target=TARGET, params=SMALL)
    m = build_method("kd_feature", spec=spec(), target=TARGET, params={
        "modality": "eog", "student": STUDENT, "teacher": t, "feature_loss": "contrastive",
        **kw})
    return m, t


def _infonce(zs, zt, temperature):
    # written out: row i of the student against every teacher row, the positive is row i
    zs = zs / zs.norm(dim=-1, keepdim=True)
    zt = zt / zt.norm(dim=-1, keepdim=True)
    sim = zs @ zt.T / temperature  # [B, B]
    return -(sim.diagonal() - sim.logsumexp(dim=-1)).mean()


def test_the_feature_term_is_the_infonce_of_projected_student_vs_teacher_features():
    model, t = _model(feature_temperature=0.25, feature_weight=0.3, kd_weight=0.7)
    model.eval()  # no dropout: the recomputation below sees the same student
    b = make_batch(0, n=6)
    losses = model.loss(b, model(b))
    t.eval()
    with torch.no_grad():
        zt = t(b).fused
        zs = model.projector(model(b).fused)
    want = _infonce(zs, zt, 0.25)
    assert torch.allclose(losses["feature"], want, atol=1e-5)
    # a real contrast, not a constant: log(B) at chance, below for aligned rows
    assert float(want) != pytest.approx(math.log(6), abs=1e-3)
    assert torch.allclose(losses["loss"] - losses["task"],
                          0.7 * losses["kd"] + 0.3 * losses["feature"], atol=1e-6)
    # another temperature gives another value (the option is used)
    other, _ = _model(feature_temperature=1.0)
    other.eval()
    assert not torch.allclose(other.loss(b, other(b))["feature"], want, atol=1e-4)


def test_no_gradient_reaches_the_teacher_when_detached_and_it_does_when_not():
    model, t = _model()
    model.train()
    b = make_batch(1, n=8)
    model.loss(b, model(b))["feature"].backward()
    assert all(p.grad is None for p in t.parameters())
    assert model.projector.weight.grad is not None
    assert model.projector.weight.grad.abs().sum() > 0
    # detach_teacher=False (MKD's feedback / look-ahead): the teacher's feature gets gradient
    model.zero_grad()
    t.train()
    t_out = t(b)
    terms = model.distill_terms(model(b), t_out, detach_teacher=False)
    terms["feature"].backward()
    grads = [p.grad for p in t.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_a_batch_of_one_row_has_no_negatives_and_a_zero_term():
    model, _ = _model()
    model.eval()
    b = make_batch(2, n=1)
    with torch.no_grad():
        assert float(model.loss(b, model(b))["feature"]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("key", "value", "msg"), [
    ("feature_loss", "infonce", r"feature_loss='infonce'; use one of mse, cosine, l1, contrastive"),
    ("feature_temperature", 0.0, r"feature_temperature=0.0; it must be a finite number > 0"),
    ("feature_temperature", -0.1, r"feature_temperature=-0.1"),
    ("feature_temperature", float("nan"), r"feature_temperature=nan"),
    ("feature_temperature", True, r"feature_temperature=True"),
    ("feature_temperature", "0.1", r"feature_temperature='0.1'"),
])
def test_bad_values_are_refused_naming_the_key_and_the_fix(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        _model(**{key: value})


def test_the_eeg_config_is_eeg_kd_feature_with_the_contrastive_term():
    cfg = to_container(load_group("method", "eeg_kd_feature_hkd"))["method"]
    base = to_container(load_group("method", "eeg_kd_feature"))["method"]
    hkd = {k: cfg.pop(k) for k in ("feature_loss", "feature_temperature", "feature_weight")}
    assert hkd == {"feature_loss": "contrastive", "feature_temperature": 0.1,
                   "feature_weight": 0.1}
    assert base["feature_loss"] == "mse" and "feature_temperature" not in base
    assert cfg == {k: v for k, v in base.items() if k not in hkd}
