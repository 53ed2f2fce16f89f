"""Models: the shared contract, encoders, baselines and the published methods.

Importing this package registers every built-in method in :data:`METHODS`.
"""

from emodistill.models import baselines  # noqa: F401  (registers baselines)
from emodistill.models.base import METHODS, MERModel, ModelOutput, build_method
from emodistill.models.encoders import ENCODERS, build_encoder

__all__ = ["METHODS", "ENCODERS", "MERModel", "ModelOutput", "build_method", "build_encoder"]
