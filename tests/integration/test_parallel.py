"""Members in parallel (training/parallel.py) against one Lightning fit per member."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError
from emodistill.training.parallel import parallel_unsupported, run_parallel
from emodistill.training.run import run_experiment

SMALL = ["train.max_epochs=3", "train.patience=1", "train.progress_bar=false"]


def _both(tmp_path, dataset, method, overrides, seeds):
    cfgs = [compose(dataset=dataset, method=method, overrides=[*overrides, f"seed={s}"])
            for s in seeds]
    ds = build_dataset(to_container(cfgs[0].dataset))
    seq = [run_experiment(c, dataset=ds, output_dir=tmp_path / "seq") for c in cfgs]
    par = run_parallel(cfgs, dataset=ds, output_dir=tmp_path / "par")
    return seq, par


def _files(d):
    # tracker events (train.tracker) are written by Lightning fits only
    return sorted(p.name for p in d.iterdir() if p.name != "tensorboard")


def _assert_same_run(a, b, *, tol):
    assert _files(a.path) == _files(b.path)
    ra, rb = (json.loads((r.path / "results.json").read_text()) for r in (a, b))
    assert list(ra) == list(rb) and ra.get("selection") == rb.get("selection")
    assert [f.fold for f in a.folds] == [f.fold for f in b.folds]
    for fa, fb in zip(a.folds, b.folds, strict=True):
        assert _files(fa.path) == _files(fb.path)
        assert (fa.best_epoch, fa.epochs, fa.sizes) == (fb.best_epoch, fb.epochs, fb.sizes)
        assert fb.test == pytest.approx(fa.test, abs=tol)
        assert fb.best_val == pytest.approx(fa.best_val, abs=tol, nan_ok=True)  # nan: no valid
        ma, mb = (pd.read_csv(f.path / "metrics.csv") for f in (fa, fb))
        assert list(ma.columns) == list(mb.columns)
        assert (ma - mb).abs().max().max() < 10 * tol
        pa, pb = (pd.read_csv(f.path / "predictions.csv") for f in (fa, fb))
        assert list(pa.columns) == list(pb.columns)
        assert (pa["id"] == pb["id"]).all()
        num = pa.select_dtypes("number").columns
        assert (pa[num] - pb[num]).abs().max().max() < 10 * tol


def test_late_fusion_with_dropout_matches_the_sequential_fits_draw_for_draw(tmp_path):
    # dropout on: the per-member generators reproduce the sequential fit's masks
    over = ["dataset.n=160", "method.width=8", "method.layers=1", *SMALL]
    seq, par = _both(tmp_path, "synthetic", "late_fusion", over, seeds=(3, 4))
    for a, b in zip(seq, par, strict=True):
        _assert_same_run(a, b, tol=1e-5)
        assert b.path.parent.name == "par" and b.path.name == a.path.name


def test_transformer_encoders_with_dropout_match_the_sequential_fits_draw_for_draw(tmp_path):
    # nn.TransformerEncoder (pre-norm, GELU): attention-weight and block dropout per member
    over = ["dataset.n=120", "method.encoder=transformer", "method.width=8", "method.layers=1",
            "method.dropout=0.3", *SMALL]
    seq, par = _both(tmp_path, "synthetic", "late_fusion", over, seeds=(5,))
    _assert_same_run(seq[0], par[0], tol=1e-5)


def test_fixed_recipe_selection_last_matches_the_sequential_fits(tmp_path):
    over = ["dataset.n=120", "method.width=8", "method.layers=1", *SMALL,
            "train.selection=last", "train.scheduler=none"]
    seq, par = _both(tmp_path, "synthetic", "feature_fusion", over, seeds=(7,))
    _assert_same_run(seq[0], par[0], tol=1e-5)
    assert par[0].folds[0].best_epoch == par[0].folds[0].epochs - 1 == 2


def test_no_valid_part_matches_the_sequential_fits(tmp_path):
    # protocol.valid_fraction=0: no validation loop (and no loader draw) in either path
    over = ["dataset.n=120", "method.width=8", "method.layers=1", *SMALL,
            "train.selection=last", "train.scheduler=none", "protocol.name=group_kfold",
            "+protocol.group=video", "+protocol.k=2", "+protocol.valid_fraction=0"]
    seq, par = _both(tmp_path, "synthetic", "late_fusion", over, seeds=(5,))
    _assert_same_run(seq[0], par[0], tol=1e-5)
    assert [f.sizes["valid"] for f in par[0].folds] == [0, 0]
    sel = json.loads((par[0].path / "results.json").read_text())["selection"]
    assert sel["valid_part"] is False


def test_physio_student_on_folds_matches_the_sequential_fits(tmp_path):
    # folds x seed, BatchNorm in the tokeniser; attention dropout off (see module doc)
    over = ["dataset.n_subjects=4", "dataset.n_trials=4", "+protocol.k=2",
            "method.modality=eeg", "method.width=16", "method.layers=1", "method.heads=2",
            "method.head_width=16", "method.dropout=0.0", "method.head_dropout=0.3",
            "train.save_checkpoint=false", *SMALL]
    seq, par = _both(tmp_path, "synthetic_physio", "physio_student", over, seeds=(5,))
    assert len(par[0].folds) == 2
    _assert_same_run(seq[0], par[0], tol=1e-3)


@pytest.mark.parametrize("no_valid", [False, True])
def test_hinton_kd_teacher_then_student_per_fold_matches_the_sequential_fits(tmp_path, no_valid):
    # each member's teacher is trained on its fold first (in parallel), then the students;
    # no_valid: teacher and student trained on train + the carved valid part (fixed recipe)
    tiny = ["width=16", "heads=2", "layers=1", "head_width=16", "dropout=0.0"]
    fixed = ["train.selection=last", "train.scheduler=none", "protocol.valid_fraction=0"]
    over = ["dataset.n_subjects=4", "dataset.n_trials=4", "+protocol.k=2",
            "method.modality=eeg", "train.save_checkpoint=false", *SMALL,
            *(f"method.student.{t}" for t in tiny), *(f"method.teacher.method.{t}" for t in tiny),
            *(fixed if no_valid else [])]
    seq, par = _both(tmp_path, "synthetic_physio", "hinton_kd", over, seeds=(6,))
    _assert_same_run(seq[0], par[0], tol=1e-3)
    assert all((f.sizes["valid"] == 0) == no_valid for f in par[0].folds)
    for fa, fb in zip(seq[0].folds, par[0].folds, strict=True):
        ta, tb = (pd.read_csv(f.path / "teacher" / "metrics.csv") for f in (fa, fb))
        assert (ta - tb).abs().max().max() < 1e-2


def test_kd_student_with_attention_dropout_matches_the_sequential_fits_draw_for_draw(tmp_path):
    # dropout everywhere, attention weights included (teacher and student), 2 folds: every
    # member's draws are its sequential fit's draws, so the same epochs are selected
    tiny = ["width=16", "heads=2", "layers=2", "head_width=16", "dropout=0.2"]
    over = ["dataset.n_subjects=4", "dataset.n_trials=4", "+protocol.k=2",
            "method.modality=eeg", "train.save_checkpoint=false", "train.max_epochs=4",
            "train.patience=2", "train.progress_bar=false",
            *(f"method.student.{t}" for t in tiny), *(f"method.teacher.method.{t}" for t in tiny)]
    seq, par = _both(tmp_path, "synthetic_physio", "hinton_kd", over, seeds=(8,))
    assert len(par[0].folds) == 2
    _assert_same_run(seq[0], par[0], tol=1e-4)
    for fa, fb in zip(seq[0].folds, par[0].folds, strict=True):
        ta, tb = (pd.read_csv(f.path / "teacher" / "metrics.csv") for f in (fa, fb))
        assert list(ta.columns) == list(tb.columns)
        assert (ta - tb).abs().max().max() < 1e-3


def test_parallel_runs_are_deterministic_and_chunking_changes_nothing(tmp_path):
    over = ["dataset.n=120", "method.width=8", "method.layers=1", *SMALL]
    cfgs = [compose(dataset="synthetic", method="feature_fusion", overrides=[*over, f"seed={s}"])
            for s in (1, 2, 3)]
    ds = build_dataset(to_container(cfgs[0].dataset))
    runs = [run_parallel(cfgs, dataset=ds, output_dir=tmp_path / name, max_chunk=chunk)
            for name, chunk in (("a", None), ("b", None), ("c", 2))]
    for a, b, c in zip(*runs, strict=True):
        assert a.mean == b.mean  # the same run twice: bit for bit
        for fa, fb in zip(a.folds, b.folds, strict=True):
            assert (fa.path / "metrics.csv").read_text() == (fb.path / "metrics.csv").read_text()
        assert c.mean == a.mean  # another chunking: the same kernels per member (exact)


def test_deterministic_runs_stay_deterministic_and_equal_the_sequential_fit(tmp_path):
    import torch

    over = ["dataset.n=120", "method.width=8", "method.layers=1", "train.deterministic=true",
            *SMALL]
    cfgs = [compose(dataset="synthetic", method="late_fusion", overrides=[*over, f"seed={s}"])
            for s in (1, 2)]
    ds = build_dataset(to_container(cfgs[0].dataset))
    was = torch.are_deterministic_algorithms_enabled()
    a, b = (run_parallel(cfgs, dataset=ds, output_dir=tmp_path / n) for n in "ab")
    assert torch.are_deterministic_algorithms_enabled() == was  # restored after the run
    assert [r.mean for r in a] == [r.mean for r in b]
    seq = run_experiment(cfgs[1], dataset=ds, output_dir=tmp_path / "seq")
    assert seq.mean == pytest.approx(a[1].mean, abs=1e-5)


def test_the_flat_gradient_buffer_raises_no_layout_warning(tmp_path):
    import warnings

    import torch

    cfgs = [compose(dataset="synthetic", method="late_fusion", overrides=[
        "dataset.n=60", "method.width=8", "method.layers=1", "train.max_epochs=1",
        "train.progress_bar=false", f"seed={s}"]) for s in (1, 2)]
    ds = build_dataset(to_container(cfgs[0].dataset))
    torch._C._set_warnAlways(True)  # torch warns once per process otherwise
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            run_parallel(cfgs, dataset=ds, output_dir=tmp_path)
    finally:
        torch._C._set_warnAlways(False)
    assert not [w for w in seen if "gradient layout contract" in str(w.message)]


@pytest.mark.parametrize(("method", "override", "reason"), [
    ("hinton_kd", ["method.teacher_mode=train"], "teacher_mode"),
    ("mkd", [], "own optimisation steps"),
    ("dmd", [], "does not declare parallel_ok"),
    ("late_fusion", ["train.optimizer=sgd"], "train.optimizer"),
    ("late_fusion", ["train.gradient_clip_val=1.0"], "train.gradient_clip_val"),
    ("hinton_kd_mlp", ["method.teacher.crossfit=3"], "crossfit"),
    ("eeg_mlp", ["method.input_noise=0.1"], "input_noise"),
    ("eeg_hinton_kd_logistic_fm", [], "kd_mixup"),
    ("late_fusion", ["+dataset.text_level=ids"], "token-id text inputs"),
])
def test_unsupported_configs_name_the_reason(method, override, reason):
    cfg = compose(dataset="synthetic", method=method, overrides=override)
    why = parallel_unsupported(cfg)
    assert why is not None and reason in why
    assert parallel_unsupported(compose(dataset="synthetic", method="late_fusion")) is None


def test_benchmark_refuses_a_bad_parallel_value(tmp_path):
    from emodistill.training.benchmark import run_benchmark

    with pytest.raises(ConfigError, match="--parallel 'fast'"):
        run_benchmark(dataset="synthetic", methods=["late_fusion"], seeds=[1],
                      overrides=["dataset.n=80", "train.max_epochs=1"],
                      output_dir=tmp_path, parallel="fast")


def test_benchmark_parallel_and_sequential_give_the_same_table_and_say_which(tmp_path, caplog):
    import logging

    from emodistill.training.benchmark import run_benchmark

    common = dict(dataset="synthetic", methods=["late_fusion"], seeds=[1, 2],
                  overrides=["dataset.n=120", "train.max_epochs=2", "train.progress_bar=false",
                             "method.width=8", "method.layers=1"], output_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="emodistill"):
        par = run_benchmark(**common, name="par", parallel="2")
        seq = run_benchmark(**common, name="seq", parallel="off")
    assert "late_fusion: 2 seed(s) x folds trained in parallel (chunk 2)" in caplog.text
    assert "--parallel off: one fit per seed and fold" in caplog.text
    cols = ["acc", "f1_macro", "f1_weighted"]
    assert (par.per_seed[cols] - seq.per_seed[cols]).abs().max().max() < 1e-5
    assert sorted(p.name for p in (par.path / "runs").iterdir()) == sorted(
        p.name for p in (seq.path / "runs").iterdir())
    # which path each seed took is in the table, the summary and each run's results.json
    assert list(par.per_seed["training_path"]) == ["parallel"] * 2
    assert list(seq.per_seed["training_path"]) == ["sequential"] * 2
    assert "* late_fusion: parallel (2 seeds)" in par.markdown
    assert "* late_fusion: sequential (2 seeds); parallel path not used: --parallel off" in (
        seq.markdown)
    for res, want in ((par, "parallel"), (seq, "sequential")):
        for run in (res.path / "runs").iterdir():
            assert json.loads((run / "results.json").read_text())["training_path"] == want


def test_benchmark_tables_have_one_column_order_on_both_paths(tmp_path):
    # regression metrics come back in different orders from the two paths (the parallel
    # path in the metric registry's order, a Lightning fit sorted); the files must match
    from emodistill.training.benchmark import run_benchmark

    common = dict(dataset="synthetic", methods=["late_fusion"], seeds=[1],
                  overrides=["dataset.n=120", "dataset.target=sentiment", "train.max_epochs=1",
                             "train.progress_bar=false", "method.width=8", "method.layers=1"],
                  output_dir=tmp_path)
    par = run_benchmark(**common, name="par", parallel="2")
    seq = run_benchmark(**common, name="seq", parallel="off")
    cols = list(pd.read_csv(seq.path / "per_seed.csv").columns)
    assert cols[:4] == ["method", "seed", "n_folds", "acc2_has0"]
    assert list(pd.read_csv(par.path / "per_seed.csv").columns) == cols


def test_eeg_mlp_members_with_input_dropout_match_the_sequential_fits(tmp_path):
    # members averaged, dropout on the inputs and the hidden layer, label smoothing
    over = ["dataset.n=160", "method.modality=audio", "method.width=8", "method.members=3",
            "method.input_dropout=0.3", "method.label_smoothing=0.1", *SMALL]
    seq, par = _both(tmp_path, "synthetic", "eeg_mlp", over, seeds=(3,))
    _assert_same_run(seq[0], par[0], tol=1e-5)


def test_eeg_mlp_skip_linear_with_linear_l2_matches_the_sequential_fits(tmp_path):
    # the wide-and-deep form: a raw-input linear path with its L2 penalty in the loss
    over = ["dataset.n=160", "method.modality=audio", "method.width=8", "method.members=2",
            "method.input_dropout=0.5", "method.skip_linear=true", "method.linear_l2=0.3",
            *SMALL]
    seq, par = _both(tmp_path, "synthetic", "eeg_mlp", over, seeds=(3,))
    _assert_same_run(seq[0], par[0], tol=1e-5)


def test_eeg_mlp_linear_c_grid_chosen_per_fold_matches_the_sequential_fits(tmp_path):
    # linear_c: the penalty 1/(C N) per fold, C chosen on each fold's valid part by the
    # logistic row's selection; 4 folds of equal sizes train stacked in one group with
    # different chosen C (the strength is a per-member buffer)
    grid = "[0.001,0.01,0.1,1.0]"
    proto = ["dataset.n=160", "protocol.name=group_kfold", "+protocol.group=video",
             "+protocol.k=4", *SMALL]
    over = [*proto, "method.modality=audio", "method.width=8", "method.members=2",
            "method.input_dropout=0.5", "method.skip_linear=true", f"method.linear_c={grid}"]
    seq, par = _both(tmp_path, "synthetic", "eeg_mlp", over, seeds=(3,))
    _assert_same_run(seq[0], par[0], tol=1e-5)
    chosen = [json.loads((f.path / "linear_c.json").read_text()) for f in par[0].folds]
    assert len({f.sizes["train"] for f in par[0].folds}) == 1  # one stacked group ...
    assert len({c["C"] for c in chosen}) > 1  # ... with different per-fold strengths
    for c, f in zip(chosen, par[0].folds, strict=True):
        assert c["train_size"] == f.sizes["train"] and c["part"] == "valid"
        assert c["linear_l2"] == pytest.approx(1.0 / (c["C"] * f.sizes["train"]))
    # each fold's C is the one the logistic row selects on the same fold
    lcfg = compose(dataset="synthetic", method="logistic",
                   overrides=[*proto, "method.modality=audio", f"method.C={grid}", "seed=3"])
    logi = run_experiment(lcfg, dataset=build_dataset(to_container(lcfg.dataset)),
                          output_dir=tmp_path / "logistic")
    for c, f in zip(chosen, logi.folds, strict=True):
        rows = pd.read_csv(f.path / "metrics.csv")
        assert float(rows.loc[rows.epoch == f.best_epoch, "choice/C"].iloc[0]) == c["C"]


def test_eeg_mlp_linear_c_grid_is_refused_without_a_validation_part(tmp_path):
    cfg = compose(dataset="synthetic", method="eeg_mlp", overrides=[
        "dataset.n=120", "method.modality=audio", "method.layers=0",
        "method.linear_c=[0.01,0.1]", "protocol.name=group_kfold", "+protocol.group=video",
        "+protocol.k=2", "+protocol.valid_fraction=0", "train.selection=last",
        "train.scheduler=none", *SMALL])
    with pytest.raises(ConfigError, match="linear_c chosen from a grid"):
        run_experiment(cfg, dataset=build_dataset(to_container(cfg.dataset)),
                       output_dir=tmp_path)


def test_kd_from_a_fitted_logistic_teacher_matches_the_sequential_fits(tmp_path):
    # the teacher is fitted per member in one call (no gradient loop), then the students
    # train stacked; the result is the sequential fit's
    over = ["dataset.n=160", "method.modality=audio", "method.teacher.method.modality=null",
            "method.teacher.method.C=[0.01,1.0]", "method.student.width=8", *SMALL]
    cfg = compose(dataset="synthetic", method="eeg_hinton_kd_logistic", overrides=over)
    assert parallel_unsupported(cfg) is None
    seq, par = _both(tmp_path, "synthetic", "eeg_hinton_kd_logistic", over, seeds=(3, 4))
    for a, b in zip(seq, par, strict=True):
        _assert_same_run(a, b, tol=1e-5)
        t_seq, t_par = (json.loads((r.folds[0].path / "teacher" / "test_metrics.json")
                                   .read_text()) for r in (a, b))
        assert t_seq == t_par  # the same teacher fit on both paths
    crossfit = compose(dataset="synthetic", method="eeg_hinton_kd_logistic_crossfit",
                       overrides=over)
    assert "crossfit" in parallel_unsupported(crossfit)


def test_kd_from_a_fitted_trees_teacher_falls_back_to_one_fit_per_member(tmp_path, caplog):
    # the trees' node tables differ in shape from fit to fit: a trees teacher is not stacked,
    # --parallel auto says so and trains one fit per member (it once crashed inside vmap)
    import logging

    from emodistill.training.benchmark import run_benchmark

    teacher = ("method.teacher.method={name: trees, max_iter: 10, max_leaf_nodes: 5, "
               "min_samples_leaf: 5}")
    over = ["dataset.n=160", "method.modality=audio", teacher, "method.student.width=8",
            *SMALL]
    cfg = compose(dataset="synthetic", method="eeg_hinton_kd_logistic", overrides=over)
    assert "teacher 'trees' cannot be stacked" in parallel_unsupported(cfg)
    with caplog.at_level(logging.INFO, logger="emodistill"):
        res = run_benchmark(dataset="synthetic", methods=["eeg_hinton_kd_logistic"], seeds=[3],
                            overrides=over, output_dir=tmp_path, name="b", parallel="auto")
    assert "teacher 'trees' cannot be stacked" in caplog.text
    run = next((res.path / "runs").iterdir())
    fold = next(p for p in run.iterdir() if (p / "teacher" / "test_metrics.json").is_file())
    assert json.loads((fold / "teacher" / "test_metrics.json").read_text())["acc"] > 0
    assert res.per_seed["acc"].notna().all()


def test_contrastive_feature_kd_students_match_the_sequential_fits(tmp_path):
    # eeg_kd_feature_hkd (kd_feature, feature_loss: contrastive): the teacher trained per fold
    # first, then two members' students stacked; the InfoNCE takes its negatives from each
    # member's own batch, so a member equals its sequential fit only if no other member's
    # rows enter its contrast
    method = "eeg_kd_feature_hkd"
    tiny = ["width=8", "layers=1"]
    over = ["dataset.n=160", "method.modality=audio", "method.teacher.method.modality=text",
            *(f"method.student.{t}" for t in tiny), *(f"method.teacher.method.{t}" for t in tiny),
            "train.batch_size=16", *SMALL]
    cfg = compose(dataset="synthetic", method=method, overrides=over)
    assert parallel_unsupported(cfg) is None
    seq, par = _both(tmp_path, "synthetic", method, over, seeds=(3, 4))
    for a, b in zip(seq, par, strict=True):
        _assert_same_run(a, b, tol=1e-5)
        feat = pd.read_csv(b.folds[0].path / "metrics.csv")["train/feature"].dropna()
        assert len(feat) and (feat > 0.1).all()  # a contrast over 16 rows, not a 0 term
