"""Seeing a run while it runs: experiment trackers, a line per epoch, a readable progress bar.

``metrics.csv`` (one row per epoch, :mod:`emodistill.training.history`) is always
written. ``train.tracker`` adds trackers that receive every logged value (each
loss term, each KD term as ``train/<term>`` and ``val/<term>``, the validation
metrics, ``model/*`` values such as learned GD edge weights, and the learning
rate of every optimiser):

``auto`` (default)
    TensorBoard when ``tensorboard`` or ``tensorboardX`` is importable (extra
    ``tensorboard``), else a one-line note; events go to ``<fold>/tensorboard/``.
    Open with ``tensorboard --logdir runs/``.
``tensorboard``
    TensorBoard, refused with the extra named when not installed.
``mlflow``
    MLflow (extra ``mlflow``) with a local SQLite store,
    ``train.mlflow_uri`` or ``sqlite:///<output_dir>/mlflow.db``; open with
    ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.
``none``
    Only ``metrics.csv``.

A list (``[tensorboard, mlflow]``) uses several. When no progress bar is shown
(output is not a terminal: nohup, CI, a pipe; or ``train.progress_bar=false``)
one line per epoch is logged instead, epochs counted from 1.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from emodistill.config import to_container
from emodistill.errors import ConfigError
from emodistill.training.trackers import tensorboard_available, tracker_names

__all__ = ["build_trackers", "EpochLine", "EpochProgressBar", "progress_callbacks"]

log = logging.getLogger(__name__)
_noted = False

def build_trackers(cfg: DictConfig, fold_dir: Path) -> list[Any]:
    """Build the Lightning loggers ``train.tracker`` asks for (see the module docstring)."""
    global _noted
    names = tracker_names(cfg.train.get("tracker", "auto"))
    out: list[Any] = []
    if "tensorboard" in names or ("auto" in names and tensorboard_available()):
        if not tensorboard_available():
            raise ConfigError("train.tracker=tensorboard needs TensorBoard: pip install "
                              "'emodistill[tensorboard]' (or set train.tracker=none)")
        out.append(_TensorBoard(fold_dir))
    elif "auto" in names and not _noted:
        _noted = True
        log.info("TensorBoard is not installed: per-epoch metrics are in metrics.csv "
                 "(pip install 'emodistill[tensorboard]' to follow runs in TensorBoard)")
    if "mlflow" in names:
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("train.tracker=mlflow needs MLflow: pip install "
                              "'emodistill[mlflow]' (or set train.tracker=auto)")
        from lightning.pytorch.loggers import MLFlowLogger

        uri = cfg.train.get("mlflow_uri") or (
            f"sqlite:///{(Path(cfg.output_dir) / 'mlflow.db').resolve()}")
        run_dir = fold_dir.parent
        out.append(MLFlowLogger(experiment_name=f"{cfg.dataset.name}-{cfg.experiment}",
                                run_name=f"{run_dir.name}/{fold_dir.name}", tracking_uri=uri))
    for tracker in out:
        tracker.log_hyperparams(_flat(to_container(cfg)))
    return out


class _TensorBoard(TensorBoardLogger):
    """Lightning's TensorBoard logger, whose event files are never overwritten.

    Lightning closes the writer at the end of ``fit``, and the test stage opens a new
    event file. tensorboardX names event files by the second and the host only, so the
    test's file would overwrite the training events of a fit shorter than a second.
    Each writer opened after a close gets its own file-name suffix.
    """

    def __init__(self, fold_dir: Path) -> None:
        super().__init__(str(fold_dir), name="tensorboard", version="", default_hp_metric=False)
        self._opened = 1

    def finalize(self, status: str) -> None:  # noqa: D102
        super().finalize(status)
        self._experiment = None  # a later log opens a new writer, with a new file name
        self._kwargs["filename_suffix"] = f".{self._opened}"
        self._opened += 1


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flat(v, key + ".")
        else:
            out[key] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


def _fmt(metrics: dict[str, Any], keys: list[str]) -> list[str]:
    parts = []
    for k in keys:
        v = metrics.get(k)
        if v is not None and math.isfinite(float(v)):
            parts.append(f"{k}={float(v):.4f}")
    return parts


class EpochLine(L.Callback):
    """Log ``epoch e/E: train/loss=... <monitor>=... lr=...`` after every epoch (e from 1)."""

    def __init__(self, monitor: str, label: str = "") -> None:
        self.monitor, self.label = monitor, label

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        m = trainer.callback_metrics
        keys = ["train/loss", "val/loss", self.monitor]
        parts = _fmt(m, list(dict.fromkeys(keys)))
        if trainer.optimizers:
            parts.append(f"lr={trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("%sepoch %d/%s: %s", self.label, trainer.current_epoch + 1, total,
                 ", ".join(parts))


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar, counting epochs from 1 and showing the loss and monitored metric."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:  # noqa: D102
        # as Lightning's, with the epoch counted from 1 (its own would flash "Epoch 0")
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        total = self.total_train_batches
        bar.reset()
        bar.total = None if total == float("inf") else total
        bar.initial = 0
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        bar.set_description(f"Epoch {trainer.current_epoch + 1}/{epochs}")

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:  # noqa: D102
        items = {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}
        m = trainer.callback_metrics
        for key, short in (("train/loss", "loss"), (self.monitor, self.monitor)):
            if key in m:
                items[short] = f"{float(m[key]):.4f}"
        return items


def progress_callbacks(cfg: DictConfig, label: str = "") -> tuple[list[L.Callback], bool]:
    """Callbacks that show progress, and whether Lightning's own bar must be enabled.

    A bar when ``train.progress_bar`` is on and stdout (where the bar is drawn) is a
    terminal; otherwise a log line per epoch.
    """
    monitor = str(cfg.train.monitor)
    if bool(cfg.train.progress_bar) and sys.stdout.isatty():
        return [EpochProgressBar(monitor)], True
    return [EpochLine(monitor, label)], False
