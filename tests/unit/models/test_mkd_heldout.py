"""MKD feedback measured on a held-out slice of the training rows (feedback_data: heldout)."""

from __future__ import annotations

import pytest
import torch

from emodistill.errors import ConfigError
from helpers.mkd import TRAIN_CFG, FakeLit, changed, make_batch, make_mkd, teacher_state


def test_heldout_rows_are_never_taught_and_are_what_feedback_measures():
    model = make_mkd(feedback_data="heldout", heldout_fraction=0.3, heldout_batch=4)
    taught, measured = [], []
    real_loss, real_strategy = model.loss, model.strategy

    def loss_spy(batch, out):
        taught.append(batch.index.clone())
        return real_loss(batch, out)

    def strategy_spy(task, teach, labelled, settings):
        measured.append(labelled.index.clone())
        return real_strategy(task, teach, labelled, settings)

    model.loss, model.strategy = loss_spy, strategy_spy
    opts = model.configure_optimizers(TRAIN_CFG)
    t0 = teacher_state(model)
    model.train()
    for i in range(4):
        b = make_batch(i, n=16)
        b.index = torch.arange(16 * i, 16 * (i + 1))  # rows of one training part
        model.training_step(b, opts, FakeLit())
    held = model.heldout_rows(torch.arange(64))
    assert 0 < int(held.sum()) < 64
    taught_rows, measured_rows = torch.cat(taught), torch.cat(measured)
    assert not held[taught_rows].any()  # the student never trains on a held-out row
    assert held[measured_rows].all()  # feedback reads held-out rows only
    assert len(measured) == 4 and all(len(m) >= 4 for m in measured[1:])
    assert changed(t0, teacher_state(model))
    # the same row is held out in every epoch
    assert torch.equal(model.heldout_rows(torch.arange(64)), held)


def test_bad_heldout_options():
    with pytest.raises(ConfigError, match="heldout_fraction=1.5"):
        make_mkd(feedback_data="heldout", heldout_fraction=1.5)
    with pytest.raises(ConfigError, match="use same, previous or heldout"):
        make_mkd(feedback_data="valid")


@pytest.mark.parametrize(("method", "want"), [
    # chosen on validation (benchmarks/eeg.md section 10: +1.07 val acc, 5/5 seeds)
    ("mkd", "heldout"), ("mkd_lookahead", "heldout"), ("eeg_mkd", "heldout"),
    ("eeg_mkd_lookahead", "heldout"),
    ("eeg_mkd_same", "same"),  # the former default, the comparison row
])
def test_configs_measure_feedback_on_the_heldout_slice_by_default(method, want):
    from emodistill.config import load_group, to_container

    cfg = to_container(load_group("method", method))["method"]
    assert cfg["feedback_data"] == want
    assert 0.0 < cfg["heldout_fraction"] < 1.0 and cfg["heldout_batch"] >= 1
