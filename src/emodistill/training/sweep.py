"""Hyper-parameter search with Optuna (extra ``sweep``); selection on validation only.

A search space is a YAML mapping from dotted config keys to distributions::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    method.dropout: {type: float, low: 0.0, high: 0.5}
    method.hidden: {type: categorical, choices: [64, 128, 256]}
    train.batch_size: {type: int, low: 16, high: 64, step: 16}

Each trial composes the config with the sampled overrides, runs every fold and
returns the monitored **validation** metric of the selected checkpoints
(averaged over folds); test metrics are recorded as trial attributes for
later reading but never drive the search. With ``storage="sqlite:///file.db"``
several processes (or machines sharing the file system) can work on one study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError
from emodistill.training.run import prepare, run_experiment

__all__ = ["run_sweep", "load_space"]

_KINDS = ("float", "int", "categorical")


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check a search-space YAML file."""
    space = yaml.safe_load(Path(path).read_text()) or {}
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


def run_sweep(
    *,
    dataset: str,
    method: str,
    space: dict[str, dict[str, Any]],
    n_trials: int,
    experiment: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    storage: str | None = None,
    study_name: str = "emodistill",
    output_dir: str | Path = "runs/sweeps",
    sampler_seed: int = 0,
) -> Any:
    """Run an Optuna study and return it (``study.best_params`` holds the winner)."""
    try:
        import optuna
    except ImportError:
        raise ImportError("run_sweep needs Optuna: pip install 'emodistill[sweep]'") from None
    base = compose(dataset=dataset, method=method, experiment=experiment,
                   overrides=list(overrides))
    ds = build_dataset(to_container(base.dataset))
    for key in space:  # every key must exist in the config
        compose(dataset=dataset, method=method, experiment=experiment,
                overrides=[*overrides, f"{key}={space[key].get('low', 0)}"]
                if space[key]["type"] != "categorical"
                else [*overrides, f"{key}={space[key]['choices'][0]}"])
    prepare(base, ds)
    direction = "minimize" if base.train.mode == "min" else "maximize"
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction=direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
    )

    def objective(trial: Any) -> float:
        sampled = {k: _suggest(trial, k, d) for k, d in space.items()}
        cfg = compose(dataset=dataset, method=method, experiment=experiment,
                      overrides=[*overrides, *(f"{k}={v}" for k, v in sampled.items()),
                                 f"run_name={study_name}-trial{trial.number}"])
        res = run_experiment(cfg, dataset=ds, output_dir=output_dir)
        trial.set_user_attr("run_dir", str(res.path))
        trial.set_user_attr("test_mean", res.mean)  # recorded, never optimised
        return res.best_val

    study.optimize(objective, n_trials=n_trials)
    return study
