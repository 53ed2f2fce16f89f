"""Knowledge-distillation building blocks: functional losses (:mod:`.losses`) and KD modules."""

from emodistill.distill.losses import (
    contrastive_alignment,
    feature_distance,
    soft_label_kd,
)

__all__ = ["soft_label_kd", "feature_distance", "contrastive_alignment"]
