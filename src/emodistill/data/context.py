"""Utterance context: group the utterances of a dataset by video, in utterance order.

Two ways to give a model the other utterances of the same video:

* **video batches** (``method.context=birnn|attention``): a sample is a whole
  video, its ordered utterances with their own targets; a batch of ``B`` videos
  keeps its utterances flat (``N`` of them) plus a
  :class:`~emodistill.data.batch.ContextLayout` (``[B, U]`` positions and mask),
  so methods, losses and metrics stay per utterance;
* **utterance sequences** (``method.context=sequence``): each utterance becomes
  a sequence of utterance vectors, the other utterances of its video (in order,
  at most ``window`` on each side) followed by the utterance itself as the last
  step, so a sequence model (DMD's temporal convolutions and cross-modal
  transformers, a GRU/transformer encoder) attends across the video's
  utterances and its last-step summary is the target utterance's.

Order comes from the ids: ``<video>_<n>`` with an integer utterance index
``n`` (CMU-MOSI's convention). Ids that give no order, a video split over two
parts of a fold and an empty transcript are named errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.spec import DatasetSpec, ModalitySpec
from emodistill.errors import (
    ConfigError,
    EmptyTranscriptError,
    UtteranceOrderError,
    VideoSplitError,
)

__all__ = [
    "utterance_positions",
    "group_videos",
    "check_whole_videos",
    "check_transcripts",
    "sequence_inputs",
    "sequence_steps",
    "to_sequences",
]


def utterance_positions(ids: Sequence[str] | np.ndarray, videos: Sequence[str] | np.ndarray
                        ) -> np.ndarray:
    """Utterance index of every id: the integer after the last ``_``.

    Parameters
    ----------
    ids, videos : sequence of str
        ``[N]`` utterance ids and their video ids.

    Returns
    -------
    np.ndarray
        ``[N]`` int64 utterance indices.

    Raises
    ------
    UtteranceOrderError
        If an id has no integer suffix, or two utterances of one video share one.
    """
    ids = np.asarray(ids, dtype=str)
    videos = np.asarray(videos, dtype=str)
    pos = np.empty(len(ids), dtype=np.int64)
    for i, u in enumerate(ids.tolist()):
        _, sep, tail = u.rpartition("_")
        if not sep or not tail.isdigit():
            raise UtteranceOrderError(
                f"utterance id {u!r} gives no order inside its video {str(videos[i])!r}: "
                "context needs ids '<video>_<utterance index>' (e.g. 'abc_3'); rename the ids "
                "or use method.context=none"
            )
        pos[i] = int(tail)
    seen: dict[tuple[str, int], str] = {}
    for u, v, p in zip(ids.tolist(), videos.tolist(), pos.tolist(), strict=True):
        if (v, p) in seen:
            raise UtteranceOrderError(
                f"video {v!r} has two utterances with index {p} ({seen[(v, p)]!r} and {u!r}): "
                "the order of its utterances is ambiguous; give each utterance its own index"
            )
        seen[(v, p)] = u
    return pos


def group_videos(ds: MultimodalDataset, key: str = "video") -> list[np.ndarray]:
    """Rows of each video of ``ds``, in utterance order; videos in order of first row.

    Parameters
    ----------
    ds : MultimodalDataset
        Utterance-level data with group ``key``.
    key : str
        Group key naming the video of each utterance.

    Returns
    -------
    list of np.ndarray
        One int64 array of row indices per video.
    """
    if key not in ds.groups:
        raise ConfigError(
            f"utterance context groups utterances by {key!r}, but dataset {ds.spec.name!r} has "
            f"no such group (groups: {sorted(ds.groups) or 'none'}); set "
            "method.context_params.group or use method.context=none"
        )
    videos = ds.groups[key].astype(str)
    pos = utterance_positions(ds.ids, videos)
    _, first, inverse = np.unique(videos, return_index=True, return_inverse=True)
    order = np.lexsort((pos, first[inverse]))  # by video (first appearance), then position
    bounds = np.flatnonzero(np.diff(first[inverse][order])) + 1
    return [a.astype(np.int64) for a in np.split(order, bounds)]


def check_whole_videos(ds: MultimodalDataset, parts: dict[str, np.ndarray],
                       key: str = "video") -> None:
    """Raise :class:`VideoSplitError` if a video's utterances fall in two parts.

    Parameters
    ----------
    ds : MultimodalDataset
        The data the row indices point into.
    parts : dict of str to np.ndarray
        Part name → row indices (e.g. a fold's train / valid / test).
    key : str
        Group key naming the video.
    """
    if key not in ds.groups:
        group_videos(ds, key)  # raises the named ConfigError
    g = ds.groups[key].astype(str)
    owner: dict[str, str] = {}
    for name, rows in parts.items():
        for v in np.unique(g[np.asarray(rows, dtype=np.int64)]).tolist():
            if v in owner and owner[v] != name:
                raise VideoSplitError(
                    f"video {v!r} has utterances in both {owner[v]} and {name}: with utterance "
                    "context its other utterances would leak across parts; split by whole "
                    f"videos (protocol.valid_group={key}, protocol group_kfold group={key})"
                )
            owner[v] = name


def check_transcripts(texts: Sequence[object], ids: Sequence[str] | None = None) -> None:
    """Raise :class:`EmptyTranscriptError` naming the first utterance without words.

    ``None``, NaN (an empty CSV cell as pandas reads it) and blank strings are empty.
    """
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            who = f"utterance {ids[i]!r}" if ids is not None else f"utterance {i}"
            raise EmptyTranscriptError(
                f"{who} has an empty transcript: as context it would stand for nothing said; "
                "give its transcript, or drop the utterance (and re-index its video)"
            )


def sequence_steps(lengths: Sequence[int], window: int | None = None) -> int:
    """Sequence length ``W`` that :func:`sequence_inputs` needs for videos of ``lengths``."""
    longest = max(int(n) for n in lengths)
    return longest if window is None else min(longest, 2 * int(window) + 1)


def sequence_inputs(x: Tensor, present: Tensor, lengths: Sequence[int] | Tensor,
                    window: int | None = None, steps: int | None = None
                    ) -> tuple[Tensor, Tensor]:
    """Turn consecutive videos of utterance vectors into one sequence per utterance.

    Parameters
    ----------
    x : Tensor
        ``[N, D]`` utterance vectors of consecutive videos (video by video, each
        in utterance order).
    present : Tensor
        ``[N]`` bool: the modality is present for that utterance.
    lengths : sequence of int
        Utterances per video (sum ``N``).
    window : int, optional
        At most this many other utterances on each side (default: the whole video).
    steps : int, optional
        Pad every sequence to this length ``W`` (default: the longest needed);
        fix it from the whole dataset so every part has the model's length.

    Returns
    -------
    seq : Tensor
        ``[N, W, D]``: the other utterances of the window in order, then the
        utterance itself at its last real step; zeros on padding.
    mask : Tensor
        ``[N, W]`` bool, True on real steps whose utterance has the modality.
    """
    ln = torch.as_tensor(lengths, dtype=torch.long).cpu()
    N = int(ln.sum())
    if x.shape[0] != N:
        raise ValueError(f"{x.shape[0]} utterances but video lengths sum to {N}")
    if window is not None and window < 0:
        raise ConfigError(f"context window={window}; use an integer >= 0 or null")
    starts = (torch.cumsum(ln, 0) - ln).tolist()
    rows: list[list[int]] = []
    for s, n in zip(starts, ln.tolist(), strict=True):
        for p in range(n):
            lo, hi = (0, n) if window is None else (max(0, p - window), min(n, p + window + 1))
            ctx = [s + q for q in range(lo, hi) if q != p] + [s + p]
            rows.append(ctx)
    W = max((len(r) for r in rows), default=1)  # no rows: an empty part (no valid part)
    if steps is not None:
        if steps < W:
            raise ConfigError(
                f"a video needs {W} sequence steps but steps={steps}; the model was built for "
                f"{steps}: give a smaller context window"
            )
        W = steps
    idx = torch.zeros(N, W, dtype=torch.long)
    real_t = torch.zeros(N, W, dtype=torch.bool)
    for i, r in enumerate(rows):
        idx[i, : len(r)] = torch.as_tensor(r)
        real_t[i, : len(r)] = True
    idx, real_t = idx.to(x.device), real_t.to(x.device)
    mask = real_t & present.to(torch.bool)[idx]
    seq = x[idx] * mask[..., None].to(x.dtype)
    return seq, mask


def to_sequences(ds: MultimodalDataset, key: str = "video", window: int | None = None,
                 steps: int | None = None) -> MultimodalDataset:
    """Return ``ds`` with each utterance as the sequence of its video's utterances.

    Rows, ids, targets, groups and splits are unchanged (one sample per utterance,
    so metrics are counted exactly as without context); every modality must be an
    utterance vector (``seq_len == 1``) and becomes ``[N, W, D]`` (see
    :func:`sequence_inputs`). Apply it to each part *after* the split and the
    normalisation, so no part sees another part's utterances.
    """
    long = [m.name for m in ds.spec.modalities if m.seq_len != 1]
    if long:
        raise ConfigError(
            f"method.context=sequence makes a sequence of utterance vectors, but {long} of "
            f"{ds.spec.name!r} are already sequences; use pooled features (e.g. "
            "dataset.text_level=pooled) or method.context=birnn|attention"
        )
    videos = group_videos(ds, key)
    perm = np.concatenate(videos) if videos else np.zeros(0, dtype=np.int64)
    lengths = [len(v) for v in videos]
    inv = torch.as_tensor(np.argsort(perm))
    pt = torch.as_tensor(perm)
    feats, masks = {}, {}
    W = 0
    for m in ds.spec.modality_names:
        seq, mk = sequence_inputs(ds.features[m][pt, 0], ds.present[m][pt], lengths, window,
                                  steps)
        feats[m], masks[m] = seq[inv], mk[inv]
        W = seq.shape[1]
    spec = DatasetSpec(
        name=ds.spec.name,
        modalities=tuple(ModalitySpec(ms.name, ms.dim, W) for ms in ds.spec.modalities),
        targets=ds.spec.targets,
        group_keys=ds.spec.group_keys,
    )
    out = ds.subset(np.arange(len(ds)), allow_empty=True)  # a copy
    out.spec = spec
    out.features, out.mask = feats, masks
    out.info = {**ds.info, "context": {"mode": "sequence", "group": key, "window": window,
                                       "steps": W}}
    out._fingerprint = None
    return out
