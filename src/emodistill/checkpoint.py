"""Self-describing checkpoints: weights plus everything needed to use them.

A checkpoint (``model.pt``) is a plain dict of tensors, strings and numbers,
loaded with ``torch.load(weights_only=True)`` (no arbitrary code). It holds the
resolved run config, the data spec, the target, the modalities, the
normalisation statistics fitted on the training part, the fold, the test
metrics, the data fingerprint and the package version, so that loading it
needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emodistill import __version__
from emodistill._fs import atomic_write
from emodistill.data.normalize import Standardizer
from emodistill.data.spec import DatasetSpec, TargetSpec
from emodistill.errors import DataFormatError, DataNotFoundError
from emodistill.models.base import MERModel, build_method

__all__ = ["save_checkpoint", "load_checkpoint", "LoadedCheckpoint", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path,
    model: MERModel,
    *,
    config: dict[str, Any],
    standardizer: Standardizer | None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its description to ``path`` atomically.

    Parameters
    ----------
    path : path
        Output file (conventionally ``model.pt``).
    model : MERModel
        The trained model.
    config : dict
        The resolved run config (plain dict).
    standardizer : Standardizer, optional
        Normalisation fitted on the training part.
    meta : dict, optional
        Extra JSON-safe facts (fold, metrics, fingerprint...).
    """
    method_cfg = dict(config["method"])
    payload = {
        "format": "emodistill-checkpoint",
        "format_version": FORMAT_VERSION,
        "emodistill_version": __version__,
        "torch_version": str(torch.__version__),
        "config": config,
        "method": method_cfg.pop("name"),
        "method_params": method_cfg,
        # the input signature: token-id modalities stay tokens (the text encoder is inside)
        "spec": getattr(model, "input_spec", model.spec).to_dict(),
        "target": {
            "name": model.target.name,
            "kind": model.target.kind,
            "value_range": list(model.target.value_range) if model.target.value_range else None,
            "class_names": list(model.target.class_names) if model.target.class_names else None,
        },
        "modalities": list(model.modalities),
        "normalizer": standardizer.to_dict() if standardizer is not None else None,
        "meta": meta or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_write(path, lambda f: torch.save(payload, f), mode="wb")


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded back into a ready-to-use model."""

    model: MERModel
    standardizer: Standardizer | None
    config: dict[str, Any]
    meta: dict[str, Any]
    payload: dict[str, Any]

    @property
    def target(self) -> TargetSpec:
        """The target the model predicts."""
        return self.model.target


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (safe: weights_only)."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"checkpoint {str(p)!r} does not exist")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        from emodistill.data._io import KIND_NAMES, describe_file

        kind = describe_file(p)
        is_what = "" if kind in ("zip", "pickle") else f" (it is {KIND_NAMES[kind]})"
        raise DataFormatError(
            f"{p}: not an emodistill checkpoint readable with weights_only=True{is_what} ({e})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != "emodistill-checkpoint":
        raise DataFormatError(f"{p}: not an emodistill checkpoint (no 'format' marker)")
    if payload["format_version"] > FORMAT_VERSION:
        raise DataFormatError(
            f"{p}: checkpoint format {payload['format_version']} is newer than this "
            f"emodistill ({__version__}) understands; upgrade emodistill"
        )
    import emodistill.models  # noqa: F401  (registers methods)

    spec = DatasetSpec.from_dict(payload["spec"])
    t = payload["target"]
    target = TargetSpec(t["name"], t["kind"],
                        value_range=tuple(t["value_range"]) if t["value_range"] else None,
                        class_names=tuple(t["class_names"]) if t["class_names"] else None)
    params = dict(payload["method_params"])
    params["modalities"] = payload["modalities"]
    if "teacher" in params:  # a deployed student runs without its teacher
        params["teacher"] = None
    model = build_method(payload["method"], spec=spec, target=target, params=params)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    norm = payload.get("normalizer")
    return LoadedCheckpoint(
        model=model,
        standardizer=Standardizer.from_dict(norm) if norm else None,
        config=payload["config"],
        meta=payload.get("meta", {}),
        payload=payload,
    )
