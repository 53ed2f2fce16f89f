"""Utterance-context layers and how any method gets one before its head.

A context layer maps per-utterance representations ``[B, U, H]`` of ``B``
videos (``[B, U]`` mask) to contextual ones of the same width. Two are
registered in :data:`CONTEXT_LAYERS` (kind ``context`` of
:data:`~emodistill.models.blocks.BLOCKS`):

* ``birnn``: a bidirectional GRU or LSTM over the utterances of a video
  (bc-LSTM, Poria et al., ACL 2017);
* ``attention``: inter-utterance attention in the style of MMMU-BA (Ghosal et
  al., EMNLP 2018): optionally a bidirectional GRU first, then
  ``A = softmax(H Hᵀ) H`` over the video's other utterances, gated
  multiplicatively ``A ⊙ H`` and concatenated with ``H`` (MMMU-BA's attention is
  *bi-modal*, between modality pairs; here it acts on the method's fused
  utterance representation, so every method can use it — the bi-modal form is
  what ``method.context=sequence`` gives DMD's cross-modal transformers).

How a method gets context without being rewritten: a method names its
**context sites** (class attribute ``context_sites``), the modules whose input
is the per-utterance representation ``[N, H]`` and whose output is the
prediction (e.g. ``head``; ``heads.*`` for one per modality; DMD: the final
linear layer of its fusion head). :func:`attach_context` registers a forward
pre-hook on each site that reshapes its input to ``[B, U, H]`` with the
batch's :class:`~emodistill.data.batch.ContextLayout`, runs the context
layer, and hands the head ``[N, H]`` again. The layers are submodules of the
module owning the site (saved in checkpoints, optimised with it). A batch
without a layout is a context of one per utterance. Every choice here is a
reconstruction (``docs/architecture.md``, "Utterance context").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch, ContextLayout
from emodistill.errors import ConfigError
from emodistill.models.blocks import CONTEXT_LAYERS

__all__ = [
    "CONTEXT_LAYERS",
    "CONTEXT_MODES",
    "DATA_KEYS",
    "BiRNNContext",
    "AttentionContext",
    "attach_context",
    "context_sites",
]

#: ``method.context`` values: no context, a registered layer, or utterances as the sequence axis
CONTEXT_MODES = ("none", "sequence")
#: ``method.context_params`` keys read by the data side, not by the layer
DATA_KEYS = ("group", "window")


class _ContextBase(nn.Module):
    """Shared output stage: ``[H; context]`` → ``H`` (or ``H + context`` when residual)."""

    def __init__(self, dim: int, ctx_dim: int, *, residual: bool, dropout: float) -> None:
        super().__init__()
        self.residual = residual
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(ctx_dim if residual else dim + ctx_dim, dim)

    def combine(self, h: Tensor, c: Tensor) -> Tensor:
        c = self.drop(c)
        if self.residual:
            return h + self.out(c)
        return self.out(torch.cat([h, c], -1))


@CONTEXT_LAYERS.register("birnn")
class BiRNNContext(_ContextBase):
    """Bidirectional GRU/LSTM over the utterances of each video (bc-LSTM).

    Parameters
    ----------
    dim : int
        Width ``H`` of the per-utterance representation (in and out).
    width : int
        Hidden width per direction (default ``H // 2``, at least 16).
    cell : {"gru", "lstm"}
        Recurrent cell.
    layers : int
        Stacked recurrent layers.
    dropout : float
        Dropout on the context before the output projection.
    residual : bool
        ``H + Linear(context)`` (default) or ``Linear([H; context])``.
    """

    def __init__(self, dim: int, *, width: int | None = None, cell: str = "gru",
                 layers: int = 1, dropout: float = 0.1, residual: bool = True) -> None:
        hid = int(width or max(16, dim // 2))
        super().__init__(dim, 2 * hid, residual=residual, dropout=dropout)
        if cell not in ("gru", "lstm"):
            raise ConfigError(f"context cell={cell!r}; use gru or lstm")
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(dim, hid, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """``[B, U, H]``, ``[B, U]`` → ``[B, U, H]``."""
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.rnn(packed)
        c, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        return self.combine(h, c)


@CONTEXT_LAYERS.register("attention")
class AttentionContext(_ContextBase):
    """Inter-utterance attention (MMMU-BA style) over the utterances of each video.

    Parameters
    ----------
    dim : int
        Width ``H`` of the per-utterance representation.
    rnn_first : bool
        Run a bidirectional GRU over the utterances first (MMMU-BA's pipeline).
    width : int
        Width of the attended space (default ``H``; with ``rnn_first`` the GRU
        has ``width // 2`` units per direction).
    include_self : bool
        Whether an utterance attends to itself (MMMU-BA: yes).
    dropout : float
        Dropout on the context before the output projection.
    residual : bool
        ``H + Linear(context)`` (default) or ``Linear([H; context])``.
    """

    def __init__(self, dim: int, *, rnn_first: bool = False, width: int | None = None,
                 include_self: bool = True, dropout: float = 0.1,
                 residual: bool = True) -> None:
        hid = int(width or dim)
        super().__init__(dim, 2 * hid, residual=residual, dropout=dropout)
        self.include_self = include_self
        if rnn_first:
            self.pre: nn.Module = nn.GRU(dim, max(1, hid // 2), batch_first=True,
                                         bidirectional=True)
            self.pre_out = 2 * max(1, hid // 2)
            self.proj = nn.Linear(self.pre_out, hid)
        else:
            self.pre = nn.Identity()
            self.proj = nn.Linear(dim, hid)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """``[B, U, H]``, ``[B, U]`` → ``[B, U, H]``."""
        x = h
        if isinstance(self.pre, nn.GRU):
            lengths = mask.sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.pre(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                    total_length=h.shape[1])
        x = torch.tanh(self.proj(x))  # [B, U, K]
        scores = x @ x.transpose(1, 2)  # [B, U, U]
        allowed = mask[:, None, :] & mask[:, :, None]
        if not self.include_self:
            eye = torch.eye(h.shape[1], dtype=torch.bool, device=h.device)
            allowed = allowed & ~eye
        scores = scores.masked_fill(~allowed, float("-inf"))
        attn = torch.softmax(scores, -1).nan_to_num(0.0)  # rows without keys → zeros
        a = attn @ x
        return self.combine(h, torch.cat([a * x, a], -1))


# ------------------------------------------------------------------------ attaching
class _LayoutSlot:
    """Holds the layout of the batch the model is running on (set by a pre-hook)."""

    layout: ContextLayout | None = None


def context_sites(model: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """Return the modules whose input gets context, as ``(owner, site)`` dotted names.

    A method declares ``context_sites`` (``"name"`` or ``"dict.*"`` for every
    child of a module dict) relative to itself, the *owner* (which will hold
    the layers); a method that wraps another registered method in
    ``self.student`` (the KD methods) uses its student's sites, owned by the student.
    """
    declared = getattr(type(model), "context_sites", ())
    if not declared:
        student = getattr(model, "student", None)
        if isinstance(student, nn.Module):
            return context_sites(student, prefix=f"{prefix}student.")
        return []
    out = []
    for site in declared:
        if site.endswith(".*"):
            parent = model.get_submodule(site[:-2])
            out += [(prefix.rstrip("."), f"{site[:-2]}.{k}") for k, _ in parent.named_children()]
        else:
            out.append((prefix.rstrip("."), site))
    return out


def _in_width(module: nn.Module, site: str) -> int:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return int(sub.in_features)
    raise ConfigError(f"context site {site!r} holds no Linear layer; cannot infer its width")


def attach_context(model: nn.Module, name: str, params: dict[str, Any] | None = None) -> None:
    """Give ``model`` the context layer ``name`` before each of its heads (in place).

    Parameters
    ----------
    model : MERModel
        A built method.
    name : str
        A :data:`CONTEXT_LAYERS` name.
    params : dict, optional
        Layer keyword arguments (keys in :data:`DATA_KEYS` are ignored here).

    Raises
    ------
    ConfigError
        If the method declares no context site, or a parameter is unknown.
    """
    layer_cls = CONTEXT_LAYERS.get(name)
    kw = {k: v for k, v in (params or {}).items() if k not in DATA_KEYS}
    sites = context_sites(model)
    if not sites:
        raise ConfigError(
            f"method {type(model).__name__} declares no context site (its per-utterance "
            "representation before the head); use method.context=none or add "
            "`context_sites` to the class"
        )
    slot = _LayoutSlot()

    def remember(_m: nn.Module, args: tuple[Any, ...]) -> None:
        batch = args[0] if args else None
        slot.layout = batch.context if isinstance(batch, Batch) else None

    model.register_forward_pre_hook(remember)
    for owner_name, site in sites:
        owner = model.get_submodule(owner_name) if owner_name else model
        target = owner.get_submodule(site)
        try:
            layer = layer_cls(_in_width(target, site), **kw)
        except TypeError as e:
            raise ConfigError(f"context layer {name!r}: {e}; check method.context_params") from None
        if not hasattr(owner, "context_layers"):
            owner.context_layers = nn.ModuleDict()
        owner.context_layers[site.replace(".", "__")] = layer

        def apply(_m: nn.Module, args: tuple[Any, ...], layer: nn.Module = layer) -> tuple:
            h, rest = args[0], args[1:]
            lay = slot.layout
            if lay is None or lay.n_utterances != h.shape[0]:
                if lay is not None:
                    raise ConfigError(
                        f"context layout holds {lay.n_utterances} utterances but the head "
                        f"sees {h.shape[0]}"
                    )
                lay = ContextLayout.singletons(h.shape[0], device=h.device)
            ctx = layer(lay.to_videos(h), lay.mask)
            return (lay.to_utterances(ctx), *rest)

        target.register_forward_pre_hook(apply)
