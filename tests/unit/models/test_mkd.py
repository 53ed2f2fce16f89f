import copy

import pytest
import torch

from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, UnknownNameError
from emodistill.models import build_method
from emodistill.models.kd import probe_batch
from emodistill.models.mkd import MKD

TARGET = TargetSpec("valence", "binary", class_names=("low", "high"))
SMALL = dict(width=16, layers=1, heads=2, head_width=16, kernel_size=8, stride=4,
             score_norm="batch")
TRAIN_CFG = {"lr": 1e-3, "weight_decay": 0.0, "optimizer": "adam"}


def spec() -> DatasetSpec:
    return DatasetSpec("toy", (ModalitySpec("eeg", 4, 32), ModalitySpec("eog", 2, 32)), (TARGET,))


def make_batch(seed: int, n: int = 8):
    b = probe_batch(spec(), n)
    g = torch.Generator().manual_seed(seed)
    for m in b.inputs:
        b.inputs[m] = torch.randn(b.inputs[m].shape, generator=g)
    b.target = torch.randint(0, 2, (n,), generator=g)
    return b


class FakeLit:
    """Stands in for LitMER: plain backward."""

    def manual_backward(self, loss, **kw):
        loss.backward(**kw)


def make_mkd(**kw) -> MKD:
    torch.manual_seed(0)
    teacher = build_method("physio_teacher", spec=spec(), target=TARGET, params=SMALL)
    params = {"modality": "eog", "student": {"name": "physio_student", **SMALL},
              "teacher": teacher, "lookahead_lr": 0.1, **kw}
    model = build_method("mkd", spec=spec(), target=TARGET, params=params)
    assert isinstance(model, MKD)
    return model


def teacher_state(model: MKD) -> dict:
    return {k: v.clone() for k, v in model.teacher.state_dict().items()}


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def step(model: MKD, batch, opts) -> dict:
    model.train()
    return model.training_step(batch, opts, FakeLit())


@pytest.mark.parametrize("strategy", ["first_order", "lookahead"])
def test_feedback_step_changes_the_teacher(strategy):
    model = make_mkd(feedback=strategy)
    opts = model.configure_optimizers(TRAIN_CFG)
    t0 = teacher_state(model)
    s0 = {k: v.clone() for k, v in model.state_dict().items()}
    logs = step(model, make_batch(1), opts)
    assert changed(t0, teacher_state(model))
    assert changed(s0, model.state_dict())
    assert "fb_teacher_task" in logs and "fb_student_after" in logs
    assert model.epoch_logs()["feedback_steps"] == 1.0


def test_feedback_term_alone_changes_the_teacher():
    """Without the teacher's own CE the update comes from the temporary student only."""
    model = make_mkd(feedback="lookahead", teacher_task_weight=0.0)
    opts = model.configure_optimizers(TRAIN_CFG)
    t0 = teacher_state(model)
    step(model, make_batch(1), opts)
    assert changed(t0, teacher_state(model))


def test_no_feedback_leaves_the_teacher_alone():
    model = make_mkd(feedback_every=0)
    opts = model.configure_optimizers(TRAIN_CFG)
    t0 = teacher_state(model)
    for i in range(3):
        logs = step(model, make_batch(i), opts)
    assert not changed(t0, teacher_state(model))  # eval-mode teaching: not even BN statistics
    assert not any(k.startswith("fb_") for k in logs)


def test_feedback_schedule_and_previous_batch(monkeypatch):
    model = make_mkd(feedback_every=2, feedback_start=1, feedback_data="previous")
    seen = []
    real = model.strategy

    def spy(task, teach, labelled, settings):
        seen.append((teach, labelled))
        return real(task, teach, labelled, settings)

    model.strategy = spy
    opts = model.configure_optimizers(TRAIN_CFG)
    batches = [make_batch(i) for i in range(6)]
    for b in batches:
        step(model, b, opts)
    # steps 1..6, first feedback after step 1 + 2 = 3, then 5
    pos = {id(b): i for i, b in enumerate(batches)}
    assert [pos[id(t)] for t, _ in seen] == [2, 4]
    assert [pos[id(lab)] for _, lab in seen] == [1, 3]  # the previous training batch


def test_temporary_student_never_moves_real_weights_or_statistics():
    model = make_mkd(lookahead_train_mode=True)
    b = make_batch(3)
    before = copy.deepcopy(model.state_dict())
    params = model.student_params()
    new = {k: v.detach() + 1.0 for k, v in params.items()}
    model.train()
    model.labelled_loss(new, b)
    model.teaching_loss(new, b, model.teacher_outputs(b), detach_teacher=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_teacher_optimiser_uses_teacher_lr_and_state_dict_has_no_teacher():
    model = make_mkd(teacher_lr=5e-5)
    opt_s, opt_t = model.configure_optimizers(TRAIN_CFG)
    assert opt_t.param_groups[0]["lr"] == 5e-5 and opt_s.param_groups[0]["lr"] == 1e-3
    t_ids = {id(p) for p in model.teacher.parameters()}
    assert not t_ids & {id(p) for g in opt_s.param_groups for p in g["params"]}
    assert {k.split(".")[0] for k in model.state_dict()} == {"student", "projector"}


def test_bad_feedback_options():
    with pytest.raises(UnknownNameError, match="first_order"):
        make_mkd(feedback="reinforce")
    with pytest.raises(ConfigError, match="feedback_every"):
        make_mkd(feedback_every=-1)
    with pytest.raises(ConfigError, match="feedback_data"):
        make_mkd(feedback_data="valid")
    with pytest.raises(ConfigError, match="lookahead_lr"):
        make_mkd(lookahead_lr=0)


def test_mkd_without_teacher_is_a_plain_student():
    model = build_method("mkd", spec=spec(), target=TARGET, params={
        "modality": "eog", "student": {"name": "physio_student", **SMALL}})
    model.eval()
    assert model(make_batch(0)).preds.shape == (8, 2)
    with pytest.raises(ConfigError, match="method.teacher"):
        model.configure_optimizers(TRAIN_CFG)
