"""CMU-MOSI utterance-level features of Poria et al. (ACL 2017), text + audio + video.

Layout of ``root`` (files as published in the ``declare-lab`` repository)::

    transcripts.csv                 id, transcript, video index, binary label (no header)
    text_train.csv, text_test.csv   row index into transcripts.csv, then 100 text features
    audio/audio_{train,test}0.csv   73 openSMILE features, then the binary label
    video/video_{train,test}0.csv   100 3D-CNN features, then the binary label
    mosi_standard_labels.csv        optional: id,text,label,mode (MMSA continuous labels)

Leakage: the text-CNN and 3D-CNN features were trained with labels on the
Poria train split, so only the ``poria`` split is honest for them. The
``standard`` (MMSA) split is recorded as leaky for ``text`` and ``vision``;
the engine refuses it for those modalities unless explicitly allowed. The rows
of the Poria train part are recorded as label-seen for ``text`` and ``vision``,
so a validation part carved from them is leaked: selecting on it (early
stopping, checkpoints, sweeps...) is refused; use the fixed recipe
(``train.selection=last``, see :mod:`emodistill.training.selection`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from emodistill.data._io import require_dir, require_file
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_mosi_utterance"]

log = logging.getLogger(__name__)

_LAYOUT = "transcripts.csv, text_{train,test}.csv, audio/audio_{train,test}0.csv, "
_LAYOUT += "video/video_{train,test}0.csv [, mosi_standard_labels.csv]"
_DIMS = {"text": 100, "audio": 73, "vision": 100}


def _read_csv(path: Path, dataset: str) -> np.ndarray:
    require_file(path, dataset=dataset, what="MOSI utterance features")
    try:
        return pd.read_csv(path, header=None).to_numpy(dtype=np.float64)
    except ValueError as e:
        raise DataFormatError(f"{path}: expected a numeric CSV without header ({e})") from None


def load_mosi_utterance(root: str | Path | None, *, target: str = "polarity") -> MultimodalDataset:
    """Load the MOSI utterance features with the Poria and (optional) standard splits.

    Parameters
    ----------
    root : path
        Folder with the layout described in the module docstring.
    target : {"polarity", "sentiment"}
        ``polarity`` keeps all 2199 utterances with their binary label.
        ``sentiment`` also needs ``mosi_standard_labels.csv`` and keeps only the
        utterances that have a continuous label there (the dropped ids are
        logged and recorded in ``info["dropped_ids"]``).

    Returns
    -------
    MultimodalDataset
        Modalities ``text`` [1x100], ``audio`` [1x73], ``vision`` [1x100];
        group ``video``; splits ``poria`` (train/test) and, when the label file
        is present, ``standard`` (train/valid/test).
    """
    name = "mosi_utterance"
    if target not in ("polarity", "sentiment"):
        raise ConfigError(f"{name}: target={target!r}; use 'polarity' or 'sentiment'")
    base = require_dir(root, dataset=name, layout=_LAYOUT)
    tx_path = require_file(base / "transcripts.csv", dataset=name, what="utterance ids")
    tx = pd.read_csv(tx_path, header=None, dtype=str, keep_default_na=False)
    if tx.shape[1] != 4:
        raise DataFormatError(
            f"{tx_path}: expected 4 columns (id, transcript, video, label); found {tx.shape[1]}"
        )
    parts = {}
    for part in ("train", "test"):
        files = {"text": base / f"text_{part}.csv", "audio": base / "audio" / f"audio_{part}0.csv",
                 "vision": base / "video" / f"video_{part}0.csv"}
        t, a, v = (_read_csv(files[m], name) for m in ("text", "audio", "vision"))
        for mod, arr, width in (("text", t, 101), ("audio", a, 74), ("vision", v, 101)):
            if arr.shape[1] != width:
                raise DataFormatError(
                    f"{name} {part} {mod} ({files[mod]}): {arr.shape[1]} columns, expected "
                    f"{width} ({_DIMS[mod]} features + {'row index' if mod == 'text' else 'label'})"
                )
        if not (len(t) == len(a) == len(v)):
            raise DataFormatError(
                f"{name} {part}: row counts differ (text {len(t)}, audio {len(a)}, video {len(v)})"
            )
        rows = t[:, 0].astype(np.int64)
        if rows.min() < 0 or rows.max() >= len(tx):
            raise DataFormatError(f"{name} text_{part}.csv: row index outside transcripts.csv")
        label = tx.iloc[rows, 3].astype(int).to_numpy()
        for mod, arr in (("audio", a), ("video", v)):
            if not np.array_equal(arr[:, -1].astype(int), label):
                raise DataFormatError(
                    f"{name} {part}: labels of {mod} disagree with transcripts.csv; the "
                    "files are not row-aligned"
                )
        parts[part] = {
            "rows": rows,
            "text": t[:, 1:],
            "audio": a[:, :-1],
            "vision": v[:, :-1],
            "label": label,
        }
    rows = np.concatenate([parts[p]["rows"] for p in parts])
    ids = tx.iloc[rows, 0].to_numpy(dtype=str)
    feats = {}
    repaired = {}
    for mod in _DIMS:
        x, count = repair_nonfinite(
            np.concatenate([parts[p][mod] for p in parts]), what=f"{name} {mod}"
        )
        feats[mod] = x
        if count:
            repaired[mod] = count
    polarity = np.concatenate([parts[p]["label"] for p in parts]).astype(np.int64)
    poria = np.array(["train"] * len(parts["train"]["rows"])
                     + ["test"] * len(parts["test"]["rows"]))
    video = np.array([i.rsplit("_", 1)[0] for i in ids])
    splits = {"poria": poria}
    targets: dict[str, np.ndarray] = {"polarity": polarity}
    keep = np.ones(len(ids), dtype=bool)
    info: dict = {"source": str(base), "nonfinite_repaired": repaired,
                  # standard: its test part holds Poria-train rows (refused); poria/train:
                  # the rows the text-CNN and 3D-CNN were trained on with their labels, so
                  # a validation part carved from them is leaked too (training/selection.py)
                  "leaky_splits": {"standard": ["text", "vision"],
                                   "poria": {"train": ["text", "vision"]}}}
    lab_path = base / "mosi_standard_labels.csv"
    if lab_path.is_file():
        lab = pd.read_csv(lab_path, dtype={"id": str})
        if not {"id", "label", "mode"} <= set(lab.columns):
            raise DataFormatError(f"{lab_path}: expected columns id,text,label,mode")
        lab = lab.set_index("id")
        mode = lab["mode"].replace({"dev": "valid"})
        splits["standard"] = mode.reindex(ids).fillna("").to_numpy(dtype=str)
        cont = lab["label"].reindex(ids).to_numpy(dtype=np.float64)
        if target == "sentiment":
            keep = np.isfinite(cont)
            dropped = ids[~keep].tolist()
            if dropped:
                log.warning(
                    "%s: %d utterances have no continuous label in %s and are excluded: %s",
                    name, len(dropped), lab_path.name, dropped,
                )
            info["dropped_ids"] = dropped
            targets["sentiment"] = np.nan_to_num(cont)
    elif target == "sentiment":
        raise DataFormatError(
            f"{name}: target 'sentiment' needs {lab_path} (MMSA id,text,label,mode file)"
        )
    spec_targets = [TargetSpec("polarity", "binary", class_names=("negative", "positive"))]
    if target == "sentiment":
        spec_targets.insert(0, TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0)))
    spec = DatasetSpec(
        name=name,
        modalities=tuple(ModalitySpec(m, d, 1) for m, d in _DIMS.items()),
        targets=tuple(spec_targets),
        group_keys=("video",),
    )
    idx = np.flatnonzero(keep)
    return MultimodalDataset(
        spec,
        {m: x[idx] for m, x in feats.items()},
        targets={k: v[idx] for k, v in targets.items()},
        ids=ids[idx],
        groups={"video": video[idx]},
        splits={k: v[idx] for k, v in splits.items()},
        info=info,
    )
