"""Benchmark fits side by side in Ray workers (``--workers``), against one after another."""

from __future__ import annotations

import logging

import pytest

from emodistill.errors import ConfigError
from emodistill.training.benchmark import run_benchmark


def test_benchmark_fits_in_workers_equal_the_fits_in_this_process(tmp_path, caplog, ray_local):
    common = dict(dataset="synthetic", methods=["late_fusion"], seeds=[1, 2],
                  overrides=["dataset.n=120", "train.max_epochs=2", "train.progress_bar=false",
                             "method.width=8", "method.layers=1", "train.save_checkpoint=false"],
                  output_dir=tmp_path, parallel="off")
    with caplog.at_level(logging.INFO, logger="emodistill"):
        two = run_benchmark(**common, name="two", workers=2)
    one = run_benchmark(**common, name="one")
    assert "2 fit(s) on the sequential path, 2 at once in Ray workers" in caplog.text
    cols = ["acc", "f1_macro", "f1_weighted"]
    assert (two.per_seed[cols] - one.per_seed[cols]).abs().max().max() < 1e-5
    assert list(two.per_seed["training_path"]) == ["sequential"] * 2
    for res in (one, two):  # each worker wrote its run folder where this process would
        assert sorted(p.name for p in (res.path / "runs").iterdir()) == [
            "late_fusion-seed1", "late_fusion-seed2"]
        assert all((p / "results.json").is_file() for p in (res.path / "runs").iterdir())


def test_workers_below_one_are_refused(tmp_path):
    from emodistill.training.workers import fit_in_workers

    with pytest.raises(ConfigError, match="workers=0"):
        fit_in_workers([], workers=0)
    with pytest.raises(ConfigError, match="--workers 0"):  # before any folder is made
        run_benchmark(dataset="synthetic", methods=["late_fusion"], seeds=[1],
                      output_dir=tmp_path, workers=0)
    assert not list(tmp_path.iterdir())
