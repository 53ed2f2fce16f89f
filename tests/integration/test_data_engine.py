"""Data options seen through a training run: subject normalisation, a changed MMSA file.

(Moved from tests/unit/data so that ``pytest tests/unit`` trains nothing.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodistill.config import compose
from emodistill.errors import ConfigError, DataFormatError
from emodistill.training.run import prepare, run_experiment
from helpers.eeg_tables import write_table as _write_table
from helpers.mmsa import make_mmsa, write


def test_subject_norm_is_a_protocol_option_recorded_in_the_run(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    subj = np.repeat([1, 2, 3, 4], 8)
    _write_table(root, rng.gamma(2.0, size=(32, 160)) + subj[:, None], subj,
                 rng.integers(1, 3, size=(32, 2)))
    over = [f"dataset.root={root}", f"output_dir={tmp_path / 'runs'}",
            "dataset.montages=[frontal4]", "protocol.fold=subject1", "train.progress_bar=false"]
    cfg = compose(dataset="mahnob_bandpower", method="logistic",
                  overrides=[*over, "protocol.subject_norm=transductive",
                             "method.modality=frontal4"])
    res = run_experiment(cfg)
    rec = json.loads((res.folds[0].path / "subject_norm.json").read_text())
    assert rec["mode"] == "transductive" and rec["statistics_from"] == ["train", "valid", "test"]
    assert rec["samples_per_subject"] == {"1": 8, "2": 8, "3": 8, "4": 8}
    assert "subject_norm: transductive" in (res.path / "config.yaml").read_text()
    bad = compose(dataset="mahnob_bandpower", method="logistic",
                  overrides=[*over, "protocol.subject_norm=train"])
    with pytest.raises(ConfigError, match="subject_norm=train: in fold"):
        prepare(bad)


def test_parallel_members_apply_subject_norm_as_the_sequential_fit(tmp_path):
    from emodistill.config import to_container
    from emodistill.data.registry import build_dataset
    from emodistill.training.parallel import run_parallel

    root = tmp_path / "data"
    rng = np.random.default_rng(2)
    subj = np.repeat([1, 2, 3, 4], 8)
    _write_table(root, rng.gamma(2.0, size=(32, 160)) + 3 * subj[:, None], subj,
                 rng.integers(1, 3, size=(32, 2)))
    cfg = compose(dataset="mahnob_bandpower", method="unimodal", overrides=[
        f"dataset.root={root}", "protocol.subject_norm=transductive", "protocol.fold=subject1",
        "method.width=8", "train.max_epochs=2", "train.progress_bar=false", "seed=1"])
    ds = build_dataset(to_container(cfg.dataset))
    seq = run_experiment(cfg, dataset=ds, output_dir=tmp_path / "seq")
    par = run_parallel([cfg], dataset=ds, output_dir=tmp_path / "par")[0]
    assert (par.folds[0].path / "subject_norm.json").is_file()
    assert par.folds[0].test == pytest.approx(seq.folds[0].test, abs=1e-4)


def test_checkpoint_evaluated_on_data_of_another_dim(tmp_path):
    from emodistill.training.evaluate import evaluate_checkpoint
    from emodistill.training.run import run_experiment

    raw = make_mmsa()
    f = write(tmp_path / "mosi.pkl", raw)
    cfg = compose(dataset="mosi", method="late_fusion", overrides=[
        f"dataset.path={f}", "method.width=8", "method.layers=1", "train.max_epochs=1",
        "train.progress_bar=false", f"output_dir={tmp_path / 'runs'}"])
    res = run_experiment(cfg)
    for s in raw.values():  # the same file, rewritten with 6 audio features
        s["audio"] = np.concatenate([s["audio"], s["audio"][:, :, :1]], axis=2)
    write(f, raw)
    with pytest.raises(DataFormatError, match=r"'audio' has 6 features per step .*D = 5"):
        evaluate_checkpoint(res.path / "standard" / "model.pt")


@pytest.mark.parametrize("mode", ["transductive", "none"])
def test_benchmark_summary_and_report_state_the_subject_norm(tmp_path, mode):
    from emodistill.report.html import build_report
    from emodistill.training.benchmark import run_benchmark

    root = tmp_path / "data"
    rng = np.random.default_rng(3)
    subj = np.repeat([1, 2, 3, 4], 8)
    _write_table(root, rng.gamma(2.0, size=(32, 160)) + subj[:, None], subj,
                 rng.integers(1, 3, size=(32, 2)))
    res = run_benchmark(dataset="mahnob_bandpower", methods=["majority"], seeds=[1],
                        overrides=[f"dataset.root={root}", f"protocol.subject_norm={mode}",
                                   "protocol.name=loso", "protocol.fold=subject1"],
                        output_dir=tmp_path / "b", name="b", parallel="off")
    first = res.markdown.splitlines()[0]
    # data with subjects: the title says how (or that nothing) was normalised per subject
    assert first == f"### mahnob_bandpower / valence / protocol loso, subject norm {mode}"
    assert (res.path / "summary.md").read_text().splitlines()[0] == first
    page = build_report(res.path, embedding="none").read_text()
    assert f"<b>subject norm {mode}</b>" in page


def test_benchmark_title_on_data_without_subjects_has_no_subject_norm(tmp_path):
    from emodistill.report.html import build_report
    from emodistill.training.benchmark import run_benchmark

    res = run_benchmark(dataset="synthetic", methods=["majority"], seeds=[1],
                        overrides=["dataset.n=60"], output_dir=tmp_path, name="b",
                        parallel="off")
    assert "subject norm" not in res.markdown
    assert res.markdown.splitlines()[0].startswith("### synthetic / ")
    assert "subject norm" not in build_report(res.path, embedding="none").read_text()
