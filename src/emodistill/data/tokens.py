"""Token-id inputs: a text modality carried as WordPiece ids + attention mask.

A modality of kind ``tokens`` (:class:`~emodistill.data.spec.ModalitySpec`)
holds int64 token ids ``[N, T]`` instead of float features ``[N, T, D]``; its
``dim`` is the vocabulary size and its padding mask (``MultimodalDataset.mask``,
``Batch.mask``) is the attention mask. Real tokens are a prefix of each row
(``[CLS] ... [SEP]`` then padding id 0). ``T`` is the longest utterance of the
data (capped by the tokenizer's truncation length), not a fixed 50; the text
encoder (:mod:`emodistill.models.text_encoder`) trims every batch to its own
longest utterance before running the transformer (dynamic padding).

Texts are tokenised once, at load time, and the ids are cached on disk under a
name that hashes the recipe (ids, transcripts, tokenizer files, truncation
length), like the text-feature cache of :mod:`emodistill.data.formats.mosi_raw`.

The tokenizer is the one of the local all-MiniLM-L6-v2 (or any local BERT
folder): lower-cased WordPiece with the **bert-base-uncased vocabulary**
(30522 entries, ``[PAD]=0``, ``[UNK]=100``, ``[CLS]=101``, ``[SEP]=102``,
``[MASK]=103``), so MMSA's ``text_bert`` ids, made by bert-base-uncased's
tokenizer, are valid MiniLM inputs (:func:`split_text_bert`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emodistill.data.spec import ModalitySpec
from emodistill.errors import DataFormatError

__all__ = ["BERT_UNCASED", "check_token_modality", "load_tokenizer", "tokenize_texts",
           "cached_token_ids", "split_text_bert", "tokenizer_fingerprint"]

log = logging.getLogger(__name__)

#: facts of the bert-base-uncased WordPiece vocabulary (shared by all-MiniLM-L6-v2)
BERT_UNCASED: dict[str, int] = {"vocab_size": 30522, "pad": 0, "unk": 100, "cls": 101,
                                "sep": 102, "mask": 103}


def _as_ids(a: Any, what: str) -> np.ndarray:
    """Integer array from ints or integral floats (MMSA stores ids as float32)."""
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind in "fb" and np.isfinite(a).all() and np.all(np.mod(a, 1) == 0):
        return a.astype(np.int64)
    raise DataFormatError(
        f"{what}: token ids must be integers (or integral floats); got dtype {a.dtype} with "
        f"values like {a.reshape(-1)[:3].tolist()}"
    )


def check_token_modality(
    dataset: str,
    ms: ModalitySpec,
    ids: Any,
    n: int,
    lengths: Any | None = None,
    present: Any | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate token ids of modality ``ms`` and build its tensors.

    Parameters
    ----------
    dataset : str
        Dataset name (for messages).
    ms : ModalitySpec
        A ``tokens`` modality: ``dim`` = vocabulary size, ``seq_len`` = ``T``.
    ids : array
        ``[N, t <= T]`` token ids.
    n : int
        Number of samples ``N``.
    lengths : array, optional
        ``[N]`` real tokens per row (the attention-mask sums); default: the
        number of non-padding (non-zero) ids, which must form a prefix.
    present : array, optional
        ``[N]`` bool presence (default all present).

    Returns
    -------
    ids : Tensor
        ``[N, T]`` int64, padding (and absent rows) set to 0.
    mask : Tensor
        ``[N, T]`` bool attention mask (False on absent rows).
    present : Tensor
        ``[N]`` bool.
    """
    what = f"{dataset}: token modality {ms.name!r}"
    a = _as_ids(ids, what)
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] > ms.seq_len:
        raise DataFormatError(
            f"{what} has shape {a.shape}; expected [{n}, <= {ms.seq_len}] token ids (N, T)"
        )
    if a.size and (a.min() < 0 or a.max() >= ms.dim):
        bad = int(a.max()) if a.max() >= ms.dim else int(a.min())
        raise DataFormatError(
            f"{what}: token id {bad} lies outside the vocabulary [0, {ms.dim}); the ids come "
            "from another tokenizer than the declared vocabulary"
        )
    x = torch.zeros(n, ms.seq_len, dtype=torch.long)
    x[:, : a.shape[1]] = torch.from_numpy(a)
    steps = torch.arange(ms.seq_len)
    if lengths is None:
        nz = x != 0
        ln = nz.sum(1)
        if not torch.equal(nz, steps[None, :] < ln[:, None]):
            row = int((nz != (steps[None, :] < ln[:, None])).any(1).nonzero()[0])
            raise DataFormatError(
                f"{what}: row {row} has padding id 0 between real tokens; give "
                f"{ms.name}_lengths (the attention-mask sums) or right-pad with 0"
            )
    else:
        ln = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        if ln.shape != (n,) or (ln < 0).any() or (ln > a.shape[1]).any():
            raise DataFormatError(
                f"{what}: lengths must be [{n}] ints in [0, {a.shape[1]}]"
            )
    m = steps[None, :] < ln[:, None]
    p = (torch.as_tensor(np.asarray(present, dtype=bool)) if present is not None
         else torch.ones(n, dtype=torch.bool))
    if p.shape != (n,):
        raise DataFormatError(f"{what}: presence must have shape [{n}]")
    m = m & p[:, None]
    return x * m, m, p


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_path: str | None = None) -> Any:
    """Load the tokenizer of a local model folder offline (default all-MiniLM-L6-v2).

    Cached per folder. Needs the ``text`` extra (``transformers``).
    """
    from emodistill.errors import DataNotFoundError
    from emodistill.features.text import _INSTALL, _offline, default_text_model_path

    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError(f"token inputs need 'transformers' ({e}); install the text extra: "
                          f"{_INSTALL}") from None
    path = Path(model_path).expanduser() if model_path else default_text_model_path()
    try:
        with _offline():
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except OSError as e:
        raise DataNotFoundError(
            f"cannot load a tokenizer from {str(path)!r} offline ({e}); the folder needs "
            f"vocab.txt / tokenizer.json ({_INSTALL})"
        ) from None


