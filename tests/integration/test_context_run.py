"""Utterance context end to end: train, per-utterance metrics, checkpoint, evaluate, predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import emodistill
from emodistill.config import compose
from emodistill.data.batch import ContextLayout
from emodistill.data.context import group_videos
from emodistill.errors import ConfigError, DataFormatError, VideoSplitError
from emodistill.training.evaluate import evaluate_checkpoint
from emodistill.training.run import prepare, run_experiment

VEC = "+dataset.modalities_spec={text: [1, 6, 1.2], audio: [1, 4, 0.5]}"


def _cfg(tmp_path, method: str, context: str, extra=()):
    return compose(dataset="synthetic", method=method, overrides=[
        "dataset.n=120", VEC, "train.max_epochs=1",
        "train.progress_bar=false", "train.batch_size=4", f"method.context={context}",
        "method.width=8", f"output_dir={tmp_path}", f"run_name={method}-{context}", *extra,
    ])


def _run(tmp_path, method: str, context: str, extra=()):
    return run_experiment(_cfg(tmp_path, method, context, extra))


@pytest.mark.parametrize("context", ["birnn", "sequence"])
def test_contextual_run_counts_every_test_utterance_once(tmp_path, context):
    plain = _run(tmp_path, "late_fusion", "none").folds[0]
    ctx = _run(tmp_path, "late_fusion", context).folds[0]
    a = pd.read_csv(plain.path / "predictions.csv")
    b = pd.read_csv(ctx.path / "predictions.csv")
    assert ctx.sizes == plain.sizes
    assert sorted(a["id"]) == sorted(b["id"]) and len(b) == plain.sizes["test"]
    # the stored metrics are the per-utterance ones of predictions.csv
    assert ctx.test["acc"] == pytest.approx((b["prediction"] == b["target"]).mean())
    again = evaluate_checkpoint(ctx.path / "model.pt")
    assert again["acc"] == pytest.approx(ctx.test["acc"])
    # predict on the raw test utterances, grouped by video, gives the run's predictions
    cfg = _cfg(tmp_path, "late_fusion", context)
    prep = prepare(cfg)
    part = prep.dataset.subset(prep.folds[0].test)
    rows = np.concatenate(group_videos(part))
    p = emodistill.load(ctx.path / "model.pt")
    got = p.predict({m: part.features[m][rows].numpy() for m in ("text", "audio")},
                    ids=part.ids[rows].tolist(), videos=part.groups["video"][rows].tolist())
    want = b.set_index("id").loc[got.ids, [c for c in b.columns if c.startswith("p_")]]
    np.testing.assert_allclose(got.values, want.to_numpy(), atol=1e-5)


def test_predict_a_single_utterance_and_a_video(tmp_path):
    fold = _run(tmp_path, "feature_fusion", "attention").folds[0]
    p = emodistill.load(fold.path / "model.pt")
    from emodistill.data.formats.synthetic import make_synthetic_mer

    ds = make_synthetic_mer(120, seed=0, samples_per_video=6,
                            modalities={"text": (1, 6, 1.2), "audio": (1, 4, 0.5)})
    rows = group_videos(ds)[0]
    x = {m: ds.features[m][rows, 0].numpy() for m in ("text", "audio")}
    one = p.predict(text=x["text"][2], audio=x["audio"][2])  # a context of one
    assert len(one) == 1
    alone = p.predict(x)
    video = p.predict(x, videos="v0")
    assert np.allclose(alone.values[2], one.values[0], atol=1e-6)
    assert not np.allclose(alone.values, video.values)
    # the same as the model on a video batch built by hand
    b = p.make_batch(x)
    b.context = ContextLayout.from_lengths([len(rows)])
    with torch.no_grad():
        ref = p.model.predict_values(p.model(b)).numpy()
    assert np.allclose(video.values, ref, atol=1e-6)
    with pytest.raises(DataFormatError, match="not together"):
        p.predict(x, videos=["a", "a", "b", "b", "a", "b"])
    from emodistill.serving.export import export_model

    with pytest.raises(ConfigError, match="utterance context"):
        export_model(p, tmp_path / "m.onnx")


def test_a_fold_that_splits_a_video_is_refused(tmp_path):
    from emodistill.data.formats.synthetic import make_synthetic_mer

    ds = make_synthetic_mer(120, seed=0, modalities={"text": (1, 6, 1.2), "audio": (1, 4, 0.5)})
    split = ds.splits["standard"].copy()
    first_train = int(np.flatnonzero(split == "train")[0])
    split[first_train] = "test"  # one utterance of a training video moved to test
    ds.splits["standard"] = split
    cfg = compose(dataset="synthetic", method="late_fusion", overrides=[
        "method.context=birnn", f"output_dir={tmp_path}"])
    with pytest.raises(VideoSplitError, match="has utterances in both train and test"):
        run_experiment(cfg, dataset=ds)
    assert not any(tmp_path.iterdir())  # refused before any file is written
