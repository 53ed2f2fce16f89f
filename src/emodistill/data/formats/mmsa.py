"""MMSA pickles: CMU-MOSI, CMU-MOSEI and CH-SIMS (aligned and unaligned).

File layout (``aligned_50.pkl`` / ``unaligned_50.pkl`` / ``unaligned_39.pkl``): a
dict with keys ``train``, ``valid``, ``test``; each split is a dict of parallel
arrays: ``id`` (``"<video>$_$<clip>"``), ``raw_text``, ``text`` [N, T, 768]
(pre-extracted BERT token features), ``text_bert`` [N, 3, T] (ids, attention
mask, segment ids), ``audio`` [N, T_a, D_a], ``vision`` [N, T_v, D_v],
``regression_labels`` [N] and, in unaligned files only, ``audio_lengths`` and
``vision_lengths``. CH-SIMS files add the per-modality labels
``regression_labels_T`` / ``_A`` / ``_V``, exposed as the regression targets
``sentiment_text`` / ``sentiment_audio`` / ``sentiment_vision``
(``dataset.target=sentiment_audio``) when every split has them.

Every split must be non-empty (no validation set is carved out of train for an
MMSA file), hold the same feature dim ``D`` per modality, and labels in the
declared range; errors name the file, the split, the key, the shapes and the
first bad row. A feature dim unlike the published files' for ``mosi``,
``mosei`` or ``sims`` (:data:`PUBLISHED_DIMS`) is logged as a warning (custom
features are allowed); a checkpoint evaluated on data of another dim is refused.

Non-finite values (real MOSI/MOSEI audio holds ``-inf``) are replaced by 0, as
MMSA does, and the count per modality is logged and stored in
``info["nonfinite_repaired"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data._io import require_file
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.formats._unpickler import safe_load_pickle
from emodistill.data.registry import DATASETS
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_mmsa", "MMSA_SPLITS", "MMSA_REQUIRED_KEYS", "PUBLISHED_DIMS", "UNIMODAL_LABELS"]

log = logging.getLogger(__name__)

MMSA_SPLITS = ("train", "valid", "test")
MMSA_REQUIRED_KEYS = ("id", "text", "audio", "vision", "regression_labels")
_MODALITY_KEYS = ("text", "audio", "vision")


#: feature dims of the published MMSA files (text, audio, vision), ../reference/dmd_mmsa.md §3.2
PUBLISHED_DIMS: dict[str, dict[str, int]] = {
    "mosi": {"text": 768, "audio": 5, "vision": 20},
    "mosei": {"text": 768, "audio": 74, "vision": 35},
    "sims": {"text": 768, "audio": 33, "vision": 709},
}
#: SIMS per-modality labels → target names
UNIMODAL_LABELS = {"regression_labels_T": "sentiment_text",
                   "regression_labels_A": "sentiment_audio",
                   "regression_labels_V": "sentiment_vision"}


def _array(split: dict[str, Any], key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(split[key])
    except ValueError as e:  # a list of arrays of different shapes
        shapes = sorted({np.shape(x) for x in split[key]}, key=str)[:4]
        raise DataFormatError(
            f"{where}/{key}: samples have different shapes {shapes} ({e}); every sample of a "
            "split must have the same [T, D] (pad to T)"
        ) from None


def _labels(split: dict[str, Any], key: str, where: str, ids: np.ndarray,
            bounds: tuple[float, float]) -> np.ndarray:
    n = len(ids)
    try:
        y = _array(split, key, where).astype(np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"{where}/{key}: not numeric ({e})") from None
    if y.shape != (n,):
        raise DataFormatError(f"{where}/{key} has {y.size} values, not {n}")
    lo, hi = bounds
    bad = ~np.isfinite(y) | (y < lo) | (y > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{where}/{key}: {int(bad.sum())} value(s) NaN/inf or outside [{lo}, {hi}], e.g. "
            f"{y[i]} at row {i} (id {ids[i]!r}); fix the labels or set dataset.label_range"
        )
    return y


def _split_arrays(split: dict[str, Any], where: str, bounds: tuple[float, float]
                  ) -> dict[str, np.ndarray]:
    """Check and read one split; ``where`` is ``"<file>: split 'train'"``-like."""
    if not isinstance(split, dict):
        raise DataFormatError(f"{where} is a {type(split).__name__}, not a dict")
    missing = [k for k in MMSA_REQUIRED_KEYS if k not in split]
    if missing:
        raise DataFormatError(
            f"{where} lacks keys {missing}; found {sorted(split)}. "
            "Expected an MMSA aligned_50.pkl / unaligned_50.pkl file."
        )
    ids = _array(split, "id", where).astype(str).reshape(-1)
    n = len(ids)
    if n == 0:
        raise DataFormatError(
            f"{where} holds no samples; the MMSA layout has non-empty train, valid and test "
            "splits (a validation set is not carved from train for MMSA files)"
        )
    out: dict[str, np.ndarray] = {"id": ids}
    for k in _MODALITY_KEYS:
        x = _array(split, k, where)
        if x.ndim != 3 or x.shape[0] != n:
            raise DataFormatError(f"{where}/{k} has shape {x.shape}; expected [{n}, T, D]")
        out[k] = x
    out["regression_labels"] = _labels(split, "regression_labels", where, ids, bounds)
    for key in UNIMODAL_LABELS:
        if key in split:
            out[key] = _labels(split, key, where, ids, bounds)
    for k in ("audio_lengths", "vision_lengths"):
        if k in split:
            out[k] = np.asarray(split[k]).astype(np.int64).reshape(-1)
    if "text_bert" in split:
        tb = np.asarray(split["text_bert"])
        if tb.ndim == 3 and tb.shape[0] == n and tb.shape[1] == 3:
            out["text_lengths"] = tb[:, 1, :].astype(np.float64).sum(1).astype(np.int64)
            out["text_bert"] = tb
    return out


def _text_bert_ids(splits: list[dict[str, np.ndarray]], name: str,
                   p: Path) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``[N, L]`` and lengths from the ``text_bert`` arrays of every split."""
    from emodistill.data.tokens import split_text_bert

    if "sims" in name.lower():
        raise ConfigError(
            f"{name}: dataset.text_input=tokens reads text_bert as bert-base-uncased ids for "
            "the English MiniLM text encoder; CH-SIMS text_bert holds bert-base-chinese ids. "
            "Use dataset.text_input=features"
        )
    parts = []
    for s, part in zip(splits, MMSA_SPLITS, strict=True):
        if "text_bert" not in s:
            raise DataFormatError(
                f"{p}: split {part!r} has no text_bert [N, 3, L] array (token ids, mask, "
                "segments); dataset.text_input=tokens needs it. Use text_input=features"
            )
        parts.append(split_text_bert(s["text_bert"], what=f"{p} {part}/text_bert"))
    L = max(a.shape[1] for a, _ in parts)
    ids = np.concatenate([np.pad(a, ((0, 0), (0, L - a.shape[1]))) for a, _ in parts])
    return ids, np.concatenate([ln for _, ln in parts])


