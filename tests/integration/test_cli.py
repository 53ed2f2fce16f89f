"""The emodistill command line, end to end on tiny synthetic data (in-process)."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess

import pandas as pd
import pytest

from emodistill.checkpoint import load_checkpoint
from emodistill.cli import main
from emodistill.data.registry import build_dataset
from emodistill.models import METHODS
from helpers import shared_path

TINY = ["dataset.n=200", "train.max_epochs=2", "train.progress_bar=false", "method.width=16",
        "method.layers=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "-m", "late_fusion", *TINY, f"output_dir={out}"]) == 0
    (run_dir,) = out.iterdir()
    return run_dir


def test_train_writes_the_run_folder(trained):
    run_dir = trained
    assert run_dir.name == "late_fusion-synthetic-polarity-seed1111"
    for f in ("config.yaml", "data.json", "results.json"):
        assert (run_dir / f).is_file(), f
    fold = run_dir / "standard"
    for f in ("metrics.csv", "test_metrics.json", "predictions.csv", "model.pt"):
        assert (fold / f).is_file(), f
    hist = pd.read_csv(fold / "metrics.csv")
    assert list(hist["epoch"]) == [0, 1]
    assert {"train/loss", "val/task_loss", "val/acc", "lr"} <= set(hist.columns)
    assert not [c for c in hist.columns if c.startswith("test/")]  # test is never per epoch
    test = json.loads((fold / "test_metrics.json").read_text())
    assert set(test) == {"acc", "f1_macro", "f1_weighted"}
    results = json.loads((run_dir / "results.json").read_text())
    assert results["mean"] == pytest.approx(test)
    assert results["folds"]["standard"]["sizes"]["test"] == 40
    pred = pd.read_csv(fold / "predictions.csv")
    ds = build_dataset({"name": "synthetic", "n": 200, "seed": 0})
    test_ids = ds.ids[ds.splits["standard"] == "test"]
    assert sorted(pred["id"]) == sorted(test_ids)
    assert {"target", "prediction", "p_negative", "p_non-negative"} <= set(pred.columns)
    assert (pred["prediction"] == pred["target"]).mean() == pytest.approx(test["acc"])
    data = json.loads((run_dir / "data.json").read_text())
    assert data["fingerprint"] == ds.fingerprint()
    ck = load_checkpoint(fold / "model.pt")
    assert ck.meta["fold"] == "standard" and ck.meta["data_fingerprint"] == ds.fingerprint()
    assert ck.meta["test_metrics"] == pytest.approx(test)


def test_train_prints_a_summary(cli, tmp_path):
    rc, out, _ = cli("train", "-m", "unimodal", "method.modality=audio", *TINY[:3],
                     "train.max_epochs=1", f"output_dir={tmp_path}")
    assert rc == 0
    assert f"run folder: {tmp_path}" in out and "[standard] best epoch" in out and "acc=" in out


def test_evaluate_reproduces_the_stored_test_metrics(cli, trained):
    ckpt = trained / "standard" / "model.pt"
    rc, out, _ = cli("evaluate", ckpt)
    assert rc == 0
    stored = json.loads((trained / "standard" / "test_metrics.json").read_text())
    assert json.loads(out) == pytest.approx(stored, abs=1e-6)
    rc, out, _ = cli("evaluate", ckpt, "--split", "valid")
    assert rc == 0 and set(json.loads(out)) == set(stored)


def test_the_saved_model_is_the_one_selected_on_validation(cli, trained):
    """model.pt reproduces the validation numbers of its best epoch in metrics.csv."""
    best = json.loads((trained / "results.json").read_text())["folds"]["standard"]["best_epoch"]
    hist = pd.read_csv(trained / "standard" / "metrics.csv").set_index("epoch")
    assert hist["val/task_loss"].idxmin() == best  # selection on val/task_loss, mode min
    rc, out, _ = cli("evaluate", trained / "standard" / "model.pt", "--split", "valid")
    assert rc == 0
    got = json.loads(out)
    for k in ("acc", "f1_macro", "f1_weighted"):
        assert got[k] == pytest.approx(hist.loc[best, f"val/{k}"], abs=1e-5), k


@pytest.mark.parametrize("mode,values,best", [
    ("min", [0.5, 0.3, 0.3, 0.4], 1),
    ("max", [0.5, 0.8, 0.8, 0.7], 1),  # ties: the first epoch, as ModelCheckpoint keeps it
    ("max", [0.9, 0.8], 0),
])
def test_best_epoch_matches_checkpoint_selection(mode, values, best):
    from emodistill.training.run import _best_epoch

    rows = [{"epoch": i, "val/acc": v} for i, v in enumerate(values)] + [{"epoch": 9}]
    assert _best_epoch(rows, "val/acc", mode) == best
    assert _best_epoch([{"epoch": 0}], "val/acc", mode) == -1


def test_max_mode_selection_on_a_tied_metric(cli, tmp_path):
    """With ties in val/acc the reported best epoch is the one whose weights were saved."""
    rc, _, _ = cli("train", "-m", "feature_fusion", *TINY, "train.max_epochs=4",
                   "train.monitor=val/acc", "train.mode=max", "train.lr=1e-6",
                   f"output_dir={tmp_path}", "run_name=r")
    assert rc == 0
    hist = pd.read_csv(tmp_path / "r" / "standard" / "metrics.csv").set_index("epoch")
    best = json.loads((tmp_path / "r" / "results.json").read_text())["folds"]["standard"][
        "best_epoch"]
    assert (hist["val/acc"] == hist["val/acc"].max()).sum() >= 2  # the tie under test
    assert best == hist["val/acc"].idxmax()  # first epoch of the maximum
    rc, out, _ = cli("evaluate", tmp_path / "r" / "standard" / "model.pt", "--split",
                     "valid")
    assert json.loads(out)["acc"] == pytest.approx(hist.loc[best, "val/acc"], abs=1e-6)


def test_test_part_is_evaluated_once_after_training(monkeypatch, tmp_path):
    from emodistill.training.lit import LitMER

    calls = []
    for hook in ("training_step", "validation_step", "test_step"):
        real = getattr(LitMER, hook)

        def spy(self, batch, batch_idx, _real=real, _hook=hook):
            calls.append((_hook, batch.size))
            return _real(self, batch, batch_idx)

        monkeypatch.setattr(LitMER, hook, spy)
    assert main(["train", "-m", "feature_fusion", *TINY, "train.max_epochs=3",
                 "train.batch_size=16", f"output_dir={tmp_path}"]) == 0
    tests = [i for i, (h, _) in enumerate(calls) if h == "test_step"]
    assert sum(calls[i][1] for i in tests) == 40  # every test sample exactly once
    assert min(tests) > max(i for i, (h, _) in enumerate(calls) if h != "test_step")
    assert sum(b for h, b in calls if h == "validation_step") == 3 * 20  # valid every epoch


def test_evaluate_overrides_are_typed_and_data_changes_are_flagged(cli, caplog, trained):
    ckpt = trained / "standard" / "model.pt"
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        rc, out, _ = cli("evaluate", ckpt, "dataset.n=200", "dataset.seed=0")
    assert rc == 0 and not [r for r in caplog.records if "fingerprint" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        rc, out, _ = cli("evaluate", ckpt, "dataset.seed=1")  # other data
    assert rc == 0
    assert [r for r in caplog.records if "fingerprint" in r.getMessage()]
    rc, _, err = cli("evaluate", ckpt, "dataset.nope=1")
    assert rc == 2 and "no key 'dataset.nope'" in err


def test_evaluate_refuses_a_fold_the_protocol_does_not_make(cli, trained, tmp_path):
    import torch

    raw = torch.load(trained / "standard" / "model.pt", weights_only=True)
    raw["meta"]["fold"] = "fold9"
    torch.save(raw, tmp_path / "moved.pt")
    rc, _, err = cli("evaluate", tmp_path / "moved.pt")
    assert rc == 2 and "fold 'fold9' is not a fold of protocol 'split'" in err


def test_benchmark_two_methods_two_seeds(cli, tmp_path):
    rc, out, _ = cli("benchmark", "-d", "synthetic", "-m", "late_fusion,early_fusion",
                     "--seeds", "3,4", "--output", tmp_path, "--name", "bench",
                     "--reference", "early_fusion",
                     "dataset.n=160", "train.max_epochs=1", "train.progress_bar=false",
                     "method.width=8", "method.layers=1")
    assert rc == 0
    bench = tmp_path / "bench"
    per_seed = pd.read_csv(bench / "per_seed.csv")
    assert len(per_seed) == 4
    assert sorted(zip(per_seed["method"], per_seed["seed"], strict=True)) == [
        ("early_fusion", 3), ("early_fusion", 4), ("late_fusion", 3), ("late_fusion", 4)]
    summary = pd.read_csv(bench / "summary.csv", index_col=0)
    for m in ("late_fusion", "early_fusion"):
        acc = per_seed.loc[per_seed["method"] == m, "acc"]
        assert summary.loc[m, "acc_mean"] == pytest.approx(acc.mean())
        assert summary.loc[m, "acc_std"] == pytest.approx(acc.std(ddof=1))
        assert summary.loc[m, "n_seeds"] == 2
    md = (bench / "summary.md").read_text()
    assert "| method | acc | f1_macro | f1_weighted | seeds |" in md
    rows = [ln for ln in md.splitlines() if ln.startswith(("| late_fusion", "| early_fusion"))]
    assert [r.count(" ± ") for r in rows] == [3, 3, 3]  # 2 summary rows, 1 paired row
    paired = pd.read_csv(bench / "paired.csv", index_col=0)
    assert list(paired.index) == ["late_fusion"]
    lf = per_seed[per_seed["method"] == "late_fusion"].set_index("seed")["acc"]
    ef = per_seed[per_seed["method"] == "early_fusion"].set_index("seed")["acc"]
    assert paired.loc["late_fusion", "acc_diff_mean"] == pytest.approx((lf - ef).mean())
    assert paired.loc["late_fusion", "acc_wins"] == int(((lf - ef) > 0).sum())
    assert "paired difference to early_fusion" in md
    assert "late_fusion" in out and "±" in out and str(bench) in out
    assert len(list((bench / "runs").iterdir())) == 4


def test_benchmark_resume_reads_finished_runs_and_retrains_the_rest(cli, tmp_path):
    common = ["-d", "synthetic", "--seeds", "3,4", "--output", tmp_path, "--name", "bench",
              "dataset.n=160", "train.max_epochs=1", "train.progress_bar=false",
              "method.width=8", "method.layers=1"]
    assert cli("benchmark", "-m", "late_fusion", *common)[0] == 0
    runs = tmp_path / "bench" / "runs"
    first = pd.read_csv(tmp_path / "bench" / "per_seed.csv")
    (runs / "late_fusion-seed4" / "results.json").unlink()  # as if killed during seed 4
    stamp = (runs / "late_fusion-seed3" / "results.json").stat().st_mtime_ns
    rc, _, err = cli("benchmark", "-m", "late_fusion,early_fusion", *common, "--resume")
    assert rc == 0
    assert (runs / "late_fusion-seed3" / "results.json").stat().st_mtime_ns == stamp  # read back
    assert sorted(p.name for p in runs.iterdir()) == [  # the unfinished run was replaced
        "early_fusion-seed3", "early_fusion-seed4", "late_fusion-seed3", "late_fusion-seed4"]
    per_seed = pd.read_csv(tmp_path / "bench" / "per_seed.csv")
    assert len(per_seed) == 4
    assert per_seed.iloc[0]["acc"] == pytest.approx(first.iloc[0]["acc"])
    # a finished run of another config is never mixed into the table
    rc, _, err = cli("benchmark", "-m", "late_fusion", *common, "method.width=16",
                     "--resume")
    assert rc == 2 and "late_fusion-seed3 was trained with a different config" in err
    assert "width: 8" in err and "width: 16" in err
    rc, _, err = cli("benchmark", "-m", "late_fusion", *common[:6], "--name", "absent",
                     "--resume")
    assert rc == 2 and "no benchmark folder" in err


def test_teacher_checkpoint_from_other_fold_rows_is_refused_before_writing(cli, tmp_path):
    kfold = ["dataset.n=200", "train.max_epochs=1", "train.progress_bar=false",
             "protocol.name=group_kfold", "+protocol.group=video", "+protocol.k=2",
             "protocol.fold=fold0"]
    teacher_runs = tmp_path / "teacher"
    assert main(["train", "-m", "late_fusion", *kfold, "method.width=8",
                 f"output_dir={teacher_runs}", "run_name=t"]) == 0
    ck = load_checkpoint(teacher_runs / "t" / "fold0" / "model.pt")
    assert len(ck.meta["fold_fingerprint"]) == 16
    student = ["train", "-m", "hinton_kd", "method.modality=audio",
               f"method.teacher.checkpoint={teacher_runs / 't'}", f"output_dir={tmp_path / 's'}"]
    # same name "fold0", but another protocol seed puts other videos in it
    rc, _, err = cli(*student, *kfold, "+protocol.seed=1")
    assert rc == 2 and "other train/valid/test samples" in err and "allow_foreign" in err
    assert not (tmp_path / "s").exists()
    # another fold (the file named directly)
    student[4] = f"method.teacher.checkpoint={teacher_runs / 't' / 'fold0' / 'model.pt'}"
    rc, _, err = cli(*student, *kfold[:-1], "protocol.fold=fold1")
    assert rc == 2 and "trained on fold 'fold0'" in err
    assert not (tmp_path / "s").exists()


def test_seed_and_method_parsing():
    from emodistill.errors import ConfigError
    from emodistill.training.benchmark import expand_methods, parse_seeds

    assert parse_seeds("1111-1115") == [1111, 1112, 1113, 1114, 1115]
    assert parse_seeds("1, 5,7-8") == [1, 5, 7, 8]
    for bad in ("", "5-3", "a", "1-b"):
        with pytest.raises(ConfigError, match="seed"):
            parse_seeds(bad)
    entries = expand_methods(["unimodal", "late_fusion:aux_weight=0.5,dropout=0.1",
                              "unimodal:modality=audio"], ["text", "audio"])
    assert [(e.label, e.config, e.overrides) for e in entries] == [
        ("unimodal(text)", "unimodal", ["method.modality=text"]),
        ("unimodal(audio)", "unimodal", ["method.modality=audio"]),
        ("late_fusion(aux_weight=0.5,dropout=0.1)", "late_fusion",
         ["method.aux_weight=0.5", "method.dropout=0.1"]),
        ("unimodal(modality=audio)", "unimodal", ["method.modality=audio"]),
    ]


def test_data_verify_prints_a_fingerprint(cli):
    rc, out, _ = cli("data", "verify", "-d", "synthetic", "dataset.n=100")
    assert rc == 0
    fp = build_dataset({"name": "synthetic", "n": 100, "seed": 0}).fingerprint()
    assert out.strip().endswith(f"OK: synthetic verified, fingerprint {fp}")
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["n_samples"] == 100 and summary["protocol"]["group_disjoint"] is True


@pytest.mark.shared_data
def test_data_verify_on_real_mosi(cli):
    root = shared_path("mosi_utterance")
    rc, out, _ = cli("data", "verify", "-d", "mosi_utterance", f"dataset.root={root}")
    assert rc == 0
    summary = json.loads(out[: out.rindex("}") + 1])
    (fold,) = summary["protocol"]["folds"].values()
    assert fold["test"] == 752 and fold["train"] + fold["valid"] == 1447
    assert sorted(summary["protocol"]["valid_leaked"]) == ["text", "vision"]
    assert "fingerprint" in out.splitlines()[-1]


def test_list(cli):
    rc, out, _ = cli("list")
    assert rc == 0
    for line in ("dataset configs:", "method configs:", "experiment configs:", "protocols:",
                 "encoders:"):
        assert line in out
    assert all(m in out for m in METHODS.names())
    rc, out, _ = cli("list", "protocols")
    assert out.strip() == "protocols: group_kfold, loso, split, subject_dependent"


def _unsafe_pickle(path):
    class Boom:
        def __reduce__(self):
            return (shutil.rmtree, ("/nonexistent-emodistill",))

    path.write_bytes(pickle.dumps({"train": Boom(), "valid": {}, "test": {}}))
    return path


BAD = [
    (["train", "-m", "late_fusoin"], "unknown method config 'late_fusoin'"),
    (["train", "-d", "mosi_utterances"], "Did you mean 'mosi_utterance'"),
    (["train", "train.lrr=1"], "no key 'train.lrr'"),
    (["train", "-m", "unimodal", "method.modality=eeg"], "no modality 'eeg'"),
    (["train", "dataset.target=valence"], "no target 'valence'"),
    (["train", "train.monitor=test/acc"], "train.monitor='test/acc'"),
    (["train", "protocol.split=poria"], "no predefined split 'poria'"),
    (["train", "dataset.n=20"], "split 'standard' has no valid part"),
    (["train", "dataset.n=20", "+protocol.valid_group=video"], "single group"),
    (["train", "-d", "mosi_utterance", "dataset.root={tmp}/absent"], "absent' does not exist"),
    (["train", "-d", "mosi", "dataset.path={tmp}/evil.pkl"], "refusing to load shutil.rmtree"),
    (["train", "-d", "npz", "dataset.path={tmp}/absent.npz"], "absent.npz"),
    (["evaluate", "{tmp}/absent.pt"], "absent.pt' does not exist"),
    (["benchmark", "-d", "synthetic", "-m", "late_fusion,nope", "--output", "{tmp}/runs"],
     "unknown method config 'nope'"),
    (["benchmark", "-d", "synthetic", "-m", "late_fusion", "--seeds", "x-y",
      "--output", "{tmp}/runs"], "seeds='x-y'"),
    (["data", "verify", "-d", "deap_bandpower"], "needs a data folder: set dataset.root"),
    (["train", "method.width=abc"], "method 'feature_fusion' cannot be built"),
    (["train", "method.dropout=2.0"], "dropout probability has to be between 0 and 1"),
    (["train", "dataset.n=abc"], "dataset 'synthetic': a dataset.* value has the wrong type"),
    (["train", "train.batch_size=0"], "train.batch_size=0; use an integer >= 1"),
    (["train", "train.max_epochs=0"], "train.max_epochs=0; use an integer >= 1 (or -1)"),
    (["train", "train.lr=-1"], "train.lr=-1"),
    (["train", "train.optimizer=rmsprop"], "train.optimizer='rmsprop'; use one of adamw"),
    (["train", "train.scheduler=cosine"], "train.scheduler='cosine'; use one of plateau, none"),
    (["train", "dataset.modalities=[text,eeg]"], "no modality 'eeg'"),
    (["train", "method.encoder=transformer", "method.width=10"], "not divisible by heads=4"),
    (["train", "protocol.name=group_kfold", "+protocol.group=video", "+protocol.k=2",
      "protocol.fold=fold7"], "protocol.fold='fold7'; valid folds: ['fold0', 'fold1']"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[:3])[:40] for a, _ in BAD])
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(cli, tmp_path, argv, message):
    _unsafe_pickle(tmp_path / "evil.pkl")
    runs = tmp_path / "runs"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "train":
        argv += [f"output_dir={runs}", "train.progress_bar=false"]
    rc, out, err = cli(*argv)
    assert rc == 2
    assert err.startswith("emodistill: error: ") and message in err, err
    assert "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "x.pt", "--split", "dev"])
    assert e.value.code == 2
    assert "invalid choice: 'dev'" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which("emodistill")
    assert exe, "the emodistill console script is not on PATH (pip install -e .)"
    res = subprocess.run([exe, "list", "encoders"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.startswith("encoders: ")


def test_sweep_flags_of_the_other_backend_are_refused(cli, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("train.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    base = ["sweep", "-d", "synthetic", "-m", "feature_fusion", "--space", space]
    rc, _, err = cli(*base, "--workers", "2")
    assert rc != 0 and "--workers belong to --backend ray" in err
    rc, _, err = cli(*base, "--backend", "ray", "--storage", "sqlite:///x.db")
    assert rc != 0 and "--storage belongs to --backend optuna" in err
    assert not (tmp_path / "x.db").exists()
