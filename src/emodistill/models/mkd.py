"""MKD: multimodal teacher → unimodal student with dynamic feedback (reconstructed).

Zhang & Lu, "Multimodal Knowledge Distillation for Emotion Recognition",
Brain Sciences 15(7):707, 2025, following EmotionKD (Liu et al., ACM MM 2023).
The student learns from the teacher's soft labels and fused feature
(:class:`~emodistill.models.kd.FeatureKD`); in addition, teaching steps
alternate with *feedback* steps that update the teacher from how a temporary
copy of the student does after one step on the teacher's targets, measured on
labelled **training** data (see :mod:`emodistill.distill.feedback` for the
``first_order`` and ``lookahead`` strategies). The paper's equations are not
public; every uncertain choice is a parameter below.

Training uses the engine's manual-optimisation path
(:class:`~emodistill.training.lit.LitMER`): the method defines
``configure_optimizers(train_cfg)`` (a student optimiser over the student and
its projection, and a teacher optimiser) and
``training_step(batch, optimizers, lit)``. Feedback steps happen only inside
``training_step``, which the engine calls on training batches only, so
validation and test data never reach the teacher's update.

The updated teacher is **not** saved: the student's ``model.pt`` holds the
student alone (deployable, loaded with ``teacher=None``); the teacher as it was
before distillation stays in ``<fold>/teacher/model.pt`` when the run trained it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from emodistill.data.batch import Batch
from emodistill.distill.feedback import FEEDBACK, FeedbackSettings, build_feedback
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, ModelOutput
from emodistill.models.kd import FeatureKD, output_feature
from emodistill.optim import make_optimizer

__all__ = ["MKD"]


@METHODS.register("mkd")
class MKD(FeatureKD):
    """Fused-feature KD with dynamic teacher feedback (MKD "Variation 3").

    Parameters
    ----------
    feedback : str
        Feedback strategy in :data:`~emodistill.distill.feedback.FEEDBACK`
        (``first_order`` or ``lookahead``).
    feedback_every : int
        Run a feedback step after every ``feedback_every``-th teaching step
        (0 disables feedback: plain ``kd_feature`` trained on the manual path).
    feedback_start : int
        Number of teaching steps before the first feedback step.
    lookahead_lr : float
        Learning rate ``η`` of the temporary student's SGD step.
    feedback_weight : float
        ``λ``, weight of the feedback term in the teacher's loss.
    teacher_task_weight : float
        Weight of the teacher's own supervised loss in its feedback update.
    teacher_lr : float, optional
        Teacher learning rate (default: ``train.lr``).
    feedback_data : {"same", "previous", "heldout"}
        Labelled batch on which the temporary student is measured: the current
        training batch (``same``, as EmotionKD's feedback loss), the previous
        training batch (``previous``: samples the virtual step did not see), or
        a held-out slice of the training part (``heldout``: a fixed
        ``heldout_fraction`` of the training rows, chosen by row index, is never
        used for the student's teaching steps; the feedback is measured on the
        most recent ``heldout_batch`` of those rows; the configs' default, chosen
        on validation in benchmarks/eeg.md section 10). Validation and test rows
        are never used.
    heldout_fraction : float
        Share of the training rows held out for ``feedback_data: heldout``.
    heldout_batch : int
        Held-out rows the temporary student is measured on (the latest seen).
    lookahead_loss : {"kd", "full"}
        What the temporary student's step minimises: the distillation terms only
        (the teacher's targets, default) or also ``ce_weight`` times its task loss.
    lookahead_train_mode : bool
        Run the temporary student in train mode (dropout on).
    **kw
        See :class:`~emodistill.models.kd.FeatureKD` and :class:`~emodistill.models.kd.HintonKD`.
    """

    def __init__(self, *, feedback: str = "first_order", feedback_every: int = 1,
                 feedback_start: int = 0, lookahead_lr: float = 0.1,
                 feedback_weight: float = 1.0, teacher_task_weight: float = 1.0,
                 teacher_lr: float | None = None,
                 feedback_data: Literal["same", "previous", "heldout"] = "same",
                 lookahead_loss: Literal["kd", "full"] = "kd",
                 lookahead_train_mode: bool = False, heldout_fraction: float = 0.2,
                 heldout_batch: int = 64, **kw: Any) -> None:
        super().__init__(**kw)
        FEEDBACK.get(feedback)  # clear error listing the strategies
        if feedback_every < 0 or feedback_start < 0:
            raise ConfigError(
                f"feedback_every={feedback_every}, feedback_start={feedback_start}; both must "
                "be >= 0 (feedback_every=0 disables feedback)"
            )
        if feedback_data not in ("same", "previous", "heldout"):
            raise ConfigError(f"feedback_data={feedback_data!r}; use same, previous or heldout")
        if not 0.0 < heldout_fraction < 1.0 or heldout_batch < 1:
            raise ConfigError(f"heldout_fraction={heldout_fraction} must be in (0, 1) and "
                              f"heldout_batch={heldout_batch} >= 1")
        self.heldout_fraction, self.heldout_batch = float(heldout_fraction), int(heldout_batch)
        self._held: list[Batch] = []
        if lookahead_loss not in ("kd", "full"):
            raise ConfigError(f"lookahead_loss={lookahead_loss!r}; use kd or full")
        self.strategy = build_feedback(feedback)
        self.settings = FeedbackSettings(lookahead_lr=lookahead_lr, weight=feedback_weight,
                                         teacher_task_weight=teacher_task_weight,
                                         lookahead_train_mode=lookahead_train_mode)
        self.feedback_every, self.feedback_start = feedback_every, feedback_start
        self.teacher_lr = teacher_lr
        self.feedback_data = feedback_data
        self.lookahead_loss = lookahead_loss
        self._steps = 0
        self._feedback_steps = 0
        self._prev: Batch | None = None

    # -- manual optimisation (called by LitMER) -------------------------------------------------

    def configure_optimizers(self, train_cfg: dict[str, Any]) -> list[torch.optim.Optimizer]:
        """``[student optimiser, teacher optimiser]`` built from the ``train`` section."""
        teacher = self._need_teacher()
        return [
            make_optimizer(self.parameters(), train_cfg),
            make_optimizer(teacher.parameters(), train_cfg, lr=self.teacher_lr),
        ]

    def training_step(self, batch: Batch, optimizers: list[Any], lit: Any) -> dict[str, Tensor]:
        """One teaching step on ``batch`` and, when due, one feedback step.

        Parameters
        ----------
        batch : Batch
            A training batch.
        optimizers : list
            ``[student, teacher]`` (Lightning-wrapped) optimisers.
        lit : LightningModule
            Provides ``manual_backward``.

        Returns
        -------
        dict of str to Tensor
            Loss terms and feedback statistics (logged as ``train/<key>``).
        """
        opt_s, opt_t = optimizers
        if self.feedback_every and getattr(getattr(lit, "trainer", None), "world_size", 1) > 1:
            raise ConfigError(
                "mkd feedback under multi-process (DDP) training is not supported: the teacher "
                "is updated outside DDP and would diverge across ranks; train on one device or "
                "set method.feedback_every=0"
            )
        if self.feedback_data == "heldout":
            held = self.heldout_rows(batch.index)
            if held.any():
                self._held = [*self._held, _rows(batch, held)]
                while sum(b.size for b in self._held[1:]) >= self.heldout_batch:
                    self._held.pop(0)
            if held.all():
                return {}
            batch = _rows(batch, ~held)  # the student never trains on held-out rows
        out = self(batch)
        losses = self.loss(batch, out)
        opt_s.zero_grad()
        lit.manual_backward(losses["loss"])
        opt_s.step()
        self._steps += 1
        logs = {k: v.detach() for k, v in losses.items()}
        labelled = {"same": batch, "previous": self._prev,
                    "heldout": _cat(self._held) if self._held else None}[self.feedback_data]
        if self._feedback_due() and labelled is not None:
            teacher = self._sync_teacher(batch)
            res = self.strategy(self, batch, labelled, self.settings)
            opt_t.zero_grad()
            lit.manual_backward(res.loss, inputs=[p for p in teacher.parameters()
                                                  if p.requires_grad])
            opt_t.step()
            self._feedback_steps += 1
            logs.update({f"fb_{k}": torch.tensor(v) for k, v in res.stats.items()})
        if self.feedback_data == "previous":
            self._prev = batch
        return logs

    def train_state(self) -> dict[str, Any]:
        """Step counters, the previous batch and the teacher's weights a resumed fit needs.

        Saved in the engine's training checkpoints (not in ``model.pt``), so a
        fit continued after an interruption runs its feedback steps on the same
        schedule as an uninterrupted one.
        """
        prev = None
        if self._prev is not None:
            prev = {f.name: getattr(self._prev, f.name) for f in dataclasses.fields(self._prev)}
        state: dict[str, Any] = {"steps": self._steps, "feedback_steps": self._feedback_steps,
                                 "prev": prev}
        if self.teacher is not None:  # updated by the feedback steps, outside state_dict()
            state["teacher"] = self.teacher.state_dict()
        state.update(super().train_state())  # the kd_mixup draws' generator, if any
        return state

    def load_train_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`train_state` returned."""
        self._steps = int(state["steps"])
        self._feedback_steps = int(state["feedback_steps"])
        self._prev = Batch(**state["prev"]) if state.get("prev") is not None else None
        if state.get("teacher") is not None:
            self._need_teacher().load_state_dict(state["teacher"])
        super().load_train_state(state)

    def heldout_rows(self, index: Tensor) -> Tensor:
        """``[B]`` bool: which training rows (by row index) are held out for feedback.

        A fixed hash of the row index, so a row is held out in every epoch or never.
        """
        h = (index.long() * 2654435761 + 97) % 4294967296
        return h < int(self.heldout_fraction * 4294967296)

    def _feedback_due(self) -> bool:
        return (self.feedback_every > 0 and self._steps > self.feedback_start
                and (self._steps - self.feedback_start) % self.feedback_every == 0)

    def epoch_logs(self) -> dict[str, float]:
        """Feedback steps so far and the teacher's mean validation gates (when it has gates)."""
        return {"feedback_steps": float(self._feedback_steps), **super().epoch_logs()}

    # -- FeedbackTask protocol (emodistill.distill.feedback) --------------------------------------

    def student_module(self) -> nn.Module:
        """Return the student side (student network and projection): this module."""
        return self

    def student_params(self) -> dict[str, Tensor]:
        """Return the student side's named parameters (student and projection)."""
        return dict(self.named_parameters())

    def _student_call(self, params: dict[str, Tensor],
                      batch: Batch) -> tuple[ModelOutput, Tensor | None]:
        sp = {k[8:]: v for k, v in params.items() if k.startswith("student.")}
        # cloned buffers: a temporary student never updates the real batch-norm statistics
        buffers = {k: b.clone() for k, b in self.student.named_buffers()}
        out = functional_call(self.student, (sp, buffers), (batch,))
        proj = None
        if self.projector is not None:
            pp = {k[10:]: v for k, v in params.items() if k.startswith("projector.")}
            feat = output_feature(out, who=f"student {self.student_name!r}")
            proj = functional_call(self.projector, pp, (feat,))
        return out, proj

    def teacher_forward(self, batch: Batch) -> ModelOutput:
        """Run the teacher on ``batch``, in train mode, with gradients."""
        t = self._sync_teacher(batch)
        t.train()
        return t(batch)

    def teacher_task_loss(self, t_out: ModelOutput, batch: Batch) -> Tensor:
        """Return the teacher's own supervised loss."""
        return self._need_teacher().task(t_out.preds, batch.target)

    def teaching_loss(self, params: dict[str, Tensor], batch: Batch, t_out: ModelOutput, *,
                      detach_teacher: bool) -> Tensor:
        """Distillation loss of the student with ``params`` (``lookahead_loss=full`` adds CE)."""
        s_out, proj = self._student_call(params, batch)
        terms = self.distill_terms(s_out, t_out, detach_teacher=detach_teacher, projected=proj)
        loss = self.distill_loss(terms)
        if self.lookahead_loss == "full":
            loss = loss + self.ce_weight * self.task(s_out.preds, batch.target)
        return loss

    def labelled_loss(self, params: dict[str, Tensor], batch: Batch) -> Tensor:
        """Supervised loss of the student with ``params`` on ``batch``."""
        s_out, _ = self._student_call(params, batch)
        return self.task(s_out.preds, batch.target)

    def divergence(self, params: dict[str, Tensor], batch: Batch, t_out: ModelOutput) -> Tensor:
        """Distillation loss of ``t_out`` against the detached student (gradient to the teacher)."""
        with torch.no_grad():
            s_out, proj = self._student_call(params, batch)
        terms = self.distill_terms(s_out, t_out, detach_teacher=False, projected=proj)
        return self.distill_loss(terms)


def _rows(batch: Batch, sel: Tensor) -> Batch:
    """Return the rows ``sel`` (``[B]`` bool) of ``batch``."""
    return Batch(inputs={k: v[sel] for k, v in batch.inputs.items()},
                 mask={k: v[sel] for k, v in batch.mask.items()},
                 present={k: v[sel] for k, v in batch.present.items()},
                 target=batch.target[sel], index=batch.index[sel])


def _cat(batches: list[Batch]) -> Batch:
    """Concatenate batches row-wise."""
    first = batches[0]
    return Batch(inputs={k: torch.cat([b.inputs[k] for b in batches]) for k in first.inputs},
                 mask={k: torch.cat([b.mask[k] for b in batches]) for k in first.mask},
                 present={k: torch.cat([b.present[k] for b in batches]) for k in first.present},
                 target=torch.cat([b.target for b in batches]),
                 index=torch.cat([b.index for b in batches]))
