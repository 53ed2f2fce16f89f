"""The dataset registry: a name → loader, filled here for every built-in format."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodistill._registry import Registry
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.eeg_tables import load_eeg_bandpower
from emodistill.data.mmsa import load_mmsa
from emodistill.data.mosi_utterance import load_mosi_utterance
from emodistill.data.npz import load_npz
from emodistill.data.synthetic import make_synthetic_mer
from emodistill.errors import ConfigError

__all__ = ["DATASETS", "build_dataset", "DATA_DIR_ENV"]

#: environment variable naming a folder that holds the dataset folders
DATA_DIR_ENV = "EMODISTILL_DATA_DIR"

Loader = Callable[..., MultimodalDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def _root(params: dict[str, Any], subdir: str) -> str | None:
    root = params.pop("root", None)
    if root is None and os.environ.get(DATA_DIR_ENV):
        root = str(Path(os.environ[DATA_DIR_ENV]) / subdir)
    return root


@DATASETS.register("synthetic")
def _synthetic(**p: Any) -> MultimodalDataset:
    mods = p.pop("modalities_spec", None)
    if mods is not None:
        p["modalities"] = {k: tuple(v) for k, v in dict(mods).items()}
    return make_synthetic_mer(**p)


@DATASETS.register("mosi_utterance")
def _mosi_utterance(**p: Any) -> MultimodalDataset:
    return load_mosi_utterance(_root(p, "mosi_utterance"), **p)


@DATASETS.register("deap_bandpower")
def _deap_bandpower(**p: Any) -> MultimodalDataset:
    return load_eeg_bandpower(_root(p, "eeg_bandpower/DEAP"), name="deap_bandpower", **p)


@DATASETS.register("mahnob_bandpower")
def _mahnob_bandpower(**p: Any) -> MultimodalDataset:
    return load_eeg_bandpower(_root(p, "eeg_bandpower/MAHNOB-HCI"), name="mahnob_bandpower", **p)


for _name in ("mosi", "mosei", "sims"):
    DATASETS.register(_name)(
        lambda _n=_name, **p: load_mmsa(p.pop("path", None), name=_n, **p)
    )


@DATASETS.register("npz")
def _npz(**p: Any) -> MultimodalDataset:
    return load_npz(p.pop("path", None), **p)


#: keys of the ``dataset`` config section that the engine reads (not the loader)
ENGINE_KEYS = ("name", "target", "modalities", "normalize")


def build_dataset(cfg: dict[str, Any]) -> MultimodalDataset:
    """Load the dataset described by the ``dataset`` config section.

    ``name`` selects the loader; ``target``, ``modalities`` and ``normalize``
    are read by the engine; every other key is passed to the loader (a
    ``target`` is also passed to loaders that accept one).
    """
    cfg = dict(cfg)
    name = cfg.get("name")
    if not name:
        raise ConfigError(f"dataset.name is missing; valid datasets: {DATASETS.names()}")
    loader = DATASETS.get(name)
    params = {k: v for k, v in cfg.items() if k not in ENGINE_KEYS and v is not None}
    if name == "mosi_utterance" and cfg.get("target"):
        params["target"] = cfg["target"]
    try:
        return loader(**params)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ConfigError(f"dataset {name!r}: {e}") from None
        raise ConfigError(  # a value of the wrong type, e.g. dataset.n=abc
            f"dataset {name!r}: a dataset.* value has the wrong type ({e}); given: {params}"
        ) from None


@DATASETS.register("mosi_raw_features")
def _mosi_raw_features(**p: Any) -> MultimodalDataset:
    # MiniLM transcript embeddings + Poria openSMILE audio, standard split (no leakage);
    # imported lazily: it needs the optional 'text' extra
    from emodistill.features.mosi_raw import load_mosi_raw_features

    return load_mosi_raw_features(_root(p, "mosi_utterance"), **p)


# --- physiological signals (DEAP, MAHNOB-HCI, synthetic); windowed after the split -------
@DATASETS.register("synthetic_physio")
def _synthetic_physio(**p: Any) -> MultimodalDataset:
    from emodistill.data.physio_synthetic import make_synthetic_physio

    return make_synthetic_physio(**p)


@DATASETS.register("deap")
def _deap(**p: Any) -> MultimodalDataset:
    from emodistill.data.deap import load_deap

    return load_deap(_root(p, "deap"), **p)


@DATASETS.register("mahnob")
def _mahnob(**p: Any) -> MultimodalDataset:
    from emodistill.data.mahnob import load_mahnob

    return load_mahnob(_root(p, "mahnob"), **p)
