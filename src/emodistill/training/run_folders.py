"""Run folders on disk, without Lightning: checkpoint folder, saved config, resume checks.

The checkpoint folder's name and its removal, a run's saved config, and the checks before a
run is continued (``--resume``).

The Lightning callbacks that write the checkpoints are in
:mod:`emodistill.training.checkpointing`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from emodistill.errors import ConfigError

__all__ = ["CKPT_DIR", "remove_checkpoints", "load_run_config", "check_resumable"]

#: folder of a fold's training checkpoints
CKPT_DIR = "checkpoints"


def remove_checkpoints(fold_dir: Path) -> None:
    """Remove a finished fold's ``checkpoints/`` folder (its outputs are written)."""
    shutil.rmtree(Path(fold_dir) / CKPT_DIR, ignore_errors=True)


def load_run_config(run_dir: str | Path) -> DictConfig:
    """Read the resolved ``config.yaml`` of a run folder (struct mode, like a composed one)."""
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise ConfigError(f"--resume {str(run_dir)!r}: no such run folder")
    if not path.is_file():
        raise ConfigError(
            f"--resume {str(run_dir)!r}: no config.yaml there, so it is not a run folder (or "
            "the run was killed before it wrote its config: start it again without --resume)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run config must hold a mapping")
    cfg = OmegaConf.create(data)
    OmegaConf.set_struct(cfg, True)
    return cfg


def check_resumable(run_dir: Path, cfg: DictConfig, fingerprint: str) -> None:
    """Refuse to continue ``run_dir`` when it finished, or when config or data differ.

    Parameters
    ----------
    run_dir : Path
        The run folder to continue.
    cfg : DictConfig
        The config the continued run would use.
    fingerprint : str
        The fingerprint of the data the continued run would read.
    """
    if (run_dir / "results.json").is_file():
        raise ConfigError(f"--resume {str(run_dir)!r}: that run finished (results.json is "
                          "there); nothing to continue")
    saved = load_run_config(run_dir)
    if OmegaConf.to_yaml(saved, resolve=True) != OmegaConf.to_yaml(cfg, resolve=True):
        raise ConfigError(f"--resume {str(run_dir)!r}: the config differs from the run's "
                          "config.yaml; a run continues with the config it started with")
    data_json = run_dir / "data.json"
    if data_json.is_file():
        was = json.loads(data_json.read_text()).get("fingerprint")
        if was is not None and was != fingerprint:
            raise ConfigError(
                f"--resume {str(run_dir)!r}: the run started on data {was}, the data found now "
                f"is {fingerprint}; continuing would mix two datasets. Point dataset.root at "
                "the original data, or start a new run")
