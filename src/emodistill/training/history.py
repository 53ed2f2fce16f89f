"""Per-epoch metric history written as one clean CSV row per epoch."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["EpochHistory"]


class EpochHistory(L.Callback):
    """Collect ``trainer.callback_metrics`` at the end of every training epoch.

    Lightning runs validation before ``on_train_epoch_end``, so each row holds
    the epoch's train and validation numbers together.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        row = {"epoch": trainer.current_epoch}
        for k, v in trainer.callback_metrics.items():
            if k.startswith(("train/", "val/", "model/")):
                row[k] = round(float(v), 6)
        opt = trainer.optimizers[0] if trainer.optimizers else None
        if opt is not None:
            row["lr"] = opt.param_groups[0]["lr"]
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        """Return the rows so far (saved in checkpoints, so a resumed fit keeps its history)."""
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        self.rows = [dict(r) for r in state_dict.get("rows", [])]

    def write(self, path: Path) -> None:
        """Write the rows as CSV (columns = union of keys)."""
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
