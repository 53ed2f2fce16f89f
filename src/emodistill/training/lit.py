"""The LightningModule that wraps any :class:`~emodistill.models.base.MERModel`.

Two training paths:

* automatic (default): ``model.loss(batch, model(batch))["loss"]`` is minimised
  by one optimiser over ``model.parameters()`` built from the ``train`` section;
* manual, for methods that train several parts with their own optimisers
  (e.g. MKD, whose teacher is updated by feedback steps): a method that defines
  ``configure_optimizers(train_cfg) -> list[Optimizer]`` and
  ``training_step(batch, optimizers, lit) -> dict[str, Tensor]`` runs its own
  steps (calling ``lit.manual_backward``); the returned terms are logged as
  ``train/<key>``, and a ``plateau`` scheduler on the first optimiser is stepped
  once per epoch on the monitored validation metric. Validation and test are
  the same on both paths.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from emodistill.data.batch import Batch
from emodistill.errors import ConfigError
from emodistill.metrics import metric_collection
from emodistill.models.base import MERModel
from emodistill.optim import apply_warmup, make_optimizer

__all__ = ["LitMER", "make_optimizer", "uses_manual_optimization", "apply_warmup"]


def uses_manual_optimization(model: MERModel) -> bool:
    """Tell whether ``model`` overrides the ``configure_optimizers`` and ``training_step`` hooks."""
    return model.manual_optimization()


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
        self.manual = uses_manual_optimization(model)
        self._warmup_step = 0
        if self.manual:
            self.automatic_optimization = False
            name = type(model).__name__
            if train_cfg.get("gradient_clip_val") is not None:
                raise ConfigError(
                    f"train.gradient_clip_val={train_cfg['gradient_clip_val']}: {name} runs its "
                    "own optimisation steps, where Lightning cannot clip; set "
                    "train.gradient_clip_val=null"
                )
            if int(train_cfg.get("accumulate_grad_batches", 1)) != 1:
                raise ConfigError(
                    f"train.accumulate_grad_batches={train_cfg['accumulate_grad_batches']}: "
                    f"{name} runs its own optimisation steps; set it to 1"
                )

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
            prog_bar=False, sync_dist=self.trainer.world_size > 1,
        )
        return out, losses

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:  # noqa: D102
        if self.manual:
            opts = self.optimizers()
            opts = list(opts) if isinstance(opts, list | tuple) else [opts]
            terms = self.model.training_step(batch, opts, self)  # type: ignore[operator]
            self.log_dict(
                {f"train/{'task_loss' if k == 'task' else k}": v.detach().float()
                 for k, v in terms.items()},
                on_step=False, on_epoch=True, batch_size=batch.size, prog_bar=False,
                sync_dist=self.trainer.world_size > 1,
            )
            return None
        _, losses = self._step(batch, "train")
        return losses["loss"]

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:  # noqa: D102
        # linear warm-up of tagged parameter groups (the text encoder's own lr)
        opts = self.optimizers()
        for opt in opts if isinstance(opts, list | tuple) else [opts]:
            apply_warmup(getattr(opt, "optimizer", opt), self._warmup_step)
        self._warmup_step += 1

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Do nothing: schedulers are stepped in :meth:`on_train_epoch_end`.

        Lightning would step them after the epoch's checkpoint callbacks, so a
        checkpoint would hold the scheduler one step behind; here they are
        stepped before, on both training paths.
        """

    def on_train_epoch_end(self) -> None:  # noqa: D102
        scheds = self.lr_schedulers()
        if scheds is None:
            return
        value = self.trainer.callback_metrics.get(self.cfg["monitor"])
        for sched in scheds if isinstance(scheds, list) else [scheds]:
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if value is not None:
                    sched.step(value)
            else:
                sched.step()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:  # noqa: D102
        out, _ = self._step(batch, "val")
        self.val_metrics.update(out.preds.detach(), batch.target)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.log_dict(self.val_metrics.compute(), prog_bar=False)
        self.val_metrics.reset()
        logs = self.model.epoch_logs()
        if logs:
            self.log_dict({f"model/{k}": float(v) for k, v in logs.items()})

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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the model's own training state (e.g. MKD's step counters), if it has one."""
        train_state = getattr(self.model, "train_state", None)
        if callable(train_state):
            checkpoint["emodistill_model_train_state"] = train_state()
        checkpoint["emodistill_warmup_step"] = self._warmup_step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        self._warmup_step = int(checkpoint.get("emodistill_warmup_step", self._warmup_step))
        state = checkpoint.get("emodistill_model_train_state")
        if state is not None and callable(getattr(self.model, "load_train_state", None)):
            self.model.load_train_state(state)  # type: ignore[operator]

    def configure_optimizers(self) -> Any:  # noqa: D102
        c = self.cfg
        if self.manual:
            opts = list(self.model.configure_optimizers(c))  # type: ignore[operator]
            if c.get("scheduler", "none") == "plateau":  # on the first (the student's) optimiser
                sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opts[0], mode=c["mode"], factor=c["scheduler_factor"],
                    patience=c["scheduler_patience"],
                )
                return [{"optimizer": opts[0], "lr_scheduler": {"scheduler": sched}},
                        *({"optimizer": o} for o in opts[1:])]
            return opts
        opt = make_optimizer(self.model.parameters(), c)
        if c.get("scheduler", "none") == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=c["mode"], factor=c["scheduler_factor"],
                patience=c["scheduler_patience"],
            )
            return {"optimizer": opt,
                    "lr_scheduler": {"scheduler": sched, "monitor": c["monitor"]}}
        return opt
