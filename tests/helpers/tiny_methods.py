"""Every registered method's config section, shrunk to tiny sizes (registry-driven tests)."""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

from emodistill.config import compose, list_configs, to_container
from emodistill.models import METHODS

__all__ = ["TINY", "method_config", "tiny", "accepts"]

#: size parameters shrunk wherever a method's config has them (nested sections too)
TINY = {
    "width": 8, "heads": 2, "layers": 1, "mem_layers": 1, "head_width": 8, "ff_width": 8,
    "homo_gd_width": 4, "hetero_gd_width": 4, "dict_atoms": 4, "dict_width": 8,
    "attention_width": 8, "kernel_size": 3, "stride": 2, "vector_tokens": 2,
    "dominant_probe_epochs": 1,
}


def tiny(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = tiny(v)
        elif k in TINY and (v is None or isinstance(v, int)) and not isinstance(v, bool):
            out[k] = TINY[k]
        else:
            out[k] = v
    return out


def accepts(cls: type, name: str) -> bool:
    return any(name in inspect.signature(k.__init__).parameters
               for k in cls.__mro__ if "__init__" in vars(k))


@functools.cache
def _config_section(name: str) -> dict[str, Any]:
    params = to_container(compose(method=name).method)
    assert params.pop("name") == name
    return params


def method_config(name: str, modality: str) -> dict[str, Any]:
    """The method section of its own config (tiny), or constructor defaults + tiny sizes."""
    cls = METHODS.get(name)
    if name in list_configs("method"):
        params = copy.deepcopy(_config_section(name))
    else:
        params = {k: v for k, v in TINY.items() if accepts(cls, k)}
    params = tiny(params)
    if accepts(cls, "modality") and params.get("modality") is None:
        params["modality"] = modality
    if "dominant" in params and params["dominant"] == "auto":
        params["dominant"] = "text"  # "auto" is resolved per fold by prepare_fold
    return params
