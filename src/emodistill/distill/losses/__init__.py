"""Every loss of the package, as pure functions (one home per kind).

Methods compute their terms by calling these; modules hold only parameters.

========================  ==================================================
module                    losses
========================  ==================================================
:mod:`.task`              supervised task loss (all methods; DMD's per-modality heads)
:mod:`.kd`                soft-label KD, feature distances, InfoNCE alignment,
                          HKD-MER's feature-level KD
:mod:`.decoupling`        DMD's reconstruction, orthogonality and margin losses
:mod:`.graph`             DMD's graph-distillation (GD unit) terms
:mod:`.dictionary`        DHMD's dictionary contrast and activation divergence
========================  ==================================================
"""

from emodistill.distill.losses.decoupling import (
    margin_loss,
    margin_loss_loop,
    masked_mse,
    orthogonality_loss,
)
from emodistill.distill.losses.dictionary import activation_divergence, dictionary_contrastive
from emodistill.distill.losses.graph import edge_weighted_distance, pair_distance, prior_penalty
from emodistill.distill.losses.kd import (
    contrastive_alignment,
    feature_distance,
    feature_kd_loss,
    soft_label_kd,
)
from emodistill.distill.losses.task import present_task_loss, task_loss

__all__ = [
    "task_loss", "present_task_loss",
    "soft_label_kd", "feature_distance", "contrastive_alignment", "feature_kd_loss",
    "masked_mse", "orthogonality_loss", "margin_loss", "margin_loss_loop",
    "pair_distance", "edge_weighted_distance", "prior_penalty",
    "dictionary_contrastive", "activation_divergence",
]