def load_mmsa(
    path: str | Path | None,
    *,
    name: str = "mosi",
    label_range: tuple[float, float] | None = None,
    use_text_mask: bool = False,
    text_input: str = "features",
) -> MultimodalDataset:
    """Load an MMSA feature pickle through the restricted unpickler.

    Parameters
    ----------
    path : path
        The ``.pkl`` file.
    name : str
        Dataset name (``mosi``, ``mosei``, ``sims``...), recorded in the spec.
    label_range : tuple of float, optional
        Valid regression range; default (-1, 1) when ``name`` contains "sims",
        else (-3, 3).
    use_text_mask : bool
        Derive text lengths from the BERT attention mask in ``text_bert``
        (default False: all text steps count, as MMSA/DMD models see them).
    text_input : {"features", "tokens"}
        ``features``: the pre-extracted ``text`` array. ``tokens``: the token
        ids and attention mask of ``text_bert`` as a ``tokens`` modality
        (checked to be bert-base-uncased WordPiece ids, the vocabulary of
        all-MiniLM-L6-v2), for a text encoder fine-tuned inside the model, as
        DMD's ``use_bert`` runs BERT on ``text_bert`` (segment ids are all 0
        for single sentences and are not used).

    Returns
    -------
    MultimodalDataset
        Modalities ``text``, ``audio``, ``vision`` with the file's lengths;
        targets ``sentiment`` (regression) and ``polarity`` (negative vs
        non-negative, MMSA "Has0"), plus ``sentiment_text`` / ``_audio`` /
        ``_vision`` for files with SIMS per-modality labels; group ``video``;
        split ``standard``.
    """
    if path is None:
        raise ConfigError(f"dataset {name!r}: set dataset.path to an MMSA .pkl file")
    p = require_file(Path(path).expanduser(), dataset=name, what="MMSA feature pickle")
    raw = safe_load_pickle(p, encoding="latin1")
    if not isinstance(raw, dict) or not set(MMSA_SPLITS) <= set(raw):
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise DataFormatError(
            f"{p}: expected a dict with keys train/valid/test (MMSA layout); found {keys}"
        )
    if text_input not in ("features", "tokens"):
        raise ConfigError(f"{name}: dataset.text_input={text_input!r}; use features or tokens")
    lo, hi = label_range or ((-1.0, 1.0) if "sims" in name.lower() else (-3.0, 3.0))
    splits = [_split_arrays(raw[s], f"{p}: split {s!r}", (lo, hi)) for s in MMSA_SPLITS]
    seq = {}
    published = PUBLISHED_DIMS.get(name.lower(), {})
    for k in _MODALITY_KEYS:
        dims = {s: a[k].shape[2] for s, a in zip(MMSA_SPLITS, splits, strict=True)}
        if len(set(dims.values())) != 1:
            shapes = ", ".join(f"{s} {a[k].shape}" for s, a in zip(MMSA_SPLITS, splits,
                                                                   strict=True))
            raise DataFormatError(
                f"{p}: {k} feature dim differs across splits: {sorted(set(dims.values()))} "
                f"({shapes}); every split must have the same D"
            )
        d = dims["train"]
        if k in published and published[k] != d:
            log.warning(
                "%s: %s has %d features per step; the published MMSA %s files have %d. Fine "
                "for a custom feature set; otherwise the file is damaged or of another dataset "
                "(dataset.name=%s)", p, k, d, name, published[k], name)
        seq[k] = (max(s[k].shape[1] for s in splits), d)
    feats, lengths, repaired = {}, {}, {}
    for k, (T, _) in seq.items():
        padded = [np.pad(s[k], ((0, 0), (0, T - s[k].shape[1]), (0, 0))) for s in splits]
        x, count = repair_nonfinite(np.concatenate(padded), what=f"{name} {k}")
        feats[k] = x
        if count:
            repaired[k] = count
        lk = f"{k}_lengths"
        if all(lk in s for s in splits) and (k != "text" or use_text_mask):
            ln = np.concatenate([s[lk] for s in splits])
            lengths[k] = np.clip(ln, 0, T)
    modalities = [ModalitySpec(k, D, T) for k, (T, D) in seq.items()]
    if text_input == "tokens":
        from emodistill.data.tokens import BERT_UNCASED

        feats["text"], lengths["text"] = _text_bert_ids(splits, name, p)
        modalities[0] = ModalitySpec("text", BERT_UNCASED["vocab_size"],
                                     int(feats["text"].shape[1]), kind="tokens")
    y = np.concatenate([s["regression_labels"] for s in splits]).astype(np.float32)
    targets = {"sentiment": y, "polarity": (y >= 0).astype(np.int64)}
    extra_targets = []
    for key, tname in UNIMODAL_LABELS.items():  # CH-SIMS per-modality labels
        have = [key in s for s in splits]
        if all(have):
            targets[tname] = np.concatenate([s[key] for s in splits]).astype(np.float32)
            extra_targets.append(TargetSpec(tname, "regression", value_range=(lo, hi)))
        elif any(have):
            lack = [s for s, h in zip(MMSA_SPLITS, have, strict=True) if not h]
            raise DataFormatError(f"{p}: {key} is missing from split(s) {lack}")
    ids = np.concatenate([s["id"] for s in splits])
    video = np.array([i.split("$_$")[0] for i in ids])
    part = np.concatenate([[s] * len(a["id"]) for s, a in zip(MMSA_SPLITS, splits, strict=True)])
    spec = DatasetSpec(
        name=name,
        modalities=tuple(modalities),
        targets=(
            TargetSpec("sentiment", "regression", value_range=(lo, hi)),
            TargetSpec("polarity", "binary", class_names=("negative", "non-negative")),
            *extra_targets,
        ),
        group_keys=("video",),
    )
    return MultimodalDataset(
        spec,
        feats,
        targets=targets,
        ids=ids,
        groups={"video": video},
        lengths=lengths,
        splits={"standard": part},
        info={
            "source": str(p),
            "aligned": not any(k in lengths for k in ("audio", "vision")),
            "nonfinite_repaired": repaired,
            "text_input": ("text_bert token ids (bert-base-uncased WordPiece)"
                           if text_input == "tokens" else "text features"),
        },
    )


def _mmsa_loader(name: str) -> Callable[..., MultimodalDataset]:
    def load(**p: Any) -> MultimodalDataset:
        return load_mmsa(p.pop("path", None), name=name, **p)

    return load


for _name in ("mosi", "mosei", "sims"):
    DATASETS.register(_name)(_mmsa_loader(_name))
