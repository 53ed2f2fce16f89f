"""Hyper-parameter search on validation only: Optuna (extra ``sweep``) or Ray Tune (extra ``ray``).

A search space is a YAML mapping from dotted config keys to distributions::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    method.dropout: {type: float, low: 0.0, high: 0.5}
    method.width: {type: categorical, choices: [64, 128, 256]}
    train.batch_size: {type: int, low: 16, high: 64, step: 16}

Each trial composes the config with the sampled overrides, runs every fold and
returns the monitored **validation** metric of the selected checkpoints
(averaged over folds); test metrics are recorded as trial attributes for
later reading but never drive the search. With ``storage="sqlite:///file.db"``
several processes (or machines sharing the file system) can work on one study.
A study records what it sweeps (dataset, method, experiment, overrides, space,
monitor); a sweep whose description differs is refused instead of joining it,
and the default study name is derived from that description
(``<dataset>-<method>-<8 hex digits>``), so two different sweeps sharing one
``--storage`` never mix. The best parameters are written to
``<output_dir>/<study>-best.json`` as well as returned.

:func:`run_ray_sweep` runs the same search (the same space, Optuna's TPE sampler
through ``ray.tune.search.optuna.OptunaSearch``) as Ray Tune trials, several at
once on the local machine or on a Ray cluster (``address="auto"``); each trial is
one ``run_experiment`` in a Ray worker with ``cpus_per_trial`` CPUs and
``gpus_per_trial`` GPUs. Trials keep the caller's working directory, so relative
paths in overrides (``dataset.root=...``) must be valid on every node.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from emodistill._fs import atomic_write
from emodistill.config import _config_dir, compose, list_configs, to_container
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError, UnknownNameError
from emodistill.training.run import prepare, run_experiment
from emodistill.training.selection import require_clean_valid

__all__ = ["run_sweep", "run_ray_sweep", "load_space", "resolve_space", "describe_sweep",
           "default_study_name", "write_best"]

log = logging.getLogger(__name__)

_KINDS = ("float", "int", "categorical")


def resolve_space(space: str | Path) -> Path:
    """Return the YAML file of search space ``space``: a file, or a packaged space by name.

    ``space`` is an existing file, or the name of a space shipped in
    ``emodistill/configs/sweep/`` (``fusion_small``); a path that does not exist
    but ends in ``configs/sweep/<name>.yaml`` (the README's example, run
    outside a source checkout) resolves to the packaged ``<name>`` too.
    """
    p = Path(space).expanduser()
    if p.is_file():
        return p
    text = str(space).replace("\\", "/")
    name = p.name[: -len(p.suffix)] if p.suffix in (".yaml", ".yml") else p.name
    bare = "/" not in text and p.suffix in ("", ".yaml", ".yml")
    packaged = _config_dir() / "sweep" / f"{name}.yaml"
    if (bare or text.rsplit("/", 1)[0].endswith("configs/sweep")) and packaged.is_file():
        return packaged
    valid = list_configs("sweep")
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"--space {str(space)!r}: no such file and no packaged search space of that name.{hint} "
        f"Packaged spaces: {', '.join(valid)} (or give the path of your own YAML file)"
    )


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check a search space: a YAML file, or a packaged space by name."""
    path = resolve_space(path)
    try:
        space = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: a search space is a non-empty mapping key -> distribution")
    for key, d in space.items():
        if not isinstance(d, dict) or d.get("type") not in _KINDS:
            raise ConfigError(f"{path}: {key}: give a mapping with type in {_KINDS}")
        if d["type"] == "categorical" and not d.get("choices"):
            raise ConfigError(f"{path}: {key}: categorical needs choices")
        if d["type"] != "categorical" and not {"low", "high"} <= set(d):
            raise ConfigError(f"{path}: {key}: {d['type']} needs low and high")
    return space


def _suggest(trial: Any, key: str, d: dict[str, Any]) -> Any:
    if d["type"] == "float":
        return trial.suggest_float(key, float(d["low"]), float(d["high"]),
                                   log=bool(d.get("log", False)))
    if d["type"] == "int":
        return trial.suggest_int(key, int(d["low"]), int(d["high"]), step=int(d.get("step", 1)),
                                 log=bool(d.get("log", False)))
    return trial.suggest_categorical(key, list(d["choices"]))


