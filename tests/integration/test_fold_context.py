"""The engine hands a method's prepare_fold a FoldContext: ready train/valid parts and a fit."""

from __future__ import annotations

import json

from emodistill.config import compose
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.models import METHODS
from emodistill.models.base import FoldContext
from emodistill.optim import make_optimizer
from emodistill.training.run import fold_context, prepare


def test_the_engine_hands_ready_train_valid_parts_and_a_fit(tmp_path):
    cfg = compose(method="hkd_mer", overrides=[
        "dataset.n=160", "train.max_epochs=1", "train.progress_bar=false",
        "method.width=8", "method.layers=1"])
    prep = prepare(cfg, make_synthetic_mer(160, seed=0))
    fold = prep.folds[0]
    ctx = fold_context(prep, fold, tmp_path / fold.name)
    assert isinstance(ctx, FoldContext) and set(ctx.parts) == {"train", "valid"}
    assert len(ctx.parts["train"]) == len(fold.train) and ctx.make_optimizer is make_optimizer
    assert METHODS.get("unimodal").prepare_fold(ctx, {}) == {}
    params = {"modalities": ["text", "audio"], "dominant": "auto"}
    chosen = METHODS.get("hkd_mer").prepare_fold(ctx, params)
    assert chosen["dominant"] in ("text", "audio")
    assert json.loads((ctx.out / "dominant.json").read_text())["part"] == "valid"
    sub = compose(method="unimodal", overrides=[
        "train.max_epochs=1", "train.progress_bar=false", "method.modality=text",
        "train.save_checkpoint=false"])
    res = ctx.fit(sub, ["text"], tmp_path / "probe")
    assert (res.path / "metrics.csv").is_file() and res.best_epoch == 0 and res.model is not None


def test_hkd_mer_unimodal_probe_trains_per_modality_and_reads_valid(tmp_path):
    from emodistill.models.hkd_mer import choose_dominant

    cfg = compose(method="hkd_mer", overrides=[
        "train.max_epochs=1", "train.progress_bar=false", "train.batch_size=64", "seed=1"])
    prep = prepare(cfg, make_synthetic_mer(160, seed=0))
    ctx = fold_context(prep, prep.folds[0], tmp_path)
    params = {"width": 8, "layers": 1, "dominant_probe_epochs": 2}
    rec = choose_dominant(ctx, ["audio", "text"], probe="unimodal", params=params)
    assert rec["probe"] == "unimodal" and set(rec["scores"]) == {"audio", "text"}
    assert (tmp_path / "dominant_probe" / "text" / "metrics.csv").is_file()
    assert not (tmp_path / "dominant_probe" / "text" / "model.pt").exists()
