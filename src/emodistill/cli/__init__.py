"""The ``emodistill`` command line.

Sub-commands::

    emodistill train [-e EXP] [-d DATASET] [-m METHOD] [--config FILE] [key=value ...]
    emodistill train --resume RUN_DIR
    emodistill evaluate CHECKPOINT [--split test] [-d DATASET] [key=value ...]
    emodistill benchmark -d DATASET -m M1,M2 [--seeds 1111-1115] [--reference M1]
                         [key=value ...]
    emodistill sweep -d DATASET -m METHOD --space SPACE.yaml [--trials N] [--storage URL]
                     [--backend ray [--workers N] [--address auto]]
    emodistill data verify -d DATASET [key=value ...]
    emodistill list [datasets|methods|experiments|protocols|encoders]
    emodistill predict CHECKPOINT --input FILE.npz [--modalities a,b] [--output FILE]
    emodistill export CHECKPOINT --format onnx|torchscript [--output FILE]
    emodistill report RUN_OR_BENCHMARK_DIR [--embedding pca|tsne|none] [key=value ...]
    emodistill features text|audio --input ... --output FILE.npz
    emodistill cache ls|prune [--older-than DAYS] [--max-size SIZE] [--all]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence

from emodistill.errors import ConfigError, EmodistillError

log = logging.getLogger("emodistill")


def _setup_logging(verbose: bool) -> None:
    if not any(getattr(h, "_emodistill_cli", False) for h in log.handlers):  # once per process
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._emodistill_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    level = logging.INFO if verbose else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # a resumed run continues in its own checkpoints folder
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty")


def _cmd_train(a: argparse.Namespace) -> int:
    from emodistill.config import compose
    from emodistill.training.run import run_experiment

    if a.resume is not None:
        from emodistill.training.checkpointing import load_run_config

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


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from emodistill.training.evaluate import evaluate_checkpoint

    if a.dataset:  # another dataset: every sample, beside its majority class
        from emodistill.training.transfer import evaluate_on_dataset

        print(json.dumps(evaluate_on_dataset(a.checkpoint, a.dataset, a.overrides), indent=2))
        return 0
    metrics = evaluate_checkpoint(a.checkpoint, split=a.split, overrides=a.overrides)
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_benchmark(a: argparse.Namespace) -> int:
    from emodistill.training.benchmark import parse_seeds, run_benchmark

    res = run_benchmark(
        dataset=a.dataset, methods=[m for m in a.methods.split(",") if m],
        seeds=parse_seeds(a.seeds), experiment=a.experiment, overrides=a.overrides,
        output_dir=a.output, name=a.name, resume=a.resume, reference=a.reference,
        parallel=a.parallel,
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


def _cmd_data_verify(a: argparse.Namespace) -> int:
    from emodistill.config import compose, to_container
    from emodistill.data.registry import build_dataset
    from emodistill.training.run import prepare

    cfg = compose(dataset=a.dataset, overrides=a.overrides)
    ds = build_dataset(to_container(cfg.dataset))
    prep = prepare(cfg, ds, check_training=False)
    summary = ds.summary()
    summary["info"] = ds.info
    summary["protocol"] = {
        "name": cfg.protocol.name,
        "folds": {f.name: {"train": len(f.train), "valid": len(f.valid), "test": len(f.test)}
                  for f in prep.folds},
        "group_disjoint": True,
        # modalities whose features were learned with labels on the validation rows
        "valid_leaked": prep.valid_leaked,
    }
    print(json.dumps(summary, indent=2, default=str))
    print(f"OK: {ds.spec.name} verified, fingerprint {summary['fingerprint']}")
    return 0


def _cmd_list(a: argparse.Namespace) -> int:
    from emodistill.config import list_configs
    from emodistill.data.protocols import PROTOCOLS
    from emodistill.data.registry import DATASETS
    from emodistill.models import ENCODERS, METHODS

    groups = {
        "datasets": ("dataset configs", list_configs("dataset"), DATASETS.names()),
        "methods": ("method configs", list_configs("method"), METHODS.names()),
        "experiments": ("experiment configs", list_configs("experiment"), None),
        "protocols": ("protocols", PROTOCOLS.names(), None),
        "encoders": ("encoders", ENCODERS.names(), None),
    }
    for key, (title, names, registered) in groups.items():
        if a.what and a.what != key:
            continue
        print(f"{title}: {', '.join(names)}")
        if registered is not None:
            print(f"  registered {key}: {', '.join(registered)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for docs and tests)."""
    from emodistill import __version__

    p = argparse.ArgumentParser(prog="emodistill", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"emodistill {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show Lightning's logs")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one config (all folds of its protocol)")
    t.add_argument("-e", "--experiment", default=None, help="experiment config name")
    t.add_argument("-d", "--dataset", default=None, help="dataset config name")
    t.add_argument("-m", "--method", default=None, help="method config name")
    t.add_argument("--config", default=None, help="a YAML file merged after the named configs")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run folder from its last checkpoint")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3")
    t.set_defaults(fn=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a saved checkpoint on its split")
    e.add_argument("checkpoint")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("-d", "--dataset", default=None,
                   help="evaluate on all samples of another dataset config (e.g. a DEAP model "
                        "on mahnob_bandpower); refused when layout or labels differ")
    e.add_argument("overrides", nargs="*", help="e.g. dataset.root=PATH if the data moved")
    e.set_defaults(fn=_cmd_evaluate)

    b = sub.add_parser("benchmark", help="methods x seeds -> mean ± std table")
    b.add_argument("-d", "--dataset", required=True)
    b.add_argument("-m", "--methods", required=True,
                   help="comma-separated method configs, e.g. unimodal,early_fusion")
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

    d = sub.add_parser("data", help="data utilities")
    dsub = d.add_subparsers(dest="data_command", required=True)
    v = dsub.add_parser("verify", help="check files, shapes, labels, splits; print a fingerprint")
    v.add_argument("-d", "--dataset", required=True)
    v.add_argument("overrides", nargs="*")
    v.set_defaults(fn=_cmd_data_verify)

    ls = sub.add_parser("list", help="list configs and registered names")
    ls.add_argument("what", nargs="?", default=None,
                    choices=["datasets", "methods", "experiments", "protocols", "encoders"])
    ls.set_defaults(fn=_cmd_list)

    from emodistill._cli_serving import add_commands as _add_serving_commands

    _add_serving_commands(sub)  # predict, export, report, features
    from emodistill._cli_cache import add_commands as _add_cache_commands

    _add_cache_commands(sub)  # cache ls|prune
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emodistill`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # ``evaluate CKPT -d DATASET key=value``: overrides after an option land in ``extra``
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in x and not x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    try:
        return int(args.fn(args))
    except EmodistillError as e:
        print(f"emodistill: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `emodistill predict ... | head`: the reader has gone
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
