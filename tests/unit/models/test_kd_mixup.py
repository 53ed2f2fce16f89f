"""Function-matching KD (``kd_mixup``): consistent mixing, the old loss at 0, determinism."""

import math

import pytest
import torch

from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.distill.mixup import (
    MixDraw,
    check_mixup_alpha,
    draw_mix,
    mix_batch,
    mixed_task_loss,
)
from emodistill.errors import ConfigError
from emodistill.models import build_method
from emodistill.models.kd import HintonKD, probe_batch

TARGET = TargetSpec("valence", "binary", class_names=("low", "high"))
CAP, HEADSET = 12, [0, 3, 7, 11]  # the headset's features: a subset of the cap's
STUDENT = {"name": "unimodal", "encoder": "auto", "width": 8, "layers": 1, "dropout": 0.3}


def spec() -> DatasetSpec:
    return DatasetSpec("toy", (ModalitySpec("eeg", CAP), ModalitySpec("frontal4", len(HEADSET))),
                       (TARGET,))


def make_batch(seed: int, n: int = 10):
    b = probe_batch(spec(), n)
    g = torch.Generator().manual_seed(seed)
    b.inputs["eeg"] = torch.randn(n, 1, CAP, generator=g)
    b.inputs["frontal4"] = b.inputs["eeg"][..., HEADSET].clone()
    b.target = torch.randint(0, 2, (n,), generator=g)
    return b


def teacher():
    return build_method("unimodal", spec=spec(), target=TARGET,
                        params={"modality": "eeg", "encoder": "auto", "width": 8, "layers": 1})


def kd(t=None, init_seed: int = 0, **kw) -> HintonKD:
    torch.manual_seed(init_seed)
    params = {"modality": "frontal4", "student": STUDENT, "teacher": t or teacher(),
              "temperature": 2.0, **kw}
    model = build_method("hinton_kd", spec=spec(), target=TARGET, params=params)
    assert isinstance(model, HintonKD)
    return model


def test_mixing_is_consistent_across_modalities():
    b = make_batch(0)
    draw = draw_mix(b.size, 0.7, torch.Generator().manual_seed(3))
    mixed = mix_batch(b, draw)
    # the headset view of the mixed cap is the mix of the headset views
    assert torch.allclose(mixed.inputs["eeg"][..., HEADSET], mixed.inputs["frontal4"])
    lam, perm = draw.lam, draw.perm
    want = lam[:, None, None] * b.inputs["eeg"] + (1 - lam[:, None, None]) * b.inputs["eeg"][perm]
    assert torch.allclose(mixed.inputs["eeg"], want)
    assert not torch.allclose(mixed.inputs["eeg"], b.inputs["eeg"])
    assert sorted(perm.tolist()) == list(range(b.size))
    assert bool(((lam >= 0) & (lam <= 1)).all())
    assert all(bool(v.all()) for v in mixed.mask.values())  # pooled features: all-ones masks
    assert torch.equal(mixed.target, b.target) and torch.equal(mixed.index, b.index)


def test_masks_and_presence_are_the_partners_union():
    b = make_batch(0, n=4)
    b.present["eeg"] = torch.tensor([True, False, True, True])
    draw = MixDraw(torch.full((4,), 0.5), torch.tensor([1, 0, 3, 2]))
    assert mix_batch(b, draw).present["eeg"].tolist() == [True, True, True, True]
    b.present["eeg"] = torch.tensor([False, False, True, True])
    assert mix_batch(b, draw).present["eeg"].tolist() == [False, False, True, True]


