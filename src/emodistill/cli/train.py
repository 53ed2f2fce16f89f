"""``emodistill train``, ``benchmark`` and ``sweep``: the commands that train.

::

    emodistill train [-e EXP] [-d DATASET] [-m METHOD] [--config FILE] [key=value ...]
    emodistill train --resume RUN_DIR
    emodistill benchmark -d DATASET -m M1,M2 [--seeds 1111-1115] [--reference M1]
                         [--parallel auto|off|N] [--workers N] [key=value ...]
    emodistill sweep -d DATASET -m METHOD --space SPACE.yaml [--trials N] [--storage URL]
                     [--backend ray [--workers N] [--address auto]]

Only argparse is imported here; the engine (torch, Lightning) loads when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from emodistill.errors import ConfigError, EmodistillError

__all__ = ["add_commands"]


def _cmd_train(a: argparse.Namespace) -> int:
    from emodistill.config import compose
    from emodistill.training.run import run_experiment

    if a.resume is not None:
        from emodistill.training.run_folders import load_run_config

        given = [f for f, v in (("-e", a.experiment), ("-d", a.dataset), ("-m", a.method),
                                ("--config", a.config)) if v] + list(a.overrides)
        if given:
            raise ConfigError(f"--resume continues a run with its own config.yaml; drop "
                              f"{', '.join(given)}")
        cfg = load_run_config(a.resume)
        print(f"run folder: {a.resume} (continuing)", flush=True)
        res = run_experiment(cfg, resume=a.resume)
    else:
        cfg = compose(dataset=a.dataset, method=a.method, experiment=a.experiment,
                      config_file=a.config, overrides=a.overrides)
        res = run_experiment(cfg)
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:  # a DDP worker: rank 0 reports
        return 0
    print(f"run folder: {res.path}")
    for f in res.folds:
        print(f"[{f.fold}] best epoch {f.best_epoch} of {f.epochs}; test: "
              + ", ".join(f"{k}={v:.4f}" for k, v in f.test.items()))
    if len(res.folds) > 1:
        print("mean over folds: " + ", ".join(f"{k}={v:.4f}" for k, v in res.mean.items()))
    return 0


def _cmd_benchmark(a: argparse.Namespace) -> int:
    from emodistill.config import split_method_entries
    from emodistill.training.benchmark import parse_seeds, run_benchmark

    res = run_benchmark(
        dataset=a.dataset, methods=split_method_entries(a.methods),
        seeds=parse_seeds(a.seeds), experiment=a.experiment, overrides=a.overrides,
        output_dir=a.output, name=a.name, resume=a.resume, reference=a.reference,
        parallel=a.parallel, workers=a.workers,
    )
    print(res.markdown)
    extra = ", paired.csv" if res.paired is not None else ""
    print(f"tables written to {res.path} (summary.md, summary.csv, per_seed.csv{extra})")
    return 0


def _cmd_sweep(a: argparse.Namespace) -> int:
    from emodistill.training.sweep import load_space, run_ray_sweep, run_sweep

    common = dict(dataset=a.dataset, method=a.method, space=load_space(a.space),
                  n_trials=a.trials, experiment=a.experiment, overrides=a.overrides,
                  study_name=a.study, output_dir=a.output)
    ray_flags = {"--workers": ("max_concurrent", a.workers), "--address": ("address", a.address),
                 "--cpus-per-trial": ("cpus_per_trial", a.cpus_per_trial),
                 "--gpus-per-trial": ("gpus_per_trial", a.gpus_per_trial)}
    ray_opts = {key: v for key, v in ray_flags.values() if v is not None}
    if a.backend == "optuna":
        if ray_opts:
            given = ", ".join(f for f, (_, v) in ray_flags.items() if v is not None)
            raise ConfigError(f"{given} belong to --backend ray; "
                              "Optuna shares a study through --storage instead")
        study = run_sweep(**common, storage=a.storage)
        print(f"study {study.study_name}: best validation value {study.best_value:.6f} with "
              f"{study.best_params}")
        print(f"best parameters written to {a.output}/{study.study_name}-best.json")
        return 0
    if a.storage:
        raise ConfigError("--storage belongs to --backend optuna; Ray Tune records trials "
                          "under --output/ray")
    grid = run_ray_sweep(**common, **ray_opts)
    if grid.errors:
        raise EmodistillError(f"{len(grid.errors)} of {len(grid)} Ray trial(s) failed; "
                              f"the first: {grid.errors[0]!r}")
    best = grid.get_best_result()
    print(f"best validation value {best.metrics['best_val']:.6f} with {best.config} "
          f"(run folder {best.metrics['run_dir']}); written to {a.output}/*-best.json")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``train``, ``benchmark`` and ``sweep`` to the CLI's sub-parsers."""
    t = sub.add_parser("train", help="train one config (all folds of its protocol)")
    t.add_argument("-e", "--experiment", default=None, help="experiment config name")
    t.add_argument("-d", "--dataset", default=None, help="dataset config name")
    t.add_argument("-m", "--method", default=None, help="method config name")
    t.add_argument("--config", default=None, help="a YAML file merged after the named configs")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run folder from its last checkpoint")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3")
    t.set_defaults(fn=_cmd_train)

    b = sub.add_parser("benchmark", help="methods x seeds -> mean ± std table")
    b.add_argument("-d", "--dataset", required=True)
    b.add_argument("-m", "--methods", required=True,
                   help="comma-separated method configs, each with optional overrides after "
                        "a colon, e.g. unimodal,late_fusion:aux_weight=0.5,dropout=0.1 "
                        "(a key=value after a comma belongs to the method before it; commas "
                        "inside [...], {...} or quotes do not split)")
    b.add_argument("-e", "--experiment", default=None)
    b.add_argument("--seeds", default="1111-1115")
    b.add_argument("--output", default="runs/benchmarks")
    b.add_argument("--name", default=None, help="benchmark folder name")
    b.add_argument("--resume", action="store_true",
                   help="reuse finished runs in the folder --name (default: the one "
                        "unfinished folder of the default name); continue interrupted runs "
                        "from their last checkpoint")
    b.add_argument("--reference", default=None, metavar="METHOD",
                   help="add each method's per-seed paired difference to METHOD "
                        "(and the count of seeds where it is better)")
    b.add_argument("--parallel", default="auto", metavar="auto|off|N",
                   help="train the seeds x folds of a method that supports it as one stacked "
                        "model (N: at most N members at once; off: one fit after another)")
    b.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run the fits left to one fit each (methods without a parallel path, "
                        "or --parallel off) N at a time in Ray workers, one CPU each and a "
                        "1/N share of a GPU where there is one (extra 'ray'; default 1: in "
                        "this process, one after another)")
    b.add_argument("overrides", nargs="*")
    b.set_defaults(fn=_cmd_benchmark)

    sw = sub.add_parser("sweep", help="hyper-parameter search on validation (Optuna, or Ray Tune)")
    sw.add_argument("-d", "--dataset", required=True)
    sw.add_argument("-m", "--method", required=True)
    sw.add_argument("-e", "--experiment", default=None)
    sw.add_argument("--space", required=True,
                    help="search space: a packaged name (fusion_small) or a YAML file "
                         "(see training/sweep.py)")
    sw.add_argument("--trials", type=int, default=20)
    sw.add_argument("--backend", choices=["optuna", "ray"], default="optuna",
                    help="optuna: trials one after another in this process (share a study "
                         "between processes with --storage); ray: Ray Tune trials in "
                         "parallel, locally or on a cluster (extra 'ray')")
    sw.add_argument("--storage", default=None, help="e.g. sqlite:///runs/sweep.db (shared)")
    sw.add_argument("--workers", type=int, default=None,
                    help="ray: trials at once (default: as many as the CPUs allow)")
    sw.add_argument("--cpus-per-trial", type=float, default=None,
                    help="ray: CPUs per trial (default 1)")
    sw.add_argument("--gpus-per-trial", type=float, default=None,
                    help="ray: GPUs per trial (default 0)")
    sw.add_argument("--address", default=None,
                    help="ray: a running cluster ('auto', 'ray://host:10001'); "
                         "default: start a local one")
    sw.add_argument("--study", default=None,
                    help="study name (default: <dataset>-<method>-<hash of what is swept>); "
                         "a study in --storage that sweeps something else is refused")
    sw.add_argument("--output", default="runs/sweeps")
    sw.add_argument("overrides", nargs="*")
    sw.set_defaults(fn=_cmd_sweep)
