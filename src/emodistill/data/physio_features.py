"""Per-window features of physiological signals: band power, differential entropy, statistics.

Pure functions on NumPy arrays (SciPy's Welch estimate), plus
:func:`trial_window_features`, which cuts whole trials into windows
(:mod:`emodistill.data.windowing`) and returns each trial's sequence of window
feature vectors, and :func:`cached_trial_features`, its cached form
(:mod:`emodistill.data.cache`).

Feature kinds (``kind``):

``raw``
    no features: the loader keeps the signal and the windower cuts it.
``band_power``
    power per band and channel: the Welch PSD integrated over the band
    (``sum(Pxx[f in band]) * df``), in signal units squared.
``log_band_power``
    ``log10`` of the band power.
``de``
    differential entropy of a Gaussian with the band's variance,
    ``0.5 * log(2 * pi * e * P_band)``. TorchEEG computes the variance of a
    Butterworth band-passed signal; integrating the Welch PSD over the band
    estimates the same variance.
``stats``
    per channel: mean, standard deviation, minimum, maximum, slope (least
    squares, units per second) and mean absolute first difference (for slow
    signals such as GSR, temperature, respiration).

Flattened feature vectors are **band-major**: index ``k * C + c`` holds band
(or statistic) ``k`` of channel ``c``, the layout of the DEAP/MAHNOB band-power
tables; layout ``bands`` reshapes them to ``[n_bands, C]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from emodistill.data.cache import FeatureCache
from emodistill.data.windowing import WindowConfig, cut_windows
from emodistill.errors import ConfigError, DataFormatError

__all__ = [
    "FEATURE_KINDS",
    "DEFAULT_BANDS",
    "STAT_NAMES",
    "band_power",
    "differential_entropy",
    "time_stats",
    "window_features",
    "feature_names",
    "n_feature_steps",
    "trial_window_features",
    "cached_trial_features",
    "resolve_feature_kinds",
]

FeatureKind = Literal["raw", "band_power", "log_band_power", "de", "stats"]
FEATURE_KINDS: tuple[str, ...] = ("raw", "band_power", "log_band_power", "de", "stats")

#: default EEG bands in Hz, [low, high); DEAP's EEG is band-passed 4-45 Hz so delta is omitted
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "theta": (4.0, 8.0),
    "alpha": (8.0, 14.0),
    "beta": (14.0, 31.0),
    "gamma": (31.0, 45.0),
}
STAT_NAMES: tuple[str, ...] = ("mean", "std", "min", "max", "slope", "mean_abs_diff")
_EPS = 1e-12


def _bands(bands: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    out = {}
    for name, edges in (DEFAULT_BANDS if bands is None else bands).items():
        lo, hi = (float(e) for e in edges)
        if not 0 <= lo < hi:
            raise ConfigError(f"band {name!r}: edges {edges!r} must satisfy 0 <= low < high")
        out[str(name)] = (lo, hi)
    if not out:
        raise ConfigError("bands is empty; give at least one band, e.g. {alpha: [8, 14]}")
    return out


def band_power(
    x: np.ndarray,
    fs: float,
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
    welch_seconds: float = 1.0,
) -> np.ndarray:
    """Band power from the Welch PSD.

    Parameters
    ----------
    x : np.ndarray
        ``[..., T]`` signals (time last).
    fs : float
        Sampling rate in Hz.
    bands : mapping, optional
        Band name → ``(low, high)`` Hz, half-open; default :data:`DEFAULT_BANDS`.
    welch_seconds : float
        Welch segment length in seconds (capped at ``T``; Hann window, 50 % overlap).

    Returns
    -------
    np.ndarray
        ``[..., n_bands]`` float64 band powers.
    """
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float64)
    nperseg = max(2, min(x.shape[-1], int(round(welch_seconds * fs))))
    f, pxx = welch(x, fs=fs, nperseg=nperseg, axis=-1)
    df = f[1] - f[0]
    out = []
    for name, (lo, hi) in _bands(bands).items():
        sel = (f >= lo) & (f < hi)
        if not sel.any():
            raise ConfigError(
                f"band {name!r} [{lo}, {hi}) Hz holds no Welch frequency bin (resolution "
                f"{df:.3g} Hz, Nyquist {fs / 2:g} Hz); use longer windows, a larger "
                "welch_seconds, or bands below Nyquist"
            )
        out.append(pxx[..., sel].sum(-1) * df)
    return np.stack(out, axis=-1)


def differential_entropy(
    x: np.ndarray,
    fs: float,
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
    welch_seconds: float = 1.0,
) -> np.ndarray:
    """Differential entropy per band: ``0.5 * log(2 pi e P_band)``.

    Parameters and shapes as :func:`band_power`; returns ``[..., n_bands]``.
    """
    p = band_power(x, fs, bands=bands, welch_seconds=welch_seconds)
    return 0.5 * np.log(2 * np.pi * np.e * (p + _EPS))


def time_stats(x: np.ndarray, fs: float) -> np.ndarray:
    """Time-domain statistics (:data:`STAT_NAMES`) of ``[..., T]`` signals → ``[..., 6]``."""
    x = np.asarray(x, dtype=np.float64)
    t = np.arange(x.shape[-1]) / fs
    tc = t - t.mean()
    denom = float((tc**2).sum()) or 1.0
    slope = ((x - x.mean(-1, keepdims=True)) * tc).sum(-1) / denom
    diff = np.abs(np.diff(x, axis=-1)).mean(-1) if x.shape[-1] > 1 else np.zeros(x.shape[:-1])
    return np.stack([x.mean(-1), x.std(-1), x.min(-1), x.max(-1), slope, diff], axis=-1)


def feature_names(
    kind: str, channels: Sequence[str], *, bands: Mapping[str, Sequence[float]] | None = None
) -> list[str]:
    """Names of the flattened (band-major) features, ``<band>_<channel>``."""
    kinds = STAT_NAMES if kind == "stats" else tuple(_bands(bands))
    return [f"{k}_{c}" for k in kinds for c in channels]


def window_features(
    windows: np.ndarray,
    kind: str,
    fs: float,
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
    welch_seconds: float = 1.0,
) -> np.ndarray:
    """Features of windows.

    Parameters
    ----------
    windows : np.ndarray
        ``[Nw, chunk, C]`` windows (time x channels).
    kind : str
        A feature kind other than ``raw`` (see the module docstring).
    fs : float
        Sampling rate in Hz.
    bands, welch_seconds
        See :func:`band_power`.

    Returns
    -------
    np.ndarray
        ``[Nw, K * C]`` float32, band-major (``K`` bands or statistics).
    """
    w = np.swapaxes(np.asarray(windows), 1, 2)  # [Nw, C, chunk]
    if kind == "band_power":
        f = band_power(w, fs, bands=bands, welch_seconds=welch_seconds)
    elif kind == "log_band_power":
        f = np.log10(band_power(w, fs, bands=bands, welch_seconds=welch_seconds) + _EPS)
    elif kind == "de":
        f = differential_entropy(w, fs, bands=bands, welch_seconds=welch_seconds)
    elif kind == "stats":
        f = time_stats(w, fs)
    else:
        raise ConfigError(
            f"feature kind {kind!r}; use one of {[k for k in FEATURE_KINDS if k != 'raw']}"
        )
    return np.swapaxes(f, 1, 2).reshape(len(w), -1).astype(np.float32)  # [Nw, K*C]


def n_feature_steps(kind: str, bands: Mapping[str, Sequence[float]] | None = None) -> int:
    """``K``: bands (or statistics) per channel of feature kind ``kind``."""
    return len(STAT_NAMES) if kind == "stats" else len(_bands(bands))


def trial_window_features(
    x: np.ndarray,
    lengths: np.ndarray,
    window: WindowConfig,
    kind: str,
    fs: float,
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
    welch_seconds: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-window features of whole trials, kept grouped by trial.

    Parameters
    ----------
    x : np.ndarray
        ``[N, T, C]`` trials (time x channels), right-padded.
    lengths : np.ndarray
        ``[N]`` true lengths (baseline included).
    window : WindowConfig
        Window geometry and baseline handling (``subtract_features`` subtracts
        the mean features of the baseline pieces from each window's features).
    kind : str
        Feature kind (not ``raw``).
    fs : float
        Sampling rate in Hz.
    bands, welch_seconds
        See :func:`band_power`.

    Returns
    -------
    features : np.ndarray
        ``[N, W_max, K * C]`` float32, zero beyond a trial's window count.
    n_windows : np.ndarray
        ``[N]`` int64 windows per trial.
    """
    n = x.shape[0]
    windows, ti, wi = cut_windows(x, lengths, window)
    n_windows = np.bincount(ti, minlength=n).astype(np.int64)
    k = n_feature_steps(kind, bands)
    out = np.zeros((n, max(1, int(n_windows.max(initial=0))), k * x.shape[2]), np.float32)
    if windows.size:
        feats = window_features(windows, kind, fs, bands=bands, welch_seconds=welch_seconds)
        if window.baseline == "subtract_features":
            b = int(window.baseline_samples)
            piece = min(int(window.chunk_size), b)
            m = b // piece
            base = x[:, : m * piece, :].reshape(n * m, piece, x.shape[2])
            bf = window_features(base, kind, fs, bands=bands, welch_seconds=welch_seconds)
            feats = feats - bf.reshape(n, m, -1).mean(1)[ti]
        out[ti, wi] = feats
    return out, n_windows


