"""The optimiser factory, shared by the training engine and methods that build their own.

It lives below both :mod:`emodistill.training` and :mod:`emodistill.models` so that a
method with several optimisers (e.g. MKD's student and teacher) uses exactly the
engine's choice without importing the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from emodistill.errors import ConfigError

__all__ = ["make_optimizer", "apply_warmup", "OPTIMIZERS"]

#: the values of ``train.optimizer``
OPTIMIZERS = ("adamw", "adam", "sgd")


def make_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: dict[str, Any], *, lr: float | None = None
) -> torch.optim.Optimizer:
    """Build the optimiser named by ``cfg["optimizer"]`` (adamw | adam | sgd) over ``params``.

    Parameters
    ----------
    params : iterable of Parameter
        Parameters to optimise (those without ``requires_grad`` are skipped).
    cfg : dict
        The ``train`` config section (``optimizer``, ``lr``, ``weight_decay``).
    lr : float, optional
        Learning rate overriding ``cfg["lr"]``.

    Returns
    -------
    torch.optim.Optimizer
        AdamW / Adam with ``weight_decay``, or SGD with momentum 0.9; parameters
        tagged by :mod:`emodistill.models.text_encoder` get their own group.
    """
    params = [p for p in params if p.requires_grad]
    lr = float(cfg["lr"] if lr is None else lr)
    wd = float(cfg.get("weight_decay", 0.0))
    name = cfg.get("optimizer", "adamw")
    groups = _param_groups(params)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=wd)
    raise ConfigError(f"train.optimizer={name!r}; use adamw, adam or sgd")


def _param_groups(params: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
    """Split parameters by the group tag of :mod:`emodistill.models.text_encoder`.

    Untagged parameters form the default group (``train.lr``); tagged ones get
    their own ``lr`` (at the start of a warm-up: ``lr / warmup_steps``) and
    carry ``peak_lr`` and ``warmup_steps`` for :meth:`LitMER.on_train_batch_start`.
    """
    from emodistill.models.text_encoder import PARAM_GROUP_ATTR

    plain: list[torch.nn.Parameter] = []
    tagged: dict[int, dict[str, Any]] = {}
    for p in params:
        tag = getattr(p, PARAM_GROUP_ATTR, None)
        if tag is None:
            plain.append(p)
            continue
        g = tagged.setdefault(id(tag), {**tag, "params": []})
        g["params"].append(p)
    groups: list[dict[str, Any]] = [{"params": plain, "name": "default"}] if plain else []
    for g in tagged.values():
        warm = int(g.pop("warmup_steps", 0))
        g["peak_lr"] = float(g["lr"])
        g["warmup_steps"] = warm
        if warm > 0:
            g["lr"] = g["peak_lr"] / warm
        groups.append(g)
    return groups


def apply_warmup(optimizer: torch.optim.Optimizer, step: int) -> None:
    """Set the lr of warm-up groups for optimisation step ``step`` (0-based): linear to peak."""
    for g in optimizer.param_groups:
        warm = int(g.get("warmup_steps", 0) or 0)
        if warm > 0 and step < warm:
            g["lr"] = g["peak_lr"] * (step + 1) / warm
        elif warm > 0 and step == warm:
            g["lr"] = g["peak_lr"]
