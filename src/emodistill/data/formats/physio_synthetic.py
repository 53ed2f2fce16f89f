"""Synthetic physiological emotion data (EEG + EOG + GSR) with the DEAP-like contract.

Subjects x trials of multichannel signals at ``fs`` Hz, one row per trial,
windowed after the split (:class:`~emodistill.data.windowing.Windower`). Every
trial has valence and arousal ratings on 1-9 (binary targets at ``> 5`` by
default). Each modality sees its own noisy view of the two ratings
(independent noise of standard deviation ``modality_noise`` per modality and
trial), so every modality is informative, none is perfect, and fusing them
beats any single one:

EEG (``eeg_channels`` channels, microvolts)
    1/f background plus theta / alpha / beta / gamma activity whose power
    depends on the ratings: frontal alpha asymmetry with valence (less left
    frontal alpha, more right frontal alpha for high valence), posterior alpha
    suppression and widespread beta increase with arousal, temporal gamma with
    valence. Per-subject, per-channel band gains (``subject_noise``) that do
    not depend on the labels make cross-subject transfer harder.
EOG (2 channels: hEOG, vEOG, microvolts)
    blinks on vEOG at a rate rising with arousal, saccade steps on hEOG whose
    size grows with valence, slow drift and noise.
GSR (1 channel, microsiemens: a conductance, unlike DEAP's stored resistance)
    a subject-specific tonic level shifted by arousal, plus skin-conductance
    responses whose rate and size rise with arousal.

An optional pre-stimulus baseline (``baseline_seconds``) carries the
subject's signal without the label effects, as DEAP's first 3 s do, so the
baseline modes of the windower can be exercised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.formats._physio import PhysioOptions, TrialAccumulator
from emodistill.data.registry import DATASETS
from emodistill.errors import ConfigError

__all__ = [
    "make_synthetic_physio", "SYNTHETIC_PHYSIO_MODALITIES", "SYNTHETIC_PHYSIO_OPTIONS",
    "EEG_CHANNELS_32",
]

#: the 32 EEG channel names in DEAP's (Geneva) order
EEG_CHANNELS_32: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1",
    "Oz", "Pz", "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2",
    "P4", "P8", "PO4", "O2",
)
SYNTHETIC_PHYSIO_MODALITIES: tuple[str, ...] = ("eeg", "eog", "gsr")
#: the generator's default window, label and feature options (2 s windows, no cache)
SYNTHETIC_PHYSIO_OPTIONS = PhysioOptions(chunk_size=256, cache=False)
_BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}


def _eeg_regions(c: int) -> dict[str, np.ndarray]:
    """Channel index sets; with 32 channels they follow DEAP's electrode names."""
    if c == 32:
        idx = {n: i for i, n in enumerate(EEG_CHANNELS_32)}
        pick = lambda names: np.array([idx[n] for n in names])  # noqa: E731
        return {
            "left_frontal": pick(["Fp1", "AF3", "F3", "F7", "FC5", "FC1"]),
            "right_frontal": pick(["Fp2", "AF4", "F4", "F8", "FC6", "FC2"]),
            "posterior": pick(["P3", "P7", "PO3", "O1", "Oz", "Pz", "P4", "P8", "PO4", "O2"]),
            "temporal": pick(["T7", "T8", "CP5", "CP6"]),
        }
    q = max(1, c // 5)
    return {
        "left_frontal": np.arange(0, q),
        "right_frontal": np.arange(c // 2, min(c, c // 2 + q)),
        "posterior": np.arange(max(0, c // 2 - q), c // 2),
        "temporal": np.arange(max(0, c - q), c),
    }


def _eeg(
    rng: np.random.Generator, n: int, c: int, t: int, fs: float, log_gain: np.ndarray
) -> np.ndarray:
    """EEG ``[n, t, c]`` from band log-power gains ``[n, c, 4]`` (theta, alpha, beta, gamma)."""
    f = np.fft.rfftfreq(t, 1 / fs)
    amp = 1.0 / np.sqrt(np.maximum(f, 1.0))  # 1/f power
    amp[f < 0.5] = 0.0
    amp = amp + 1.5 * np.exp(-0.5 * ((f - 10.0) / 1.5) ** 2)  # physiological alpha peak
    band_of = np.full(f.shape, -1)
    for k, (lo, hi) in enumerate(_BANDS.values()):
        band_of[(f >= lo) & (f < hi)] = k
    gain = np.ones((n, c, f.size))
    inband = band_of >= 0
    gain[..., inband] = np.exp(0.5 * log_gain[..., band_of[inband]])
    spec = rng.standard_normal((n, c, f.size)) + 1j * rng.standard_normal((n, c, f.size))
    x = np.fft.irfft(spec * amp * gain, n=t, axis=-1)
    x = x * t / (2.0 * np.sqrt((amp**2).sum()))  # unit variance at unit gains
    mix = 0.8 * np.eye(c) + 0.2 / c  # a little volume conduction
    return ((np.swapaxes(x, 1, 2) @ mix) * 12.0).astype(np.float32)


def _events(rng: np.random.Generator, rate: np.ndarray, t: int, fs: float) -> np.ndarray:
    """Poisson event trains ``[n, t]`` (0/1) with per-row rate (events per second)."""
    p = np.clip(rate[:, None] / fs, 0, 1)
    return (rng.uniform(size=(len(rate), t)) < p).astype(np.float64)


def _convolve_rows(ev: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    t = ev.shape[1]
    size = t + kernel.size - 1
    out = np.fft.irfft(np.fft.rfft(ev, size, axis=1) * np.fft.rfft(kernel, size), size, axis=1)
    return out[:, :t]


def _eog(
    rng: np.random.Generator, zv: np.ndarray, za: np.ndarray, t: int, fs: float, effect: float
) -> np.ndarray:
    """Simulate hEOG / vEOG ``[n, t, 2]``: saccade steps (valence) and blinks (arousal)."""
    n = len(zv)
    blink_rate = 0.5 * np.exp(effect * za)
    blinks = _events(rng, blink_rate, t, fs) * (
        150.0 * np.exp(0.3 * effect * zv)[:, None] * (1 + 0.2 * rng.standard_normal((n, t)))
    )
    tb = np.arange(-int(0.3 * fs), int(0.3 * fs) + 1) / fs
    v = _convolve_rows(blinks, np.exp(-0.5 * (tb / 0.07) ** 2))
    sacc = _events(rng, np.full(n, 1.0), t, fs) * rng.standard_normal((n, t))
    h = np.cumsum(sacc * (40.0 * np.exp(0.8 * effect * zv))[:, None], axis=1)
    h = h - np.linspace(0, 1, t)[None] * h[:, -1:]  # keep the gaze near the screen centre
    drift = np.cumsum(rng.standard_normal((n, t, 2)), axis=1) * 0.3
    out = np.stack([h, v], axis=-1) + drift + 5.0 * rng.standard_normal((n, t, 2))
    return out.astype(np.float32)


def _gsr(
    rng: np.random.Generator,
    za: np.ndarray,
    level: np.ndarray,
    t: int,
    fs: float,
    effect: float,
) -> np.ndarray:
    """Skin conductance ``[n, t, 1]`` (microsiemens): tonic level + phasic responses."""
    n = len(za)
    scr = _events(rng, 0.2 * np.exp(effect * za), t, fs) * rng.exponential(
        0.4, size=(n, t)
    ) * np.exp(0.3 * effect * za)[:, None]
    tk = np.arange(int(8 * fs)) / fs
    kernel = np.exp(-tk / 2.0) - np.exp(-tk / 0.7)
    phasic = _convolve_rows(scr, kernel / kernel.max())
    tonic = level[:, None] + 0.4 * effect * za[:, None] * np.linspace(0.5, 1.0, t)[None]
    wander = np.cumsum(rng.standard_normal((n, t)), axis=1) * (0.02 / np.sqrt(fs))
    return (tonic + phasic + wander + 0.01 * rng.standard_normal((n, t)))[..., None].astype(
        np.float32
    )


def make_synthetic_physio(
    n_subjects: int = 8,
    n_trials: int = 10,
    *,
    seed: int = 0,
    fs: float = 128.0,
    trial_seconds: float = 8.0,
    baseline_seconds: float = 0.0,
    eeg_channels: int = 32,
    channel_groups: Sequence[str] = SYNTHETIC_PHYSIO_MODALITIES,
    eeg_effect: float = 0.8,
    eog_effect: float = 0.9,
    gsr_effect: float = 1.0,
    modality_noise: float = 0.8,
    subject_noise: float = 0.5,
    options: PhysioOptions | None = None,
    **option_values: Any,
) -> MultimodalDataset:
    """Generate synthetic EEG / EOG / GSR trials whose features depend on the labels.

    Parameters
    ----------
    n_subjects, n_trials : int
        Subjects, and trials per subject.
    seed : int
        Data seed; the same arguments give byte-identical data.
    fs : float
        Sampling rate in Hz.
    trial_seconds : float
        Stimulus length per trial.
    baseline_seconds : float
        Pre-stimulus baseline prepended to every trial (no label effects).
    eeg_channels : int
        EEG channel count (32 uses DEAP's electrode layout).
    channel_groups : sequence of str
        Subset of ``("eeg", "eog", "gsr")`` to return as modalities (the
        engine's ``dataset.modalities`` can further restrict a run).
    eeg_effect, eog_effect, gsr_effect : float
        Strength of the rating effects in each modality (0 = uninformative).
    modality_noise : float
        Standard deviation of each modality's private trial-level noise on the
        standardised ratings (higher = weaker single modalities, more to gain
        from fusion).
    subject_noise : float
        Standard deviation of the per-subject log band gains and GSR level.
    options : PhysioOptions, optional
        Window, label and feature options (default :data:`SYNTHETIC_PHYSIO_OPTIONS`:
        256-sample = 2 s windows at 128 Hz, four per 8 s trial; rating > 5 is high;
        raw windows; no feature cache).
    **option_values
        Any :class:`~emodistill.data.formats._physio.PhysioOptions` field
        (``chunk_size``, ``overlap``, ``baseline``, ``max_windows``, ``threshold``,
        ``comparison``, ``features``, ``bands``, ``welch_seconds``,
        ``feature_layout``, ``cache``, ``cache_dir``), replacing ``options``'. With
        ``features=None`` a modality is ``[chunk_size, channels]`` per window.

    Returns
    -------
    MultimodalDataset
        One row per trial (ids ``s01_t01``...), modalities ``eeg`` ``[T, C]``,
        ``eog`` ``[T, 2]``, ``gsr`` ``[T, 1]`` with ``T = (baseline_seconds +
        trial_seconds) * fs``; targets ``valence``, ``arousal`` (binary, class
        names ``("low", "high")``) and ``valence_rating``, ``arousal_rating``
        (regression, 1-9); groups ``subject`` and ``trial``. ``post_split``
        windows each part of a fold.
    """
    opts = (options or SYNTHETIC_PHYSIO_OPTIONS).updated("make_synthetic_physio",
                                                          option_values)
    unknown = sorted(set(channel_groups) - set(SYNTHETIC_PHYSIO_MODALITIES))
    if unknown or not channel_groups:
        raise ConfigError(
            f"channel_groups={list(channel_groups)}; choose from "
            f"{list(SYNTHETIC_PHYSIO_MODALITIES)}"
        )
    if n_subjects < 1 or n_trials < 1 or eeg_channels < 1:
        raise ConfigError("n_subjects, n_trials and eeg_channels must be >= 1")
    tb, ts = int(round(baseline_seconds * fs)), int(round(trial_seconds * fs))
    if ts < 1:
        raise ConfigError(f"trial_seconds={trial_seconds} gives no samples at fs={fs}")
    mods = [m for m in SYNTHETIC_PHYSIO_MODALITIES if m in channel_groups]
    acc = TrialAccumulator(mods, opts, fs=fs, baseline_samples=tb)
    rng = np.random.default_rng(seed)
    n = n_subjects * n_trials
    subj = np.repeat(np.arange(n_subjects), n_trials)
    ratings = {
        "valence": np.round(1 + 8 * rng.beta(2.0, 2.0, size=n), 2),
        "arousal": np.round(1 + 8 * rng.beta(2.0, 2.0, size=n), 2),
    }
    zv0, za0 = (ratings["valence"] - 5) / 2, (ratings["arousal"] - 5) / 2

    def view() -> tuple[np.ndarray, np.ndarray]:
        return (zv0 + modality_noise * rng.standard_normal(n),
                za0 + modality_noise * rng.standard_normal(n))

    views = {m: view() for m in SYNTHETIC_PHYSIO_MODALITIES}  # drawn for all: same data per seed
    c = int(eeg_channels)
    subj_gain = subject_noise * rng.standard_normal((n_subjects, c, 4))
    gsr_level = 5.0 + 5.0 * subject_noise * rng.standard_normal(n_subjects)
    gsr_level = np.maximum(gsr_level, 0.5)

    def eeg_gains(zv: np.ndarray, za: np.ndarray) -> np.ndarray:
        g = subj_gain[subj] + 0.1 * rng.standard_normal((n, c, 4))
        r = _eeg_regions(c)
        e = eeg_effect
        g[:, r["left_frontal"], 1] -= e * zv[:, None]
        g[:, r["right_frontal"], 1] += e * zv[:, None]
        g[:, r["posterior"], 1] -= 0.6 * e * za[:, None]
        g[:, :, 2] += 0.6 * e * za[:, None]
        g[:, r["temporal"], 3] += 0.6 * e * zv[:, None]
        return g

    signals: dict[str, np.ndarray] = {}
    zeros = np.zeros(n)
    for m in SYNTHETIC_PHYSIO_MODALITIES:  # generate all, in a fixed order, for determinism
        zv, za = views[m]
        parts = []
        for z_v, z_a, length in ((zeros, zeros, tb), (zv, za, ts)):
            if length == 0:
                continue
            if m == "eeg":
                parts.append(_eeg(rng, n, c, length, fs, eeg_gains(z_v, z_a)))
            elif m == "eog":
                parts.append(_eog(rng, z_v, z_a, length, fs, eog_effect))
            else:
                parts.append(_gsr(rng, z_a, gsr_level[subj], length, fs, gsr_effect))
        if m in channel_groups:
            signals[m] = np.concatenate(parts, axis=1)

    acc.add(signals, np.full(n, tb + ts), description=f"synthetic_physio seed={seed}")
    channels = {
        "eeg": list(EEG_CHANNELS_32) if c == 32 else [f"EEG{i + 1}" for i in range(c)],
        "eog": ["hEOG", "vEOG"],
        "gsr": ["GSR"],
    }
    info: dict[str, Any] = {
        "source": "synthetic_physio",
        "seed": seed,
        "fs": fs,
        "channels": {m: channels[m] for m in signals},
        "features": acc.kinds,
        "baseline_samples": tb,
    }
    return acc.build(
        "synthetic_physio",
        ratings=ratings,
        ids=[f"s{s + 1:02d}_t{i % n_trials + 1:02d}" for i, s in enumerate(subj)],
        groups={
            "subject": np.array([f"s{s + 1:02d}" for s in subj]),
            "trial": np.array([f"t{i % n_trials + 1:02d}" for i in range(n)]),
        },
        info=info,
    )


@DATASETS.register("synthetic_physio")
def _synthetic_physio(**p: Any) -> MultimodalDataset:
    return make_synthetic_physio(**p)
