"""HKD-MER with a dominant teacher trained before the students (pretrained / frozen), and its
label-level KD from cross-fitted dominant teachers."""

from __future__ import annotations

import pytest
import torch

from emodistill.errors import ConfigError
from emodistill.models import build_method
from helpers.hkd_mer import toy_batch as _batch
from helpers.hkd_mer import toy_model as _model
from helpers.hkd_mer import toy_spec as _spec


def _dominant_init(spec, target):
    torch.manual_seed(5)
    uni = build_method("unimodal", spec=spec, target=target,
                       params={"modality": "text", "width": 16})
    state = uni.state_dict()
    init = {k.replace("encoders.text.", "encoder.", 1): v for k, v in state.items()
            if k.startswith("encoders.text.")}
    return uni, init | {k: v for k, v in state.items() if k.startswith("head.")}


def test_frozen_dominant_starts_from_the_teacher_and_never_moves():
    spec, target = _spec(2)
    uni, init = _dominant_init(spec, target)
    model = _model(spec, target, dominant_teacher="frozen", dominant_init=init)
    b = _batch(spec)
    uni.eval()
    model.train()
    assert not model.encoders["text"].training and not model.heads["text"].training
    torch.testing.assert_close(model(b).logits["text"], uni(b).preds)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.loss(b, model(b))["loss"].backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after
               if k.startswith(("encoders.text.", "heads.text.")))
    assert any(not torch.equal(before[k], after[k]) for k in after
               if k.startswith("encoders.audio."))


def test_pretrained_dominant_starts_from_the_teacher_and_keeps_training():
    spec, target = _spec(2)
    uni, init = _dominant_init(spec, target)
    model = _model(spec, target, dominant_teacher="pretrained", dominant_init=init)
    assert all(p.requires_grad for p in model.parameters())
    b = _batch(spec)
    uni.eval()
    torch.testing.assert_close(model.eval()(b).logits["text"], uni(b).preds)


def test_bad_teacher_settings():
    spec, target = _spec(2)
    with pytest.raises(ConfigError, match="dominant_teacher='teacher'"):
        _model(spec, target, dominant_teacher="teacher")
    with pytest.raises(ConfigError, match="dominant_crossfit needs"):
        _model(spec, target, dominant_crossfit=2)
