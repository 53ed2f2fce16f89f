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
from typing import Any

import numpy as np
import pandas as pd

from emodistill.data._io import refuse_wrong_kind, require_dir, require_file
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.registry import DATASETS, data_root
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_mosi_utterance"]

log = logging.getLogger(__name__)

_LAYOUT = "transcripts.csv, text_{train,test}.csv, audio/audio_{train,test}0.csv, "
_LAYOUT += "video/video_{train,test}0.csv [, mosi_standard_labels.csv]"
_DIMS = {"text": 100, "audio": 73, "vision": 100}


def _read_csv(path: Path, dataset: str) -> np.ndarray:
    """Read a numeric CSV without header; damaged cells are named by line and column."""
    require_file(path, dataset=dataset, what="MOSI utterance features")
    refuse_wrong_kind(path, expected="a CSV text file", accept=("text",))
    try:
        df = pd.read_csv(path, header=None)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: holds no rows; expected a numeric CSV without header"
                              ) from None
    except pd.errors.ParserError as e:  # a row with more fields than the first
        _check_cells(path)  # names the short row
        raise DataFormatError(
            f"{path}: not a well-formed CSV ({str(e).strip()}); every row needs the same "
            "number of fields") from None
    try:
        x = df.to_numpy(dtype=np.float64)
    except ValueError:
        x = None
    if x is None or not np.isfinite(x).all():
        _check_cells(path)  # raises for an empty cell, a short row or a non-number
        assert x is not None
    return x


def _check_cells(path: Path) -> None:
    """Raise naming the first empty cell / short row / non-number; warn about NaN/inf values."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    counts = np.bincount([len(r) for r in rows]) if rows else np.zeros(1, int)
    width = int(counts.argmax())  # the field count of most rows
    bad: list[tuple[int, int]] = []
    for r, row in enumerate(rows):
        if len(row) > width:
            raise DataFormatError(
                f"{path}: line {r + 1}: the row has {len(row)} fields, most rows have {width} "
                f"(column {width + 1} onwards is extra); expected a numeric CSV without header")
        if len(row) < width:
            raise DataFormatError(
                f"{path}: line {r + 1}, column {len(row) + 1}: the row has {len(row)} of "
                f"{width} fields (a short row); expected a numeric CSV without header, "
                f"{width} values per row")
        for c, v in enumerate(row):
            if not v.strip():
                raise DataFormatError(
                    f"{path}: line {r + 1}, column {c + 1}: empty cell; expected a numeric CSV "
                    f"without header, {width} values per row")
            try:
                finite = np.isfinite(float(v))
            except ValueError:
                raise DataFormatError(
                    f"{path}: line {r + 1}, column {c + 1}: {v.strip()[:20]!r} is not a number "
                    "(expected a numeric CSV without header)") from None
            if not finite:
                bad.append((r, c))
    if bad:
        r, c = bad[0]
        log.warning("%s: %d NaN/inf value(s), the first at line %d, column %d; replaced by 0 "
                    "(the loaders' documented repair)", path, len(bad), r + 1, c + 1)


def _check_label_file(lab: pd.DataFrame, path: Path) -> None:
    """Name the line and column of a missing/non-numeric label or an unknown mode."""
    cols = list(lab.columns)
    label = pd.to_numeric(lab["label"], errors="coerce").to_numpy(dtype=np.float64)
    checks = (("id", lab["id"].isna().to_numpy(), "an utterance id"),
              ("label", ~np.isfinite(label), "a number"),
              ("mode", ~lab["mode"].isin(["train", "valid", "dev", "test"]).to_numpy(),
               "one of train, valid, dev, test"))
    for col, bad, what in checks:
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            value = lab[col].iloc[r]
            raise DataFormatError(
                f"{path}: line {r + 2}, column {cols.index(col) + 1} ({col}): "
                f"{'empty cell' if pd.isna(value) else repr(value)} is not {what}")


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
    refuse_wrong_kind(tx_path, expected="a CSV text file", accept=("text",))
    try:
        tx = pd.read_csv(tx_path, header=None, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise DataFormatError(f"{tx_path}: not a readable CSV ({str(e).strip()})") from None
    if tx.shape[1] != 4:
        raise DataFormatError(
            f"{tx_path}: expected 4 columns (id, transcript, video, label); found {tx.shape[1]}"
        )
    for col, what in ((0, "utterance id"), (3, "label (0 or 1)")):
        bad = ~tx[col].isin(["0", "1"]) if col == 3 else (tx[col].isna() | (tx[col] == ""))
        if bad.any():
            r = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                f"{tx_path}: line {r + 1}, column {col + 1}: {tx.iloc[r, col]!r} is not a valid "
                f"{what}")
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
        _check_label_file(lab, lab_path)
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


@DATASETS.register("mosi_utterance")
def _mosi_utterance(**p: Any) -> MultimodalDataset:
    return load_mosi_utterance(data_root(p, "mosi_utterance"), **p)


_mosi_utterance.takes_target = True  # type: ignore[attr-defined]  # dataset.target selects labels
