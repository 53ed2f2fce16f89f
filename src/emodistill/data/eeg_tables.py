"""EEG band-feature tables (DEAP and MAHNOB-HCI), one row per trial.

Layout of ``root`` (tab- or space-separated text, rows aligned across files)::

    EEG_feature.txt             160 columns: 32 electrodes x 5 bands
                                (theta, slow alpha, alpha, beta, gamma), band-major
    subject_video.txt           subject number, video number
    valence_arousal_label.txt   valence (1 positive, 2 negative), arousal (1 high, 2 low)
    EEG_emotion_category.txt    optional (MAHNOB-HCI): emotion code per trial

Targets are class indices with 0 = low/negative and 1 = high/positive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emodistill.data._io import refuse_wrong_kind, require_dir, require_file
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_eeg_bandpower", "EMOTION_CODES", "BANDS"]

BANDS = ("theta", "slow_alpha", "alpha", "beta", "gamma")
#: MAHNOB-HCI emotion code → name (EEG_emotion_category.txt)
EMOTION_CODES = {
    0: "neutral", 1: "anger", 2: "disgust", 3: "fear", 4: "joy", 5: "sadness",
    6: "surprise", 11: "amusement", 12: "anxiety",
}
_LAYOUT = "EEG_feature.txt, subject_video.txt, valence_arousal_label.txt"


def _load_table(path: Path, dataset: str, ncol: int | None) -> np.ndarray:
    require_file(path, dataset=dataset, what=_LAYOUT)
    refuse_wrong_kind(path, expected="a whitespace-separated text table", accept=("text",))
    try:
        arr = np.loadtxt(path, ndmin=2)
    except ValueError as e:
        raise DataFormatError(f"{path}: not a numeric whitespace-separated table ({e})") from None
    if ncol is not None and arr.shape[1] != ncol:
        raise DataFormatError(f"{path}: {arr.shape[1]} columns, expected {ncol}")
    return arr


def _as_int(arr: np.ndarray, path: Path) -> np.ndarray:
    """Integer codes of a label/id table; a fractional value is an error, never truncated."""
    frac = arr != np.round(arr)
    if frac.any():
        r, c = (int(i) for i in np.argwhere(frac)[0])
        raise DataFormatError(
            f"{path}: row {r + 1} column {c + 1} holds {float(arr[r, c])}; this file holds integer "
            "codes only"
        )
    return arr.astype(np.int64)


def load_eeg_bandpower(
    root: str | Path | None,
    *,
    name: str = "deap_bandpower",
    layout: str = "flat",
) -> MultimodalDataset:
    """Load an EEG band-feature table folder.

    Parameters
    ----------
    root : path
        Folder with the layout in the module docstring.
    name : str
        Dataset name recorded in the spec.
    layout : {"flat", "bands"}
        ``flat``: modality ``eeg`` of shape [1 x 160]. ``bands``: [5 x 32], one
        step per frequency band (for sequence encoders).

    Returns
    -------
    MultimodalDataset
        Targets ``valence`` and ``arousal`` (binary), plus ``emotion``
        (multiclass) when ``EEG_emotion_category.txt`` exists; groups
        ``subject``, ``video`` and ``trial`` (= subject's video).
    """
    if layout not in ("flat", "bands"):
        raise ConfigError(f"{name}: layout={layout!r}; use 'flat' or 'bands'")
    base = require_dir(root, dataset=name, layout=_LAYOUT)
    x = _load_table(base / "EEG_feature.txt", name, 160)
    sv = _as_int(_load_table(base / "subject_video.txt", name, 2), base / "subject_video.txt")
    va_path = base / "valence_arousal_label.txt"
    va = _as_int(_load_table(va_path, name, 2), va_path)
    if not (len(x) == len(sv) == len(va)):
        raise DataFormatError(
            f"{name}: row counts differ (features {len(x)}, subject_video {len(sv)}, "
            f"labels {len(va)}); the files must be row-aligned"
        )
    bad = ~np.isin(va, (1, 2))
    if bad.any():
        r = int(np.argwhere(bad)[0, 0])
        raise DataFormatError(
            f"{name}: valence_arousal_label.txt row {r + 1} holds {va[r].tolist()}; "
            "only 1 (positive/high) and 2 (negative/low) are valid"
        )
    x, repaired = repair_nonfinite(x, what=f"{name} eeg")
    targets: dict[str, np.ndarray] = {
        "valence": (va[:, 0] == 1).astype(np.int64),
        "arousal": (va[:, 1] == 1).astype(np.int64),
    }
    spec_targets = [
        TargetSpec("valence", "binary", class_names=("low", "high")),
        TargetSpec("arousal", "binary", class_names=("low", "high")),
    ]
    cat_path = base / "EEG_emotion_category.txt"
    if cat_path.is_file():
        codes = _as_int(_load_table(cat_path, name, 1), cat_path)[:, 0]
        if len(codes) != len(x):
            raise DataFormatError(f"{cat_path}: {len(codes)} rows, expected {len(x)}")
        unknown = sorted(set(codes.tolist()) - set(EMOTION_CODES))
        if unknown:
            raise DataFormatError(f"{cat_path}: unknown emotion codes {unknown}")
        present_codes = sorted(set(codes.tolist()))
        targets["emotion"] = np.searchsorted(present_codes, codes)
        spec_targets.append(
            TargetSpec("emotion", "multiclass",
                       class_names=tuple(EMOTION_CODES[c] for c in present_codes))
        )
    feats = x.reshape(len(x), 1, 160) if layout == "flat" else x.reshape(len(x), 5, 32)
    spec = DatasetSpec(
        name=name,
        modalities=(ModalitySpec("eeg", feats.shape[2], feats.shape[1]),),
        targets=tuple(spec_targets),
        group_keys=("subject", "video", "trial"),
    )
    subj, vid = sv[:, 0].astype(str), sv[:, 1].astype(str)
    return MultimodalDataset(
        spec,
        {"eeg": feats},
        targets=targets,
        ids=[f"s{s}_v{v}" for s, v in zip(subj, vid, strict=True)],
        groups={"subject": subj, "video": vid, "trial": vid},
        info={"source": str(base), "nonfinite_repaired": {"eeg": repaired} if repaired else {}},
    )
