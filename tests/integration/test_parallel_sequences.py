"""Members in parallel on sequence inputs: identical to one Lightning fit per member.

Token-level inputs (``[T x 384]`` with a mask of varying lengths, the shape of
``dataset.text_level=tokens``) and MMSA pickles (``[50 x D]`` per modality, aligned and
unaligned) through ``run_parallel`` and ``run_experiment``, same seeds: every per-epoch
metric, the selected epoch, the test metrics and the predictions are equal (not close).
Before the member kernels (training/parallel_kernels.py) these configs differed by about
1e-6 from the first epoch (benchmarks/parallel.md).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.training.parallel import parallel_unsupported, run_parallel
from emodistill.training.run import run_experiment
from helpers.mmsa import make_split, write

# logged auxiliary loss terms (epoch means, see _assert_identical)
AUX = {"unimodal"}
SMALL = ["train.max_epochs=6", "train.patience=3", "train.progress_bar=false",
         "train.save_checkpoint=false"]


def _both(tmp_path, dataset, method, overrides, seeds):
    cfgs = [compose(dataset=dataset, method=method, overrides=[*overrides, f"seed={s}"])
            for s in seeds]
    assert parallel_unsupported(cfgs[0]) is None
    ds = build_dataset(to_container(cfgs[0].dataset))
    seq = [run_experiment(c, dataset=ds, output_dir=tmp_path / "seq") for c in cfgs]
    par = run_parallel(cfgs, dataset=ds, output_dir=tmp_path / "par")
    return seq, par


def _assert_identical(seq, par):
    for a, b in zip(seq, par, strict=True):
        for fa, fb in zip(a.folds, b.folds, strict=True):
            assert (fa.best_epoch, fa.epochs) == (fb.best_epoch, fb.epochs)
            assert fa.test == fb.test
            ta, tb = (json.loads((f.path / "test_metrics.json").read_text()) for f in (fa, fb))
            assert ta == tb
            # the same columns (Lightning logs them in another order); the monitored loss,
            # every validation metric and the lr equal; the logged epoch means of the
            # training terms are aggregated by Lightning in its own way: to the last digit
            ma, mb = (pd.read_csv(f.path / "metrics.csv").sort_index(axis=1) for f in (fa, fb))
            assert list(ma.columns) == list(mb.columns)
            exact = ["epoch", "lr", "val/loss", "val/task_loss",
                     *(c for c in ma.columns if c.startswith("val/") and c[4:] not in AUX)]
            assert ma[exact].equals(mb[exact]), ma[exact].compare(mb[exact])
            assert (ma - mb).abs().max().max() <= 1e-6
            pa, pb = (pd.read_csv(f.path / "predictions.csv") for f in (fa, fb))
            assert pa.equals(pb)


def test_token_level_feature_fusion_is_identical_to_the_sequential_fits(tmp_path):
    # text [20 x 384] tokens with a length mask + an audio vector: a conv encoder over the
    # tokens (method.encoder=auto), width 128, dropout 0.2 (member draws), regression
    over = ["dataset.n=200", "+dataset.modalities_spec={text:[20,384,1.2],audio:[1,73,0.2]}",
            "dataset.target=sentiment", *SMALL]
    seq, par = _both(tmp_path, "synthetic", "feature_fusion", over, seeds=(3, 4))
    _assert_identical(seq, par)


def _mmsa(tmp_path, layout, seed=0):
    rng = np.random.default_rng(seed)
    raw = {s: make_split(rng, s, n, layout) for s, n in (("train", 48), ("valid", 16),
                                                          ("test", 16))}
    return write(tmp_path / f"{layout}.pkl", raw)


@pytest.mark.parametrize(("layout", "method"), [("mosi_aligned", "feature_fusion"),
                                                ("mosi_aligned", "early_fusion"),
                                                ("mosi_unaligned", "late_fusion")])
def test_mmsa_sequence_inputs_are_identical_to_the_sequential_fits(tmp_path, layout, method):
    # [50 x 768] text, [50 x 5] / [375 x 5] audio, [50 x 20] / [500 x 20] vision with masks
    p = _mmsa(tmp_path, layout)
    over = [f"dataset.path={p}", "train.batch_size=16", *SMALL]
    seq, par = _both(tmp_path, "mosi", method, over, seeds=(5,))
    _assert_identical(seq, par)


def test_token_level_text_is_no_longer_refused():
    cfg = compose(dataset="synthetic", method="feature_fusion",
                  overrides=["+dataset.text_level=tokens"])
    assert parallel_unsupported(cfg) is None


def test_exact_false_trains_with_the_batched_kernels(tmp_path, monkeypatch):
    from emodistill.training import parallel_kernels as K

    calls = []
    orig = K._Looped.forward

    def spy(ctx, fn, *args):
        calls.append(fn)
        return orig(ctx, fn, *args)

    monkeypatch.setattr(K._Looped, "forward", staticmethod(spy))
    cfg = compose(dataset="synthetic", method="feature_fusion", overrides=[
        "dataset.n=80", "method.width=8", "train.max_epochs=1", "train.progress_bar=false",
        "train.save_checkpoint=false"])
    ds = build_dataset(to_container(cfg.dataset))
    run_parallel([cfg], dataset=ds, output_dir=tmp_path / "b", exact=False)
    assert calls == []
    run_parallel([cfg], dataset=ds, output_dir=tmp_path / "e")
    assert calls
