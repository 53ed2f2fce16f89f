"""Resumable training: Lightning checkpoints inside the run folder.

While a fold trains, its folder holds::

    <fold>/checkpoints/last.ckpt   state at the start of the latest epoch
    <fold>/checkpoints/best.ckpt   the weights selected so far on validation

Both are full Lightning checkpoints (weights, optimiser and scheduler state,
early-stopping and selection state, the per-epoch history) and ``last.ckpt``
also holds the random-number states (Python, NumPy, torch, CUDA) and the state
of the generator that orders the training batches. ``last.ckpt`` is written at
the start of every epoch after the first, before anything of that epoch has
drawn a random number, so a run continued from it (``emodistill train --resume
RUN_DIR``) repeats exactly what an uninterrupted run would have done: on CPU
with the same seed the final metrics are equal. Files are written under a
temporary name and renamed, so a kill during a write leaves the previous
checkpoint intact. Once a fold has written its outputs (``fold_result.json``
last) its ``checkpoints/`` folder is removed; ``model.pt`` keeps the selected
weights. The folder's name, its removal and the checks before a run is continued are in
:mod:`emodistill.training.run_folders` (no Lightning import there).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["AtomicModelCheckpoint", "ResumeCheckpoint"]

#: the key under which :class:`ResumeCheckpoint` stores random-number states
_RNG_KEY = "emodistill_rng"


def _rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Every random-number state a training epoch draws from (tensors and ints only)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["data_order"] = generator.get_state()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "data_order" in state:
        generator.set_state(state["data_order"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def _atomic_save(trainer: L.Trainer, path: Path, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint`` under a temporary name, then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(str(tmp), weights_only)
    if trainer.is_global_zero:
        os.replace(tmp, path)


class AtomicModelCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` whose files are complete or absent (write, then rename)."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        _atomic_save(trainer, Path(filepath), self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            from weakref import proxy

            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class ResumeCheckpoint(L.Callback):
    """Write ``dirpath/last.ckpt`` at the start of every epoch after the first.

    At that point the previous epoch is complete (validation, early stopping,
    selection, scheduler step) and the next has not drawn a random number, so
    the checkpoint plus the random-number states it carries (and the state of
    ``generator``, which orders the training batches) let a resumed fit repeat
    the uninterrupted one exactly.

    Parameters
    ----------
    dirpath : Path
        The fold's ``checkpoints/`` folder.
    generator : torch.Generator, optional
        The training loader's shuffling generator.
    """

    def __init__(self, dirpath: Path, generator: torch.Generator | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.generator = generator
        self._resumed = False

    @property
    def last_path(self) -> Path:
        """Where the latest resumable state is written."""
        return self.dirpath / "last.ckpt"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        if self._resumed:  # the first epoch after a resume: the state of last.ckpt itself
            self._resumed = False
            return
        if trainer.current_epoch == 0:
            return
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        self._saving_last = True
        try:
            _atomic_save(trainer, self.last_path)
        finally:
            self._saving_last = False

    def on_save_checkpoint(  # noqa: D102
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[_RNG_KEY] = _rng_state(self.generator)
        if getattr(self, "_saving_last", False):
            # Lightning has counted the new epoch as "ready" before this hook; uncounted,
            # the state is that of a finished epoch, which Lightning resumes as a clean
            # start of the next one (no half-restarted loops)
            progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
            for counts in progress.values():
                counts["ready"] = counts["started"]

    def on_load_checkpoint(  # noqa: D102
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # restored here, not at the epoch start: Lightning creates the first training
        # iterator of a fit (drawing its base seed and the first permutation) before it
        self._resumed = True
        if _RNG_KEY in checkpoint:
            _set_rng_state(checkpoint[_RNG_KEY], self.generator)
        _rebase_checkpoint_paths(checkpoint, self.dirpath)


def _rebase_checkpoint_paths(checkpoint: dict[str, Any], dirpath: Path) -> None:
    """Point ModelCheckpoint states saved elsewhere (a moved run folder) at ``dirpath``.

    Without this Lightning drops the best score when the folder moved, and the
    continued run would select another epoch than the uninterrupted one.
    """
    new = os.path.realpath(dirpath)
    for state in checkpoint.get("callbacks", {}).values():
        old = state.get("dirpath") if isinstance(state, dict) else None
        if not old or old == new:
            continue

        def move(p: Any, old: str = old) -> Any:
            return os.path.join(new, os.path.relpath(p, old)) if isinstance(p, str) and p else p

        state["dirpath"] = new
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = move(state[key])
        if "best_k_models" in state:
            state["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
