"""The engine side of utterance context: which loader, which parts, which spec.

``method.context`` selects the mode (``none``; a registered context layer such
as ``birnn`` or ``attention``, trained on batches of whole videos; or
``sequence``, utterances as the sequence axis), ``method.context_params.group``
the video group key (default ``video``) and ``method.context_params.window``
the sequence mode's window. See :mod:`emodistill.data.context`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from emodistill.data.context import (
    check_whole_videos,
    group_videos,
    sequence_steps,
    to_sequences,
)
from emodistill.data.dataset import MultimodalDataset
from emodistill.errors import ConfigError
from emodistill.training.loaders import batch_loader, video_batch_loader

__all__ = ["ContextPlan", "context_plan"]


class ContextPlan:
    """How a run feeds utterance context to its model.

    Parameters
    ----------
    mode : str
        ``none``, ``sequence`` or a context-layer name.
    group : str
        Group key naming each utterance's video.
    window : int, optional
        Sequence mode: other utterances on each side (``None`` = whole video).
    steps : int, optional
        Sequence mode: the fixed sequence length (from the whole dataset).
    """

    def __init__(self, mode: str, group: str = "video", window: int | None = None,
                 steps: int | None = None) -> None:
        self.mode, self.group, self.window, self.steps = mode, group, window, steps

    @property
    def active(self) -> bool:
        """Whether the run uses context at all."""
        return self.mode != "none"

    @property
    def video_batches(self) -> bool:
        """Whether batches are whole videos with a layout (context-layer modes)."""
        return self.mode not in ("none", "sequence")

    def check_parts(self, ds: MultimodalDataset, parts: dict[str, np.ndarray]) -> None:
        """Refuse a fold that splits a video (:class:`~emodistill.errors.VideoSplitError`)."""
        if self.active:
            check_whole_videos(ds, parts, self.group)
            group_videos(ds, self.group)  # ids must give an order (UtteranceOrderError)

    def transform(self, part: MultimodalDataset) -> MultimodalDataset:
        """Sequence mode: utterances → sequences of their video (after normalisation)."""
        if self.mode != "sequence":
            return part
        return to_sequences(part, self.group, self.window, self.steps)

    def loader(self, part: MultimodalDataset, target: str, *, batch_size: int, shuffle: bool,
               seed: int = 0, bucket_batches: int = 0) -> DataLoader:
        """Batches of utterances, or of whole videos packed up to ``batch_size`` utterances.

        ``bucket_batches`` (``train.length_buckets``) groups utterances of similar token
        length; it does not apply to video batches, whose composition is fixed by the videos.
        """
        if self.video_batches:
            return video_batch_loader(part, target, group_videos(part, self.group),
                                      batch_size=batch_size, shuffle=shuffle, seed=seed)
        return batch_loader(part, target, batch_size=batch_size, shuffle=shuffle, seed=seed,
                            bucket_batches=bucket_batches)


def context_plan(method_cfg: dict[str, Any], ds: MultimodalDataset | None = None) -> ContextPlan:
    """Read ``method.context`` / ``method.context_params`` (``ds`` fixes the sequence length)."""
    from emodistill.models.context import CONTEXT_LAYERS, CONTEXT_MODES

    mode = str(method_cfg.get("context") or "none")
    if mode not in CONTEXT_MODES and mode not in CONTEXT_LAYERS:
        raise ConfigError(
            f"method.context={mode!r}; use one of {[*CONTEXT_MODES, *CONTEXT_LAYERS.names()]}"
        )
    p = dict(method_cfg.get("context_params") or {})
    window = p.get("window")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or window < 0):
        raise ConfigError(f"method.context_params.window={window!r}; use an integer >= 0 or null")
    plan = ContextPlan(mode, str(p.get("group", "video")), window)
    if mode == "sequence" and ds is not None:
        plan.steps = sequence_steps([len(v) for v in group_videos(ds, plan.group)], window)
    return plan
