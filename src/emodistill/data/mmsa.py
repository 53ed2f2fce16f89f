"""MMSA pickles: CMU-MOSI, CMU-MOSEI and CH-SIMS (aligned and unaligned).

File layout (``aligned_50.pkl`` / ``unaligned_50.pkl`` / ``unaligned_39.pkl``): a
dict with keys ``train``, ``valid``, ``test``; each split is a dict of parallel
arrays: ``id`` (``"<video>$_$<clip>"``), ``raw_text``, ``text`` [N, T, 768]
(pre-extracted BERT token features), ``text_bert`` [N, 3, T] (ids, attention
mask, segment ids), ``audio`` [N, T_a, D_a], ``vision`` [N, T_v, D_v],
``regression_labels`` [N] and, in unaligned files only, ``audio_lengths`` and
``vision_lengths``.

Non-finite values (real MOSI/MOSEI audio holds ``-inf``) are replaced by 0, as
MMSA does, and the count per modality is logged and stored in
``info["nonfinite_repaired"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data._io import require_file
from emodistill.data._unpickler import safe_load_pickle
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_mmsa", "MMSA_SPLITS", "MMSA_REQUIRED_KEYS"]

MMSA_SPLITS = ("train", "valid", "test")
MMSA_REQUIRED_KEYS = ("id", "text", "audio", "vision", "regression_labels")
_MODALITY_KEYS = ("text", "audio", "vision")


def _split_arrays(split: dict[str, Any], name: str, part: str) -> dict[str, np.ndarray]:
    if not isinstance(split, dict):
        raise DataFormatError(f"{name}: split {part!r} is a {type(split).__name__}, not a dict")
    missing = [k for k in MMSA_REQUIRED_KEYS if k not in split]
    if missing:
        raise DataFormatError(
            f"{name}: split {part!r} lacks keys {missing}; found {sorted(split)}. "
            "Expected an MMSA aligned_50.pkl / unaligned_50.pkl file."
        )
    n = len(split["id"])
    out: dict[str, np.ndarray] = {"id": np.asarray(split["id"]).astype(str)}
    for k in _MODALITY_KEYS:
        x = np.asarray(split[k])
        if x.ndim != 3 or x.shape[0] != n:
            raise DataFormatError(
                f"{name}: {part}/{k} has shape {x.shape}; expected [{n}, T, D]"
            )
        out[k] = x
    y = np.asarray(split["regression_labels"], dtype=np.float64).reshape(-1)
    if y.shape != (n,):
        raise DataFormatError(f"{name}: {part}/regression_labels has {y.size} values, not {n}")
    out["regression_labels"] = y
    for k in ("audio_lengths", "vision_lengths"):
        if k in split:
            out[k] = np.asarray(split[k]).astype(np.int64).reshape(-1)
    if "text_bert" in split:
        tb = np.asarray(split["text_bert"])
        if tb.ndim == 3 and tb.shape[0] == n and tb.shape[1] == 3:
            out["text_lengths"] = tb[:, 1, :].astype(np.float64).sum(1).astype(np.int64)
    return out


def load_mmsa(
    path: str | Path | None,
    *,
    name: str = "mosi",
    label_range: tuple[float, float] | None = None,
    use_text_mask: bool = False,
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

    Returns
    -------
    MultimodalDataset
        Modalities ``text``, ``audio``, ``vision`` with the file's lengths;
        targets ``sentiment`` (regression) and ``polarity`` (negative vs
        non-negative, MMSA "Has0"); group ``video``; split ``standard``.
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
    splits = [_split_arrays(raw[s], name, s) for s in MMSA_SPLITS]
    seq = {}
    for k in _MODALITY_KEYS:
        dims = {s[k].shape[2] for s in splits}
        if len(dims) != 1:
            raise DataFormatError(f"{p}: {k} feature dim differs across splits: {sorted(dims)}")
        seq[k] = (max(s[k].shape[1] for s in splits), dims.pop())
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
    y = np.concatenate([s["regression_labels"] for s in splits]).astype(np.float32)
    lo, hi = label_range or ((-1.0, 1.0) if "sims" in name.lower() else (-3.0, 3.0))
    ids = np.concatenate([s["id"] for s in splits])
    video = np.array([i.split("$_$")[0] for i in ids])
    part = np.concatenate([[s] * len(a["id"]) for s, a in zip(MMSA_SPLITS, splits, strict=True)])
    spec = DatasetSpec(
        name=name,
        modalities=tuple(ModalitySpec(k, D, T) for k, (T, D) in seq.items()),
        targets=(
            TargetSpec("sentiment", "regression", value_range=(lo, hi)),
            TargetSpec("polarity", "binary", class_names=("negative", "non-negative")),
        ),
        group_keys=("video",),
    )
    return MultimodalDataset(
        spec,
        feats,
        targets={"sentiment": y, "polarity": (y >= 0).astype(np.int64)},
        ids=ids,
        groups={"video": video},
        lengths=lengths,
        splits={"standard": part},
        info={
            "source": str(p),
            "aligned": not any(k in lengths for k in ("audio", "vision")),
            "nonfinite_repaired": repaired,
        },
    )
