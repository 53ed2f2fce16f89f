"""Small MMSA feature pickles with the exact real layout (see tests/unit/data/test_mmsa.py).

Layout (../shared/reference/dmd_mmsa.md §3): top-level keys train/valid/test; per split
``raw_text``, ``id`` ("<video>$_$<clip>"), ``text`` N×T×768 float32, ``text_bert`` N×3×T,
``audio`` N×T_a×D_a (real MOSI/MOSEI audio holds -inf), ``vision`` N×T_v×D_v,
``regression_labels``, ``annotations``, ``classification_labels``; unaligned files add
``audio_lengths`` / ``vision_lengths``.
"""

from __future__ import annotations

import pickle

import numpy as np

SIZES = {"train": 7, "valid": 3, "test": 4}
# name -> (T_text, (T_audio, D_audio), (T_vision, D_vision), aligned, label bound)
LAYOUTS = {
    "mosi_aligned": (50, (50, 5), (50, 20), True, 3.0),
    "mosi_unaligned": (50, (375, 5), (500, 20), False, 3.0),
    "sims_unaligned": (39, (400, 33), (55, 709), False, 1.0),
}


def make_split(rng, split, n, layout, n_inf=0):
    t_text, (ta, da), (tv, dv), aligned, bound = LAYOUTS[layout]
    vids = [f"vid{split}{i // 2}" for i in range(n)]
    y = np.round(rng.uniform(-bound, bound, n), 1).astype(np.float32)
    y[0] = 0.0  # exact zeros occur in MOSI
    tb = np.zeros((n, 3, t_text), dtype=np.float32)
    text_len = rng.integers(3, t_text + 1, n)
    tb[:, 0] = rng.integers(100, 30000, (n, t_text))
    tb[:, 1] = np.arange(t_text)[None] < text_len[:, None]
    audio = rng.standard_normal((n, ta, da)).astype(np.float32)
    flat = audio.reshape(-1)
    flat[rng.choice(flat.size, n_inf, replace=False)] = -np.inf
    d = {
        "raw_text": np.array([f"utterance {i}" for i in range(n)], dtype=object),
        "id": np.array([f"{v}$_${i}" for i, v in enumerate(vids)], dtype=object),
        "text": rng.standard_normal((n, t_text, 768)).astype(np.float32),
        "text_bert": tb,
        "audio": audio,
        "vision": rng.standard_normal((n, tv, dv)).astype(np.float32),
        "regression_labels": y,
        "annotations": np.array(
            ["Negative" if v < 0 else "Neutral" if v == 0 else "Positive" for v in y], dtype=object
        ),
        "classification_labels": np.sign(y).astype(np.float32) + 1,
    }
    if not aligned:
        d["audio_lengths"] = rng.integers(1, ta + 1, n)
        d["vision_lengths"] = rng.integers(1, tv + 1, n)
    return d


def make_mmsa(layout="mosi_aligned", seed=0, n_inf=0):
    rng = np.random.default_rng(seed)
    return {
        s: make_split(rng, s, n, layout, n_inf=n_inf if s == "train" else 0)
        for s, n in SIZES.items()
    }


def write(path, obj, protocol=4):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path
