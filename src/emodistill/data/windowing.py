"""Windowing of whole physiological trials, applied *after* the protocol split.

A physiological loader (DEAP, MAHNOB-HCI, the synthetic generator) returns one
row per **trial**: a raw modality holds the whole trial ``[N, T, C]`` (time
samples x channels, true length in the mask) and a feature modality holds the
trial's per-window feature vectors ``[N, W, F]`` (one step per window). The
loader attaches a :class:`Windower` as ``dataset.post_split``; the engine calls
it on each part of a fold after the split, so every window of a trial lands in
the same part as its trial. Each window becomes one sample with id
``<trial id>_w<k>`` and the trial's targets and groups.

Window boundaries (:class:`WindowConfig`): windows of ``chunk_size`` samples
advance by ``chunk_size - overlap``; the first ``baseline_samples`` of a trial
are its pre-stimulus baseline (DEAP: 3 s = 384 samples), handled by
``baseline``:

``drop``
    windows start after the baseline (default);
``keep``
    the baseline is treated as signal, windows start at sample 0;
``subtract_mean``
    windows start after the baseline; the per-channel mean of the baseline is
    subtracted from every window;
``subtract_template``
    TorchEEG's ``BaselineRemoval``: the baseline is cut into pieces of
    ``chunk_size`` samples whose average (a ``[chunk_size, C]`` template) is
    subtracted from every window; needs ``baseline_samples >= chunk_size``;
``subtract_features``
    feature modes only: the features of the baseline (averaged over pieces of
    ``min(chunk_size, baseline_samples)`` samples) are subtracted from every
    window's features (the "baseline DE removal" of many DEAP papers).

Label helper :func:`binarize_ratings` turns 1-9 self-ratings into low/high
classes at a configurable threshold and comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError, EmptySplitError

__all__ = [
    "BASELINE_MODES",
    "WindowConfig",
    "cut_windows",
    "Windower",
    "binarize_ratings",
    "rating_targets",
    "build_physio_dataset",
]

log = logging.getLogger(__name__)

BaselineMode = Literal["drop", "keep", "subtract_mean", "subtract_template", "subtract_features"]
BASELINE_MODES: tuple[str, ...] = (
    "drop", "keep", "subtract_mean", "subtract_template", "subtract_features",
)


@dataclass(frozen=True)
class WindowConfig:
    """Where the windows of a trial lie and how its baseline is handled.

    Parameters
    ----------
    chunk_size : int
        Samples per window (DEAP/EmotionKD: 512 = 4 s at 128 Hz; TorchEEG: 128).
    overlap : int
        Samples shared by consecutive windows (step = ``chunk_size - overlap``).
    baseline_samples : int
        Leading samples of every trial that are pre-stimulus baseline.
    baseline : str
        One of :data:`BASELINE_MODES` (see the module docstring).
    max_windows : int, optional
        Keep at most this many windows per trial (the first ones); TorchEEG
        keeps 30 one-second windows per MAHNOB-HCI trial.
    """

    chunk_size: int = 512
    overlap: int = 0
    baseline_samples: int = 0
    baseline: BaselineMode = "drop"
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if int(self.chunk_size) < 1:
            raise ConfigError(f"chunk_size={self.chunk_size}; use a positive number of samples")
        if not 0 <= int(self.overlap) < int(self.chunk_size):
            raise ConfigError(
                f"overlap={self.overlap}; use 0 <= overlap < chunk_size={self.chunk_size}"
            )
        if int(self.baseline_samples) < 0:
            raise ConfigError(f"baseline_samples={self.baseline_samples} must be >= 0")
        if self.baseline not in BASELINE_MODES:
            raise ConfigError(f"baseline={self.baseline!r}; use one of {list(BASELINE_MODES)}")
        if self.max_windows is not None and int(self.max_windows) < 1:
            raise ConfigError(f"max_windows={self.max_windows}; use null or a positive count")
        if self.baseline.startswith("subtract") and self.baseline_samples == 0:
            raise ConfigError(
                f"baseline={self.baseline!r} needs a baseline: baseline_samples is 0 "
                "(set the dataset's baseline seconds, or use baseline=drop/keep)"
            )
        if self.baseline == "subtract_template" and self.baseline_samples < self.chunk_size:
            raise ConfigError(
                f"baseline='subtract_template' needs baseline_samples >= chunk_size "
                f"({self.baseline_samples} < {self.chunk_size}); use baseline=subtract_mean, "
                "or a chunk_size no longer than the baseline"
            )

    @property
    def step(self) -> int:
        """Samples between the starts of consecutive windows."""
        return int(self.chunk_size) - int(self.overlap)

    @property
    def first_sample(self) -> int:
        """Sample at which the first window starts (after the baseline unless ``keep``)."""
        return 0 if self.baseline == "keep" else int(self.baseline_samples)

    def starts(self, length: int) -> np.ndarray:
        """Start samples of the windows of a trial of ``length`` samples.

        Parameters
        ----------
        length : int
            True length of the trial (baseline included).

        Returns
        -------
        np.ndarray
            int64 ``[W]`` start indices (empty when the trial is too short).
        """
        s = np.arange(self.first_sample, int(length) - int(self.chunk_size) + 1, self.step)
        if self.max_windows is not None:
            s = s[: int(self.max_windows)]
        return s.astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for configs, manifests and cache keys)."""
        return asdict(self)


