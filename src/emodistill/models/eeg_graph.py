"""An electrode-aware EEG model: electrodes as nodes on the scalp, bands as node features.

``eeg_graph`` reads a band-feature modality (``[1, K*E]`` band-major, or ``[K, E]`` in the
``bands`` layout) as ``E`` nodes with ``K`` band values each. Each node is embedded from its
band values plus its 10-20 position (a learned map of the unit-sphere coordinates, so the same
weights apply to any montage), then ``layers`` attention blocks exchange information between
electrodes with a **distance prior**: head ``h`` adds ``-d_ij^2 / (2 sigma_h^2)`` to the
attention logits between electrodes ``i`` and ``j`` (``d``: chord distance on the unit
sphere, ``sigma_h`` learned per head, initialised from ``sigma``), a soft graph over the scalp
in the spirit of regional/graph EEG models (RGNN, Zhong et al. 2020), not a reproduction of
any of them. Mean pooling over nodes gives the ``[B, H]`` feature; an MLP head predicts.

The electrodes of a modality: ``electrodes`` (a preset name or a list), else the modality's
own name when it is a preset (``frontal4``, ``emotiv14``), else the 32-electrode Geneva
order (:data:`emodistill.data.montage.DEAP_32`) when the modality has 32 electrodes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.data.montage import DEAP_32, PRESETS, positions, resolve_montage
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, Head, MERModel, ModelOutput, single_modality

__all__ = ["EEGGraph", "ScalpAttention"]


class ScalpAttention(nn.Module):
    """Pre-norm self-attention over electrodes with a learned Gaussian distance prior.

    Parameters
    ----------
    width, heads : int
        Node width ``H`` and attention heads.
    sigma : float
        Initial prior width (unit-sphere chord distance; neighbours are ~0.3 apart).
    dropout : float
        Dropout on attention weights and the feed-forward block.
    """

    def __init__(self, width: int, heads: int, sigma: float, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"eeg_graph: width={width} must be divisible by heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * width, width))
        self.drop = nn.Dropout(dropout)
        self.log_sigma = nn.Parameter(torch.full((heads,), math.log(sigma)))

    def forward(self, x: Tensor, dist2: Tensor) -> tuple[Tensor, Tensor]:
        """Update nodes ``x [B, E, H]`` given squared distances ``[E, E]``.

        Returns the new nodes ``[B, E, H]`` and the attention ``[B, heads, E, E]``.
        """
        b, e, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, e, 3, self.heads, w // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, h, E, d]
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        prior = -dist2[None, None] / (2 * self.log_sigma.exp()[None, :, None, None] ** 2)
        att = (logits + prior).softmax(-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(b, e, w)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff(self.norm2(x))), att


@METHODS.register("eeg_graph")
class EEGGraph(MERModel):
    """Electrodes as nodes (10-20 positions), bands as node features, attention over the scalp.

    Parameters
    ----------
    modality : str, optional
        The band-feature modality (required when the data has several).
    electrodes : str or list of str, optional
        Its electrodes, in the modality's order (see the module docstring for the default).
    width, layers, heads : int
        Node width, attention blocks, heads.
    sigma : float
        Initial width of the distance prior.
    electrode_embedding : bool
        Add a learned per-electrode embedding to the position code (ties the weights to
        this montage's electrode identities).
    dropout, head_width : float, int
        Dropout and the head's hidden width.
    """

    parallel_ok = True

    def __init__(self, *, modality: str | None = None,
                 electrodes: str | list[str] | None = None, width: int = 32, layers: int = 2,
                 heads: int = 4, sigma: float = 0.5, electrode_embedding: bool = False,
                 dropout: float = 0.2, head_width: int = 64, **base: Any) -> None:
        spec = base["spec"]
        modality = single_modality(spec, modality, "eeg_graph")
        ms = spec.modality(modality)
        base["modalities"] = [modality]
        super().__init__(**base)
        self.modality = modality
        if electrodes is None:
            if modality in PRESETS:
                electrodes = modality
            elif ms.seq_len * ms.dim % 32 == 0 and ms.seq_len * ms.dim // 32 in (4, 5):
                electrodes = list(DEAP_32)
            else:
                raise ConfigError(
                    f"eeg_graph: cannot tell the electrodes of modality {modality!r} "
                    f"([{ms.seq_len} x {ms.dim}]); set method.electrodes to a preset "
                    f"({', '.join(PRESETS)}) or a list of electrode names")
        self.electrodes = resolve_montage(electrodes)
        e = len(self.electrodes)
        if ms.seq_len > 1:  # bands layout [K, E]
            if ms.dim != e:
                raise ConfigError(f"eeg_graph: modality {modality!r} has {ms.dim} electrodes "
                                  f"per step, method.electrodes lists {e}")
            self.n_bands, self.layout = ms.seq_len, "bands"
        else:
            if ms.dim % e:
                raise ConfigError(f"eeg_graph: {ms.dim} features of {modality!r} are not "
                                  f"bands x {e} electrodes")
            self.n_bands, self.layout = ms.dim // e, "flat"
        pos = torch.as_tensor(positions(self.electrodes), dtype=torch.float32)
        # derived from the electrode names, not saved: the weights fit any montage
        self.register_buffer("pos", pos, persistent=False)
        self.register_buffer("dist2", torch.cdist(pos, pos) ** 2, persistent=False)
        self.band_in = nn.Linear(self.n_bands, width)
        self.pos_in = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, width))
        self.elec = nn.Parameter(torch.zeros(e, width)) if electrode_embedding else None
        self.blocks = nn.ModuleList(ScalpAttention(width, heads, sigma, dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = Head(width, self.n_outputs, hidden=head_width, dropout=dropout)

    def nodes(self, x: Tensor) -> Tensor:
        """``[B, T, D]`` band features → ``[B, E, K]`` node features."""
        b = x.shape[0]
        if self.layout == "flat":
            return x.reshape(b, self.n_bands, len(self.electrodes)).transpose(1, 2)
        return x.transpose(1, 2)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        x = batch.inputs[self.modality]
        h = self.band_in(self.nodes(x)) + self.pos_in(self.pos)[None]
        if self.elec is not None:
            h = h + self.elec[None]
        att = None
        for blk in self.blocks:
            h, att = blk(h, self.dist2)
        z = self.norm(h).mean(1) * batch.present[self.modality][:, None].to(h.dtype)
        aux = {} if att is None else {"attention": att.detach()}
        return ModelOutput(preds=self.head(z), features={self.modality: z}, fused=z, aux=aux)

    def epoch_logs(self) -> dict[str, float]:
        """Mean learned prior width per block (``model/sigma_<i>`` in metrics.csv)."""
        return {f"sigma_{i}": float(b.log_sigma.exp().mean()) for i, b in enumerate(self.blocks)}
