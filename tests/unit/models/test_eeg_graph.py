"""The electrode-aware EEG model and wearable students distilled from the full cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.data.batch import Batch
from emodistill.data.montage import DEAP_32
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError
from emodistill.models import build_method

TARGET = TargetSpec("valence", "binary", class_names=("low", "high"))


def _spec(**mods):
    return DatasetSpec("t", tuple(ModalitySpec(k, d, t) for k, (t, d) in mods.items()),
                       (TARGET,), ("subject",))


def _batch(x: dict[str, torch.Tensor]) -> Batch:
    b = next(iter(x.values())).shape[0]
    return Batch(inputs=x, mask={k: torch.ones(b, v.shape[1], dtype=torch.bool)
                                 for k, v in x.items()},
                 present={k: torch.ones(b, dtype=torch.bool) for k in x},
                 target=torch.zeros(b, dtype=torch.long), index=torch.arange(b))


def test_nodes_are_electrodes_with_band_features_in_both_layouts():
    flat = build_method("eeg_graph", spec=_spec(eeg=(1, 160)), target=TARGET, params={})
    bands = build_method("eeg_graph", spec=_spec(eeg=(5, 32)), target=TARGET, params={})
    assert flat.electrodes == list(DEAP_32) and flat.n_bands == 5
    x = torch.arange(160.0).reshape(1, 1, 160)
    n = flat.nodes(x)  # [1, 32, 5]: node c, band k = column k*32 + c
    assert n[0, 3, 2] == 2 * 32 + 3
    torch.testing.assert_close(bands.nodes(x.reshape(1, 5, 32)), n)
    with pytest.raises(ConfigError, match="cannot tell the electrodes"):
        build_method("eeg_graph", spec=_spec(eeg=(1, 21)), target=TARGET, params={})


def test_the_same_weights_run_on_any_montage():
    full = build_method("eeg_graph", spec=_spec(eeg=(1, 160)), target=TARGET, params={})
    head = build_method("eeg_graph", spec=_spec(frontal4=(1, 20)), target=TARGET, params={})
    assert head.electrodes == ["AF3", "AF4", "F7", "F8"]
    head.load_state_dict(full.state_dict())  # positions are derived, not stored
    full.eval()
    head.eval()
    x = torch.randn(3, 1, 160)
    idx = [DEAP_32.index(e) for e in head.electrodes]
    sub = x.reshape(3, 5, 32)[:, :, idx].reshape(3, 1, 20)
    # with a very narrow distance prior every electrode attends to itself only, so the
    # montage's nodes get the same states as in the full cap
    for m in (full, head):
        for blk in m.blocks:
            blk.log_sigma.data.fill_(np.log(1e-3))
    hf = full.band_in(full.nodes(x)) + full.pos_in(full.pos)[None]
    hh = head.band_in(head.nodes(sub)) + head.pos_in(head.pos)[None]
    for bf, bh in zip(full.blocks, head.blocks, strict=True):
        hf, att = bf(hf, full.dist2)
        hh, _ = bh(hh, head.dist2)
    torch.testing.assert_close(hf[:, idx], hh, atol=1e-5, rtol=1e-5)
    assert att.shape == (3, 4, 32, 32)