def _check(dataset: str, method: str, experiment: str | None, overrides: Sequence[str],
           space: dict[str, dict[str, Any]]) -> tuple[DictConfig, MultimodalDataset]:
    """Compose the base config, check every space key exists, build and check the data."""
    base = compose(dataset=dataset, method=method, experiment=experiment,
                   overrides=list(overrides))
    ds = build_dataset(to_container(base.dataset))
    for key, d in space.items():  # every key must exist in the config
        probe = d["choices"][0] if d["type"] == "categorical" else d["low"]
        compose(dataset=dataset, method=method, experiment=experiment,
                overrides=[*overrides, f"{key}={probe}"])
    prep = prepare(base, ds)
    # a sweep's objective is the validation metric: never on a leaked validation part
    require_clean_valid([] if prep.allow_leaky else prep.valid_leaked,
                        what="a sweep's objective (the validation metric)",
                        fix="take the hyper-parameters from a sweep on a leak-free dataset and "
                        "run the fixed recipe, train.selection=last, train.recipe_from=...",
                        no_valid=prep.no_valid)
    return base, ds


def _trial_config(dataset: str, method: str, experiment: str | None, overrides: Sequence[str],
                  sampled: dict[str, Any], run_name: str) -> DictConfig:
    return compose(dataset=dataset, method=method, experiment=experiment,
                   overrides=[*overrides, *(f"{k}={v}" for k, v in sampled.items()),
                              f"run_name={run_name}"])


def describe_sweep(dataset: str, method: str, experiment: str | None,
                   overrides: Sequence[str], space: dict[str, dict[str, Any]],
                   base: DictConfig) -> dict[str, Any]:
    """Describe what a sweep searches: the identity a study sharing a storage must match."""
    return {"dataset": dataset, "method": method, "experiment": experiment,
            "overrides": [str(o) for o in overrides], "space": space,
            "monitor": str(base.train.monitor), "mode": str(base.train.mode)}


def default_study_name(what: dict[str, Any]) -> str:
    """``<dataset>-<method>-<8 hex digits of the whole description>``."""
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode())
    return f"{what['dataset']}-{what['method']}-{digest.hexdigest()[:8]}"


def _claim_study(study: Any, what: dict[str, Any], storage: str | None) -> None:
    """Record ``what`` in a new study; refuse a study that sweeps something else."""
    key = "emodistill_sweep"
    had = study.user_attrs.get(key)
    mine = json.loads(json.dumps(what, default=str))
    if had is None and study.trials:
        raise ConfigError(
            f"study {study.study_name!r} in {storage} holds {len(study.trials)} trial(s) of "
            "an unknown sweep; give this sweep its own --study NAME")
    if had is not None and had != mine:
        diff = [f"{k}: {had.get(k)!r} there, {mine.get(k)!r} here"
                for k in sorted(set(had) | set(mine)) if had.get(k) != mine.get(k)]
        raise ConfigError(
            f"study {study.study_name!r} in {storage} sweeps something else ({'; '.join(diff)}); "
            "its best value would not be this sweep's. Use another --study NAME (or none: "
            "the default name is derived from what is swept)")
    if had is None:
        study.set_user_attr(key, mine)


def write_best(output_dir: str | Path, study_name: str, payload: dict[str, Any]) -> Path:
    """Write ``<output_dir>/<study_name>-best.json`` (the winner, for later reading)."""
    path = Path(output_dir) / f"{study_name}-best.json"
    atomic_write(path, lambda f: json.dump(payload, f, indent=2, default=str))
    log.info("sweep: best parameters written to %s", path)
    return path


class _DefineByRun:
    """The space as an Optuna define-by-run function (a class: Tune pickles its searcher)."""

    def __init__(self, space: dict[str, dict[str, Any]]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        for key, d in self.space.items():
            _suggest(trial, key, d)


def run_sweep(
    *,
    dataset: str,
    method: str,
    space: dict[str, dict[str, Any]],
    n_trials: int,
    experiment: str | None = None,
    overrides: Sequence[str] = (),
    storage: str | None = None,
    study_name: str | None = None,
    output_dir: str | Path = "runs/sweeps",
    sampler_seed: int = 0,
) -> Any:
    """Run an Optuna study and return it (``study.best_params`` holds the winner).

    ``study_name`` defaults to :func:`default_study_name` of what is swept; a study
    of that name in ``storage`` that sweeps something else is refused. The winner
    is also written to ``<output_dir>/<study_name>-best.json``.
    """
    try:
        import optuna
    except ImportError:
        raise ImportError("run_sweep needs Optuna: pip install 'emodistill[sweep]'") from None
    base, ds = _check(dataset, method, experiment, overrides, space)
    what = describe_sweep(dataset, method, experiment, overrides, space, base)
    study_name = study_name or default_study_name(what)
    direction = "minimize" if base.train.mode == "min" else "maximize"
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction=direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
    )
    _claim_study(study, what, storage)

    def objective(trial: Any) -> float:
        sampled = {k: _suggest(trial, k, d) for k, d in space.items()}
        cfg = _trial_config(dataset, method, experiment, overrides, sampled,
                            f"{study_name}-trial{trial.number}")
        res = run_experiment(cfg, dataset=ds, output_dir=output_dir)
        trial.set_user_attr("run_dir", str(res.path))
        trial.set_user_attr("test_mean", res.mean)  # recorded, never optimised
        return res.best_val

    study.optimize(objective, n_trials=n_trials)
    done = [t for t in study.trials if t.value is not None]
    if done:
        best = study.best_trial
        write_best(output_dir, study_name, {
            "study": study_name, "storage": storage, "sweep": what, "trials": len(done),
            "best_value": best.value, "best_params": best.params, "trial": best.number,
            "run_dir": best.user_attrs.get("run_dir"),
            "test_mean": best.user_attrs.get("test_mean")})
    return study


