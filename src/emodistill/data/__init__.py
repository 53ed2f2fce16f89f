"""Data contract, loaders for every supported format, protocols and normalisation."""

from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.normalize import Standardizer
from emodistill.data.protocols import PROTOCOLS, Fold, make_folds
from emodistill.data.registry import DATASETS, build_dataset
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec

__all__ = [
    "Batch",
    "MultimodalDataset",
    "Standardizer",
    "PROTOCOLS",
    "Fold",
    "make_folds",
    "DATASETS",
    "build_dataset",
    "DatasetSpec",
    "ModalitySpec",
    "TargetSpec",
]
