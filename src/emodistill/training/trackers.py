"""The ``train.tracker`` setting, checked without importing Lightning.

The trackers themselves (Lightning loggers) are built by
:func:`emodistill.training.loggers.build_trackers`; see that module for the choices.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from omegaconf import DictConfig

from emodistill.errors import ConfigError

__all__ = ["TRACKERS", "tracker_names", "check_trackers", "tensorboard_available"]

TRACKERS = ("auto", "tensorboard", "mlflow", "none")


def tracker_names(value: Any) -> list[str]:
    """Check ``train.tracker`` (a name or a list of names) and return the list."""
    names = [value] if isinstance(value, str) or value is None else list(value)
    names = ["none" if n is None else str(n) for n in names]
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise ConfigError(f"train.tracker={value!r}; use one of {', '.join(TRACKERS)} (or a "
                          "list of them)")
    return names


def check_trackers(cfg: DictConfig) -> None:
    """Refuse a bad ``train.tracker`` or a missing tracker package before anything is written."""
    names = tracker_names(cfg.train.get("tracker", "auto"))
    if "tensorboard" in names and not tensorboard_available():
        raise ConfigError("train.tracker=tensorboard needs TensorBoard: pip install "
                          "'emodistill[tensorboard]' (or set train.tracker=none)")
    if "mlflow" in names and importlib.util.find_spec("mlflow") is None:
        raise ConfigError("train.tracker=mlflow needs MLflow: pip install "
                          "'emodistill[mlflow]' (or set train.tracker=auto)")


def tensorboard_available() -> bool:
    """Whether ``tensorboard`` or ``tensorboardX`` can be imported (extra ``tensorboard``)."""
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))
