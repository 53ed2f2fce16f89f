"""The LightningModule that wraps any :class:`~emodistill.models.base.MERModel`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from emodistill.data.batch import Batch
from emodistill.metrics import metric_collection
from emodistill.models.base import MERModel

__all__ = ["LitMER"]


class LitMER(L.LightningModule):
    """Train / validate / test a model; metrics come from torchmetrics.

    Parameters
    ----------
    model : MERModel
        The method to train.
    train_cfg : dict
        The ``train`` config section (optimiser, scheduler, monitor...).
    """

    def __init__(self, model: MERModel, train_cfg: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.cfg = train_cfg
        self.val_metrics = metric_collection(model.target, prefix="val/")
        self.test_metrics = metric_collection(model.target, prefix="test/")
        self.test_outputs: list[tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]] = []

    def forward(self, batch: Batch) -> Any:  # noqa: D102
        return self.model(batch)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch:  # noqa: D102,E501
        return batch.to(device, non_blocking=True)

    def _step(self, batch: Batch, stage: str) -> tuple[Any, dict[str, Tensor]]:
        out = self.model(batch)
        losses = self.model.loss(batch, out)
        self.log_dict(
            {f"{stage}/{'task_loss' if k == 'task' else k}": v.detach() for k, v in losses.items()},
            on_step=False, on_epoch=True, batch_size=batch.size,
            prog_bar=False,
        )
        return out, losses

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:  # noqa: D102
        _, losses = self._step(batch, "train")
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:  # noqa: D102
        out, _ = self._step(batch, "val")
        self.val_metrics.update(out.preds.detach(), batch.target)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.log_dict(self.val_metrics.compute(), prog_bar=False)
        self.val_metrics.reset()
        epoch_logs = getattr(self.model, "epoch_logs", None)
        if epoch_logs is not None:
            self.log_dict({f"model/{k}": float(v) for k, v in epoch_logs().items()})

    def test_step(self, batch: Batch, batch_idx: int) -> None:  # noqa: D102
        out = self.model(batch)
        self.test_metrics.update(out.preds.detach(), batch.target)
        extras = {k: v.detach() for k, v in out.aux.items() if k.startswith("sample_")}
        self.test_outputs.append(
            (batch.index.detach(), self.model.predict_values(out).detach(), batch.target, extras)
        )

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self) -> Any:  # noqa: D102
        c = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        name = c.get("optimizer", "adamw")
        if name == "adamw":
            opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c["weight_decay"])
        elif name == "adam":
            opt = torch.optim.Adam(params, lr=c["lr"], weight_decay=c["weight_decay"])
        elif name == "sgd":
            opt = torch.optim.SGD(params, lr=c["lr"], momentum=0.9, weight_decay=c["weight_decay"])
        else:
            from emodistill.errors import ConfigError

            raise ConfigError(f"train.optimizer={name!r}; use adamw, adam or sgd")
        if c.get("scheduler", "none") == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=c["mode"], factor=c["scheduler_factor"],
                patience=c["scheduler_patience"],
            )
            return {"optimizer": opt,
                    "lr_scheduler": {"scheduler": sched, "monitor": c["monitor"]}}
        return opt
