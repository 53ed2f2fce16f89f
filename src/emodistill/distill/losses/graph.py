"""Graph-distillation losses of DMD's GD units (:class:`~emodistill.distill.gd_unit.GDUnit`).

:func:`pair_distance` is the per-edge, per-sample distance between student and
teacher nodes; :func:`edge_weighted_distance` the unit's weighted sum over edges,
with the reference's ``min_cosine`` reduction (``sum_e mean_b(w) * mean_b d``).
"""

from __future__ import annotations

from torch import Tensor, nn

from emodistill.errors import ConfigError

__all__ = ["pair_distance", "edge_weighted_distance", "prior_penalty", "METRICS"]

#: distances a GD unit accepts for its logit and representation terms
METRICS: tuple[str, ...] = ("l1", "l2", "mse", "cosine", "min_cosine")


def pair_distance(student: Tensor, teacher: Tensor, metric: str) -> Tensor:
    """Per-edge, per-sample distance ``[E, B]`` between ``[E, B, F]`` tensors.

    The teacher must already be detached by the caller. ``min_cosine`` is
    ``max(0, cos)`` (DMD's hetero "representation distillation", which pushes
    the pair apart); ``cosine`` is ``1 - cos`` (imitation).

    Parameters
    ----------
    student, teacher : Tensor
        ``[E, B, F]`` node values of each edge's student and teacher.
    metric : {"l1", "l2", "mse", "cosine", "min_cosine"}
        ``l1``/``l2``: sum over ``F`` of absolute / squared differences; ``mse``:
        their mean.

    Returns
    -------
    Tensor
        ``[E, B]`` distances.
    """
    if metric == "l1":
        return (student - teacher).abs().sum(-1)
    if metric == "l2":
        return (student - teacher).pow(2).sum(-1)
    if metric == "mse":
        return (student - teacher).pow(2).mean(-1)
    if metric == "cosine":
        return 1 - nn.functional.cosine_similarity(student, teacher, dim=-1)
    if metric == "min_cosine":
        return nn.functional.cosine_similarity(student, teacher, dim=-1).clamp(min=0)
    raise ConfigError(f"GD metric {metric!r}; use one of {list(METRICS)}")


def edge_weighted_distance(student: Tensor, teacher: Tensor, w: Tensor, metric: str,
                           valid: Tensor | None = None) -> Tensor:
    """Return a GD unit's distillation term ``sum_e mean_b(w_eb * d_eb)``.

    For ``min_cosine`` the reference multiplies the batch means instead:
    ``sum_e mean_b(w_eb) * mean_b(d_eb)`` (over the valid samples of each edge).

    Parameters
    ----------
    student, teacher : Tensor
        ``[E, B, F]`` node values (teacher already detached); computed in float32.
    w : Tensor
        ``[E, B]`` distillation weights (zero where an endpoint is absent).
    metric : str
        See :func:`pair_distance`.
    valid : Tensor, optional
        ``[B, E]`` bool, edges whose both endpoints are present (used by ``min_cosine``).

    Returns
    -------
    Tensor
        Scalar.
    """
    d = pair_distance(student.float(), teacher.float(), metric)  # [E, B]
    if metric == "min_cosine":
        if valid is None:
            return (w.mean(1) * d.mean(1)).sum()
        v = valid.transpose(0, 1).to(d.dtype)
        return (w.mean(1) * (d * v).sum(1) / v.sum(1).clamp(min=1.0)).sum()
    return (w * d).mean(1).sum()


def prior_penalty(edges: Tensor, prior: Tensor) -> Tensor:
    """Return the GD prior regulariser before its weight, ``sum_e (mean_b edge_be - prior_e)^2``.

    Parameters
    ----------
    edges : Tensor
        ``[B, E]`` learned edge weights.
    prior : Tensor
        ``[E]`` prior edge weights.

    Returns
    -------
    Tensor
        Scalar.
    """
    return (edges.mean(0) - prior).pow(2).sum()
