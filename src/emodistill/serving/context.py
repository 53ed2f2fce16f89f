"""Prediction with utterance context: a single utterance, or the utterances of videos.

A model trained with ``method.context`` (a context layer, or ``sequence``)
predicts an utterance alone as a context of one; given ``videos`` (one video
id for all the utterances, or one per utterance, each video's utterances
together and in utterance order) it uses the other utterances of the same
video as context, exactly as in training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from emodistill.data.batch import Batch, ContextLayout
from emodistill.data.context import sequence_inputs
from emodistill.errors import DataFormatError

__all__ = ["context_of", "video_lengths", "as_utterance_vectors", "contextual_batches"]


def context_of(config: dict[str, Any]) -> tuple[str, int | None]:
    """``(mode, window)`` of a run config's ``method.context`` (``none`` when absent)."""
    method = dict(config.get("method") or {})
    params = dict(method.get("context_params") or {})
    return str(method.get("context") or "none"), params.get("window")


def video_lengths(videos: str | Sequence[str], n: int) -> list[int]:
    """Utterances per video for ``n`` utterances given video ids (contiguous runs).

    Raises
    ------
    DataFormatError
        If the count differs from ``n`` or a video's utterances are not together.
    """
    if isinstance(videos, str):
        return [n]
    v = [str(x) for x in videos]
    if len(v) != n:
        raise DataFormatError(f"{len(v)} video ids given for {n} utterances; give one per "
                              "utterance, or one string for all")
    lengths, seen = [], set()
    for i, name in enumerate(v):
        if i and name == v[i - 1]:
            lengths[-1] += 1
            continue
        if name in seen:
            raise DataFormatError(
                f"the utterances of video {name!r} are not together (it appears again at "
                f"position {i}); give each video's utterances consecutively, in utterance order"
            )
        seen.add(name)
        lengths.append(1)
    return lengths


def as_utterance_vectors(inputs: dict[str, Any]) -> dict[str, Any]:
    """Sequence mode: ``[D]`` / ``[B, D]`` inputs become ``[B, 1, D]`` utterance vectors."""
    out = {}
    for k, x in inputs.items():
        if x is None:
            out[k] = None
            continue
        a = np.asarray(x, dtype=np.float32)
        out[k] = a[None, None] if a.ndim == 1 else a[:, None] if a.ndim == 2 else a
    return out


def contextual_batches(full: Batch, ids: list[str], lengths: list[int], *, batch_size: int,
                       mode: str, window: int | None, steps: dict[str, int]
                       ) -> Iterator[tuple[Batch, list[str]]]:
    """Split ``full`` (utterances in video order) into batches of whole videos.

    Parameters
    ----------
    full : Batch
        All utterances, normalised, ``[N, T, D]`` (``T = 1`` in sequence mode).
    ids : list of str
        ``[N]`` utterance ids.
    lengths : list of int
        Utterances per video, in order (sum ``N``).
    batch_size : int
        At most this many utterances per batch (a longer video is one batch).
    mode : str
        ``sequence`` turns each utterance into its video's sequence; any other
        mode attaches a :class:`~emodistill.data.batch.ContextLayout`.
    window : int, optional
        Sequence mode window.
    steps : dict of str to int
        Sequence mode: the model's sequence length per modality.
    """
    if sum(lengths) != full.size:
        raise DataFormatError(f"video lengths sum to {sum(lengths)} for {full.size} utterances")
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    groups: list[list[int]] = [[]]
    for v, n in enumerate(lengths):
        if groups[-1] and sum(lengths[j] for j in groups[-1]) + n > batch_size:
            groups.append([])
        groups[-1].append(v)
    for g in groups:
        lo, hi = int(starts[g[0]]), int(starts[g[-1] + 1])
        lens = [lengths[j] for j in g]
        sl = slice(lo, hi)
        inputs = {k: v[sl] for k, v in full.inputs.items()}
        mask = {k: v[sl] for k, v in full.mask.items()}
        present = {k: v[sl] for k, v in full.present.items()}
        layout = None
        if mode == "sequence":
            for k in inputs:
                inputs[k], mask[k] = sequence_inputs(inputs[k][:, 0], present[k], lens, window,
                                                     steps[k])
        else:
            layout = ContextLayout.from_lengths(lens)
        yield Batch(inputs, mask, present, target=full.target[sl],
                    index=torch.arange(lo, hi), context=layout), ids[lo:hi]
