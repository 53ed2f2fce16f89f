"""EEG band-feature tables (DEAP and MAHNOB-HCI), one row per trial.

Layout of ``root`` (tab- or space-separated text, rows aligned across files)::

    EEG_feature.txt             160 columns: 32 electrodes x 5 bands
                                (theta, slow alpha, alpha, beta, gamma), band-major
    subject_video.txt           subject number, video number
    valence_arousal_label.txt   valence (1 positive, 2 negative), arousal (1 high, 2 low)
    EEG_emotion_category.txt    optional (MAHNOB-HCI): emotion code per trial

Targets are class indices with 0 = low/negative and 1 = high/positive.

Electrode order: the columns of the two public tables are in different orders (established
from the data: ``docs/data/eeg.md``). ``electrode_order`` names the file's order (``geneva``,
DEAP's documented order; ``twente``, the BioSemi/Twente order of DEAP's original recordings;
or a list of 32 names); the loaded ``eeg`` modality is always reordered into the Geneva order
(:data:`emodistill.data.montage.DEAP_32`), so both datasets share one layout. ``montages``
adds headset modalities (``frontal4``, ``emotiv14``, or ``{name: [electrodes]}``), each the
chosen electrodes x 5 bands in the same band-major layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data._io import refuse_wrong_kind, require_dir, require_file
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.montage import DEAP_32, resolve_montage, select_band_major
from emodistill.data.registry import DATASETS, data_root
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_eeg_bandpower", "EMOTION_CODES", "BANDS", "ELECTRODE_ORDERS"]

BANDS = ("theta", "slow_alpha", "alpha", "beta", "gamma")
#: MAHNOB-HCI emotion code → name (EEG_emotion_category.txt)
EMOTION_CODES = {
    0: "neutral", 1: "anger", 2: "disgust", 3: "fear", 4: "joy", 5: "sadness",
    6: "surprise", 11: "amusement", 12: "anxiety",
}
#: column orders of the 32 electrodes in band-feature files
ELECTRODE_ORDERS: dict[str, tuple[str, ...]] = {
    "geneva": DEAP_32,
    "twente": ("Fp1", "AF3", "F7", "F3", "FC1", "FC5", "T7", "C3", "CP1", "CP5", "P7", "P3",
               "Pz", "PO3", "O1", "Oz", "O2", "PO4", "P4", "P8", "CP6", "CP2", "C4", "T8",
               "FC6", "FC2", "F4", "F8", "AF4", "Fp2", "Fz", "Cz"),
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
    electrode_order: str | list[str] = "geneva",
    montages: list[str] | dict[str, list[str]] | None = None,
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
    electrode_order : str or list of str
        Order of the 32 electrodes in the file's columns: ``geneva``, ``twente`` or 32
        names. The loaded features are reordered into the Geneva order.
    montages : list or dict, optional
        Extra modalities over electrode subsets: preset names (``frontal4``, ``emotiv14``)
        or ``{modality name: [electrode names]}``.

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
    if isinstance(electrode_order, str):
        if electrode_order not in ELECTRODE_ORDERS:
            raise ConfigError(f"{name}: electrode_order={electrode_order!r}; use "
                              f"{' | '.join(ELECTRODE_ORDERS)} or a list of 32 electrode names")
        file_order = list(ELECTRODE_ORDERS[electrode_order])
    else:
        file_order = resolve_montage(list(electrode_order))
        if len(file_order) != 32:
            raise ConfigError(f"{name}: electrode_order lists {len(file_order)} electrodes; "
                              "the table has 32")
    x = select_band_major(x, DEAP_32, n_bands=5, order=file_order)  # into the Geneva order
    if montages is None:
        montages = {}
    elif isinstance(montages, str):
        montages = [montages]
    if not isinstance(montages, dict):
        montages = {str(m): m for m in montages}
    arrays: dict[str, np.ndarray] = {"eeg": x}
    electrodes: dict[str, list[str]] = {"eeg": list(DEAP_32)}
    for mod, names in montages.items():
        if mod in arrays:
            raise ConfigError(f"{name}: montage modality {mod!r} is defined twice")
        electrodes[mod] = resolve_montage(names)
        arrays[mod] = select_band_major(x, electrodes[mod], n_bands=5)
    feats = {
        k: (v.reshape(len(v), 1, v.shape[1]) if layout == "flat"
            else v.reshape(len(v), 5, v.shape[1] // 5))
        for k, v in arrays.items()
    }
    spec = DatasetSpec(
        name=name,
        modalities=tuple(ModalitySpec(k, v.shape[2], v.shape[1]) for k, v in feats.items()),
        targets=tuple(spec_targets),
        group_keys=("subject", "video", "trial"),
    )
    subj, vid = sv[:, 0].astype(str), sv[:, 1].astype(str)
    return MultimodalDataset(
        spec,
        feats,
        targets=targets,
        ids=[f"s{s}_v{v}" for s, v in zip(subj, vid, strict=True)],
        groups={"subject": subj, "video": vid, "trial": vid},
        info={"source": str(base), "nonfinite_repaired": {"eeg": repaired} if repaired else {},
              "electrode_order_in_file": electrode_order, "electrodes": electrodes,
              "layout": f"{layout}, band-major over {', '.join(BANDS)}"},
    )


@DATASETS.register("deap_bandpower")
def _deap_bandpower(**p: Any) -> MultimodalDataset:
    return load_eeg_bandpower(data_root(p, "eeg_bandpower/DEAP"), name="deap_bandpower", **p)


@DATASETS.register("mahnob_bandpower")
def _mahnob_bandpower(**p: Any) -> MultimodalDataset:
    return load_eeg_bandpower(data_root(p, "eeg_bandpower/MAHNOB-HCI"), name="mahnob_bandpower",
                              **p)
