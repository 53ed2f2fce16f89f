"""EmotionKD-style physiological teacher and student (reconstructed).

Liu, Jia & Wang, "EmotionKD", ACM MM 2023, and Zhang & Lu, "Multimodal Knowledge
Distillation for Emotion Recognition", Brain Sciences 2025 (MKD) share one
architecture template (see ``../shared/reference/physio_kd.md`` §1.4 and §2.2):

* a per-modality **tokeniser**: a temporal convolution (kernel ``f/4``, stride 8)
  with batch norm and ReLU, then a spatial convolution across the channels,
  turning a window ``[T, C]`` into tokens ``[N, W]``;
* a per-modality **transformer** of ``layers`` blocks whose every block output
  ``H^1 .. H^L`` is kept;
* **depth fusion**: ``sum_l s_l(H^l) * H^l`` with an elementwise score gate
  ``s_l`` in ``(-1, 1)`` (dense, norm, ReLU, dense, norm, softsign);
* in the teacher, a **fusion module**: cross-modal interaction over all
  modalities' tokens, then learned per-modality gates weighting each
  modality's pooled feature (the fused feature is their concatenation);
* a classifier head.

The student is the same branch for one modality (``physio_student``).

This is a *reconstruction*: the MKD paper's method text was not available and
EmotionKD's released code has known quirks. Deviations, each a config option
where it matters: token features are mean-pooled over real tokens instead of
flattened (flattening ties the feature size to the window length and gives
3904/7808-wide features); the score gates use LayerNorm by default
(``score_norm="batch"`` is EmotionKD's BatchNorm); the cross-modal interaction
is a transformer layer over the concatenated tokens (``cross_layers``, 0 turns it
off; EmotionKD's IMF only concatenates and gates); the classifier has a real
nonlinearity (EmotionKD's stacked Dense layers have none).

Non-signal inputs work too: a length-1 input (an utterance or trial feature
vector) is split into ``vector_tokens`` learned tokens, and a sequence shorter
than the convolution kernel is tokenised step by step with a linear map, so the
same teacher → student pipeline runs on MER features (e.g. MOSI utterances).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.data.spec import ModalitySpec
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, Head, MERModel, ModelOutput, single_modality
from emodistill.models.blocks import TOKENIZERS, build_block
from emodistill.models.encoders import masked_mean

__all__ = [
    "ConvTokenizer",
    "LinearTokenizer",
    "VectorTokenizer",
    "ScoreGate",
    "PhysioBranch",
    "DepthFusion",
    "PhysioStudent",
    "PhysioTeacher",
    "build_tokenizer",
]

TokenizerName = Literal["auto", "conv", "linear", "vector"]


@TOKENIZERS.register("conv")
class ConvTokenizer(nn.Module):
    """EmotionKD's "filter" front end: ``[B, T, C]`` → tokens ``[B, N, W]``.

    A temporal convolution of width ``kernel_size`` and stride ``stride`` over each
    channel (64 filters in EmotionKD), batch norm, ReLU, then a convolution across
    all ``C`` channels. ``N = (T - kernel_size) // stride + 1`` (61 for a 4 s window
    at 128 Hz with kernel 32 and stride 8).

    Parameters
    ----------
    channels : int
        Number of channels ``C`` (the modality's feature dim ``D``).
    seq_len : int
        Window length ``T`` in samples.
    width : int
        Token width ``W``.
    kernel_size, stride : int
        Temporal convolution kernel and stride (clipped to ``seq_len``).
    dropout : float
        Dropout on the tokens.
    """

    def __init__(self, channels: int, seq_len: int, *, width: int = 64, kernel_size: int = 32,
                 stride: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.kernel = min(kernel_size, seq_len)
        self.stride = max(1, min(stride, self.kernel))
        self.temporal = nn.Conv2d(1, width, (1, self.kernel), stride=(1, self.stride))
        self.bn = nn.BatchNorm2d(width)
        self.spatial = nn.Conv2d(width, width, (channels, 1))
        self.drop = nn.Dropout(dropout)
        self.n_tokens = (seq_len - self.kernel) // self.stride + 1

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens ``[B, N, W]`` and token mask ``[B, N]`` (real if it covers a real step)."""
        h = (x * mask[..., None].to(x.dtype)).transpose(1, 2)[:, None]  # [B, 1, C, T]
        h = torch.relu(self.bn(self.temporal(h)))  # [B, W, C, N]
        h = self.spatial(h).squeeze(2).transpose(1, 2)  # [B, N, W]
        tok = nn.functional.max_pool1d(mask[:, None].to(x.dtype), self.kernel, self.stride)
        return self.drop(h), tok[:, 0] > 0


@TOKENIZERS.register("linear")
class LinearTokenizer(nn.Module):
    """One token per time step: ``[B, T, D]`` → ``[B, T, W]`` through a linear map."""

    def __init__(self, dim: int, seq_len: int, *, width: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, width)
        self.drop = nn.Dropout(dropout)
        self.n_tokens = seq_len

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens ``[B, T, W]`` and the input mask."""
        return self.drop(self.proj(x)), mask


@TOKENIZERS.register("vector")
class VectorTokenizer(nn.Module):
    """A feature vector ``[B, 1, D]`` → ``n_tokens`` learned tokens ``[B, n_tokens, W]``."""

    def __init__(self, dim: int, seq_len: int, *, width: int = 64, n_tokens: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if seq_len != 1:
            raise ConfigError(
                f"tokenizer 'vector' needs length-1 inputs, got seq_len={seq_len}; use "
                "tokenizer=conv or linear for sequences"
            )
        self.proj = nn.Linear(dim, n_tokens * width)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.n_tokens, self.width = n_tokens, width

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens ``[B, n_tokens, W]``; every token is real where the step is."""
        h = self.proj(x[:, 0]).view(x.shape[0], self.n_tokens, self.width)
        return self.drop(self.norm(h)), mask[:, :1].expand(-1, self.n_tokens)


def build_tokenizer(
    name: TokenizerName, m: ModalitySpec, *, width: int, kernel_size: int, stride: int,
    vector_tokens: int, dropout: float,
) -> nn.Module:
    """Tokeniser ``name`` of :data:`~emodistill.models.blocks.TOKENIZERS` for modality ``m``.

    ``auto`` picks ``vector`` for length-1 inputs, ``linear`` for sequences shorter
    than ``kernel_size`` and the convolutional front end otherwise. Each tokeniser
    gets the options it reads (``conv``: kernel and stride; ``vector``: the number
    of tokens).
    """
    if name == "auto":
        name = "vector" if m.seq_len == 1 else ("linear" if m.seq_len < kernel_size else "conv")
    own: dict[str, dict[str, Any]] = {
        "conv": {"kernel_size": kernel_size, "stride": stride},
        "vector": {"n_tokens": vector_tokens},
    }
    return build_block("tokenizer", name, m.dim, m.seq_len, width=width, dropout=dropout,
                       **own.get(name, {}))


class ScoreGate(nn.Module):
    """EmotionKD's score block: elementwise gate ``s(X)`` in ``(-1, 1)`` for ``[B, N, W]``.

    ``Linear → norm → ReLU → Linear → norm → softsign``, applied per token.

    Parameters
    ----------
    width : int
        Token width ``W``.
    norm : {"layer", "batch"}
        Normalisation; ``batch`` is EmotionKD's (statistics over all tokens of
        the batch), ``layer`` works for any batch size.
    """

    def __init__(self, width: int, *, norm: Literal["layer", "batch"] = "layer") -> None:
        super().__init__()
        if norm not in ("layer", "batch"):
            raise ConfigError(f"score_norm={norm!r}; use layer or batch")

        def nrm() -> nn.Module:
            return nn.LayerNorm(width) if norm == "layer" else nn.BatchNorm1d(width)

        self.net = nn.Sequential(nn.Linear(width, width), nrm(), nn.ReLU(),
                                 nn.Linear(width, width), nrm(), nn.Softsign())

    def forward(self, x: Tensor) -> Tensor:
        """Gate ``[B, N, W]`` in ``(-1, 1)``."""
        return self.net(x.reshape(-1, x.shape[-1])).view_as(x)


class DepthFusion(nn.Module):
    """``sum_l s_l(H^l) * H^l`` over the ``layers`` block outputs (EmotionKD's student fusion)."""

    def __init__(self, width: int, layers: int, *,
                 norm: Literal["layer", "batch"] = "layer") -> None:
        super().__init__()
        self.gates = nn.ModuleList(ScoreGate(width, norm=norm) for _ in range(layers))

    def forward(self, hs: list[Tensor]) -> Tensor:
        """Fused tokens ``[B, N, W]`` from the list of block outputs."""
        return torch.stack([g(h) * h for g, h in zip(self.gates, hs, strict=True)]).sum(0)


class PhysioBranch(nn.Module):
    """One modality: tokeniser + learned positions + ``layers`` post-norm transformer blocks.

    Parameters
    ----------
    m : ModalitySpec
        The modality (``dim`` = channels ``C``, ``seq_len`` = window ``T``).
    width, layers, heads, ff_width, dropout :
        Token width ``W``, number of blocks, attention heads, feed-forward width,
        dropout (EmotionKD: 64, 3, 8, 64, 0.1).
    tokenizer, kernel_size, stride, vector_tokens :
        See :func:`build_tokenizer`.
    norm_first : bool
        Pre-norm blocks (EmotionKD's are post-norm).
    """

    def __init__(self, m: ModalitySpec, *, width: int, layers: int, heads: int, ff_width: int,
                 dropout: float, tokenizer: TokenizerName, kernel_size: int, stride: int,
                 vector_tokens: int, norm_first: bool) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"layers={layers}; the transformer needs at least one block")
        if width % heads:
            raise ConfigError(f"width={width} is not divisible by heads={heads}")
        self.tokenizer = build_tokenizer(tokenizer, m, width=width, kernel_size=kernel_size,
                                         stride=stride, vector_tokens=vector_tokens,
                                         dropout=dropout)
        self.n_tokens = self.tokenizer.n_tokens
        self.pos = nn.Parameter(torch.randn(1, self.n_tokens, width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, ff_width, dropout, batch_first=True,
                                       norm_first=norm_first)
            for _ in range(layers)
        )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], Tensor]:
        """Block outputs ``H^1..H^L`` (each ``[B, N, W]``) and the token mask ``[B, N]``."""
        h, tok = self.tokenizer(x, mask)
        h = h + self.pos[:, : h.shape[1]]
        # a sample without real tokens (absent modality) would make attention NaN:
        # let it attend to token 0; its pooled feature is zeroed by the caller
        pad = ~tok
        pad[:, 0] = pad[:, 0] & tok.any(1)
        hs = []
        for block in self.blocks:
            h = block(h, src_key_padding_mask=pad)
            hs.append(h)
        return hs, tok


