"""Subject-wise feature normalisation, a named protocol option (``protocol.subject_norm``).

EEG features differ far more between people than between emotions; standardising each
subject's features with that subject's own statistics removes most of the difference. The
statistics use **features only, never labels**.

Modes
-----
``none``
    Off (default).
``transductive``
    Each subject is standardised with the mean and standard deviation of all of its
    samples in the fold (train, valid and test parts together), labels unread. Under LOSO
    the held-out subject's statistics come from its own unlabelled test trials: the model
    sees the test subject's feature distribution (not its labels) before predicting, which
    is what "transductive" means. Report it as such.
``train``
    Each subject is standardised with the statistics of its samples in the training part
    only (inductive). Every subject of the valid and test parts must have training samples
    (subject-dependent protocols); under LOSO it is an error.

Applied to each fold's parts after the split (and after windowing), before the usual
train-part standardisation (``dataset.normalize``), by
:func:`emodistill.data.parts.fold_parts`, which also writes ``<fold>/subject_norm.json``
(mode, statistics source, samples per subject; :func:`record_subject_norm`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emodistill._fs import atomic_write
from emodistill.data.dataset import MultimodalDataset
from emodistill.errors import ConfigError

__all__ = [
    "SUBJECT_NORM_MODES", "subject_normalize", "record_subject_norm", "check_subject_norm",
]

SUBJECT_NORM_MODES = ("none", "transductive", "train")
_PARTS = ("train", "valid", "test")


def check_subject_norm(mode: Any, ds: MultimodalDataset, group: str = "subject",
                       folds: list[Any] | None = None) -> str:
    """Validate ``protocol.subject_norm`` against the data (and folds); returns the mode."""
    mode = "none" if mode in (None, False) else str(mode)
    if mode not in SUBJECT_NORM_MODES:
        raise ConfigError(f"protocol.subject_norm={mode!r}; use one of "
                          f"{', '.join(SUBJECT_NORM_MODES)}")
    if mode != "none" and group not in ds.groups:
        raise ConfigError(f"protocol.subject_norm={mode}: {ds.spec.name!r} has no {group!r} "
                          f"group (groups: {sorted(ds.groups)})")
    for f in folds or [] if mode == "train" else []:
        g = ds.groups[group]
        missing = sorted(set(g[f.valid].tolist() + g[f.test].tolist()) - set(g[f.train].tolist()))
        if missing:
            raise ConfigError(
                f"protocol.subject_norm=train: in fold {f.name!r} subject(s) {missing[:5]} have "
                "no training samples to take statistics from (leave-one-subject-out?); use "
                "protocol.subject_norm=transductive (the subject's own unlabelled samples) or none")
    return mode


def _stats(x: Tensor, m: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-feature mean/std over the real steps of ``x [n, T, D]`` (mask ``[n, T]``)."""
    rows = x[m].double()
    if rows.shape[0] == 0:
        return torch.zeros(x.shape[-1], dtype=torch.float64), torch.ones(
            x.shape[-1], dtype=torch.float64)
    mu, sd = rows.mean(0), rows.std(0, unbiased=False)
    return mu, torch.where(sd < eps, torch.ones_like(sd), sd)


def subject_normalize(
    parts: dict[str, MultimodalDataset], *, mode: str, group: str = "subject", eps: float = 1e-6
) -> tuple[dict[str, MultimodalDataset], dict[str, Any]]:
    """Standardise every subject's features with that subject's own statistics.

    Parameters
    ----------
    parts : dict of str to MultimodalDataset
        The fold's ``train``, ``valid`` and ``test`` parts.
    mode : {"transductive", "train"}
        Where the statistics come from (see the module docstring). Only ``features``,
        ``mask`` and ``groups[group]`` are read; targets never are.
    group : str
        The group key naming subjects.

    Returns
    -------
    (dict, dict)
        The normalised parts, and a JSON-safe summary (samples used per subject).
    """
    if mode not in ("transductive", "train"):
        raise ConfigError(f"subject_normalize: mode={mode!r}; use transductive or train")
    source = list(_PARTS) if mode == "transductive" else ["train"]
    subjects = {k: np.asarray(parts[k].groups[group]) for k in _PARTS}
    known = set(np.unique(np.concatenate([subjects[k] for k in source])).tolist())
    for k in _PARTS:
        missing = sorted(set(np.unique(subjects[k]).tolist()) - known)
        if missing:
            raise ConfigError(
                f"protocol.subject_norm=train: subject(s) {missing[:5]} of the {k} part have no "
                "training samples to take statistics from (leave-one-subject-out?); use "
                "protocol.subject_norm=transductive (statistics from the subject's own "
                "unlabelled samples) or none")
    mods = list(parts["train"].features)
    out_feats: dict[str, dict[str, Tensor]] = {k: {} for k in _PARTS}
    used: dict[str, int] = {}
    for mod in mods:
        pooled_x = torch.cat([parts[k].features[mod].cpu() for k in source])
        pooled_m = torch.cat([parts[k].mask[mod].cpu() for k in source])
        pooled_s = np.concatenate([subjects[k] for k in source])
        stats = {}
        for s in np.unique(pooled_s):
            sel = torch.as_tensor(pooled_s == s)
            stats[s] = _stats(pooled_x[sel], pooled_m[sel], eps)
            used[str(s)] = int(sel.sum())
        for k in _PARTS:
            x = parts[k].features[mod]
            y = torch.empty_like(x)
            for s in np.unique(subjects[k]):
                sel = torch.as_tensor(subjects[k] == s, device=x.device)
                mu, sd = (t.to(device=x.device) for t in stats[s])
                y[sel] = ((x[sel].double() - mu) / sd).to(x.dtype)
            out_feats[k][mod] = y
    normed = {k: parts[k].with_features(out_feats[k]) for k in _PARTS}
    info = {
        "mode": mode, "group": group, "statistics_from": source,
        "transductive": mode == "transductive", "labels_used": False,
        "samples_per_subject": dict(sorted(used.items())),
    }
    return normed, info


def record_subject_norm(out: Path, info: dict[str, Any]) -> None:
    """Write a fold's subject-normalisation summary to ``out/subject_norm.json``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "subject_norm.json", lambda f: json.dump(info, f, indent=2))
