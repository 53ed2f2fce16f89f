"""File formats: one module per format, each registering its loader(s) in ``DATASETS``.

Importing this package imports every module in it (modules whose name starts
with ``_`` are helpers shared by formats), which registers each dataset name in
:data:`emodistill.data.registry.DATASETS`; :mod:`emodistill.data` imports it, so
``build_dataset`` and ``emodistill list`` always see every format. A new format is
one new module here plus a config file in ``configs/dataset/``.
"""

import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
