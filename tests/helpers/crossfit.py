"""A small cross-fitted teacher config (synthetic data) for the cross-fitting tests."""

from __future__ import annotations

from emodistill.config import compose

__all__ = ["crossfit_cfg"]


def _cfg(tmp_path, method="hinton_kd", *extra):
    return compose(dataset="synthetic", method=method, overrides=[
        "dataset.n=240", "+protocol.valid_group=video", "method.modality=audio",
        "method.student.name=unimodal", "method.teacher.method.name=feature_fusion",
        "method.teacher.crossfit=3", "train.max_epochs=1", "train.progress_bar=false",
        "train.save_checkpoint=false", f"output_dir={tmp_path}", *extra])


def _strip(cfg):
    """Keep only the params unimodal / feature_fusion accept (the yaml has physio ones)."""
    from omegaconf import OmegaConf

    cfg.method.student = OmegaConf.create({"name": "unimodal", "hidden": 8})
    cfg.method.teacher.method = OmegaConf.create({"name": "feature_fusion", "hidden": 8})
    return cfg


def crossfit_cfg(tmp_path, method="hinton_kd", *extra):
    """A composed config whose teacher is cross-fitted (k=3), student and teacher small."""
    return _strip(_cfg(tmp_path, method, *extra))