def _branch_kwargs(width: int, layers: int, heads: int, ff_width: int | None, dropout: float,
                   tokenizer: TokenizerName, kernel_size: int, stride: int,
                   vector_tokens: int, norm_first: bool) -> dict[str, Any]:
    return dict(width=width, layers=layers, heads=heads, ff_width=ff_width or width,
                dropout=dropout,
                tokenizer=tokenizer, kernel_size=kernel_size, stride=stride,
                vector_tokens=vector_tokens, norm_first=norm_first)


@METHODS.register("physio_student")
class PhysioStudent(MERModel):
    """EmotionKD-style unimodal student: one :class:`PhysioBranch`, depth fusion, head.

    ``features[modality]`` and ``fused`` are the pooled depth-fused feature ``[B, W]``
    (the student side of feature distillation).

    Parameters
    ----------
    modality : str
        The modality to use (required unless the dataset has only one).
    width, layers, heads, ff_width, dropout :
        Branch sizes (see :class:`PhysioBranch`); ``ff_width=None`` means ``width``.
    tokenizer, kernel_size, stride, vector_tokens, norm_first :
        Branch tokeniser and block options (see :class:`PhysioBranch`).
    score_norm : {"layer", "batch"}
        Normalisation in the depth gates (see :class:`ScoreGate`).
    head_width, head_dropout : int, float
        Classifier hidden width and dropout (EmotionKD: 128, 0.5).
    """

    parallel_ok = True
    context_sites = ("head",)

    def __init__(self, *, modality: str | None = None, width: int = 64, layers: int = 3,
                 heads: int = 8, ff_width: int | None = None, dropout: float = 0.1,
                 tokenizer: TokenizerName = "auto", kernel_size: int = 32, stride: int = 8,
                 vector_tokens: int = 4, norm_first: bool = False,
                 score_norm: Literal["layer", "batch"] = "layer", head_width: int = 128,
                 head_dropout: float = 0.5, **base: Any) -> None:
        spec = base["spec"]
        modality = single_modality(spec, modality, "physio_student")
        base["modalities"] = [modality]
        super().__init__(**base)
        self.modality = modality
        self.branch = PhysioBranch(
            self.spec.modality(modality),
            **_branch_kwargs(width, layers, heads, ff_width, dropout, tokenizer, kernel_size,
                             stride, vector_tokens, norm_first))
        self.depth_fusion = DepthFusion(width, layers, norm=score_norm)
        self.head = Head(width, self.n_outputs, hidden=head_width, dropout=head_dropout)
        self.feature_dim = width

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        m = self.modality
        hs, tok = self.branch(batch.inputs[m], batch.mask[m])
        z = masked_mean(self.depth_fusion(hs), tok)
        z = z * batch.present[m][:, None].to(z.dtype)
        return ModelOutput(preds=self.head(z), features={m: z}, fused=z)


