"""DEAP ``data_preprocessed_python`` loader: ``s01.dat`` ... ``s32.dat``.

Each file is a Python-2 pickle (read with emodistill's restricted unpickler,
``encoding="latin1"``) holding a dict:

``data``
    float array ``[40 trials, 40 channels, 8064 samples]`` at 128 Hz (63 s:
    a 3 s pre-trial baseline, then the 60 s stimulus), trials in video
    (Experiment_id) order;
``labels``
    ``[40, 4]`` self-ratings on 1-9: valence, arousal, dominance, liking.

Channels (1-based): 1-32 EEG in Geneva order (EOG artefacts removed, 4-45 Hz
band-pass, common average reference); 33 hEOG, 34 vEOG; 35 zEMG, 36 tEMG;
37 GSR (a resistance, in Ohm); 38 respiration; 39 plethysmograph;
40 temperature. The peripheral channels are only downsampled. Each group is a
named modality: ``eeg``, ``eog``, ``emg``, ``gsr``, ``resp``, ``ppg``, ``temp``.

The loaded dataset holds one row per trial (``[N, 8064, C]`` per raw
modality); its ``post_split`` cuts each part of a fold into windows after the
split. Baseline handling (``baseline``) follows
:mod:`emodistill.data.windowing`: by default the first 3 s are dropped, the
convention of TorchEEG and most DEAP loaders.

Labels: ``valence``, ``arousal``, ``dominance``, ``liking`` are binary with
"high" meaning rating ``> threshold`` (default 5, so a neutral 5 is "low").
TorchEEG's ``Binary(5.0)`` uses ``>=`` (5 is "high"); set ``comparison: ">="``
to reproduce it. The raw ratings are the regression targets ``<name>_rating``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodistill.data._io import require_dir
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.formats._physio import PhysioOptions, TrialAccumulator
from emodistill.data.formats._unpickler import safe_load_pickle
from emodistill.data.registry import DATASETS, data_root
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "DEAP_FS",
    "DEAP_EEG_CHANNELS",
    "DEAP_CHANNELS",
    "DEAP_CHANNEL_GROUPS",
    "DEAP_RATINGS",
    "find_deap_files",
    "read_deap_file",
    "DEAP_OPTIONS",
    "load_deap",
]

log = logging.getLogger(__name__)

DEAP_FS = 128.0
#: the 32 EEG channels, Geneva order (channels 1-32)
DEAP_EEG_CHANNELS: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1",
    "Oz", "Pz", "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2",
    "P4", "P8", "PO4", "O2",
)
#: all 40 channels in file order
DEAP_CHANNELS: tuple[str, ...] = DEAP_EEG_CHANNELS + (
    "hEOG", "vEOG", "zEMG", "tEMG", "GSR", "Respiration", "Plethysmograph", "Temperature",
)
#: modality name → channels of that group
DEAP_CHANNEL_GROUPS: dict[str, tuple[str, ...]] = {
    "eeg": DEAP_EEG_CHANNELS,
    "eog": ("hEOG", "vEOG"),
    "emg": ("zEMG", "tEMG"),
    "gsr": ("GSR",),
    "resp": ("Respiration",),
    "ppg": ("Plethysmograph",),
    "temp": ("Temperature",),
}
DEAP_RATINGS: tuple[str, ...] = ("valence", "arousal", "dominance", "liking")
#: DEAP's default window, label and feature options (4 s windows, EmotionKD)
DEAP_OPTIONS = PhysioOptions(chunk_size=512, cache=True)
_LAYOUT = "s01.dat ... s32.dat (DEAP data_preprocessed_python)"
_FILE_RE = re.compile(r"^s(\d+)\.dat$")


def find_deap_files(root: str | Path | None) -> list[Path]:
    """Return the ``sXX.dat`` files of a DEAP folder (or of its ``data_preprocessed_python``)."""
    base = require_dir(root, dataset="deap", layout=_LAYOUT)
    if not any(_FILE_RE.match(p.name) for p in base.iterdir()):
        sub = base / "data_preprocessed_python"
        if sub.is_dir():
            base = sub
    files = sorted(
        (p for p in base.iterdir() if _FILE_RE.match(p.name)),
        key=lambda p: int(_FILE_RE.match(p.name).group(1)),  # type: ignore[union-attr]
    )
    if not files:
        raise DataNotFoundError(
            f"dataset 'deap': no sXX.dat file in {str(base)!r}; set dataset.root to the folder "
            f"holding {_LAYOUT}"
        )
    return files


def read_deap_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``sXX.dat`` and check its layout.

    Parameters
    ----------
    path : path
        The subject file.

    Returns
    -------
    data : np.ndarray
        ``[trials, 40, samples]`` as stored (float64 in the official files).
    labels : np.ndarray
        ``[trials, 4]`` ratings (valence, arousal, dominance, liking).

    Raises
    ------
    DataFormatError
        Missing keys, wrong shapes or non-numeric arrays.
    UnsafePickleError
        The pickle references anything but containers and numpy arrays.
    """
    obj = safe_load_pickle(path, encoding="latin1")
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict with 'data' and 'labels', got {type(obj)}")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = {"data", "labels"} - set(obj)
    if missing:
        raise DataFormatError(f"{path}: missing key(s) {sorted(missing)}; keys: {sorted(obj)}")
    data, labels = np.asarray(obj["data"]), np.asarray(obj["labels"])
    if data.ndim != 3 or data.shape[1] != len(DEAP_CHANNELS):
        raise DataFormatError(
            f"{path}: 'data' has shape {data.shape}; expected [trials, 40 channels, samples] "
            "(DEAP data_preprocessed_python: 40 x 40 x 8064)"
        )
    if labels.shape != (data.shape[0], len(DEAP_RATINGS)):
        raise DataFormatError(
            f"{path}: 'labels' has shape {labels.shape}; expected ({data.shape[0]}, 4) "
            "(valence, arousal, dominance, liking)"
        )
    for key, arr in (("data", data), ("labels", labels)):
        if not np.issubdtype(arr.dtype, np.number):
            raise DataFormatError(f"{path}: {key!r} has dtype {arr.dtype}; expected numbers")
    return data, labels


