"""Models: the shared contract, encoders, baselines and the published methods.

Importing this package imports every module in it, which registers each method
in :data:`METHODS` and its reusable blocks in :data:`BLOCKS`; a new method is one
new module here plus a config file.
"""

import importlib
import pkgutil

from emodistill.models.base import METHODS, MERModel, ModelOutput, build_method
from emodistill.models.blocks import BLOCKS, ENCODERS, build_block
from emodistill.models.encoders import build_encoder

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS", "BLOCKS", "ENCODERS", "MERModel", "ModelOutput", "build_method",
           "build_block", "build_encoder"]
