"""Evaluate a saved checkpoint on a split of its data, rebuilt from the stored config."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from emodistill.checkpoint import load_checkpoint
from emodistill.config import apply_overrides, to_container
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.parts import fold_parts
from emodistill.data.protocols import make_folds
from emodistill.data.registry import build_dataset
from emodistill.data.spec import DatasetSpec
from emodistill.errors import ConfigError, DataFormatError
from emodistill.metrics import metric_collection
from emodistill.training.context_data import context_plan

__all__ = ["evaluate_checkpoint"]

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    path: str | Path, *, split: str = "test", overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, float]:
    """Recompute the metrics of checkpoint ``path`` on ``split`` of its fold.

    The data and the fold are rebuilt from the config stored in the checkpoint
    (overrides such as ``dataset.root=NEW`` point to moved data); the stored
    normalisation statistics are applied, never refitted.
    """
    ck = load_checkpoint(path)
    cfg = apply_overrides(OmegaConf.create(ck.config), overrides, source="the stored config")
    ds = build_dataset(to_container(cfg.dataset))
    want = ck.meta.get("data_fingerprint")
    if want is not None and ds.fingerprint() != want:
        log.warning(
            "%s was trained on data with fingerprint %s but the data found now has %s: the "
            "fold indices may select other samples than at training time", path, want,
            ds.fingerprint(),
        )
    proto = to_container(cfg.protocol)
    name = proto.pop("name")
    for k in ("fold", "allow_leaky", "subject_norm"):
        proto.pop(k, None)
    folds = {f.name: f for f in make_folds(ds, name, **proto)}
    if ck.meta.get("fold") not in folds:
        raise ConfigError(
            f"{path}: checkpoint fold {ck.meta.get('fold')!r} is not a fold of protocol "
            f"{name!r} on this data (folds: {sorted(folds)}); was the protocol changed?"
        )
    fold = folds[ck.meta["fold"]]
    plan = context_plan(to_container(cfg.method), ds)
    # as at training time; the stored statistics are applied, never refitted
    part = fold_parts(
        ds, fold, (split,), normalize=ck.standardizer if ck.standardizer is not None else False,
        subject_norm=cfg.protocol.get("subject_norm", "none"),
        check=lambda p: _check_dims(path, ck.model.spec, p), transform=plan.transform,
    )[0][split]
    metrics = metric_collection(ck.target)
    with torch.no_grad():
        for batch in plan.loader(part, ck.target.name, batch_size=256, shuffle=False):
            metrics.update(ck.model(batch).preds, batch.target)
    return {k: float(v) for k, v in metrics.compute().items()}


def _check_dims(path: str | Path, trained: DatasetSpec, part: MultimodalDataset) -> None:
    """Refuse data whose feature dims differ from those the checkpoint was trained on."""
    source = part.info.get("source", part.spec.name)
    for ms in trained.modalities:
        have = part.spec.modality(ms.name)
        if have.dim != ms.dim:
            raise DataFormatError(
                f"{source}: modality {ms.name!r} has {have.dim} features per step (shape "
                f"{list(part.features[ms.name].shape)}), but checkpoint {path} was trained on "
                f"D = {ms.dim}; this is not the data the model was trained on"
            )
