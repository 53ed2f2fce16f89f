"""CMU-MOSI on the standard MMSA split with features that never saw a label.

Dataset ``mosi_raw_features``: the second, non-leaky MOSI benchmark.

* ``text``: the raw transcripts of ``mosi_standard_labels.csv`` (column
  ``text``) embedded by the frozen, locally installed all-MiniLM-L6-v2
  (:mod:`emodistill.features.text`): pooled ``[1 x 384]`` or token-level
  ``[max_tokens x 384]``; or (``text_level="ids"``) the WordPiece token ids
  themselves, for fine-tuning the encoder inside a model;
* ``audio``: the 73 openSMILE features of Poria et al. (``audio/audio_*0.csv``),
  hand-designed acoustic descriptors, not learned;
* ``text_pooled`` (only with ``pooled_view=True`` beside ``text_level`` ``tokens`` or
  ``ids``): the pooled sentence vector of the same transcripts, exactly the
  ``text`` modality of ``text_level="pooled"``, so that one batch holds both views:
  a teacher on the token view and a student on the pooled vector (the deployable
  input) learn from the same utterances (``docs/methods/mkd.md``, "Teacher and student
  on two views of the text");
* targets: continuous ``sentiment`` in [-3, 3] (MMSA labels) and the binary
  ``polarity`` of the Poria files;
* splits: ``standard`` (MMSA train/valid/test = 1281/229/685) and ``poria``.

Unlike the Poria text-CNN and 3D-CNN features of ``mosi_utterance`` (learned
with labels on the Poria train split, which holds most of the standard test
utterances), nothing here was fitted on MOSI labels, so the standard split is
honest. The video features are not used (they are label-trained).

Text embeddings take about a minute on a CPU and are cached in
``cache_dir`` (default ``$EMODISTILL_CACHE_DIR`` or ``~/.cache/emodistill``)
under a name that hashes their full recipe (ids, transcripts, model files,
level, length, package version); a manifest JSON sits beside each cache file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emodistill import __version__
from emodistill.data._io import require_dir, require_file
from emodistill.data.cache import cached_text_arrays
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.formats.mosi_utterance import load_mosi_utterance
from emodistill.data.registry import DATASETS, data_root
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_mosi_raw_features", "cached_text_features", "POOLED_VIEW"]

log = logging.getLogger(__name__)

_NAME = "mosi_raw_features"
_LABELS = "mosi_standard_labels.csv"
#: name of the pooled-vector modality added by ``pooled_view=True``
POOLED_VIEW = "text_pooled"


def cached_text_features(
    ids: list[str],
    texts: list[str],
    *,
    level: str = "pooled",
    max_tokens: int = 50,
    text_model: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Embed ``texts`` with the local sentence encoder, through a recipe-keyed cache.

    Returns
    -------
    features : np.ndarray
        ``[N, D]`` or ``[N, T, D]``.
    lengths : np.ndarray
        ``[N]`` real tokens (1 for pooled).
    manifest : dict
        The recipe and where the cache file is.
    """
    from emodistill.features.text import TextEncoder

    enc = TextEncoder(text_model)
    recipe = enc.recipe(level=level, max_tokens=int(max_tokens) if level == "tokens" else None,
                        normalize=level == "pooled", emodistill=__version__)

    def compute() -> tuple[np.ndarray, np.ndarray]:
        log.info("text features: embedding %d transcripts with %s (%s)", len(ids), enc.name,
                 level)
        tf = enc.encode(texts, level=level, max_tokens=max_tokens)  # type: ignore[arg-type]
        return tf.features, tf.lengths

    return cached_text_arrays(ids, texts, recipe, compute, stem="features/text", array="features",
                              what="text features", cache_dir=cache_dir, use_cache=use_cache)


