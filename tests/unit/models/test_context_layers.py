"""Utterance context on the model side: every method with a context layer, no cross-video leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.checkpoint import load_checkpoint, save_checkpoint
from emodistill.data.batch import ContextLayout
from emodistill.data.context import group_videos
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.errors import ConfigError
from emodistill.models import METHODS, build_method
from emodistill.models.context import CONTEXT_LAYERS, context_sites
from helpers.tiny_methods import method_config

VEC = {"text": (1, 6, 1.2), "audio": (1, 4, 0.5), "vision": (1, 5, 0.5)}
#: methods of the physiological family read one signal modality; the rest are MER methods
# physio models: trial-level; eeg_graph, eeg_mlp: EEG band tables (trial-level);
# majority / logistic / trees: fitted in one call, no per-utterance representation to put
# context on
SKIP = {"physio_student", "physio_teacher", "eeg_graph", "eeg_mlp", "majority", "logistic", "trees"}


def _ds():
    return make_synthetic_mer(24, seed=0, modalities=VEC, samples_per_video=4)


def _video_batch(ds, target: str, n_videos: int = 3):
    videos = group_videos(ds)[:n_videos]
    b = ds.batch(np.concatenate(videos), target)
    b.context = ContextLayout.from_lengths([len(v) for v in videos])
    return b


def _build(name: str, ds, context: str, target: str = "sentiment", seed: int = 0):
    params = method_config(name, "text")
    params.pop("teacher", None)
    if METHODS.get(name).requires_teacher:
        params["teacher"] = None
    torch.manual_seed(seed)
    return build_method(name, spec=ds.spec, target=ds.spec.target(target),
                        params={**params, "context": context})


MER_METHODS = [n for n in METHODS.names() if n not in SKIP]


@pytest.mark.parametrize("context", CONTEXT_LAYERS.names())
@pytest.mark.parametrize("name", MER_METHODS)
def test_every_method_runs_with_a_context_layer_and_it_is_trained(name, context):
    ds = _ds()
    model = _build(name, ds, context)
    assert context_sites(model), f"{name} declares no context site"
    model.train()
    b = _video_batch(ds, "sentiment")
    out = model(b)
    assert out.preds.shape == (b.size,) and torch.isfinite(out.preds).all()
    if model.requires_teacher:
        loss = model.task(out.preds, b.target)
    else:
        loss = model.loss(b, out)["loss"]
    loss.backward()
    ctx = [p for n, p in model.named_parameters() if "context_layers" in n]
    assert ctx and any(p.grad is not None and p.grad.abs().sum() > 0 for p in ctx)


@pytest.mark.parametrize("context", CONTEXT_LAYERS.names())
@pytest.mark.parametrize("name", ["late_fusion", "dmd", "hkd_mer", "hinton_kd"])
def test_context_reads_the_same_video_only(name, context):
    ds = _ds()
    model = _build(name, ds, context).eval()
    b = _video_batch(ds, "sentiment")
    with torch.no_grad():
        base = model(b).preds
        # change the second utterance of the first video
        b.inputs["text"] = b.inputs["text"].clone()
        b.inputs["text"][1] += 5.0
        moved = (model(b).preds - base).abs()
    assert moved[0] > 1e-6 and moved[2:4].max() > 1e-6  # its video's other utterances move
    assert moved[4:].max() < 1e-6  # other videos do not see it


def test_a_single_utterance_is_a_context_of_one():
    ds = _ds()
    model = _build("feature_fusion", ds, "birnn").eval()
    b = ds.batch(np.arange(5), "sentiment")  # no layout: each utterance alone
    with torch.no_grad():
        alone = model(b).preds
        b.context = ContextLayout.singletons(5)
        assert torch.allclose(model(b).preds, alone)
        b.context = ContextLayout.from_lengths([5])
        assert not torch.allclose(model(b).preds, alone)


def test_checkpoint_round_trip_keeps_the_context_layer(tmp_path):
    ds = _ds()
    model = _build("dmd", ds, "attention").eval()
    cfg = {"method": {"name": "dmd", **method_config("dmd", "text"), "context": "attention"},
           "dataset": {"target": "sentiment"}}
    save_checkpoint(tmp_path / "m.pt", model, config=cfg, standardizer=None, meta={})
    loaded = load_checkpoint(tmp_path / "m.pt").model
    b = _video_batch(ds, "sentiment")
    with torch.no_grad():
        assert torch.allclose(loaded(b).preds, model(b).preds, atol=1e-6)
    assert any("context_layers" in k for k in loaded.state_dict())


def test_unknown_context_and_unknown_layer_option_are_named_errors():
    ds = _ds()
    with pytest.raises(KeyError, match="context layer 'bilstm'"):
        _build("feature_fusion", ds, "bilstm")
    with pytest.raises(ConfigError, match="context_params"):
        build_method("feature_fusion", spec=ds.spec, target=ds.spec.target("sentiment"),
                     params={"width": 8, "context": "birnn", "context_params": {"cells": 2}})


def test_context_runs_are_kept_off_the_stacked_parallel_path():
    from emodistill.config import compose
    from emodistill.training.parallel import parallel_unsupported

    assert parallel_unsupported(compose(method="late_fusion")) is None
    cfg = compose(method="late_fusion", overrides=["method.context=birnn"])
    assert "method.context=birnn" in parallel_unsupported(cfg)
