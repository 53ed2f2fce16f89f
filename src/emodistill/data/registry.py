"""The dataset registry: a name → loader, filled by the file formats themselves.

Each module of :mod:`emodistill.data.formats` registers its loader(s) with
``@DATASETS.register("name")`` when it is imported; importing :mod:`emodistill.data`
imports every format, as importing :mod:`emodistill.models` registers every
method. A new file format is one new module in ``data/formats/`` plus a config file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodistill._registry import Registry
from emodistill.data.dataset import MultimodalDataset
from emodistill.errors import ConfigError

__all__ = ["DATASETS", "build_dataset", "data_root", "DATA_DIR_ENV", "ENGINE_KEYS"]

#: environment variable naming a folder that holds the dataset folders
DATA_DIR_ENV = "EMODISTILL_DATA_DIR"

Loader = Callable[..., MultimodalDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def data_root(params: dict[str, Any], subdir: str) -> str | None:
    """Pop ``root`` from a loader's ``params``; default ``$EMODISTILL_DATA_DIR/<subdir>``.

    Parameters
    ----------
    params : dict
        The loader's keyword arguments (``root`` is removed from it).
    subdir : str
        The dataset's folder below ``$EMODISTILL_DATA_DIR``.

    Returns
    -------
    str or None
        The folder, or None when neither is set (the loader names what is missing).
    """
    root = params.pop("root", None)
    if root is None and os.environ.get(DATA_DIR_ENV):
        root = str(Path(os.environ[DATA_DIR_ENV]) / subdir)
    return root


#: keys of the ``dataset`` config section that the engine reads (not the loader)
ENGINE_KEYS = ("name", "target", "modalities", "normalize")


def build_dataset(cfg: dict[str, Any]) -> MultimodalDataset:
    """Load the dataset described by the ``dataset`` config section.

    ``name`` selects the loader; ``target``, ``modalities`` and ``normalize``
    are read by the engine; every other key is passed to the loader (a
    ``target`` is also passed to loaders marked ``takes_target = True``).
    """
    cfg = dict(cfg)
    name = cfg.get("name")
    if not name:
        raise ConfigError(f"dataset.name is missing; valid datasets: {DATASETS.names()}")
    loader = DATASETS.get(name)
    params = {k: v for k, v in cfg.items() if k not in ENGINE_KEYS and v is not None}
    if getattr(loader, "takes_target", False) and cfg.get("target"):
        params["target"] = cfg["target"]
    try:
        return loader(**params)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ConfigError(f"dataset {name!r}: {e}") from None
        raise ConfigError(  # a value of the wrong type, e.g. dataset.n=abc
            f"dataset {name!r}: a dataset.* value has the wrong type ({e}); given: {params}"
        ) from None
