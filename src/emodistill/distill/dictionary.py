r"""Cross-modal dictionary matching: DHMD's fine-grained distillation (reconstructed).

DHMD (Li et al., TPAMI 2026, arXiv 2602.04260) adds, after the GD-Unit of each
decoupled space, a *modality-shared dictionary* trained with a contrastive
loss. The paper's method section was not available to us; what is verified
(from its abstract and framework figure) is: one learnable dictionary per
decoupled space, shared by the modalities, placed after the GD-Unit, giving a
dictionary-based representation per modality, trained with a contrastive loss,
whose "activations" can be visualised. The form implemented here is the
reconstruction of ``../shared/reference/dhmd_hkdmer.md`` §1.6, modelled on
Finite Discrete Tokens (Chen et al., CVPR 2023):

.. math::

    a^m_{t,k} = \frac{\langle q_m(h^m_t), D_k\rangle}{\tau \sqrt{d}},\quad
    \beta^m = \mathrm{norm}(\mathrm{pool}_t\, a^m_{t,\cdot}),\quad
    \hat{\hat x}^m = \beta^{m\top} D

with ``norm`` sparsemax (default), softmax or sigmoid, ``pool`` max (default),
mean or sum over real steps, and a cross-modal InfoNCE on the matched vectors
(same sample, other modality = positive; other samples = negatives), or a
Jensen-Shannon divergence between the activations ``beta`` (both losses in
:mod:`emodistill.distill.losses.dictionary`). Every choice is a constructor argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from emodistill.errors import ConfigError

__all__ = ["sparsemax", "DictionaryMatcher"]


def sparsemax(x: Tensor, dim: int = -1) -> Tensor:
    """Sparsemax (Martins & Astudillo, 2016): Euclidean projection onto the simplex.

    Parameters
    ----------
    x : Tensor
        Scores, any shape.
    dim : int
        Axis to normalise.

    Returns
    -------
    Tensor
        Same shape; non-negative, sums to 1 along ``dim``, typically sparse.

    Examples
    --------
    >>> sparsemax(torch.tensor([2.0, 1.0, -1.0])).tolist()
    [1.0, 0.0, 0.0]
    """
    x = x.transpose(dim, -1)
    z = x - x.amax(-1, keepdim=True)
    zs = z.sort(-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    cums = zs.cumsum(-1)
    support = (1 + k * zs) > cums
    k_z = support.to(z.dtype).sum(-1, keepdim=True)  # size of the support (>= 1)
    tau = (cums.gather(-1, k_z.long() - 1) - 1) / k_z
    return (z - tau).clamp(min=0).transpose(dim, -1)


class DictionaryMatcher(nn.Module):
    """A learnable dictionary shared by several modalities, matched per modality.

    Parameters
    ----------
    modalities : sequence of str
        Modalities that query the dictionary.
    in_dims : mapping of str to int
        Feature width of each modality's input sequence.
    dim : int
        Width ``d`` of the dictionary atoms (and of the matched output).
    size : int
        Number of atoms ``K``.
    temperature : float
        ``tau`` dividing the scaled dot products.
    normalization : {"sparsemax", "softmax", "sigmoid"}
        How the pooled scores become activations ``beta`` (sigmoid activations
        are divided by their sum so that the output is a weighted mean of atoms).
    pool : {"max", "mean", "sum"}
        Pooling of the token-to-atom scores over the real steps.
    l2_normalize : bool
        L2-normalise the matched output vectors.
    query_hidden : int, optional
        Hidden width of the per-modality query MLP (default ``dim``).

    Examples
    --------
    >>> dm = DictionaryMatcher(["a", "b"], {"a": 6, "b": 4}, dim=8, size=5)
    >>> seqs = {"a": torch.randn(2, 3, 6), "b": torch.randn(2, 1, 4)}
    >>> masks = {m: torch.ones(x.shape[:2], dtype=torch.bool) for m, x in seqs.items()}
    >>> out, act = dm(seqs, masks)
    >>> out["a"].shape, act["b"].shape
    (torch.Size([2, 8]), torch.Size([2, 5]))
    """

    def __init__(
        self,
        modalities: Sequence[str],
        in_dims: Mapping[str, int],
        *,
        dim: int,
        size: int = 64,
        temperature: float = 1.0,
        normalization: Literal["sparsemax", "softmax", "sigmoid"] = "sparsemax",
        pool: Literal["max", "mean", "sum"] = "max",
        l2_normalize: bool = True,
        query_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if normalization not in ("sparsemax", "softmax", "sigmoid"):
            raise ConfigError(
                f"dictionary normalization={normalization!r}; use sparsemax, softmax or sigmoid"
            )
        if pool not in ("max", "mean", "sum"):
            raise ConfigError(f"dictionary pool={pool!r}; use max, mean or sum")
        if size < 1 or temperature <= 0:
            raise ConfigError(
                f"dictionary size={size} must be >= 1 and temperature={temperature} > 0"
            )
        self.modalities = list(modalities)
        self.dim, self.size = dim, size
        self.temperature = float(temperature)
        self.normalization, self.pool = normalization, pool
        self.l2_normalize = l2_normalize
        self.atoms = nn.Parameter(torch.empty(size, dim))
        nn.init.xavier_uniform_(self.atoms)
        hid = query_hidden or dim
        self.query = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(in_dims[m]), nn.Linear(in_dims[m], hid), nn.GELU(),
                             nn.LayerNorm(hid), nn.Linear(hid, dim))
            for m in self.modalities
        })

    def scores(self, x: Tensor, mask: Tensor, modality: str) -> Tensor:
        """Pooled token-to-atom scores ``[B, K]`` of one modality's ``[B, T, D]`` sequence."""
        q = self.query[modality](x)  # [B, T, d]
        a = q @ self.atoms.to(q.dtype).T / (self.temperature * math.sqrt(self.dim))  # [B, T, K]
        m = (mask | ~mask.any(1, keepdim=True))[..., None]  # no real step: use every step
        if self.pool == "max":
            return a.masked_fill(~m, torch.finfo(a.dtype).min).amax(1)
        s = (a * m.to(a.dtype)).sum(1)
        if self.pool == "mean":
            s = s / m.to(a.dtype).sum(1)
        return s

    def activations(self, scores: Tensor) -> Tensor:
        """Activations ``beta [B, K]`` from pooled scores."""
        scores = scores.float()
        if self.normalization == "sparsemax":
            return sparsemax(scores)
        if self.normalization == "softmax":
            return scores.softmax(-1)
        s = scores.sigmoid()
        return s / s.sum(-1, keepdim=True).clamp(min=1e-6)

    def forward(self, seqs: Mapping[str, Tensor],
                masks: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Match every modality against the dictionary.

        Parameters
        ----------
        seqs : mapping of str to Tensor
            Modality → ``[B, T_m, D_m]`` (``T_m = 1`` for vectors).
        masks : mapping of str to Tensor
            Modality → ``[B, T_m]`` bool mask of real steps.

        Returns
        -------
        matched : dict of str to Tensor
            Modality → ``[B, d]`` dictionary representation ``beta^T D``.
        activations : dict of str to Tensor
            Modality → ``[B, K]`` activations ``beta``.
        """
        matched, acts = {}, {}
        for m in self.modalities:
            beta = self.activations(self.scores(seqs[m], masks[m], m))
            out = beta.to(self.atoms.dtype) @ self.atoms
            if self.l2_normalize:
                out = nn.functional.normalize(out, dim=-1)
            matched[m], acts[m] = out, beta
        return matched, acts