def test_beta_draws_have_the_beta_mean_and_spread():
    draw = draw_mix(20000, 0.4, torch.Generator().manual_seed(0))
    var = 1 / (4 * (2 * 0.4 + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(float(draw.lam.mean()) - 0.5) < 0.01
    assert abs(float(draw.lam.var()) - var) < 0.01


def test_mixed_task_loss_is_the_lambda_weighted_cross_entropy():
    b = make_batch(1)
    draw = draw_mix(b.size, 1.0, torch.Generator().manual_seed(0))
    logits = torch.randn(b.size, 2)
    ce = torch.nn.functional.cross_entropy
    lam, perm = draw.lam, draw.perm
    want = (lam * ce(logits, b.target, reduction="none")
            + (1 - lam) * ce(logits, b.target[perm], reduction="none")).mean()
    assert torch.allclose(mixed_task_loss(logits, b.target, draw, TARGET), want, atol=1e-6)


def test_kd_mixup_zero_gives_exactly_the_old_loss():
    t = teacher()
    b = make_batch(2)
    old, new = kd(t), kd(t, kd_mixup=0.0, kd_mixup_ce=True, kd_mixup_target="labels")
    for model in (old, new):
        model.train()
    torch.manual_seed(5)
    lo = old.loss(b, old(b))
    torch.manual_seed(5)
    ln = new.loss(b, new(b))
    assert set(lo) == set(ln) == {"loss", "task", "kd"}
    assert all(torch.equal(lo[k], ln[k]) for k in lo)


def test_mixup_is_training_only_and_equals_the_manual_loss():
    t = teacher()
    b = make_batch(3)
    plain, fm = kd(t), kd(t, kd_mixup=0.5, kd_mixup_seed=11)
    plain.eval()
    fm.eval()  # validation: no mixing, the plain loss
    assert torch.equal(plain.loss(b, plain(b))["loss"], fm.loss(b, fm(b))["loss"])
    fm.train()
    fm.student.eval()  # no dropout, so the manual loss below sees the same student
    fm.student.train = lambda mode=True: fm.student  # keep it so under fm.train()
    losses = fm.loss(b, fm(b))
    draw = draw_mix(b.size, 0.5, torch.Generator().manual_seed(11))
    mixed = mix_batch(b, draw)
    t.eval()
    with torch.no_grad():
        q = torch.softmax(t(mixed).preds / 2, -1)
    log_p = torch.log_softmax(fm.student(mixed).preds / 2, -1)
    kl = (q * (q.log() - log_p)).sum(-1).mean() * 4
    ce = torch.nn.functional.cross_entropy(fm.student(b).preds, b.target)
    assert torch.allclose(losses["kd"], kl, atol=1e-5)
    assert torch.allclose(losses["loss"], ce + kl, atol=1e-5)  # supervised term: clean batch
    losses["loss"].backward()
    assert all(p.grad is None for p in t.parameters())


def test_mixed_supervised_term_and_the_labels_placebo():
    t = teacher()
    b = make_batch(4)
    fm = kd(t, kd_mixup=1.0, kd_mixup_ce=True, kd_mixup_seed=2, kd_weight=0.5)
    fm.train()
    fm.student.eval()
    fm.student.train = lambda mode=True: fm.student
    losses = fm.loss(b, fm(b))
    draw = draw_mix(b.size, 1.0, torch.Generator().manual_seed(2))
    s_mix = fm.student(mix_batch(b, draw)).preds
    sup = mixed_task_loss(s_mix, b.target, draw, TARGET)
    assert torch.allclose(losses["task_mixed"], sup, atol=1e-6)
    assert torch.allclose(losses["loss"], sup + 0.5 * losses["kd"], atol=1e-6)
    # the placebo: the mixed labels in place of the teacher, which is never called
    placebo = kd(t, kd_mixup=1.0, kd_mixup_seed=2, kd_mixup_target="labels")
    placebo.train()
    placebo.student.eval()
    placebo.student.train = lambda mode=True: placebo.student
    placebo.teacher_outputs = None  # calling it would fail
    lp = placebo.loss(b, placebo(b))
    s_mix = placebo.student(mix_batch(b, draw)).preds
    assert torch.allclose(lp["kd"], mixed_task_loss(s_mix, b.target, draw, TARGET), atol=1e-6)


def test_the_draws_are_deterministic_for_a_seed_and_follow_the_run_seed():
    b = make_batch(5)

    def losses(model, steps=3):
        model.train()
        out = []
        for i in range(steps):
            torch.manual_seed(100 + i)  # the same dropout masks for both models
            out.append(model.loss(b, model(b))["loss"].detach())
        return torch.stack(out)

    t = teacher()
    a, a2 = losses(kd(t, kd_mixup=0.5, kd_mixup_seed=7)), losses(kd(t, kd_mixup=0.5,
                                                                       kd_mixup_seed=7))
    other = losses(kd(t, kd_mixup=0.5, kd_mixup_seed=8))
    assert torch.equal(a, a2)
    assert not torch.equal(a, other)
    # without kd_mixup_seed: the run seed (torch.initial_seed() when the method is built)
    assert kd(t, init_seed=1234, kd_mixup=0.5).kd_mixup_seed == 1234


def test_train_state_continues_the_draws_after_a_resume():
    model = kd(kd_mixup=0.5, kd_mixup_seed=3)
    gen = model.mix_generator()
    draw_mix(8, 0.5, gen)
    state = model.train_state()
    want = draw_mix(8, 0.5, gen)
    again = kd(kd_mixup=0.5, kd_mixup_seed=3)
    again.load_train_state(state)
    got = draw_mix(8, 0.5, again.mix_generator())
    assert torch.equal(want.lam, got.lam) and torch.equal(want.perm, got.perm)
    assert kd().train_state() == {}


@pytest.mark.parametrize("alpha", [-0.5, math.inf, math.nan, "strong", None])
def test_a_bad_alpha_is_refused(alpha):
    with pytest.raises(ConfigError, match="kd_mixup"):
        kd(kd_mixup=alpha)
    with pytest.raises(ConfigError, match="kd_mixup"):
        check_mixup_alpha(alpha)


def test_bad_target_token_inputs_and_crossfit_teachers_are_refused():
    with pytest.raises(ConfigError, match="kd_mixup_target='teachers'"):
        kd(kd_mixup=0.5, kd_mixup_target="teachers")
    tok = DatasetSpec("toy", (ModalitySpec("text", 30, 5, kind="tokens"),
                              ModalitySpec("frontal4", 4)), (TARGET,))
    b = probe_batch(tok, 3)  # token ids reach the loss unembedded (the frontend embeds them)
    with pytest.raises(ConfigError, match="token ids"):
        mix_batch(b, draw_mix(3, 0.5, torch.Generator().manual_seed(0)))

    class Routed(torch.nn.Module):  # stands in for a cross-fitted teacher
        target, n_outputs = TARGET, 2

        def set_routing(self, *, train: bool) -> None: ...

    with pytest.raises(ConfigError, match="cross-fitted"):
        kd(t=Routed(), kd_mixup=0.5)
