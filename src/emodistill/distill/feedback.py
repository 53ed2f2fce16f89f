"""Feedback strategies: update a teacher from how a temporary student does after learning from it.

EmotionKD (ACM MM 2023) and MKD (Zhang & Lu, Brain Sciences 2025) alternate a
*teaching* step (teacher fixed, student distilled) with a *feedback* step: a
temporary copy of the student takes one step on the teacher's targets, and the
teacher is updated from the temporary student's loss on **labelled training
data**. Neither paper publishes the equations; the two formalisations below are
the ones the reference note (``physio_kd.md`` §2.4) finds consistent with the
figures, both reconstructed:

``lookahead`` (differentiable look-ahead, Meta-Pseudo-Labels style)
    ``θ_S~ = θ_S - η ∇_θS L_teach(θ_S; T(x_t))`` kept differentiable in the
    teacher, then the teacher minimises
    ``w_ce * L(y_l, T(x_l)) + λ * L(y_l, S~(x_l))``; the second term is
    back-propagated through the virtual step (second-order terms included).
    This matches EmotionKD's "feedback loss" layer (two CE terms).

``first_order`` (the first-order MPL approximation, Pham et al., CVPR 2021)
    ``h = L(y_l, S~(x_l)) - L(y_l, S(x_l))`` is the change of the student's
    labelled loss after the (non-differentiable) virtual step, and the teacher
    minimises ``w_ce * L(y_l, T(x_l)) + λ * h * D(T(x_t), sg S(x_t))`` where
    ``D`` is the distillation divergence with the student side detached. A
    negative ``h`` (the step on the teacher's targets helped) pushes the targets
    further along the direction they moved the student; a positive ``h`` pulls
    them towards the student. To first order this is the look-ahead gradient
    with the student's Jacobian replaced by its projection on that direction
    (derivation in ``docs/methods/mkd.md``).

A strategy only computes the teacher's loss; the caller owns the optimiser.
The batches it is given must be labelled *training* batches: the method that
calls it (``emodistill.models.mkd``) does so only from its training step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from emodistill._registry import Registry
from emodistill.data.batch import Batch
from emodistill.errors import ConfigError

if TYPE_CHECKING:  # models import this module; keep the runtime import graph acyclic
    from emodistill.models.base import ModelOutput

__all__ = [
    "FEEDBACK",
    "FeedbackSettings",
    "FeedbackResult",
    "FeedbackTask",
    "FeedbackStrategy",
    "build_feedback",
    "virtual_step",
]


@dataclass(frozen=True)
class FeedbackSettings:
    """Constants of a feedback step.

    Attributes
    ----------
    lookahead_lr : float
        Learning rate ``η`` of the temporary student's SGD step.
    weight : float
        ``λ``, weight of the feedback term in the teacher's loss.
    teacher_task_weight : float
        ``w_ce``, weight of the teacher's own supervised loss on the labelled batch.
    lookahead_train_mode : bool
        Run the temporary student in train mode (dropout on; batch-norm batch
        statistics, running statistics untouched). ``False`` (default) makes the
        measured losses deterministic.
    """

    lookahead_lr: float = 1e-2
    weight: float = 1.0
    teacher_task_weight: float = 1.0
    lookahead_train_mode: bool = False

    def __post_init__(self) -> None:
        if self.lookahead_lr <= 0:
            raise ConfigError(f"lookahead_lr={self.lookahead_lr}; it must be > 0")


@dataclass
class FeedbackResult:
    """The teacher's loss (to back-propagate into the teacher only) and scalar stats."""

    loss: Tensor
    stats: dict[str, float] = field(default_factory=dict)


class FeedbackTask(Protocol):
    """What a strategy needs from the distillation method.

    The student side (student network and anything trained with it, e.g. a
    feature projection) is called functionally with an explicit parameter dict
    so that a temporary copy never touches the real weights.
    """

    def student_module(self) -> nn.Module:
        """Return the module holding the student side (for train/eval mode switching)."""
        ...

    def student_params(self) -> dict[str, Tensor]:
        """Named parameters of the student side (the real ones, not copies)."""
        ...

    def teacher_forward(self, batch: Batch) -> ModelOutput:
        """Run the teacher on ``batch`` with gradients (teacher in train mode)."""
        ...

    def teacher_task_loss(self, t_out: ModelOutput, batch: Batch) -> Tensor:
        """Return the teacher's supervised loss on ``batch``."""
        ...

    def teaching_loss(self, params: dict[str, Tensor], batch: Batch, t_out: ModelOutput, *,
                      detach_teacher: bool) -> Tensor:
        """Loss of the student with ``params`` learning from teacher outputs ``t_out``."""
        ...

    def labelled_loss(self, params: dict[str, Tensor], batch: Batch) -> Tensor:
        """Supervised loss of the student with ``params`` on labelled ``batch``."""
        ...

    def divergence(self, params: dict[str, Tensor], batch: Batch, t_out: ModelOutput) -> Tensor:
        """Distillation divergence of ``t_out`` from the student (student side detached)."""
        ...