def load_mosi_raw_features(
    root: str | Path | None,
    *,
    text_level: str = "pooled",
    max_tokens: int = 50,
    max_ids: int = 128,
    text_model: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    pooled_view: bool = False,
) -> MultimodalDataset:
    """Load MOSI with MiniLM transcript embeddings + Poria openSMILE audio (see module docstring).

    Parameters
    ----------
    root : path
        The MOSI utterance folder (``mosi_standard_labels.csv``,
        ``transcripts.csv``, ``audio/``, ``text_*.csv``, ``video/``).
    text_level : {"pooled", "tokens", "ids"}
        Sentence vectors ``[1 x 384]``, token sequences ``[max_tokens x 384]``
        (both from the frozen encoder, precomputed), or WordPiece token ids
        ``[L]`` + attention mask (a ``tokens`` modality, :mod:`emodistill.data.tokens`)
        for a text encoder trained inside the model (``method.text_encoder``);
        ``L`` is the longest tokenised transcript (126 on MOSI), capped by ``max_ids``.
    max_tokens : int
        Steps of the token-level sequences (``[CLS]``/``[SEP]`` included).
    max_ids : int
        ``ids`` level: truncation length of the token ids (``[CLS]``/``[SEP]``
        included). 128 keeps every MOSI transcript whole (the longest has 126).
    text_model : path, optional
        A local sentence-encoder folder instead of the packaged all-MiniLM-L6-v2.
    cache_dir : path, optional
        Cache folder for the text embeddings (default
        :func:`~emodistill.data.cache.text_cache_dir`).
    use_cache : bool
        Read and write the cache.
    pooled_view : bool
        With ``text_level`` ``tokens`` or ``ids``: add the modality ``text_pooled``
        ``[1 x 384]``, the pooled sentence vector of the same transcripts (the same
        array, from the same cache, as ``text`` under ``text_level="pooled"``: the
        mean of the token states over all real tokens, untruncated, L2-normalised, as
        sentence-transformers computes it). A second view of the text in every batch,
        e.g. for a token-level teacher and a pooled-vector student.

    Returns
    -------
    MultimodalDataset
        2195 utterances; modalities ``text`` and ``audio`` (and ``text_pooled``); targets
        ``sentiment`` (regression, [-3, 3]) and ``polarity``; group ``video``;
        splits ``standard`` and ``poria``.
    """
    if text_level not in ("pooled", "tokens", "ids"):
        raise ConfigError(f"{_NAME}: text_level={text_level!r}; use 'pooled', 'tokens' or "
                          "'ids'")
    if pooled_view and text_level == "pooled":
        raise ConfigError(f"{_NAME}: pooled_view=true with text_level=pooled: the text modality "
                          "already is the pooled vector; set text_level=tokens (or ids) for a "
                          "second view, or pooled_view=false")
    base = require_dir(root, dataset=_NAME, layout=f"{_LABELS}, transcripts.csv, audio/, "
                                                   "text_{train,test}.csv, video/")
    lab_path = require_file(base / _LABELS, dataset=_NAME,
                            what="MMSA id,text,label,mode file with the raw transcripts")
    lab = pd.read_csv(lab_path, dtype={"id": str, "text": str}, keep_default_na=False)
    if not {"id", "text", "label", "mode"} <= set(lab.columns):
        raise DataFormatError(f"{lab_path}: expected columns id,text,label,mode; found "
                              f"{list(lab.columns)}")
    utt = load_mosi_utterance(base, target="sentiment")  # ids with continuous labels
    ids = utt.ids.tolist()
    text_by_id = lab.set_index("id")["text"]
    missing = [i for i in ids if i not in text_by_id.index]
    if missing:
        raise DataFormatError(f"{lab_path}: no transcript for ids {missing[:5]}")
    from emodistill.data.context import check_transcripts

    check_transcripts([text_by_id[i] for i in ids], ids)  # an empty cell is no utterance
    texts = [str(text_by_id[i]) for i in ids]
    if text_level == "ids":
        from emodistill.data.tokens import cached_token_ids

        feats, lengths, manifest = cached_token_ids(
            ids, texts, model_path=text_model, max_length=max_ids, cache_dir=cache_dir,
            use_cache=use_cache)
        text_spec = ModalitySpec("text", _vocab_size(text_model), int(feats.shape[1]),
                                 kind="tokens")
    else:
        feats, lengths, manifest = cached_text_features(
            ids, texts, level=text_level, max_tokens=max_tokens, text_model=text_model,
            cache_dir=cache_dir, use_cache=use_cache,
        )
        T = 1 if text_level == "pooled" else feats.shape[1]
        text_spec = ModalitySpec("text", int(feats.shape[-1]), T)
    audio = utt.features["audio"].numpy()
    features = {"text": feats, "audio": audio}
    modalities = [text_spec, ModalitySpec("audio", int(audio.shape[-1]), 1)]
    views: dict[str, Any] = {}
    if pooled_view:  # the pooled level's own array (same recipe, same cache file)
        pooled, _, pmanifest = cached_text_features(
            ids, texts, level="pooled", text_model=text_model, cache_dir=cache_dir,
            use_cache=use_cache)
        features[POOLED_VIEW] = pooled
        modalities.append(ModalitySpec(POOLED_VIEW, int(pooled.shape[-1]), 1))
        views[POOLED_VIEW] = {"from": f"{_LABELS} column 'text'", "level": "pooled",
                              **pmanifest}
    spec = DatasetSpec(
        name=_NAME,
        modalities=tuple(modalities),
        targets=(TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0)),
                 TargetSpec("polarity", "binary", class_names=("negative", "positive"))),
        group_keys=("video",),
    )
    info = {
        "source": str(base),
        "text": {"from": f"{_LABELS} column 'text'", "level": text_level, **manifest},
        **views,
        "audio": "Poria et al. 2017 openSMILE features (73-d), audio/audio_{train,test}0.csv",
        "nonfinite_repaired": utt.info.get("nonfinite_repaired", {}),
        "dropped_ids": utt.info.get("dropped_ids", []),
        "leaky_splits": {},  # no feature here was fitted on MOSI labels
    }
    return MultimodalDataset(
        spec,
        features,
        targets={k: v.numpy() for k, v in utt.targets.items()},
        ids=ids,
        groups=utt.groups,
        lengths={"text": lengths} if text_level != "pooled" else None,
        splits=utt.splits,
        info=info,
    )


def _vocab_size(text_model: str | Path | None) -> int:
    """Vocabulary size of the local text model's tokenizer."""
    from emodistill.data.tokens import load_tokenizer

    return int(len(load_tokenizer(str(text_model) if text_model else None)))


@DATASETS.register("mosi_raw_features")
def _mosi_raw_features(**p: Any) -> MultimodalDataset:
    # MiniLM transcript embeddings + Poria openSMILE audio, standard split (no leakage);
    # computing the embeddings needs the optional 'text' extra (imported on a cache miss)
    return load_mosi_raw_features(data_root(p, "mosi_utterance"), **p)