def _channel_index(groups: Sequence[str], channels: Mapping[str, Sequence[str]] | None
                   ) -> dict[str, list[int]]:
    chosen = dict(DEAP_CHANNEL_GROUPS)
    for g, names in (channels or {}).items():
        if g not in groups:
            raise ConfigError(
                f"channels names group {g!r}, which is not in channel_groups {groups}"
            )
        chosen[g] = tuple(names)
    out = {}
    pos = {c: i for i, c in enumerate(DEAP_CHANNELS)}
    for g in groups:
        if g not in chosen:
            raise ConfigError(
                f"channel_groups: unknown DEAP group {g!r}; valid: {list(DEAP_CHANNEL_GROUPS)} "
                "(or define it with channels: {name: [channel, ...]})"
            )
        bad = [c for c in chosen[g] if c not in pos]
        if bad or not chosen[g]:
            raise ConfigError(
                f"channels of {g!r}: unknown DEAP channel(s) {bad or '(none given)'}; valid: "
                f"{list(DEAP_CHANNELS)}"
            )
        out[g] = [pos[c] for c in chosen[g]]
    return out


def _subject_filter(files: list[Path], subjects: Sequence[int | str] | None) -> list[Path]:
    if subjects is None:
        return files
    want = set()
    for s in subjects:
        m = re.fullmatch(r"s?(\d+)", str(s))
        if m is None:
            raise ConfigError(f"subjects: {s!r} is not a subject number (1, 2, ... or 's01')")
        want.add(int(m.group(1)))
    have = {int(_FILE_RE.match(p.name).group(1)): p for p in files}  # type: ignore[union-attr]
    missing = sorted(want - set(have))
    if missing:
        raise DataNotFoundError(
            f"dataset 'deap': subject(s) {missing} not found; available: {sorted(have)}"
        )
    return [have[k] for k in sorted(want)]


