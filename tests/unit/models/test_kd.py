import pytest
import torch

from emodistill.config import load_group, to_container
from emodistill.data.spec import TargetSpec
from emodistill.errors import ConfigError
from emodistill.models import build_method
from emodistill.models.kd import FeatureKD, HintonKD
from helpers.mkd import TARGET, make_batch, spec

SMALL = dict(width=16, layers=1, heads=2, head_width=16, kernel_size=8, stride=4)
STUDENT = {"name": "physio_student", **SMALL}


def teacher(**kw):
    return build_method("physio_teacher", spec=spec(), target=TARGET, params={**SMALL, **kw})


def test_hinton_loss_is_ce_plus_scaled_kl_and_teacher_gets_no_gradient():
    t = teacher()
    model = build_method("hinton_kd", spec=spec(), target=TARGET, params={
        "modality": "eog", "student": STUDENT, "teacher": t, "ce_weight": 0.3,
        "kd_weight": 0.7, "temperature": 2.0})
    b = make_batch(0, n=6)
    out = model(b)
    losses = model.loss(b, out)
    t.eval()
    with torch.no_grad():
        zt = t(b).preds
    q = torch.softmax(zt / 2, -1)
    kl = (q * (q.log() - torch.log_softmax(out.preds / 2, -1))).sum(-1).mean() * 4
    ce = torch.nn.functional.cross_entropy(out.preds, b.target)
    assert torch.allclose(losses["kd"], kl, atol=1e-5)
    assert torch.allclose(losses["loss"], 0.3 * ce + 0.7 * kl, atol=1e-5)
    losses["loss"].backward()
    assert all(p.grad is None for p in t.parameters())
    assert all(p.grad is not None for p in model.student.parameters())


def test_teacher_is_not_a_submodule_and_not_saved():
    t = teacher()
    model = build_method("kd_feature", spec=spec(), target=TARGET,
                         params={"modality": "eog", "student": STUDENT, "teacher": t})
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == {"student", "projector"}
    assert not any(k.startswith("_teacher") or "branches" in k for k in model.state_dict())
    assert model.modalities == ["eog"]


def test_projection_is_sized_from_the_teacher_fused_feature():
    t = teacher()  # concat fusion: 2 modalities x 16
    model = build_method("kd_feature", spec=spec(), target=TARGET,
                         params={"modality": "eeg", "student": STUDENT, "teacher": t})
    assert isinstance(model, FeatureKD)
    assert (model.student_dim, model.teacher_dim) == (16, 32)
    model.eval()  # deterministic student (no dropout) for the comparison
    b = make_batch(0, n=6)
    losses = model.loss(b, model(b))
    assert set(losses) == {"loss", "task", "kd", "feature"}
    t.eval()
    with torch.no_grad():
        zt = t(b).fused
    zs = model.projector(model(b).fused)
    assert torch.allclose(losses["feature"], torch.nn.functional.mse_loss(zs, zt), atol=1e-6)


def test_teacher_gates_are_logged_from_validation_losses():
    model = build_method("hinton_kd", spec=spec(), target=TARGET,
                         params={"modality": "eog", "student": STUDENT, "teacher": teacher()})
    b = make_batch(0, n=6)
    model.train()
    model.loss(b, model(b))
    assert model.epoch_logs() == {}  # training batches are not counted
    model.eval()
    model.loss(b, model(b))
    logs = model.epoch_logs()
    assert set(logs) == {"teacher_gate_eeg", "teacher_gate_eog"}
    assert all(0 < v < 1 for v in logs.values())
    assert model.epoch_logs() == {}


def test_feature_width_mismatch_is_a_clear_error():
    msg = r"teacher_dim=7 but the teacher's fused feature has width 32"
    with pytest.raises(ConfigError, match=msg):
        build_method("kd_feature", spec=spec(), target=TARGET, params={
            "modality": "eeg", "student": STUDENT, "teacher": teacher(), "teacher_dim": 7})
    # a model built for one teacher width meeting another teacher at run time
    model = build_method("kd_feature", spec=spec(), target=TARGET,
                         params={"modality": "eeg", "student": STUDENT, "teacher_dim": 32})
    model.attach_teacher(teacher(fusion="sum"))  # width 16
    b = make_batch(0, n=6)
    with pytest.raises(ConfigError, match="width 32 but the teacher's fused feature has width 16"):
        model.loss(b, model(b))


