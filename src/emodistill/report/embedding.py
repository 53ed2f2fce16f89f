"""The one report step that needs a model: 2-D embeddings of the learned test features.

For each method of a :class:`~emodistill.report.reader.ReportData`, the first
run's first fold's ``model.pt`` is loaded, its test part is rebuilt from the
config stored in the checkpoint (``overrides`` such as ``dataset.root=PATH``
point to moved data), the model embeds it, and PCA or t-SNE projects the
features to 2-D. Imports torch, the models and the data loaders; the reader
and the renderer do not. ``build_report(..., embedding="none")`` (``emodistill
report --embedding none``) skips this step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodistill.report.reader import ReportData

__all__ = ["Embedding", "DataCache", "embed_fold", "compute_embeddings", "EmbeddingMethod"]

log = logging.getLogger(__name__)

EmbeddingMethod = Literal["pca", "tsne", "none"]


@dataclass
class Embedding:
    """2-D points of a fold's test part, ready to draw.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        The projected features of ``n`` test samples (at most ``max_points``).
    y : ndarray, shape (n,)
        Their true targets (class indices or values).
    categorical : bool
        Whether ``y`` are classes.
    labels : list of str, optional
        Class names, index ``i`` naming class ``i``.
    method : {"PCA", "t-SNE"}
        The projection used.
    caption : str
        What the figure shows (source, dimension, sample count, explained variance).
    fold : str
        The fold embedded.
    """

    points: np.ndarray
    y: np.ndarray
    categorical: bool
    labels: list[str] | None
    method: str
    caption: str
    fold: str


class DataCache:
    """Test parts rebuilt from stored configs; each dataset section is loaded once.

    Parameters
    ----------
    overrides : sequence of str
        ``key=value`` overrides of every stored config (the one override parser,
        :func:`emodistill.config.apply_overrides`).
    """

    def __init__(self, overrides: Sequence[str]) -> None:
        self.overrides = list(overrides)
        self.cache: dict[str, Any] = {}

    def test_part(self, ck_config: dict[str, Any], fold: str) -> Any:
        """The test part of ``fold`` as the model was tested, less the standardisation."""
        from omegaconf import OmegaConf

        from emodistill.config import apply_overrides, to_container
        from emodistill.data.parts import fold_parts
        from emodistill.data.protocols import make_folds
        from emodistill.data.registry import build_dataset

        cfg = apply_overrides(OmegaConf.create(ck_config), self.overrides,
                              source="the stored config")
        dcfg = to_container(cfg.dataset)
        key = json.dumps(dcfg, sort_keys=True, default=str)
        if key not in self.cache:
            self.cache[key] = build_dataset(dcfg)
        ds = self.cache[key]
        proto = to_container(cfg.protocol)
        name = proto.pop("name")
        subject_norm = proto.pop("subject_norm", None)
        for k in ("fold", "allow_leaky"):
            proto.pop(k, None)
        folds = {f.name: f for f in make_folds(ds, name, **proto)}
        # as the model was tested, less the standardisation (the predictor applies its own)
        return fold_parts(ds, folds[fold], ("test",), subject_norm=subject_norm)[0]["test"]


def embed_fold(fold_dir: Path, data: DataCache, method: EmbeddingMethod,
               max_points: int, seed: int = 0) -> Embedding:
    """Embed the test part of one fold with its ``model.pt`` and project it to 2-D.

    Parameters
    ----------
    fold_dir : Path
        A fold folder holding ``model.pt``.
    data : DataCache
        Where the test part is rebuilt (and cached across folds).
    method : {"pca", "tsne"}
        The projection (t-SNE needs more than 5 points; PCA otherwise).
    max_points : int
        At most this many test samples (a seeded random subset).
    seed : int
        Seed of the subset and of the projection.

    Returns
    -------
    Embedding
    """
    from emodistill.serving.predict import load

    pred = load(fold_dir / "model.pt")
    part = data.test_part(pred.config, str(pred.meta.get("fold", fold_dir.name)))
    feats, source = pred.embed(part, return_source=True)
    y = part.targets[pred.target.name].cpu().numpy()
    rng = np.random.default_rng(seed)
    if len(feats) > max_points:
        keep = np.sort(rng.choice(len(feats), max_points, replace=False))
        feats, y = feats[keep], y[keep]
    if method == "tsne" and len(feats) > 5:
        from sklearn.manifold import TSNE

        pts = TSNE(n_components=2, init="pca", random_state=seed,
                   perplexity=min(30.0, (len(feats) - 1) / 3)).fit_transform(feats)
        name, extra = "t-SNE", ""
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(feats)
        pts = pca.transform(feats)
        ev = pca.explained_variance_ratio_
        name, extra = "PCA", f"; explained variance {ev[0]:.0%} + {ev[1]:.0%}"
    what = {"fused": "fused representation", "features": "modality features (concatenated)",
            "outputs": "outputs"}[source]
    cap = (f"{name} of the learned {what} ({feats.shape[1]}-d) of {len(feats)} test samples, "
           f"coloured by the true {pred.target.name}{extra}.")
    return Embedding(pts, y, pred.target.kind != "regression",
                     list(pred.target.class_names or ()) or None, name, cap,
                     fold_dir.name)


def compute_embeddings(report: ReportData, method: EmbeddingMethod = "pca", *,
                       overrides: Sequence[str] = (), max_points: int = 2000
                       ) -> dict[str, Embedding | str]:
    """Embed the first fold of the first run of every method of ``report``.

    Parameters
    ----------
    report : ReportData
        What :func:`~emodistill.report.reader.read_report` read.
    method : {"pca", "tsne", "none"}
        The projection; ``"none"`` returns ``{}`` (nothing is loaded).
    overrides : sequence of str
        ``key=value`` overrides of the stored configs when rebuilding the test
        data (e.g. ``dataset.root=../shared/data/mosi_utterance``).
    max_points : int
        At most this many test samples per plot.

    Returns
    -------
    dict of str to (Embedding or str)
        Method label → its embedding, or the reason it was skipped (no
        ``model.pt``; data that could not be rebuilt). Methods without folds
        are absent.
    """
    if method == "none":
        return {}
    data = DataCache(overrides)
    out: dict[str, Embedding | str] = {}
    for label, runs in report.groups.items():
        if not runs[0].records:
            continue
        f0 = runs[0].records[0]
        if not f0.has_model:
            out[label] = "no model.pt (train.save_checkpoint=false): embedding skipped"
            continue
        try:
            out[label] = embed_fold(f0.path, data, method, max_points)
        except Exception as e:  # the report must not fail on a moved dataset
            log.warning("report: embedding of %s skipped: %s", label, e)
            out[label] = (f"embedding skipped: the test data could not be rebuilt from the "
                          f"stored config ({e}); rerun with e.g. dataset.root=PATH")
    return out
