"""The data layer: the contract, the pipeline that turns data into a fold's parts, the formats.

* contract: :mod:`~emodistill.data.spec` (``DatasetSpec``), :mod:`~emodistill.data.dataset`
  (``MultimodalDataset``), :mod:`~emodistill.data.batch` (``Batch``);
* pipeline: :mod:`~emodistill.data.protocols` (folds), :mod:`~emodistill.data.parts`
  (fold → train/valid/test parts), :mod:`~emodistill.data.subject_norm`,
  :mod:`~emodistill.data.normalize`, :mod:`~emodistill.data.windowing`,
  :mod:`~emodistill.data.physio_features`, :mod:`~emodistill.data.context`,
  :mod:`~emodistill.data.tokens`, :mod:`~emodistill.data.montage`,
  :mod:`~emodistill.data.cache`;
* formats: :mod:`emodistill.data.formats`, one self-registering loader module per file
  format; :mod:`~emodistill.data.registry` holds ``DATASETS`` and ``build_dataset``.

Importing this package imports every format (which registers it), as importing
:mod:`emodistill.models` registers every method. Users' own data: ``save_npz`` /
``load_npz`` (the npz layout in the README).
"""

from emodistill.data import formats  # noqa: F401  (importing it registers every file format)
from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.formats.npz import load_npz, save_npz
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
    "load_npz",
    "save_npz",
    "DatasetSpec",
    "ModalitySpec",
    "TargetSpec",
]