def tokenizer_fingerprint(model_path: str | Path | None = None) -> str:
    """SHA-256 (16 hex digits) of the tokenizer files of a local model folder."""
    from emodistill.features.text import default_text_model_path

    path = Path(model_path).expanduser() if model_path else default_text_model_path()
    h = hashlib.sha256()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        f = path / name
        if f.is_file():
            h.update(name.encode() + b"\x00" + f.read_bytes())
    return h.hexdigest()[:16]


def tokenize_texts(
    texts: Sequence[str],
    *,
    model_path: str | Path | None = None,
    max_length: int = 128,
    pad_to: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise transcripts to WordPiece ids, right-padded to the longest one.

    Parameters
    ----------
    texts : sequence of str
        Transcripts; an empty (or blank) one is an error.
    model_path : path, optional
        Local model folder (default the packaged all-MiniLM-L6-v2).
    max_length : int
        Truncation length, ``[CLS]`` and ``[SEP]`` included.
    pad_to : int, optional
        Pad every row to this many ids instead of the longest one (>= the longest).

    Returns
    -------
    ids : np.ndarray
        ``[N, L]`` int64, ``L`` = the longest tokenised text (or ``pad_to``).
    lengths : np.ndarray
        ``[N]`` real tokens per row.
    """
    if isinstance(texts, str):
        raise DataFormatError("texts must be a sequence of strings, not one string; wrap it "
                              "in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataFormatError(f"text {i} is a {type(t).__name__}, not a string: {t!r}")
        if not t.strip():
            raise DataFormatError(
                f"text {i} is empty; an empty transcript has no tokens to encode. Give the "
                "transcript, or mark the text modality absent for that sample"
            )
    tok = load_tokenizer(str(model_path) if model_path else None)
    enc = tok(texts, truncation=True, max_length=int(max_length), padding=False)
    rows = enc["input_ids"]
    L = max((len(r) for r in rows), default=1)
    if pad_to is not None:
        if pad_to < L:
            raise DataFormatError(f"pad_to={pad_to} is shorter than the longest text ({L} ids)")
        L = int(pad_to)
    ids = np.full((len(rows), L), tok.pad_token_id or 0, dtype=np.int64)
    lengths = np.zeros(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        lengths[i] = len(r)
    return ids, lengths


def cached_token_ids(
    ids: list[str],
    texts: list[str],
    *,
    model_path: str | Path | None = None,
    max_length: int = 128,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Tokenise ``texts`` once through a recipe-keyed cache file.

    Returns
    -------
    token_ids : np.ndarray
        ``[N, L]`` int64.
    lengths : np.ndarray
        ``[N]``.
    manifest : dict
        The recipe and the cache file.
    """
    from emodistill import __version__
    from emodistill.data.cache import cached_text_arrays
    from emodistill.features.text import default_text_model_path

    path_m = Path(model_path).expanduser() if model_path else default_text_model_path()
    recipe = {"tokenizer": path_m.name if path_m.name != "model" else path_m.parent.name,
              "tokenizer_files": tokenizer_fingerprint(path_m), "max_length": int(max_length),
              "emodistill": __version__}
    return cached_text_arrays(
        ids, texts, recipe,
        lambda: tokenize_texts(texts, model_path=path_m, max_length=max_length),
        stem="tokens/tokens", array="token_ids", what="token ids", cache_dir=cache_dir,
        use_cache=use_cache)


def split_text_bert(tb: Any, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check MMSA ``text_bert`` ``[N, 3, L]`` (ids, mask, segments) as bert-base-uncased ids.

    Parameters
    ----------
    tb : array
        ``[N, 3, L]``: channel 0 token ids, 1 attention mask, 2 segment ids
        (MMSA stores them as float32).
    what : str
        Where the array comes from (for messages).

    Returns
    -------
    ids : np.ndarray
        ``[N, L]`` int64, zero on padding.
    lengths : np.ndarray
        ``[N]`` attention-mask sums.

    Raises
    ------
    DataFormatError
        When the layout or the special tokens are not those of bert-base-uncased
        WordPiece ids: ids outside ``[0, 30522)``, a mask that is not a prefix of
        ones, a row that does not start with ``[CLS]`` (101) and end with
        ``[SEP]`` (102), or non-zero ids on padding.
    """
    a = _as_ids(tb, what)
    if a.ndim != 3 or a.shape[1] != 3:
        raise DataFormatError(f"{what}: text_bert has shape {a.shape}; expected [N, 3, L] "
                              "(token ids, attention mask, segment ids)")
    ids, mask = a[:, 0], a[:, 1]
    V = BERT_UNCASED["vocab_size"]
    if not np.isin(mask, (0, 1)).all():
        raise DataFormatError(f"{what}: text_bert channel 1 (attention mask) holds values other "
                              "than 0 and 1")
    ln = mask.sum(1)
    prefix = np.arange(mask.shape[1])[None, :] < ln[:, None]
    if not np.array_equal(mask.astype(bool), prefix):
        row = int(np.flatnonzero((mask.astype(bool) != prefix).any(1))[0])
        raise DataFormatError(f"{what}: text_bert attention mask of row {row} is not a prefix "
                              "of ones (right padding expected)")
    if ids.min() < 0 or ids.max() >= V:
        raise DataFormatError(
            f"{what}: text_bert ids reach {int(ids.max())}, outside the bert-base-uncased "
            f"vocabulary [0, {V}); these are not bert-base-uncased WordPiece ids (CH-SIMS uses "
            "bert-base-chinese, which MiniLM cannot read): use dataset.text_input=features"
        )
    real = ln > 0
    first = ids[real, 0]
    last = ids[real, np.maximum(ln[real] - 1, 0)]
    if (first != BERT_UNCASED["cls"]).any() or (last != BERT_UNCASED["sep"]).any():
        raise DataFormatError(
            f"{what}: text_bert rows must start with [CLS]=101 and end with [SEP]=102 (the "
            f"bert-base-uncased special ids); found first ids {np.unique(first)[:5].tolist()} "
            f"and last ids {np.unique(last)[:5].tolist()}"
        )
    if (ids[~prefix] != 0).any():
        raise DataFormatError(f"{what}: text_bert has non-zero ids on padding ([PAD]=0 "
                              "expected)")
    return ids * prefix, ln.astype(np.int64)
