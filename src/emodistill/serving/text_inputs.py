"""Raw text → token ids for a model whose text encoder is inside it (``predict`` input).

Used by :meth:`emodistill.serving.predict.Predictor.make_batch` for modalities of
kind ``tokens``: a string, a list of strings, or already tokenised ids.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch import Tensor, nn

from emodistill.data.spec import ModalitySpec
from emodistill.errors import DataFormatError

__all__ = ["token_inputs"]

log = logging.getLogger(__name__)


def _model_folder(model: nn.Module, modality: str) -> str | None:
    fe = getattr(model, "text_frontend", None)
    if fe is None:
        return None
    return fe.config.model


def token_inputs(model: nn.Module, ms: ModalitySpec, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``[B, t]`` and lengths ``[B]`` for token modality ``ms``.

    Parameters
    ----------
    model : nn.Module
        The model (its text front end names the local tokenizer folder).
    ms : ModalitySpec
        The token modality (``dim`` = vocabulary size, ``seq_len`` = the trained width).
    x : str, sequence of str, or int array
        Raw text (one string = one sample) or token ids ``[t]`` / ``[B, t]``
        right-padded with 0.

    Returns
    -------
    ids : np.ndarray
        ``[B, t <= seq_len]`` int64.
    lengths : np.ndarray
        ``[B]`` real tokens per row.
    """
    from emodistill.data.tokens import tokenize_texts

    if isinstance(x, str):
        x = [x]
    if isinstance(x, np.ndarray) and x.dtype.kind in "US":  # e.g. a string array from an npz
        x = [str(t) for t in x.reshape(-1)]
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x):
        ids, lengths = tokenize_texts(list(x), model_path=_model_folder(model, ms.name),
                                      max_length=ms.seq_len)
        long = int((lengths >= ms.seq_len).sum())
        if long:
            log.warning("predict: %d text(s) of %r truncated to the trained width of %d "
                        "tokens", long, ms.name, ms.seq_len)
        return ids, lengths
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise DataFormatError(
            f"modality {ms.name!r} takes raw text (a string or a list of strings) or integer "
            f"token ids; got an array of dtype {a.dtype}. This model encodes the text itself "
            "(its text encoder was trained with it), so give the transcript, not features"
        )
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise DataFormatError(f"modality {ms.name!r}: token ids of shape {a.shape}; expected "
                              "[t] or [B, t]")
    if a.shape[1] > ms.seq_len:
        raise DataFormatError(
            f"modality {ms.name!r}: {a.shape[1]} token ids, more than the trained width "
            f"{ms.seq_len}; give raw text (it is truncated) or cut the ids"
        )
    if a.size and (a.min() < 0 or a.max() >= ms.dim):
        raise DataFormatError(f"modality {ms.name!r}: token ids must lie in [0, {ms.dim})")
    lengths = (a != 0).sum(1).astype(np.int64)
    return a.astype(np.int64), lengths