def _baseline_templates(x: np.ndarray, cfg: WindowConfig) -> np.ndarray | None:
    """Per-trial baseline to subtract from raw windows: ``[N, 1 or chunk, C]`` or None."""
    b = int(cfg.baseline_samples)
    if cfg.baseline == "subtract_mean":
        return x[:, :b, :].mean(axis=1, keepdims=True, dtype=np.float64)
    if cfg.baseline == "subtract_template":
        k = b // int(cfg.chunk_size)
        pieces = x[:, : k * cfg.chunk_size, :].reshape(x.shape[0], k, cfg.chunk_size, x.shape[2])
        return pieces.mean(axis=1, dtype=np.float64)
    return None


def cut_windows(
    x: np.ndarray, lengths: np.ndarray, cfg: WindowConfig, *, subtract_baseline: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut trials into windows.

    Parameters
    ----------
    x : np.ndarray
        ``[N, T, C]`` trials (time samples x channels), right-padded.
    lengths : np.ndarray
        ``[N]`` true lengths (baseline included).
    cfg : WindowConfig
        Window geometry and baseline handling.
    subtract_baseline : bool
        Apply ``subtract_mean`` / ``subtract_template`` (False: return the
        windows as they are, e.g. to compute baseline features separately).

    Returns
    -------
    windows : np.ndarray
        ``[Nw, chunk_size, C]`` float32 windows, trial by trial, in time order.
    trial_index : np.ndarray
        ``[Nw]`` int64 row of the trial each window comes from.
    window_index : np.ndarray
        ``[Nw]`` int64 position of the window within its trial (0, 1, ...).
    """
    x = np.asarray(x)
    lengths = np.asarray(lengths, dtype=np.int64)
    if x.ndim != 3 or lengths.shape != (x.shape[0],):
        raise DataFormatError(
            f"cut_windows needs trials [N, T, C] and lengths [N]; got {x.shape} and "
            f"{lengths.shape}"
        )
    if lengths.size and int(lengths.max()) > x.shape[1]:
        raise DataFormatError(f"a trial length {int(lengths.max())} exceeds T={x.shape[1]}")
    starts = [cfg.starts(n) for n in lengths]
    trial_index = np.concatenate(
        [np.full(len(s), i, dtype=np.int64) for i, s in enumerate(starts)] or [np.zeros(0, int)]
    ).astype(np.int64)
    window_index = np.concatenate(
        [np.arange(len(s), dtype=np.int64) for s in starts] or [np.zeros(0, int)]
    ).astype(np.int64)
    flat_starts = np.concatenate(starts or [np.zeros(0, int)]).astype(np.int64)
    steps = flat_starts[:, None] + np.arange(int(cfg.chunk_size))[None, :]  # [Nw, chunk]
    windows = x[trial_index[:, None], steps].astype(np.float32)  # [Nw, chunk, C]
    if subtract_baseline:
        tmpl = _baseline_templates(x, cfg)
        if tmpl is not None and len(windows):
            windows = windows - tmpl[trial_index].astype(np.float32)
    return windows, trial_index, window_index


class Windower:
    """The ``post_split`` transform: trial rows → window samples.

    Parameters
    ----------
    window : WindowConfig
        Geometry used to cut raw modalities.
    feature_steps : mapping of str to int, optional
        Modalities that the loader already turned into per-window feature
        sequences ``[N, W, F]``, with the number of time steps each window's
        feature vector becomes (1: ``[1, F]``; ``n_bands``: ``[n_bands, F / n_bands]``).
        Every other modality is raw and is cut with ``window``.

    Notes
    -----
    The output dataset's spec has ``seq_len = chunk_size`` for raw modalities,
    its ids are ``<trial id>_w<k>``, targets, groups and predefined splits are
    those of the trial, and its own ``post_split`` is None (windows are never
    windowed twice).
    """

    def __init__(
        self, window: WindowConfig, *, feature_steps: Mapping[str, int] | None = None
    ) -> None:
        self.window = window
        self.feature_steps = dict(feature_steps or {})

    def __repr__(self) -> str:
        return f"Windower({self.window}, feature_steps={self.feature_steps})"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python description (stored in ``dataset.info``)."""
        return {"window": self.window.to_dict(), "feature_steps": dict(self.feature_steps)}

    def _n_windows(self, ds: MultimodalDataset) -> np.ndarray:
        counts = []
        for m in ds.spec.modality_names:
            length = ds.mask[m].sum(1).cpu().numpy().astype(np.int64)
            if m in self.feature_steps:
                n = length
            else:
                n = np.array([len(self.window.starts(int(v))) for v in length], dtype=np.int64)
            present = ds.present[m].cpu().numpy()
            counts.append(np.where(present, n, -1))
        c = np.stack(counts)  # [M, N], -1 where absent
        n = c.max(0)
        bad = np.flatnonzero(((c != n[None]) & (c >= 0)).any(0))
        if bad.size:
            per_mod = dict(zip(ds.spec.modality_names, c[:, bad[0]].tolist(), strict=True))
            raise DataFormatError(
                f"{ds.spec.name}: trial {ds.ids[bad[0]]!r} gives different window counts per "
                f"modality ({per_mod}); all modalities of a trial must cover the same time span"
            )
        return np.maximum(n, 0)

    def __call__(self, ds: MultimodalDataset) -> MultimodalDataset:
        """Window every trial of ``ds`` (one part of a fold)."""
        n_win = self._n_windows(ds)
        trial_index = np.repeat(np.arange(len(ds)), n_win)
        window_index = np.concatenate([np.arange(k) for k in n_win]) if len(ds) else trial_index
        if trial_index.size == 0 and len(ds):  # an empty part (no valid part) stays empty
            raise EmptySplitError(
                f"{ds.spec.name}: no trial of this part ({len(ds)} trials) is long enough for "
                f"one window of chunk_size={self.window.chunk_size} after a baseline of "
                f"{self.window.first_sample} samples; use a smaller chunk_size"
            )
        short = int((n_win == 0).sum())
        if short:
            log.warning("%s: %d trials shorter than one window were left out", ds.spec.name, short)
        features: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        mods = []
        for ms in ds.spec.modalities:
            x = ds.features[ms.name].cpu().numpy()
            p = ds.present[ms.name].cpu().numpy()
            if ms.name in self.feature_steps:
                steps = int(self.feature_steps[ms.name])
                if ms.dim % steps:
                    raise ConfigError(
                        f"{ds.spec.name}: modality {ms.name!r} has {ms.dim} features per "
                        f"window, not divisible into {steps} steps"
                    )
                w = x[trial_index, window_index]  # [Nw, F]
                features[ms.name] = w.reshape(len(w), steps, ms.dim // steps)
                mods.append(ModalitySpec(ms.name, ms.dim // steps, steps))
            else:
                lengths = ds.mask[ms.name].sum(1).cpu().numpy()
                sel = np.flatnonzero(p)
                if sel.size == len(ds):  # all present: windows come out in output order
                    full, ti, wi = cut_windows(x, lengths, self.window)
                    if not (np.array_equal(ti, trial_index) and np.array_equal(wi, window_index)):
                        raise DataFormatError(f"{ds.spec.name}: inconsistent window counts")
                else:
                    full = np.zeros((trial_index.size, self.window.chunk_size, ms.dim),
                                    np.float32)
                if 0 < sel.size < len(ds):
                    w, ti, wi = cut_windows(x[sel], lengths[sel], self.window)
                    # map (trial, window) to output rows
                    row_of = np.full((len(ds), int(n_win.max())), -1, dtype=np.int64)
                    row_of[trial_index, window_index] = np.arange(trial_index.size)
                    full[row_of[sel[ti], wi]] = w
                features[ms.name] = full
                mods.append(ModalitySpec(ms.name, ms.dim, self.window.chunk_size))
            present[ms.name] = p[trial_index]
        spec = DatasetSpec(ds.spec.name, tuple(mods), ds.spec.targets, ds.spec.group_keys)
        info = dict(ds.info)
        info["windowing"] = self.to_dict()
        out = MultimodalDataset(
            spec,
            features,
            targets={k: v.cpu().numpy()[trial_index] for k, v in ds.targets.items()},
            ids=[f"{ds.ids[i]}_w{k}" for i, k in zip(trial_index, window_index, strict=True)],
            groups={k: v[trial_index] for k, v in ds.groups.items()},
            present=present,
            splits={k: v[trial_index] for k, v in ds.splits.items()},
            info=info,
        )
        return out


def binarize_ratings(
    ratings: np.ndarray, *, threshold: float = 5.0, comparison: Literal[">", ">="] = ">"
) -> np.ndarray:
    """Low (0) / high (1) classes from self-ratings.

    Parameters
    ----------
    ratings : np.ndarray
        ``[N]`` ratings (DEAP and MAHNOB-HCI: 1-9).
    threshold : float
        The cut point.
    comparison : {">", ">="}
        ``">"``: a rating strictly above ``threshold`` is high (emodistill's
        default, so a neutral 5 is low). ``">="``: TorchEEG's ``Binary(5.0)``,
        which puts 5 in the high class.

    Returns
    -------
    np.ndarray
        ``[N]`` int64 class indices.
    """
    r = np.asarray(ratings, dtype=np.float64)
    if comparison == ">":
        return (r > threshold).astype(np.int64)
    if comparison == ">=":
        return (r >= threshold).astype(np.int64)
    raise ConfigError(f"comparison={comparison!r}; use '>' (default) or '>=' (TorchEEG)")


def rating_targets(
    ratings: Mapping[str, np.ndarray],
    *,
    threshold: float = 5.0,
    comparison: Literal[">", ">="] = ">",
    value_range: tuple[float, float] = (1.0, 9.0),
) -> tuple[dict[str, np.ndarray], tuple[TargetSpec, ...]]:
    """Binary ``<name>`` and regression ``<name>_rating`` targets from ratings.

    Parameters
    ----------
    ratings : mapping of str to array
        Rating name (valence, arousal, ...) → ``[N]`` ratings.
    threshold, comparison
        See :func:`binarize_ratings`.
    value_range : tuple of float
        Valid range of the ratings; values outside it are a data error.

    Returns
    -------
    targets : dict
        ``<name>`` → int64 classes, then ``<name>_rating`` → float32 ratings.
    specs : tuple of TargetSpec
        Binary targets (``class_names=("low", "high")``) first, in the order
        given, then the rating regressions.
    """
    targets: dict[str, np.ndarray] = {}
    specs = []
    for name, r in ratings.items():
        r = np.asarray(r, dtype=np.float64)
        lo, hi = value_range
        bad = ~np.isfinite(r) | (r < lo) | (r > hi)
        if bad.any():
            raise DataFormatError(
                f"{name} rating {r[bad][0]!r} lies outside [{lo}, {hi}]; check the label file"
            )
        targets[name] = binarize_ratings(r, threshold=threshold, comparison=comparison)
        specs.append(TargetSpec(name, "binary", class_names=("low", "high")))
    for name, r in ratings.items():
        targets[f"{name}_rating"] = np.asarray(r, dtype=np.float32)
        specs.append(TargetSpec(f"{name}_rating", "regression", value_range=value_range))
    return targets, tuple(specs)


def build_physio_dataset(
    name: str,
    *,
    signals: Mapping[str, np.ndarray],
    lengths: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    target_specs: tuple[TargetSpec, ...],
    ids: list[str] | np.ndarray,
    groups: Mapping[str, np.ndarray],
    window: WindowConfig,
    feature_steps: Mapping[str, int] | None = None,
    info: dict[str, Any] | None = None,
) -> MultimodalDataset:
    """Build the trial-level dataset of a physiological loader, windower attached.

    Parameters
    ----------
    name : str
        Dataset name.
    signals : mapping of str to array
        Modality → ``[N, T, C]`` raw trials, or ``[N, W, F]`` per-window
        features for the modalities named in ``feature_steps``.
    lengths : mapping of str to array
        Modality → ``[N]`` true lengths (samples, or windows for features).
    targets, target_specs
        Trial targets and their specs (e.g. from :func:`rating_targets`).
    ids : sequence of str
        ``[N]`` trial ids.
    groups : mapping of str to array
        ``subject``, ``trial`` (and ``video``...) per trial.
    window : WindowConfig
        Windowing applied after the split.
    feature_steps : mapping of str to int, optional
        See :class:`Windower`.
    info : dict, optional
        Provenance stored in ``dataset.info``.

    Returns
    -------
    MultimodalDataset
        One row per trial, ``post_split`` set to a :class:`Windower`.
    """
    mods = tuple(
        ModalitySpec(m, int(x.shape[2]), max(1, int(x.shape[1]))) for m, x in signals.items()
    )
    spec = DatasetSpec(name, mods, tuple(target_specs), tuple(groups))
    windower = Windower(window, feature_steps=feature_steps)
    info = dict(info or {})
    info["windowing"] = windower.to_dict()
    ds = MultimodalDataset(
        spec, dict(signals), targets=targets, ids=ids, groups=groups, lengths=lengths, info=info,
    )
    ds.post_split = windower
    return ds
