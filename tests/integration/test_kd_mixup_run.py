"""Function-matching KD (``kd_mixup``) through the engine: sequential path, deterministic."""

import logging

from emodistill.training.benchmark import run_benchmark

OVER = ["dataset.n=120", "method.modality=audio", "method.teacher.method.modality=null",
        "method.teacher.method.C=[0.01,1.0]", "method.student.width=8",
        "train.max_epochs=3", "train.patience=1", "train.progress_bar=false"]


def test_kd_mixup_runs_sequentially_and_repeats_exactly(tmp_path, caplog):
    common = dict(dataset="synthetic", methods=["eeg_hinton_kd_logistic_fm",
                                                "eeg_mixup_placebo:train.max_epochs=2"],
                  seeds=[3], overrides=OVER, output_dir=tmp_path, parallel="auto")
    with caplog.at_level(logging.INFO, logger="emodistill"):
        a = run_benchmark(**common, name="a")
    b = run_benchmark(**common, name="b")
    assert ("eeg_hinton_kd_logistic_fm: one fit per seed and fold (parallel path not used: "
            "method.kd_mixup=1.0") in caplog.text
    cols = ["acc", "f1_macro"]
    assert a.per_seed[cols].equals(b.per_seed[cols])
    runs = sorted(p.name for p in (a.path / "runs").iterdir())
    assert len(runs) == 2 and any("max_epochs=2" in r for r in runs)
    for r in runs:  # same predictions file for file
        pa = sorted((a.path / "runs" / r).rglob("predictions.csv"))
        pb = sorted((b.path / "runs" / r).rglob("predictions.csv"))
        assert pa and [p.read_text() for p in pa] == [p.read_text() for p in pb]
