"""Graph distillation unit (GD-Unit) of DMD (Li et al., CVPR 2023) and DHMD.

A GD-Unit is a directed graph over modality nodes. Each node carries a
modality's logits and representation; every ordered pair (student ``j``,
teacher ``i``) is an edge ``i -> j``. Per sample, an edge network scores the
edges from the two node embeddings, the scores are temperature-scaled and
softmax-normalised, a fixed prior is added, and each edge distils the
(detached) teacher's logits and representation into the student, weighted by
the edge. A regulariser pulls the batch-mean learned edges toward the prior.

Every constant the reference code (``mdswyz/DMD``, ``DistillationKernel``) sets
in code is a constructor argument here; the defaults reproduce it:

=====================  ==================  ==========================================
argument               reference value     meaning
=====================  ==================  ==========================================
``gd_size``            64 homo / 32 hetero  width of each half of a node embedding
``edge_temperature``   8 (alpha = 1/8)      ``softmax(score / edge_temperature)``
``normalization``      ``"all"``            one softmax over all edges of a sample
``prior``              see DMD config       edge -> prior logit (others 0)
``prior_temperature``  0.25                 ``prior = softmax(logits / 0.25)``
``add_prior``          True                 distillation weight = learned + prior
``gd_reg``             10                   weight of ``sum_e (mean_b w_be - prior_e)^2``
``w_logit, w_repr``    1, 10                weights of the logit / representation terms
``logit_metric``       ``"l1"``             ``sum_c |z_s - z_t|`` per sample
``repr_metric``        l1 homo / min_cosine hetero (see ``losses.graph.pair_distance``)
=====================  ==================  ==========================================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from emodistill.distill.losses.graph import METRICS, edge_weighted_distance, prior_penalty
from emodistill.errors import ConfigError

__all__ = ["GDUnit", "GDLosses", "edge_list", "parse_prior", "METRICS"]

log = logging.getLogger(__name__)

Metric = Literal["l1", "l2", "mse", "cosine", "min_cosine"]


def edge_list(nodes: Sequence[str]) -> list[tuple[int, int]]:
    """Edges as ``(student, teacher)`` index pairs, student-major (the reference order).

    For nodes ``[L, V, A]`` this is (L,V), (L,A), (V,L), (V,A), (A,L), (A,V),
    i.e. knowledge flowing V->L, A->L, L->V, A->V, L->A, V->A.
    """
    n = len(nodes)
    return [(j, i) for j in range(n) for i in range(n) if i != j]


def edge_names(nodes: Sequence[str]) -> list[str]:
    """``"teacher->student"`` names of :func:`edge_list`."""
    return [f"{nodes[i]}->{nodes[j]}" for j, i in edge_list(nodes)]


def parse_prior(prior: Mapping[str, float] | None, nodes: Sequence[str]) -> Tensor:
    """Prior logits ``[E]`` from a ``{"teacher->student": logit}`` mapping (others 0).

    Entries naming a modality that is not among ``nodes`` are ignored (so one
    default prior serves every modality subset); a malformed entry is an error.
    """
    names = edge_names(nodes)
    logits = torch.zeros(len(names))
    for key, value in (prior or {}).items():
        parts = str(key).split("->")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ConfigError(
                f"GD prior entry {key!r}: write edges as 'teacher->student', e.g. 'text->audio'"
            )
        t, s = (p.strip() for p in parts)
        if t == s:
            raise ConfigError(f"GD prior entry {key!r}: an edge needs two different modalities")
        name = f"{t}->{s}"
        if name not in names:
            log.debug("GD prior entry %r ignored: modalities are %s", key, list(nodes))
            continue
        logits[names.index(name)] = float(value)
    return logits


@dataclass
class GDLosses:
    """What a GD-Unit returns for one batch.

    Attributes
    ----------
    logit, repr, reg : Tensor
        Scalars, already multiplied by ``w_logit``, ``w_repr`` and ``gd_reg``.
    total : Tensor
        ``logit + reg`` plus ``repr`` when ``repr_in_loss``.
    edges : Tensor
        ``[B, E]`` learned (normalised) edge weights, before the prior.
    weights : Tensor
        ``[B, E]`` distillation weights (learned + prior where enabled).
    """

    logit: Tensor
    repr: Tensor
    reg: Tensor
    total: Tensor
    edges: Tensor
    weights: Tensor


class GDUnit(nn.Module):
    """A graph distillation unit over ``nodes``.

    Parameters
    ----------
    nodes : sequence of str
        Modality names, one node each (at least 2).
    logit_dim : int
        Width ``C`` of each node's logits (1 for regression).
    repr_dim : int
        Width ``F`` of each node's representation.
    gd_size : int
        Width of the logit and representation embeddings (node embedding ``2 * gd_size``).
    edge_temperature : float
        Scores are divided by it before the softmax (the reference's ``alpha = 1/8``).
    normalization : {"all", "student"}
        ``all``: one softmax over every edge of a sample (reference; the ``E``
        weights of a sample sum to 1). ``student``: a softmax over the incoming
        edges of each student node (each student's weights sum to 1).
    prior : mapping, optional
        ``{"teacher->student": logit}``; missing edges have logit 0.
    prior_temperature : float
        ``prior = normalise(prior_logits / prior_temperature)`` with the same
        normalisation as the edges.
    add_prior : bool
        Add the prior to the learned weights (reference) and regularise toward it.
        False = "GD without the prior": weights are the learned edges only and
        there is no regulariser.
    gd_reg : float
        Weight of the prior regulariser ``sum_e (mean_b edge_be - prior_e)^2``.
    w_logit, w_repr : float
        Weights of the logit and representation distillation terms.
    logit_metric, repr_metric : str
        Distances, see
        :func:`~emodistill.distill.losses.graph.pair_distance`. ``min_cosine`` (DMD hetero) is
        reduced as in the reference: ``mean_b(w) * mean_b max(0, cos)``.
    repr_in_loss : bool
        Add the representation term to ``total`` (DMD: False for HomoGD, whose
        representation loss is computed but never used; True for HeteroGD).
    detach_edge_inputs : bool
        Stop gradients from the edge network into the logits/representations
        (reference: False, the backbone receives gradients through the edges).

    Examples
    --------
    >>> unit = GDUnit(["text", "audio", "vision"], logit_dim=1, repr_dim=8, gd_size=4)
    >>> out = unit(torch.randn(3, 5, 1), torch.randn(3, 5, 8))
    >>> out.edges.shape, bool(torch.allclose(out.edges.sum(1), torch.ones(5)))
    (torch.Size([5, 6]), True)
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        logit_dim: int,
        repr_dim: int,
        gd_size: int = 64,
        edge_temperature: float = 8.0,
        normalization: Literal["all", "student"] = "all",
        prior: Mapping[str, float] | None = None,
        prior_temperature: float = 0.25,
        add_prior: bool = True,
        gd_reg: float = 10.0,
        w_logit: float = 1.0,
        w_repr: float = 10.0,
        logit_metric: str = "l1",
        repr_metric: str = "l1",
        repr_in_loss: bool = True,
        detach_edge_inputs: bool = False,
    ) -> None:
        super().__init__()
        self.nodes = list(nodes)
        if len(self.nodes) < 2:
            raise ConfigError(f"a GD-Unit needs at least 2 modalities; got {self.nodes}")
        if normalization not in ("all", "student"):
            raise ConfigError(f"GD normalization={normalization!r}; use 'all' or 'student'")
        for m in (logit_metric, repr_metric):
            if m not in METRICS:
                raise ConfigError(f"GD metric {m!r}; use one of {list(METRICS)}")
        if edge_temperature <= 0 or prior_temperature <= 0:
            raise ConfigError(
                f"GD temperatures must be > 0 (edge_temperature={edge_temperature}, "
                f"prior_temperature={prior_temperature})"
            )
        self.edge_names = edge_names(self.nodes)
        pairs = edge_list(self.nodes)
        #: ``(student, teacher)`` index pairs in edge order (Python ints, no device sync)
        self.pairs: list[tuple[int, int]] = pairs
        self.register_buffer("student_idx", torch.tensor([j for j, _ in pairs]), persistent=False)
        self.register_buffer("teacher_idx", torch.tensor([i for _, i in pairs]), persistent=False)
        self.normalization = normalization
        self.edge_temperature = float(edge_temperature)
        self.add_prior = add_prior
        self.gd_reg = float(gd_reg)
        self.w_logit, self.w_repr = float(w_logit), float(w_repr)
        self.logit_metric, self.repr_metric = logit_metric, repr_metric
        self.repr_in_loss = repr_in_loss
        self.detach_edge_inputs = detach_edge_inputs
        self.W_logit = nn.Linear(logit_dim, gd_size)
        self.W_repr = nn.Linear(repr_dim, gd_size)
        self.W_edge = nn.Linear(4 * gd_size, 1)
        prior_logits = parse_prior(prior, self.nodes)
        self.register_buffer("prior_logits", prior_logits, persistent=False)
        self.register_buffer(
            "prior", self.normalize(prior_logits[None] / prior_temperature)[0], persistent=False
        )

    def normalize(self, scores: Tensor, valid: Tensor | None = None) -> Tensor:
        """Softmax of ``[B, E]`` scores per sample (``all``) or per student node.

        Edges where ``valid`` is False (an endpoint absent) get weight 0.
        """
        if valid is not None:
            scores = scores.masked_fill(~valid, float("-inf"))
        if self.normalization == "all":
            w = scores.softmax(-1)
        else:
            n = len(self.nodes)
            w = scores.view(scores.shape[0], n, n - 1).softmax(-1).view_as(scores)
        return w.nan_to_num(0.0) if valid is not None else w

    def edge_weights(self, logits: Tensor, reprs: Tensor, valid: Tensor | None = None) -> Tensor:
        """Learned, normalised edge weights ``[B, E]``.

        Parameters
        ----------
        logits : Tensor
            ``[M, B, C]`` node logits (modality order of ``nodes``).
        reprs : Tensor
            ``[M, B, F]`` node representations.
        valid : Tensor, optional
            ``[B, E]`` bool, False where an edge's student or teacher is absent.
        """
        if self.detach_edge_inputs:
            logits, reprs = logits.detach(), reprs.detach()
        z = torch.cat([self.W_logit(logits), self.W_repr(reprs)], -1)  # [M, B, 2g]
        pair = torch.cat([z[self.student_idx], z[self.teacher_idx]], -1)  # [E, B, 4g]
        scores = self.W_edge(pair)[..., 0].transpose(0, 1)  # [B, E]
        return self.normalize(scores.float() / self.edge_temperature, valid)

    def forward(self, logits: Tensor, reprs: Tensor, present: Tensor | None = None) -> GDLosses:
        """Edge weights and distillation losses for one batch.

        Parameters
        ----------
        logits : Tensor
            ``[M, B, C]`` node logits.
        reprs : Tensor
            ``[M, B, F]`` node representations.
        present : Tensor, optional
            ``[M, B]`` bool presence of each modality (default: all present).

        Returns
        -------
        GDLosses
        """
        valid = None
        if present is not None:
            valid = (present[self.student_idx] & present[self.teacher_idx]).transpose(0, 1)
        edges = self.edge_weights(logits, reprs, valid)  # [B, E]
        if self.add_prior:
            prior = self.prior.to(edges.dtype)
            weights = edges + (prior if valid is None else prior * valid.to(edges.dtype))
            reg = self.gd_reg * prior_penalty(edges, prior)
        else:
            weights = edges
            reg = edges.new_zeros(())
        wt = weights.transpose(0, 1)  # [E, B]
        s, t = self.student_idx, self.teacher_idx
        logit = self.w_logit * edge_weighted_distance(logits[s], logits[t].detach(), wt,
                                                      self.logit_metric, valid)
        rep = self.w_repr * edge_weighted_distance(reprs[s], reprs[t].detach(), wt,
                                                   self.repr_metric, valid)
        total = logit + reg + (rep if self.repr_in_loss else 0.0)
        return GDLosses(logit=logit, repr=rep, reg=reg, total=total, edges=edges,
                        weights=weights)