@contextmanager
def _mode(module: nn.Module, train: bool) -> Iterator[None]:
    was = module.training
    module.train(train)
    try:
        yield
    finally:
        module.train(was)


def virtual_step(params: dict[str, Tensor], loss: Tensor, lr: float, *,
                 create_graph: bool) -> dict[str, Tensor]:
    """One SGD step ``θ - lr * ∇θ loss`` on a parameter dict (parameters without gradient kept).

    With ``create_graph=True`` the result stays differentiable in whatever
    ``loss`` depends on (the teacher), for the look-ahead strategy.
    """
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph,
                                allow_unused=True)
    out = {}
    for n, g in zip(names, grads, strict=True):
        p = params[n] if create_graph else params[n].detach()
        out[n] = p if g is None else p - lr * g
    return out


class FeedbackStrategy(Protocol):
    """Computes the teacher's feedback loss from a teaching batch and a labelled batch."""

    name: str

    def __call__(self, task: FeedbackTask, teach: Batch, labelled: Batch,
                 settings: FeedbackSettings) -> FeedbackResult:
        """Teacher loss for one feedback step (gradients flow to the teacher only)."""
        ...


FEEDBACK: Registry[type] = Registry("feedback strategy")


def _teacher_outputs(task: FeedbackTask, teach: Batch,
                     labelled: Batch) -> tuple[ModelOutput, ModelOutput]:
    t_teach = task.teacher_forward(teach)
    t_lab = t_teach if labelled is teach else task.teacher_forward(labelled)
    return t_teach, t_lab


@FEEDBACK.register("lookahead")
class LookaheadFeedback:
    """Differentiable look-ahead: back-propagate the temporary student's labelled loss."""

    name = "lookahead"

    def __call__(self, task: FeedbackTask, teach: Batch, labelled: Batch,
                 settings: FeedbackSettings) -> FeedbackResult:  # noqa: D102
        # double backward needs the math attention kernel (the fused CPU/GPU kernels have
        # no second derivative)
        with sdpa_kernel(SDPBackend.MATH):
            t_teach, t_lab = _teacher_outputs(task, teach, labelled)
            teacher_task = task.teacher_task_loss(t_lab, labelled)
            params = task.student_params()
            with _mode(task.student_module(), settings.lookahead_train_mode):
                teach_loss = task.teaching_loss(params, teach, t_teach, detach_teacher=False)
                new = virtual_step(params, teach_loss, settings.lookahead_lr, create_graph=True)
                after = task.labelled_loss(new, labelled)
        loss = settings.teacher_task_weight * teacher_task + settings.weight * after
        return FeedbackResult(loss, {
            "teacher_task": float(teacher_task.detach()),
            "student_after": float(after.detach()),
        })


@FEEDBACK.register("first_order")
class FirstOrderFeedback:
    """First-order MPL approximation: the scalar ``h`` times the distillation divergence."""

    name = "first_order"

    def __call__(self, task: FeedbackTask, teach: Batch, labelled: Batch,
                 settings: FeedbackSettings) -> FeedbackResult:  # noqa: D102
        t_teach, t_lab = _teacher_outputs(task, teach, labelled)
        teacher_task = task.teacher_task_loss(t_lab, labelled)
        params = task.student_params()
        targets = dataclasses.replace(
            t_teach,
            preds=t_teach.preds.detach(),
            features={k: v.detach() for k, v in t_teach.features.items()},
            fused=None if t_teach.fused is None else t_teach.fused.detach(),
            logits={k: v.detach() for k, v in t_teach.logits.items()},
            aux={},
        )
        with _mode(task.student_module(), settings.lookahead_train_mode):
            with torch.no_grad():
                before = task.labelled_loss(params, labelled)
            teach_loss = task.teaching_loss(params, teach, targets, detach_teacher=True)
            new = virtual_step(params, teach_loss, settings.lookahead_lr, create_graph=False)
            with torch.no_grad():
                after = task.labelled_loss(new, labelled)
            h = (after - before).detach()
            div = task.divergence(params, teach, t_teach)
        loss = settings.teacher_task_weight * teacher_task + settings.weight * h * div
        return FeedbackResult(loss, {
            "teacher_task": float(teacher_task.detach()),
            "student_before": float(before),
            "student_after": float(after),
            "h": float(h),
            "divergence": float(div.detach()),
        })


def build_feedback(name: str) -> FeedbackStrategy:
    """Instantiate the registered feedback strategy ``name``."""
    return FEEDBACK.get(name)()