@METHODS.register("physio_teacher")
class PhysioTeacher(MERModel):
    """EmotionKD-style multimodal teacher with gated modality fusion.

    Per modality: a :class:`PhysioBranch` and a :class:`DepthFusion`; then
    ``cross_layers`` transformer layers over the concatenated tokens of all
    modalities (with a learned modality embedding; absent modalities are
    masked out); then each modality's tokens are mean-pooled into ``z_m [B, W]``
    and a gate ``g = sigmoid(Linear([z_1; ...; z_M]))`` in ``[B, M]`` (zero for
    absent modalities) weights them. The fused feature is
    ``[g_1 z_1; ...; g_M z_M]`` (``fusion="concat"``, width ``M * W``) or
    ``sum_m g_m z_m / sum_m g_m`` (``fusion="sum"``, width ``W``).

    ``aux["sample_gates"]`` holds the gates (written to predictions.csv), and
    ``epoch_logs`` reports their validation means per modality (recorded in ``loss``).

    Parameters
    ----------
    width, layers, heads, ff_width, dropout, tokenizer, kernel_size, stride, vector_tokens,
    norm_first, score_norm, head_width, head_dropout :
        As in :class:`PhysioStudent` (shared by every modality branch).
    cross_layers : int
        Cross-modal transformer layers over all tokens (0: none).
    fusion : {"concat", "sum"}
        How the gated modality features are combined.
    """

    parallel_ok = True
    context_sites = ("head",)

    min_modalities = 1

    def __init__(self, *, width: int = 64, layers: int = 3, heads: int = 8,
                 ff_width: int | None = None,
                 dropout: float = 0.1, tokenizer: TokenizerName = "auto", kernel_size: int = 32,
                 stride: int = 8, vector_tokens: int = 4, norm_first: bool = False,
                 score_norm: Literal["layer", "batch"] = "layer", head_width: int = 128,
                 head_dropout: float = 0.5, cross_layers: int = 1,
                 fusion: Literal["concat", "sum"] = "concat", **base: Any) -> None:
        super().__init__(**base)
        if fusion not in ("concat", "sum"):
            raise ConfigError(f"fusion={fusion!r}; use concat or sum")
        kw = _branch_kwargs(width, layers, heads, ff_width, dropout, tokenizer, kernel_size, stride,
                            vector_tokens, norm_first)
        self.branches = nn.ModuleDict({m.name: PhysioBranch(m, **kw) for m in self.spec.modalities})
        self.depth_fusion = nn.ModuleDict({
            m: DepthFusion(width, layers, norm=score_norm) for m in self.modalities})
        M = len(self.modalities)
        self.modality_emb = nn.Parameter(torch.randn(M, width) * 0.02)
        self.cross = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, kw["ff_width"], dropout, batch_first=True,
                                       norm_first=norm_first)
            for _ in range(cross_layers)
        )
        self.gate = nn.Linear(M * width, M)
        self.fusion = fusion
        self.feature_dim = width
        self.fused_dim = M * width if fusion == "concat" else width
        self.head = Head(self.fused_dim, self.n_outputs, hidden=head_width, dropout=head_dropout)
        self._gate_sum = torch.zeros(M)
        self._gate_n = 0

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        toks, masks = [], []
        for i, m in enumerate(self.modalities):
            hs, tok = self.branches[m](batch.inputs[m], batch.mask[m])
            tok = tok & batch.present[m][:, None]
            toks.append(self.depth_fusion[m](hs) + self.modality_emb[i])
            masks.append(tok)
        if self.cross:
            h, mask = torch.cat(toks, 1), torch.cat(masks, 1)
            pad = ~mask
            pad[:, 0] = pad[:, 0] & mask.any(1)
            for layer in self.cross:
                h = layer(h, src_key_padding_mask=pad)
            toks = list(h.split([t.shape[1] for t in toks], 1))
        feats = {m: masked_mean(t, k) for m, t, k in zip(self.modalities, toks, masks, strict=True)}
        present = torch.stack([batch.present[m] for m in self.modalities], -1)
        z = torch.stack([feats[m] for m in self.modalities], 1)  # [B, M, W]
        g = torch.sigmoid(self.gate(z.flatten(1))) * present.to(z.dtype)  # [B, M]
        if self.fusion == "concat":
            fused = (z * g[..., None]).flatten(1)
        else:
            fused = (z * g[..., None]).sum(1) / g.sum(1, keepdim=True).clamp(min=1e-6)
        return ModelOutput(preds=self.head(fused), features=feats, fused=fused,
                           aux={"gates": g, "sample_gates": g})

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:
        """Task loss; in eval mode also records the gates for :meth:`epoch_logs`.

        (Recording here rather than in ``forward`` keeps ``forward`` free of side
        effects, so it can be traced and exported.)
        """
        if not self.training:
            g = out.aux["gates"].detach()
            self._gate_sum = self._gate_sum.to(g.device) + g.sum(0)
            self._gate_n += g.shape[0]
        return super().loss(batch, out)

    def epoch_logs(self) -> dict[str, float]:
        """Mean gate per modality over the validation samples since the last call."""
        if not self._gate_n:
            return {}
        means = (self._gate_sum / self._gate_n).tolist()
        self._gate_sum, self._gate_n = torch.zeros_like(self._gate_sum), 0
        return {f"gate_{m}": v for m, v in zip(self.modalities, means, strict=True)}
