"""Synthetic multimodal emotion data with the real contract (zero-setup demo, tests).

The generator draws, per sample, shared latent factors ``s`` (seen by every
modality) and private factors ``p_m`` (seen only by modality ``m``). The
sentiment score depends on both, so every modality carries information that
the others lack and fusion beats the best single modality. The dominant
modality sees ``s`` at a higher signal-to-noise ratio than the others. Each
modality is a real sequence: the latent signal appears as a burst at a random
position of a variable-length sequence, buried in noise, so encoders must
aggregate over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.registry import DATASETS
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError

__all__ = ["make_synthetic_mer", "DEFAULT_SYNTHETIC_MODALITIES"]

#: modality → (seq_len, dim, snr of the shared factors)
DEFAULT_SYNTHETIC_MODALITIES: dict[str, tuple[int, int, float]] = {
    "text": (16, 32, 1.2),
    "audio": (24, 16, 0.2),
    "vision": (20, 24, 0.2),
}


def make_synthetic_mer(
    n: int = 1500,
    *,
    seed: int = 0,
    modalities: Mapping[str, tuple[int, int, float]] | None = None,
    dominant: str = "text",
    n_shared: int = 4,
    n_private: int = 3,
    private_weight: float = 0.8,
    noise: float = 3.0,
    label_noise: float = 0.25,
    missing_rate: float = 0.0,
    variable_length: bool = True,
    samples_per_video: int = 10,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> MultimodalDataset:
    """Generate a synthetic multimodal sentiment dataset.

    Parameters
    ----------
    n : int
        Number of samples.
    seed : int
        Seed; the same seed gives byte-identical data.
    modalities : mapping, optional
        Modality name → ``(seq_len, dim, shared_snr)``; default
        :data:`DEFAULT_SYNTHETIC_MODALITIES`.
    dominant : str
        Modality whose view of the shared factors is scaled up (the "text" of MER).
    n_shared, n_private : int
        Number of shared and per-modality private latent factors.
    private_weight : float
        Weight of each modality's private factors in the score, relative to the
        shared factors (1.0 = equal).
    noise : float
        Standard deviation of the additive feature noise.
    label_noise : float
        Standard deviation of the noise added to the score before squashing.
    missing_rate : float
        Probability that a modality is missing for a sample (at least one
        modality always stays present).
    variable_length : bool
        Draw a true length in ``[T/2, T]`` per sample and modality (else full length).
    samples_per_video : int
        Samples sharing a ``video`` group (and a ``speaker``: 2 videos per speaker).
    split_fractions : tuple of float
        Train / valid / test fractions of the ``standard`` split, made by whole videos.

    Returns
    -------
    MultimodalDataset
        Targets ``sentiment`` (regression in [-3, 3], 0.2 grid), ``polarity``
        (binary negative / non-negative) and ``sentiment3`` (negative / neutral /
        positive); groups ``video`` and ``speaker``; split ``standard``.
    """
    mods = dict(modalities or DEFAULT_SYNTHETIC_MODALITIES)
    if dominant not in mods:
        raise ConfigError(f"dominant={dominant!r} is not one of the modalities {list(mods)}")
    if not 0.0 <= missing_rate < 1.0:
        raise ConfigError(f"missing_rate={missing_rate}; use a probability in [0, 1)")
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, n_shared))
    priv = {m: rng.standard_normal((n, n_private)) for m in mods}
    w_s = rng.standard_normal(n_shared) / np.sqrt(n_shared)
    score = s @ w_s
    for m in mods:
        w_p = rng.standard_normal(n_private) / np.sqrt(n_private)
        score = score + private_weight * (priv[m] @ w_p) / np.sqrt(len(mods))
    score = score + label_noise * rng.standard_normal(n)
    score = score / score.std()
    y = np.round(3.0 * np.tanh(0.9 * score) * 5) / 5  # 0.2 grid, exact zeros occur
    y = np.clip(y, -3.0, 3.0).astype(np.float32)

    features, lengths, present = {}, {}, {}
    for m, (T, D, snr) in mods.items():
        gain = snr * (2.2 if m == dominant else 1.0)
        mix_s = rng.standard_normal((n_shared, D)) * gain
        mix_p = rng.standard_normal((n_private, D))
        z = s @ mix_s + priv[m] @ mix_p  # [n, D]
        t = np.arange(T)
        ln = rng.integers(max(1, T // 2), T + 1, size=n) if variable_length else np.full(n, T)
        centre = rng.uniform(0, 1, size=n) * (ln - 1)
        width = np.maximum(1.0, ln / 4)
        env = np.exp(-0.5 * ((t[None, :] - centre[:, None]) / width[:, None]) ** 2)  # [n, T]
        x = env[..., None] * z[:, None, :] + noise * rng.standard_normal((n, T, D))
        x[t[None, :] >= ln[:, None]] = 0.0
        features[m] = x.astype(np.float32)
        lengths[m] = ln
        present[m] = rng.uniform(size=n) >= missing_rate
    if missing_rate > 0:  # keep at least one modality per sample
        none = ~np.any(np.stack(list(present.values())), axis=0)
        present[dominant] = present[dominant] | none

    video = np.arange(n) // samples_per_video
    n_videos = int(video.max()) + 1
    order = rng.permutation(n_videos)
    cut1 = int(round(split_fractions[0] * n_videos))
    cut2 = cut1 + int(round(split_fractions[1] * n_videos))
    part = np.empty(n_videos, dtype=object)
    part[order[:cut1]], part[order[cut1:cut2]], part[order[cut2:]] = "train", "valid", "test"

    spec = DatasetSpec(
        name="synthetic",
        modalities=tuple(ModalitySpec(m, D, T) for m, (T, D, _) in mods.items()),
        targets=(
            TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0)),
            TargetSpec("polarity", "binary", class_names=("negative", "non-negative")),
            TargetSpec("sentiment3", "multiclass", class_names=("negative", "neutral", "positive")),
        ),
        group_keys=("video", "speaker"),
    )
    return MultimodalDataset(
        spec,
        features,
        targets={
            "sentiment": y,
            "polarity": (y >= 0).astype(np.int64),
            "sentiment3": (np.sign(np.round(y)) + 1).astype(np.int64),
        },
        ids=[f"syn{v:04d}_{i % samples_per_video}" for i, v in enumerate(video)],
        groups={"video": video.astype(str), "speaker": (video // 2).astype(str)},
        lengths=lengths,
        present=present,
        splits={"standard": part[video].astype(str)},
        info={"source": "synthetic", "seed": seed, "dominant": dominant},
    )


@DATASETS.register("synthetic")
def _synthetic(**p: Any) -> MultimodalDataset:
    mods = p.pop("modalities_spec", None)
    if mods is not None:
        p["modalities"] = {k: tuple(v) for k, v in dict(mods).items()}
    return make_synthetic_mer(**p)
