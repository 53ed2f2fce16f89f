"""What the physiological formats (DEAP, MAHNOB-HCI, synthetic) share: options and trials.

:class:`PhysioOptions` holds the window, label and feature options every
physiological loader takes (as keyword arguments or one ``options=`` object);
:class:`TrialAccumulator` is the one path from trials to a dataset: a loader
reads its files (a subject, a session, ...) into blocks of trials, ``add``s
each block (per-window features are computed per block, through the feature
cache), and ``build``s the trial-level dataset with the windower attached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from emodistill.data.cache import FeatureCache
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.physio_features import (
    cached_trial_features,
    n_feature_steps,
    resolve_feature_kinds,
)
from emodistill.data.spec import TargetSpec
from emodistill.data.windowing import (
    BaselineMode,
    WindowConfig,
    build_physio_dataset,
    rating_targets,
)
from emodistill.errors import ConfigError

__all__ = ["PhysioOptions", "TrialAccumulator"]


@dataclass(frozen=True)
class PhysioOptions:
    """Window, label and feature options of a physiological loader.

    Parameters
    ----------
    chunk_size, overlap, baseline, max_windows
        Windowing after the split (:class:`~emodistill.data.windowing.WindowConfig`),
        in samples at the loader's rate.
    threshold, comparison
        Label binarisation (:func:`~emodistill.data.windowing.binarize_ratings`):
        "high" is ``rating > threshold`` by default (TorchEEG: ``>=``).
    features : str or mapping, optional
        None: raw windows; else a feature kind (``band_power``, ``log_band_power``,
        ``de``, ``stats``) for every modality, or a modality → kind mapping
        (:mod:`emodistill.data.physio_features`), computed per window at load time.
    bands, welch_seconds
        Feature settings (:func:`~emodistill.data.physio_features.band_power`).
    feature_layout : {"flat", "bands"}
        ``flat``: ``[1, K * C]`` per window; ``bands``: ``[K, C]``.
    cache : bool
        Cache computed features (:class:`~emodistill.data.cache.FeatureCache`).
    cache_dir : path, optional
        Cache folder (default ``$EMODISTILL_CACHE_DIR`` or ``~/.cache/emodistill``).
    """

    chunk_size: int = 512
    overlap: int = 0
    baseline: BaselineMode = "drop"
    max_windows: int | None = None
    threshold: float = 5.0
    comparison: Literal[">", ">="] = ">"
    features: str | Mapping[str, str] | None = None
    bands: Mapping[str, Sequence[float]] | None = None
    welch_seconds: float = 1.0
    feature_layout: Literal["flat", "bands"] = "flat"
    cache: bool = True
    cache_dir: Any = None

    def updated(self, loader: str, values: Mapping[str, Any]) -> PhysioOptions:
        """Return a copy with ``values`` (a loader's keyword arguments) replacing fields.

        Raises
        ------
        TypeError
            A key that is not an option, named with the loader and the valid options
            (``build_dataset`` turns it into a ``ConfigError``).
        """
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(
                f"{loader}() got an unexpected keyword argument {unknown[0]!r}; its physio "
                f"options are {fields} (see PhysioOptions)"
            )
        return dataclasses.replace(self, **values) if values else self


class TrialAccumulator:
    """Collect a physiological loader's trials block by block and build its dataset.

    Parameters
    ----------
    modalities : sequence of str
        The modalities (channel groups) every block holds, in spec order.
    options : PhysioOptions
        Window, label and feature options.
    fs : float
        Sampling rate of the trials in Hz.
    baseline_samples : int
        Leading pre-stimulus samples of every trial.

    Raises
    ------
    ConfigError
        An unknown feature kind or layout, or ``baseline="subtract_features"``
        without a feature mode.
    """

    def __init__(self, modalities: Sequence[str], options: PhysioOptions, *, fs: float,
                 baseline_samples: int) -> None:
        self.options, self.fs = options, fs
        self.kinds = resolve_feature_kinds(options.features, list(modalities))
        self.any_features = any(k != "raw" for k in self.kinds.values())
        if options.baseline == "subtract_features" and not self.any_features:
            raise ConfigError(
                "baseline='subtract_features' needs a feature mode (features=de, ...)")
        if options.feature_layout not in ("flat", "bands"):
            raise ConfigError(f"feature_layout={options.feature_layout!r}; use flat or bands")
        self.window = WindowConfig(
            chunk_size=int(options.chunk_size), overlap=int(options.overlap),
            baseline_samples=int(baseline_samples), baseline=options.baseline,
            max_windows=options.max_windows)
        self.store = (FeatureCache(options.cache_dir)
                      if (options.cache and self.any_features) else None)
        self._blocks: dict[str, list[np.ndarray]] = {m: [] for m in self.kinds}
        self._lengths: dict[str, list[np.ndarray]] = {m: [] for m in self.kinds}

    def add(self, trials: Mapping[str, np.ndarray], lengths: np.ndarray, *,
            description: str) -> None:
        """Add a block of ``n`` trials.

        Parameters
        ----------
        trials : mapping of str to np.ndarray
            Modality → ``[n, T, C]`` samples (time x channels; one ``T`` per block,
            the true lengths in ``lengths``).
        lengths : np.ndarray
            ``[n]`` true lengths in samples.
        description : str
            Names the block in the feature cache's manifest.
        """
        feats: dict[str, np.ndarray] = {}
        if self.any_features:
            o = self.options
            feats = cached_trial_features(
                trials, lengths, kinds=self.kinds, window=self.window, fs=self.fs,
                bands=o.bands, welch_seconds=o.welch_seconds, cache=self.store,
                description=description)
        for m, kind in self.kinds.items():
            if kind == "raw":
                self._blocks[m].append(trials[m])
                self._lengths[m].append(np.asarray(lengths))
            else:
                self._blocks[m].append(feats[m])
                self._lengths[m].append(feats["n_windows"])

    def build(
        self,
        name: str,
        *,
        ratings: Mapping[str, np.ndarray],
        ids: list[str],
        groups: Mapping[str, np.ndarray],
        info: dict[str, Any],
        extra_targets: Mapping[str, tuple[np.ndarray, TargetSpec]] | None = None,
    ) -> MultimodalDataset:
        """Build the trial-level dataset (one row per trial, windowed after the split).

        Parameters
        ----------
        name : str
            Dataset name.
        ratings : mapping of str to np.ndarray
            ``[N]`` self-ratings per rating name; binary targets by the options'
            threshold and comparison, plus ``<name>_rating`` regressions.
        ids : list of str
            ``[N]`` trial ids, in the order the trials were added.
        groups : mapping of str to np.ndarray
            ``subject``, ``trial`` (and ``video``...) per trial.
        info : dict
            Provenance; the feature cache's folder and hit counts are added when used.
        extra_targets : mapping, optional
            Further targets (name → (values, spec)), after the rating targets.

        Returns
        -------
        MultimodalDataset
            Trials right-padded with zeros to the longest block; ``post_split`` windows.
        """
        o = self.options
        signals = {m: _stack(blocks) for m, blocks in self._blocks.items()}
        self._blocks = {m: [] for m in self.kinds}  # the stacked copy is the only one kept
        lengths = {m: np.concatenate(v) for m, v in self._lengths.items()}
        targets, specs = rating_targets(ratings, threshold=o.threshold,
                                        comparison=o.comparison)
        for t, (values, spec) in (extra_targets or {}).items():
            targets[t] = values
            specs = specs + (spec,)
        feature_steps = {
            m: (1 if o.feature_layout == "flat" else n_feature_steps(k, o.bands))
            for m, k in self.kinds.items() if k != "raw"
        }
        info = dict(info)
        if self.store is not None:
            info["feature_cache"] = {"dir": str(self.store.dir), "hits": self.store.hits,
                                     "misses": self.store.misses}
        return build_physio_dataset(
            name, signals=signals, lengths=lengths, targets=targets, target_specs=specs,
            ids=ids, groups=groups, window=self.window, feature_steps=feature_steps, info=info)


def _stack(blocks: list[np.ndarray]) -> np.ndarray:
    """``[n_i, T_i, C]`` blocks → ``[sum n_i, max(1, max T_i), C]`` float32, zero-padded."""
    t = max(b.shape[1] for b in blocks)
    if all(b.shape[1] == t for b in blocks) and t >= 1:
        return np.concatenate(blocks).astype(np.float32, copy=False)
    out = np.zeros((sum(len(b) for b in blocks), max(1, t), blocks[0].shape[2]), np.float32)
    i = 0
    for b in blocks:
        out[i: i + len(b), : b.shape[1]] = b
        i += len(b)
    return out