def load_deap(
    root: str | Path | None,
    *,
    channel_groups: Sequence[str] = ("eeg", "eog", "gsr"),
    channels: Mapping[str, Sequence[str]] | None = None,
    subjects: Sequence[int | str] | None = None,
    baseline_seconds: float = 3.0,
    gsr_unit: Literal["ohm", "microsiemens"] = "ohm",
    name: str = "deap",
    options: PhysioOptions | None = None,
    **option_values: Any,
) -> MultimodalDataset:
    """Load DEAP's preprocessed Python files as whole trials, windowed after the split.

    Parameters
    ----------
    root : path
        Folder with ``s01.dat`` ... (or its parent holding ``data_preprocessed_python/``).
    channel_groups : sequence of str
        Modalities to load, from :data:`DEAP_CHANNEL_GROUPS`.
    channels : mapping, optional
        Group → channel names, to use a subset (e.g. EmotionKD's 28 EEG
        channels) or define a new group from DEAP channel names.
    subjects : sequence, optional
        Subject numbers (``1``) or names (``"s01"``) to load; default all files.
    baseline_seconds : float
        Length of the pre-trial baseline at the start of each trial (3 s).
    gsr_unit : {"ohm", "microsiemens"}
        ``ohm`` keeps DEAP's stored resistance; ``microsiemens`` converts to
        conductance, ``1e6 / R`` (non-positive resistances become 0, logged).
    name : str
        Dataset name in the spec.
    options : PhysioOptions, optional
        Window, label and feature options (default :data:`DEAP_OPTIONS`: 512-sample
        = 4 s windows (EmotionKD), 15 per trial; rating > 5 is high; raw windows;
        features computed per subject and cached).
    **option_values
        Any :class:`~emodistill.data.formats._physio.PhysioOptions` field
        (``chunk_size``, ``overlap``, ``baseline``, ``max_windows``, ``threshold``,
        ``comparison``, ``features``, ``bands``, ``welch_seconds``,
        ``feature_layout``, ``cache``, ``cache_dir``), replacing ``options``'.

    Returns
    -------
    MultimodalDataset
        One row per trial, ids ``s01_t01``; targets ``valence``, ``arousal``,
        ``dominance``, ``liking`` (binary) and ``<name>_rating`` (1-9); groups
        ``subject``, ``trial`` and ``video`` (DEAP's preprocessed trials are in
        video order, so trial k shows video k).
    """
    opts = (options or DEAP_OPTIONS).updated("load_deap", option_values)
    files = _subject_filter(find_deap_files(root), subjects)
    groups_idx = _channel_index(list(channel_groups), channels)
    if gsr_unit not in ("ohm", "microsiemens"):
        raise ConfigError(f"gsr_unit={gsr_unit!r}; use ohm or microsiemens")
    b = int(round(baseline_seconds * DEAP_FS))
    acc = TrialAccumulator(list(groups_idx), opts, fs=DEAP_FS, baseline_samples=b)
    chunk_size = int(opts.chunk_size)
    labels_all, ids, subj, trial = [], [], [], []
    n_samples = None
    repaired: dict[str, int] = {}
    for path in files:
        data, labels = read_deap_file(path)
        if n_samples is None:
            n_samples = data.shape[2]
        elif data.shape[2] != n_samples:
            raise DataFormatError(
                f"{path}: {data.shape[2]} samples per trial, other files have {n_samples}"
            )
        if n_samples < b + chunk_size:
            raise ConfigError(
                f"{path}: trials of {n_samples} samples hold no {chunk_size}-sample window after "
                f"the {b}-sample baseline; use a smaller chunk_size or baseline_seconds"
            )
        sid = f"s{int(_FILE_RE.match(path.name).group(1)):02d}"  # type: ignore[union-attr]
        n = data.shape[0]
        trials: dict[str, np.ndarray] = {}
        for g, idx in groups_idx.items():
            x = np.ascontiguousarray(data[:, idx, :].transpose(0, 2, 1), dtype=np.float64)
            if g == "gsr" and gsr_unit == "microsiemens":
                with np.errstate(divide="ignore", invalid="ignore"):
                    x = np.where(x > 0, 1e6 / x, np.nan)
            x32, count = repair_nonfinite(x, what=f"{name} {sid} {g}")
            if count:
                repaired[f"{sid}/{g}"] = count
            trials[g] = x32
        acc.add(trials, np.full(n, n_samples, dtype=np.int64), description=f"{name} {path.name}")
        labels_all.append(labels)
        ids += [f"{sid}_t{t + 1:02d}" for t in range(n)]
        subj += [sid] * n
        trial += [f"{t + 1:02d}" for t in range(n)]
        del data, trials
    ratings = np.concatenate(labels_all)
    chan_names = {g: [DEAP_CHANNELS[i] for i in idx] for g, idx in groups_idx.items()}
    info: dict[str, Any] = {
        "source": str(files[0].parent),
        "files": [p.name for p in files],
        "fs": DEAP_FS,
        "channels": chan_names,
        "features": acc.kinds,
        "baseline_samples": b,
        "gsr_unit": gsr_unit,
        "label_rule": f"rating {opts.comparison} {opts.threshold} is high",
        "nonfinite_repaired": repaired,
    }
    return acc.build(
        name, ratings={r: ratings[:, i] for i, r in enumerate(DEAP_RATINGS)}, ids=ids,
        groups={"subject": np.array(subj), "trial": np.array(trial), "video": np.array(trial)},
        info=info,
    )

@DATASETS.register("deap")
def _deap(**p: Any) -> MultimodalDataset:
    return load_deap(data_root(p, "deap"), **p)
