"""Evaluate a checkpoint on another dataset (e.g. DEAP-trained, tested on MAHNOB-HCI).

``emodistill evaluate CKPT -d mahnob_bandpower dataset.root=...`` runs
:func:`evaluate_on_dataset`: the target dataset is loaded from its own config, and the model
is applied to **all** of its samples (none were seen in training) when

* every modality of the model exists in the target data with the same shape,
* the feature layout of each modality is the same (for the EEG band-feature tables: the same
  bands, in the same band-major order, over the same electrodes in the same order; the
  loaders reorder both tables into the Geneva order), and
* the target has the same name, kind and class names (both tables: binary self-reported
  valence / arousal, 0 = low, 1 = high);

otherwise it refuses with a :class:`ConfigError` naming the mismatch. Normalisation: when the
checkpoint was trained with ``protocol.subject_norm``, each target subject is standardised
with its own features' statistics (transductive, labels unread), then the checkpoint's stored
standardiser is applied, as at training time. The result holds accuracy and F1 beside the
target dataset's majority class (its own most frequent class, predicted for every sample).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodistill.checkpoint import load_checkpoint
from emodistill.config import compose, to_container
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.montage import DEAP_32, resolve_montage
from emodistill.data.registry import build_dataset
from emodistill.data.subject_norm import subject_normalize
from emodistill.errors import ConfigError
from emodistill.metrics import metric_collection
from emodistill.training.loaders import batch_loader

__all__ = ["evaluate_on_dataset", "feature_layout"]

log = logging.getLogger(__name__)

_TABLES = ("deap_bandpower", "mahnob_bandpower")
_TABLE_BANDS = "theta, slow_alpha, alpha, beta, gamma"


def feature_layout(dataset_cfg: dict[str, Any]) -> dict[str, str] | None:
    """Describe each modality's feature layout of a dataset config, or None if unknown.

    Two datasets whose descriptions agree for a modality hold the same quantity in the
    same position of its feature vector.
    """
    name = dataset_cfg.get("name")
    if name not in _TABLES:
        return None
    mont = dataset_cfg.get("montages") or {}
    if isinstance(mont, str):
        mont = [mont]
    if not isinstance(mont, dict):
        mont = {str(m): m for m in mont}
    layout = dataset_cfg.get("layout", "flat")
    electrodes = {"eeg": list(DEAP_32)} | {k: resolve_montage(v) for k, v in mont.items()}
    return {m: f"EEG band power ({_TABLE_BANDS}), band-major, layout {layout}, electrodes "
               f"{', '.join(e)}" for m, e in electrodes.items()}


def _check_compatible(ck: Any, src_cfg: dict[str, Any], dst_cfg: dict[str, Any],
                      ds: MultimodalDataset) -> None:
    src_name, dst_name = src_cfg.get("name"), dst_cfg.get("name")
    for m in ck.model.modalities:
        have = ck.model.spec.modality(m)
        if m not in ds.spec.modality_names:
            raise ConfigError(
                f"{dst_name} has no modality {m!r} that the checkpoint reads (it has "
                f"{ds.spec.modality_names}); for a montage add dataset.montages=[{m}]")
        want = ds.spec.modality(m)
        if (have.dim, have.seq_len) != (want.dim, want.seq_len):
            raise ConfigError(
                f"modality {m!r}: the checkpoint reads [{have.seq_len} x {have.dim}] features, "
                f"{dst_name} holds [{want.seq_len} x {want.dim}]")
    if src_name != dst_name:
        a, b = feature_layout(src_cfg), feature_layout(dst_cfg)
        if a is None or b is None:
            raise ConfigError(
                f"cannot tell whether the features of {src_name!r} and {dst_name!r} mean the "
                f"same thing; cross-dataset evaluation is defined between {list(_TABLES)}")
        for m in ck.model.modalities:
            if a.get(m) != b.get(m):
                raise ConfigError(f"modality {m!r} has another feature layout in {dst_name} "
                                  f"({b.get(m)}) than at training on {src_name} ({a.get(m)})")
    t_src, t_dst = ck.target, ds.spec.target(ck.target.name) if ck.target.name in [
        t.name for t in ds.spec.targets] else None
    if t_dst is None:
        raise ConfigError(f"{dst_name} has no target {ck.target.name!r} (it has "
                          f"{[t.name for t in ds.spec.targets]})")
    if (t_src.kind, t_src.class_names) != (t_dst.kind, t_dst.class_names):
        raise ConfigError(
            f"target {t_src.name!r} means something else: {t_src.kind} {t_src.class_names} at "
            f"training, {t_dst.kind} {t_dst.class_names} in {dst_name}")


def evaluate_on_dataset(path: str | Path, dataset: str,
                        overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Evaluate checkpoint ``path`` on every sample of dataset config ``dataset``.

    Parameters
    ----------
    path : path
        A ``model.pt``.
    dataset : str
        A dataset config name (``mahnob_bandpower``...).
    overrides : list of str
        Dotted overrides of the target config (``dataset.root=...``).

    Returns
    -------
    dict
        ``acc``, ``f1_macro``, ``f1_weighted``, ``majority_acc``, ``majority_f1_macro``,
        ``n``, ``dataset``, ``trained_on``, ``subject_norm``.
    """
    ck = load_checkpoint(path)
    src_cfg = dict(ck.config.get("dataset", {}))
    cfg = compose(dataset=dataset, overrides=[f"dataset.target={ck.target.name}", *overrides])
    dst_cfg = to_container(cfg.dataset)
    user_montages = any(o.startswith("dataset.montages=") for o in overrides)
    if "montages" in dst_cfg and src_cfg.get("montages") and not user_montages:
        dst_cfg["montages"] = src_cfg["montages"]  # the same headset modalities
    ds = build_dataset(dict(dst_cfg))
    _check_compatible(ck, src_cfg, dst_cfg, ds)
    sn = (ck.config.get("protocol") or {}).get("subject_norm", "none") or "none"
    part = ds
    if sn != "none":  # every target sample is "test": its subject's own statistics
        part = subject_normalize({"train": ds, "valid": ds, "test": ds},
                                 mode="transductive")[0]["test"]
    if ck.standardizer is not None:
        part = ck.standardizer.transform(part)
    metrics = metric_collection(ck.target)
    with torch.no_grad():
        for batch in batch_loader(part, ck.target.name, batch_size=512, shuffle=False):
            metrics.update(ck.model(batch).preds, batch.target)
    res: dict[str, Any] = {k: float(v) for k, v in metrics.compute().items()}
    y = ds.targets[ck.target.name].cpu().numpy()
    if ck.target.kind != "regression":
        from sklearn.metrics import f1_score

        k = ck.target.num_classes
        maj = int(np.bincount(y, minlength=k).argmax())
        res["majority_acc"] = float((y == maj).mean())
        res["majority_f1_macro"] = float(f1_score(y, np.full_like(y, maj), average="macro",
                                                  labels=list(range(k)), zero_division=0))
    res |= {"n": len(ds), "dataset": dst_cfg.get("name"), "trained_on": src_cfg.get("name"),
            "subject_norm": sn}
    return res
