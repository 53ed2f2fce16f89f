"""The engine hooks are declared on MERModel, with defaults; one optimiser factory."""

from __future__ import annotations

from emodistill.models import METHODS, MERModel
from emodistill.models.mkd import MKD
from emodistill.optim import make_optimizer
from emodistill.training import lit


def test_defaults_and_which_methods_override_them():
    assert MERModel.prepare_fold.__func__ is METHODS.get("unimodal").prepare_fold.__func__
    assert MERModel.epoch_logs(object()) == {}  # type: ignore[arg-type]
    manual = sorted(n for n in METHODS.names() if METHODS.get(n).manual_optimization())
    assert manual == ["mkd"] and MKD.manual_optimization()
    assert METHODS.get("hkd_mer").prepare_fold.__func__ is not MERModel.prepare_fold.__func__
    # the engine and the methods share one optimiser factory
    assert lit.make_optimizer is make_optimizer