def test_student_without_teacher_runs_and_loads_without_projection():
    t = teacher()
    trained = build_method("kd_feature", spec=spec(), target=TARGET,
                           params={"modality": "eog", "student": STUDENT, "teacher": t})
    state = trained.state_dict()
    assert any(k.startswith("projector.") for k in state)
    deployed = build_method("kd_feature", spec=spec(), target=TARGET,
                            params={"modality": "eog", "student": STUDENT, "teacher": None})
    assert deployed.projector is None
    deployed.load_state_dict(state)  # strict: the unused projection weights are dropped
    trained.eval()
    deployed.eval()
    b = make_batch(0, n=6)
    assert torch.allclose(trained(b).preds, deployed(b).preds)
    losses = deployed.loss(b, deployed(b))
    assert set(losses) == {"loss", "task"}


def test_training_without_teacher_says_how_to_configure_one():
    model = build_method("hinton_kd", spec=spec(), target=TARGET,
                         params={"modality": "eog", "student": STUDENT})
    model.train()
    b = make_batch(0, n=6)
    with pytest.raises(ConfigError, match="method.teacher"):
        model.loss(b, model(b))


def test_teacher_with_another_target_is_refused():
    other = TargetSpec("sentiment", "regression", value_range=(-3, 3))
    t = build_method("physio_teacher", spec=spec(), target=other, params=SMALL)
    with pytest.raises(ConfigError, match="train the teacher on the same dataset.target"):
        build_method("hinton_kd", spec=spec(), target=TARGET,
                     params={"modality": "eog", "student": STUDENT, "teacher": t})


def test_any_single_modality_method_can_be_the_student_and_regression_works():
    reg = TargetSpec("sentiment", "regression", value_range=(-3, 3))
    t = build_method("feature_fusion", spec=spec(), target=reg, params={"width": 8})
    model = build_method("kd_feature", spec=spec(), target=reg, params={
        "modality": "eeg", "student": {"name": "unimodal", "width": 8}, "teacher": t})
    assert isinstance(model, HintonKD) and model.teacher_dim == 16
    b = make_batch(0, n=6)
    b.target = torch.randn(6)
    losses = model.loss(b, model(b))
    assert losses["kd"].ndim == 0 and torch.isfinite(losses["loss"])


def test_student_that_needs_a_teacher_is_refused():
    with pytest.raises(ConfigError, match="itself needs a teacher"):
        build_method("hinton_kd", spec=spec(), target=TARGET,
                     params={"modality": "eog", "student": {"name": "mkd"}})


def _method_cfg(name: str) -> dict:
    return to_container(load_group("method", name))["method"]  # inherit: resolved


@pytest.mark.parametrize("name", ["hinton_kd", "kd_feature", "mkd", "mkd_lookahead"])
def test_kd_configs_use_the_same_student_and_teacher_as_the_baselines(name):
    cfg = _method_cfg(name)
    student = {k: v for k, v in _method_cfg("physio_student").items() if k != "modality"}
    assert cfg["student"] == student
    teacher = dict(cfg["teacher"]["method"])
    # MKD's teacher reads EEG + EOG (docs/methods/mkd.md); the other KD methods every modality
    want = ["eeg", "eog"] if name.startswith("mkd") else None
    assert teacher.pop("modalities", None) == want
    assert teacher == _method_cfg("physio_teacher")
    # the ablations differ only in what they add (mkd: also the teacher's modality set)
    if name != "hinton_kd":
        hinton = _method_cfg("hinton_kd")
        mine = {k: cfg[k] for k in hinton if k != "name"}
        mine["teacher"] = {**cfg["teacher"], "method": teacher}
        assert mine == {k: v for k, v in hinton.items() if k != "name"}
