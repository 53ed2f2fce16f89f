"""A tiny MKD (physio teacher, EOG student) and its inputs, for the MKD unit tests."""

from __future__ import annotations

import torch

from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.models import build_method
from emodistill.models.kd import probe_batch
from emodistill.models.mkd import MKD

__all__ = ["TARGET", "SMALL", "TRAIN_CFG", "spec", "make_batch", "FakeLit", "make_mkd",
           "teacher_state", "changed"]

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
