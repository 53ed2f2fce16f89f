"""The engine's path for methods fitted in one call (no Lightning loop).

A method whose class sets ``fitted_in_process = True`` (the reference methods of
:mod:`emodistill.models.reference`) is fitted by :func:`fit_in_process` instead of the
Trainer. The fold is handled exactly like every other method's: the same split parts and
normalisation (done by the caller), model selection on the validation part with
``train.monitor`` (one row of ``metrics.csv`` per candidate setting, ``epoch`` = the
candidate's index), the test part read once with the selected fit, and the same files:
``metrics.csv``, ``test_metrics.json``, ``predictions.csv`` and ``model.pt``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from emodistill._fs import atomic_write
from emodistill.checkpoint import save_checkpoint
from emodistill.config import to_container
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.normalize import Standardizer
from emodistill.data.protocols import Fold
from emodistill.errors import ConfigError
from emodistill.metrics import metric_collection
from emodistill.models.base import MERModel
from emodistill.training.loaders import batch_loader

if TYPE_CHECKING:  # run.py imports this module lazily; no import cycle at run time
    from emodistill.training.run import FoldResult, Prepared

__all__ = ["Selection", "fits_in_process", "fit_in_process", "score_part", "select_candidate"]

log = logging.getLogger(__name__)


def fits_in_process(model: MERModel) -> bool:
    """Tell whether ``model`` is fitted by its own ``fit`` (no gradient loop)."""
    return bool(getattr(type(model), "fitted_in_process", False))


@torch.no_grad()
def score_part(model: MERModel, part: MultimodalDataset, target: str, prefix: str,
               batch_size: int = 1024) -> dict[str, float]:
    """Metrics of ``model`` on a dataset part, plus ``<prefix>task_loss`` (sample mean)."""
    model.eval()
    metrics = metric_collection(model.target, prefix=prefix, sync_on_compute=False)
    total, n = 0.0, 0
    for batch in batch_loader(part, target, batch_size=batch_size, shuffle=False):
        out = model(batch)
        metrics.update(out.preds, batch.target)
        total += float(model.task(out.preds, batch.target)) * batch.size
        n += batch.size
    res = {k: float(v) for k, v in metrics.compute().items()}
    res[f"{prefix}task_loss"] = total / max(n, 1)
    return res


@dataclass
class Selection:
    """The candidate :func:`select_candidate` kept.

    Attributes
    ----------
    index : int
        Position of the kept candidate in ``model.candidates()``.
    score : float
        Its validation ``monitor`` (``nan`` without a validation part).
    rows : list of dict
        One row per candidate: ``epoch`` (= index), ``choice/<key>``, ``train/*`` and
        ``val/*`` metrics.
    state : dict
        The kept fit's ``state_dict`` (a copy).
    """

    index: int
    score: float
    rows: list[dict[str, Any]]
    state: dict[str, Any]


def select_candidate(model: MERModel, train: MultimodalDataset, valid: MultimodalDataset, *,
                     target: str, seed: int, monitor: str, mode: str) -> Selection:
    """Fit each candidate of a fitted-in-process ``model`` on ``train``; keep the best on ``valid``.

    The selection of :func:`fit_in_process` (and of anything that chooses the way a
    reference row chooses, e.g. ``eeg_mlp``'s ``linear_c`` grid): ``monitor`` on the
    validation part, ``mode`` ``min`` or ``max``, ties keep the earlier (simpler-first)
    candidate. The test part is not an argument. ``model`` is left holding the kept fit.

    Raises
    ------
    ConfigError
        When ``monitor`` is not among the validation metrics of ``model``.
    """
    best: tuple[float, int, dict[str, Any]] | None = None
    rows: list[dict[str, Any]] = []
    has_valid = len(valid) > 0
    for i, choice in enumerate(model.candidates()):  # type: ignore[operator]
        model.fit(train, target=target, seed=seed, **choice)  # type: ignore[operator]
        row: dict[str, Any] = {"epoch": i}
        row |= {f"choice/{k}": v for k, v in choice.items()}
        row |= score_part(model, train, target, "train/")
        if has_valid:
            row |= score_part(model, valid, target, "val/")
        if has_valid and monitor not in row:
            raise ConfigError(
                f"train.monitor={monitor!r} is not computed for {type(model).__name__}; "
                f"available: {sorted(k for k in row if k.startswith('val/'))}")
        rows.append(row)
        score = float(row.get(monitor, math.nan))
        if math.isnan(score):
            score = math.inf if mode == "min" else -math.inf
        better = best is None or (score < best[0] if mode == "min" else score > best[0])
        if better:  # strict improvement: ties keep the earlier (simpler-first) candidate
            best = (score, i, copy.deepcopy(model.state_dict()))
    assert best is not None
    model.load_state_dict(best[2])
    return Selection(best[1], best[0] if has_valid else math.nan, rows, best[2])


def fit_in_process(
    prep: Prepared,
    fold: Fold,
    out: Path,
    parts: dict[str, MultimodalDataset],
    std: Standardizer | None,
    model: MERModel,
) -> FoldResult:
    """Fit every candidate of ``model`` on ``parts["train"]``, select on ``parts["valid"]``.

    Then test the selected fit once on ``parts["test"]`` and write the fold's files.
    """
    from emodistill.training.history import EpochHistory  # Lightning: only for this fit
    from emodistill.training.lit import LitMER
    from emodistill.training.run import (
        FoldResult,
        _test_in_process,
        _write_predictions,
        fold_fingerprint,
    )

    cfg, target = prep.cfg, prep.target
    monitor, mode = str(cfg.train.monitor), str(cfg.train.mode)
    seed = int(cfg.seed)
    candidates = model.candidates()  # type: ignore[operator]
    if cfg.train.get("selection", "best") == "last" and len(candidates) > 1:
        raise ConfigError(
            f"train.selection=last reads nothing from validation, but {type(model).__name__} "
            f"has {len(candidates)} candidate settings to choose from on it; give one value "
            "per hyper-parameter (e.g. method.C=0.01)")
    sel = select_candidate(model, parts["train"], parts["valid"], target=target.name,
                           seed=seed, monitor=monitor, mode=mode)
    history = EpochHistory()
    history.rows = sel.rows
    has_valid = len(parts["valid"]) > 0  # none: protocol.valid_fraction=0 (one candidate, checked)
    best = (sel.score, sel.index, sel.state)
    model.load_state_dict(best[2])
    model.eval()
    lit = LitMER(model, to_container(cfg.train))
    bs = int(cfg.train.batch_size)
    # the test part is read exactly once, with the fit selected on validation
    test = _test_in_process(lit, batch_loader(parts["test"], target.name, batch_size=bs,
                                              shuffle=False))
    out.mkdir(parents=True, exist_ok=True)
    history.write(out / "metrics.csv")
    _write_predictions(out / "predictions.csv", lit, parts["test"], target)
    atomic_write(out / "test_metrics.json", lambda f: json.dump(test, f, indent=2))
    sizes = {k: len(v) for k, v in parts.items()}
    if cfg.train.save_checkpoint:
        ds = prep.dataset
        save_checkpoint(
            out / "model.pt", model, config=to_container(cfg), standardizer=std,
            meta={"fold": fold.name, "test_metrics": test, "best_epoch": best[1],
                  "sizes": sizes, "data_fingerprint": ds.fingerprint(),
                  "fold_fingerprint": fold_fingerprint(ds, fold),
                  "selected": {k[7:]: v for k, v in history.rows[best[1]].items()
                               if k.startswith("choice/")}},
        )
    chosen = f"{monitor}={best[0]:.4f}" if has_valid else "no validation part"
    log.info("%s on %s: candidate %d of %d selected (%s), test %s", type(model).__name__,
             fold.name, best[1], len(history.rows), chosen, test)
    return FoldResult(fold.name, test, best[1], len(history.rows), sizes, out, model,
                      best[0] if has_valid else math.nan)
