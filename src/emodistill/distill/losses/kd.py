"""Knowledge-distillation losses shared by the KD methods (teacher side detached by default)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from emodistill.errors import ConfigError

__all__ = ["soft_label_kd", "feature_distance", "contrastive_alignment", "feature_kd_loss",
           "FEATURE_KD"]

FeatureKD = Literal["contrastive", "mse", "cosine", "l1"]
#: the forms :func:`feature_kd_loss` accepts
FEATURE_KD: tuple[str, ...] = ("contrastive", "mse", "cosine", "l1")


def soft_label_kd(
    student: Tensor,
    teacher: Tensor,
    *,
    temperature: float = 4.0,
    regression: Literal["l1", "mse"] = "mse",
    detach_teacher: bool = True,
) -> Tensor:
    """Label-level distillation (Hinton et al. 2015).

    Parameters
    ----------
    student, teacher : Tensor
        Logits ``[B, C]`` (classification) or values ``[B]`` (regression).
    temperature : float
        Softmax temperature ``T``; the KL term is scaled by ``T**2`` so its
        gradient magnitude does not depend on ``T``.
    regression : {"l1", "mse"}
        Distance used when the outputs are regression values.
    detach_teacher : bool
        Stop gradients into the teacher (the default). ``False`` is for
        feedback / meta-learning steps that update the teacher through this loss.

    Returns
    -------
    Tensor
        Scalar loss; ``KL(softmax(t/T) || softmax(s/T)) * T**2`` for logits.
    """
    if detach_teacher:
        teacher = teacher.detach()
    if student.ndim == 1:
        fn = nn.functional.l1_loss if regression == "l1" else nn.functional.mse_loss
        return fn(student, teacher)
    t = temperature
    log_p = nn.functional.log_softmax(student.float() / t, -1)
    q = nn.functional.softmax(teacher.float() / t, -1)
    return nn.functional.kl_div(log_p, q, reduction="batchmean") * t * t


def feature_distance(
    student: Tensor, teacher: Tensor, *, kind: Literal["mse", "cosine", "l1"] = "mse",
    detach_teacher: bool = True,
) -> Tensor:
    """Feature-level distillation distance between ``[B, F]`` features (teacher detached).

    Parameters
    ----------
    student, teacher : Tensor
        ``[B, F]`` features of equal shape.
    kind : {"mse", "cosine", "l1"}
        ``mse``/``l1``: mean over all ``B * F`` entries; ``cosine``: ``1 - cos``
        averaged over the batch.
    detach_teacher : bool
        ``False`` lets gradients reach the teacher (feedback steps).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"feature KD needs equal shapes, got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}; add a projection to the student side"
        )
    if detach_teacher:
        teacher = teacher.detach()
    if kind == "mse":
        return nn.functional.mse_loss(student, teacher)
    if kind == "l1":
        return nn.functional.l1_loss(student, teacher)
    if kind == "cosine":
        return (1 - nn.functional.cosine_similarity(student, teacher, dim=-1)).mean()
    raise ValueError(f"feature KD kind={kind!r}; use mse, cosine or l1")


def contrastive_alignment(
    a: Tensor, b: Tensor, *, temperature: float = 0.1, detach_b: bool = True,
    symmetric: bool = False,
) -> Tensor:
    """InfoNCE aligning row ``i`` of ``a`` with row ``i`` of ``b`` against other rows.

    Parameters
    ----------
    a, b : Tensor
        ``[B, F]`` features; they are L2-normalised here.
    temperature : float
        Softmax temperature of the similarity logits.
    detach_b : bool
        Treat ``b`` as the teacher side (no gradient).
    symmetric : bool
        Average the a→b and b→a losses (only meaningful when ``b`` is not detached).

    Returns
    -------
    Tensor
        Scalar, the batch mean of ``-log softmax_j(cos(a_i, b_j) / T)[i]``.
    """
    if detach_b:
        b = b.detach()
    a = nn.functional.normalize(a.float(), dim=-1)
    b = nn.functional.normalize(b.float(), dim=-1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    loss = nn.functional.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + nn.functional.cross_entropy(logits.T, labels))
    return loss


def feature_kd_loss(student: Tensor, teacher: Tensor, *, kind: FeatureKD = "contrastive",
               temperature: float = 0.1, detach_teacher: bool = True) -> Tensor:
    """Feature-level KD in one of four forms (HKD-MER's ``D_feat``; ``kd_feature``'s term).

    Parameters
    ----------
    student : Tensor
        ``[B, F]`` student features (already mapped into the teacher's space).
    teacher : Tensor
        ``[B, F]`` teacher features; no gradient flows into them.
    kind : {"contrastive", "mse", "cosine", "l1"}
        ``contrastive``: :func:`contrastive_alignment`, InfoNCE pairing sample ``i``
        of the student with sample ``i`` of the teacher against the other samples
        of the batch; the others: :func:`feature_distance`.
    temperature : float
        InfoNCE temperature (only for ``contrastive``).
    detach_teacher : bool
        ``True``: no gradient into ``teacher``; ``False`` lets it through (MKD's feedback).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    if kind == "contrastive":
        return contrastive_alignment(student, teacher, temperature=temperature,
                                     detach_b=detach_teacher)
    if kind in ("mse", "cosine", "l1"):
        return feature_distance(student, teacher, kind=kind, detach_teacher=detach_teacher)
    raise ConfigError(f"feature_kd={kind!r}; use one of {list(FEATURE_KD)}")
