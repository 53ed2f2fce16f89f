"""Cross-fitted teachers: no training sample's soft target comes from a teacher that saw it."""

from __future__ import annotations

import numpy as np
import pytest

from emodistill.config import compose
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.errors import ConfigError
from emodistill.training.crossfit import crossfit_folds
from emodistill.training.run import prepare
from helpers.crossfit import crossfit_cfg


def test_crossfit_folds_partition_the_training_groups():
    ds = make_synthetic_mer(200, seed=2)
    from emodistill.data.protocols import make_folds

    (f,) = make_folds(ds, "split", split="standard", valid_group="video")
    members = crossfit_folds(ds, f, 4)
    held = np.concatenate([m.test for m in members])
    assert sorted(held.tolist()) == sorted(f.train.tolist())
    vids = ds.groups["video"]
    for m in members:
        assert not set(vids[m.train]) & set(vids[m.test])
        np.testing.assert_array_equal(m.valid, f.valid)


def test_crossfit_refused_where_it_cannot_hold(tmp_path):
    cfg = crossfit_cfg(tmp_path, "hinton_kd", "method.teacher.crossfit=1")
    with pytest.raises(ConfigError, match="crossfit=1"):
        prepare(cfg)
    cfg = compose(dataset="synthetic", method="mkd", overrides=[
        "method.modality=audio", "method.teacher.crossfit=2"])
    with pytest.raises(ConfigError, match="feedback.*kd_feature"):
        prepare(cfg)