def run_ray_sweep(
    *,
    dataset: str,
    method: str,
    space: dict[str, dict[str, Any]],
    n_trials: int,
    experiment: str | None = None,
    overrides: Sequence[str] = (),
    study_name: str | None = None,
    output_dir: str | Path = "runs/sweeps",
    sampler_seed: int = 0,
    max_concurrent: int | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    address: str | None = None,
) -> Any:
    """Run the search as Ray Tune trials and return Tune's ``ResultGrid``.

    Parameters
    ----------
    dataset, method, experiment, overrides, space, n_trials, study_name, output_dir, sampler_seed
        As in :func:`run_sweep`; run folders are ``output_dir/<study_name>-<trial id>``,
        Tune's own records ``output_dir/ray/<study_name>`` and the winner
        ``output_dir/<study_name>-best.json``.
    max_concurrent
        Trials running at once (default: as many as the resources allow). TPE
        proposes a trial from the results finished so far, so fewer concurrent
        trials search better and more finish sooner.
    cpus_per_trial, gpus_per_trial
        Resources Ray reserves for each trial (``train.devices`` should match the GPUs).
    address
        A running Ray cluster (``"auto"``, ``"ray://host:10001"``); ``None`` starts a
        local one, or joins the one already started in this process.

    Returns
    -------
    ray.tune.ResultGrid
        One result per trial, with ``best_val`` (the objective), ``test_<metric>``
        (recorded, never optimised) and ``run_dir``;
        ``grid.get_best_result()`` is the winner on validation.
    """
    try:
        import optuna
        import ray
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise ImportError("run_ray_sweep needs Ray Tune and Optuna: "
                          "pip install 'emodistill[ray,sweep]'") from None
    base, _ = _check(dataset, method, experiment, overrides, space)
    what = describe_sweep(dataset, method, experiment, overrides, space, base)
    study_name = study_name or default_study_name(what)
    mode = "min" if base.train.mode == "min" else "max"
    out = Path(output_dir).resolve()
    overrides = list(overrides)
    cwd = Path.cwd()

    def trainable(config: dict[str, Any]) -> None:
        # Tune starts each trial in its own folder; run where the caller stands instead, so
        # relative paths in the overrides mean what they meant to the caller
        if not cwd.is_dir():
            raise ConfigError(f"Ray trial on a node without the working directory {cwd}: "
                              "give the same folder layout on every node")
        os.chdir(cwd)
        name = f"{study_name}-{tune.get_context().get_trial_id()}"
        cfg = _trial_config(dataset, method, experiment, overrides, config, name)
        res = run_experiment(cfg, output_dir=out)
        tune.report({"best_val": res.best_val, "run_dir": str(res.path),
                     **{f"test_{k}": v for k, v in res.mean.items()}})

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    search = OptunaSearch(space=_DefineByRun(space), metric="best_val", mode=mode,
                          sampler=optuna.samplers.TPESampler(seed=sampler_seed))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        tune_config=tune.TuneConfig(metric="best_val", mode=mode, search_alg=search,
                                    num_samples=n_trials, max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name=study_name, storage_path=str(out / "ray"), verbose=1),
    )
    grid = tuner.fit()
    try:
        best = grid.get_best_result()
    except RuntimeError:  # no trial reported
        return grid
    write_best(out, study_name, {
        "study": study_name, "sweep": what, "trials": len(grid),
        "best_value": best.metrics.get("best_val"), "best_params": best.config,
        "run_dir": best.metrics.get("run_dir"),
        "test_mean": {k[5:]: v for k, v in best.metrics.items() if k.startswith("test_")}})
    return grid