def resolve_feature_kinds(
    features: str | Mapping[str, str] | None, modalities: Sequence[str]
) -> dict[str, str]:
    """Feature kind per modality from a config value.

    ``None`` or ``"raw"``: every modality raw; a kind name: that kind for every
    modality; a mapping: modality → kind, unnamed modalities raw.
    """
    if features is None:
        kinds = {m: "raw" for m in modalities}
    elif isinstance(features, str):
        kinds = {m: features for m in modalities}
    else:
        unknown = sorted(set(features) - set(modalities))
        if unknown:
            raise ConfigError(
                f"features names modalities {unknown} that are not loaded; loaded: "
                f"{list(modalities)}"
            )
        kinds = {m: str(features.get(m, "raw")) for m in modalities}
    for m, k in kinds.items():
        if k not in FEATURE_KINDS:
            raise ConfigError(f"features for {m!r}: {k!r}; use one of {list(FEATURE_KINDS)}")
    return kinds


def cached_trial_features(
    trials: Mapping[str, np.ndarray],
    lengths: np.ndarray,
    *,
    kinds: Mapping[str, str],
    window: WindowConfig,
    fs: float,
    bands: Mapping[str, Sequence[float]] | None = None,
    welch_seconds: float = 1.0,
    cache: FeatureCache | None = None,
    description: str = "",
) -> dict[str, np.ndarray]:
    """:func:`trial_window_features` for several modalities, through the cache.

    Parameters
    ----------
    trials : mapping of str to array
        Modality → ``[N, T, C]`` trials; only modalities whose kind is not
        ``raw`` are computed.
    lengths : np.ndarray
        ``[N]`` true lengths.
    kinds : mapping of str to str
        Modality → feature kind.
    window, fs, bands, welch_seconds
        See :func:`trial_window_features`.
    cache : FeatureCache, optional
        Where to look the result up; None computes without caching.
    description : str
        Stored in the cache manifest.

    Returns
    -------
    dict of str to np.ndarray
        ``<modality>`` → ``[N, W_max, K * C]`` features and ``n_windows`` → ``[N]``.
    """
    feat_mods = [m for m in trials if kinds.get(m, "raw") != "raw"]
    if not feat_mods:
        raise ConfigError("cached_trial_features called with no feature modality")
    lengths = np.asarray(lengths, dtype=np.int64)
    for m in feat_mods:
        if trials[m].ndim != 3 or trials[m].shape[0] != lengths.shape[0]:
            raise DataFormatError(f"trials[{m!r}] must be [N, T, C] with N={lengths.shape[0]}")
    recipe: dict[str, Any] = {
        "function": "emodistill.data.physio_features.trial_window_features",
        "kinds": {m: kinds[m] for m in feat_mods},
        "window": window.to_dict(),
        "fs": float(fs),
        "bands": {k: list(v) for k, v in _bands(bands).items()},
        "welch_seconds": float(welch_seconds),
    }

    def compute() -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for m in feat_mods:
            out[m], n_win = trial_window_features(
                trials[m], lengths, window, kinds[m], fs, bands=bands, welch_seconds=welch_seconds
            )
            out["n_windows"] = n_win
        return out

    if cache is None:
        return compute()
    arrays = {m: trials[m] for m in feat_mods}
    arrays["lengths"] = lengths
    return cache.get_or_compute(arrays, recipe, compute, description=description)
