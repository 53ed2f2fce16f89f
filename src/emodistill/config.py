"""Config composition: readable YAML files composed by name, plus dotted overrides.

Order of composition (later wins)::

    configs/base.yaml  <-  configs/dataset/<d>.yaml  <-  configs/method/<m>.yaml
                       <-  configs/experiment/<e>.yaml  <-  --config FILE  <-  a.b=c overrides

An experiment file may name its dataset and method under ``defaults``. The
composed config is in OmegaConf struct mode, so a misspelt override key is an
error listing the valid keys; prefix a key with ``+`` to add a new one.

OmegaConf is used directly rather than Hydra's ``@hydra.main`` because the CLI
has several sub-commands and the benchmark composes many configs in one
process; the file layout is Hydra-compatible.
"""

from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from emodistill.errors import ConfigError, UnknownNameError

__all__ = ["compose", "list_configs", "to_container", "GROUPS", "check_seed", "MAX_SEED"]

GROUPS = ("dataset", "method", "experiment")


def _config_dir() -> Path:
    return Path(str(resources.files("emodistill") / "configs"))


def list_configs(group: str) -> list[str]:
    """Names of the YAML files in config group ``group``."""
    return sorted(p.stem for p in (_config_dir() / group).glob("*.yaml"))


def _load_yaml(path: Path) -> DictConfig:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at top level")
    return OmegaConf.create(data)


def _load_group(group: str, name: str) -> DictConfig:
    path = _config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        valid = list_configs(group)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown {group} config {name!r}.{hint} Valid {group}s: {', '.join(valid)}"
        )
    return _load_yaml(path)


def compose(
    *,
    dataset: str | None = None,
    method: str | None = None,
    experiment: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> DictConfig:
    """Compose a run config.

    Parameters
    ----------
    dataset, method, experiment : str, optional
        Names of files in the config groups; ``dataset`` and ``method`` default
        to the experiment's ``defaults`` and then to ``base.yaml``'s.
    config_file : path, optional
        A user YAML merged after the named configs.
    overrides : list of str
        ``a.b=value`` (existing key) or ``+a.b=value`` (new key) strings.

    Returns
    -------
    DictConfig
        The resolved config, with ``dataset.config``/``method.config`` naming
        the files it came from.
    """
    base = _load_yaml(_config_dir() / "base.yaml")
    exp = _load_group("experiment", experiment) if experiment else OmegaConf.create({})
    defaults = OmegaConf.merge(base.pop("defaults", {}), exp.pop("defaults", {}))
    ds_name = dataset or defaults.get("dataset")
    m_name = method or defaults.get("method")
    parts = [base, _load_group("dataset", ds_name), _load_group("method", m_name), exp]
    if config_file is not None:
        parts.append(_load_yaml(Path(config_file)))
    cfg = OmegaConf.merge(*parts)
    cfg.experiment = experiment or "default"
    cfg.dataset_config, cfg.method_config = ds_name, m_name
    OmegaConf.set_struct(cfg, True)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-3)")
        key, value = item.split("=", 1)
        add = key.startswith("+")
        key = key.lstrip("+")
        parsed = _parse_value(value)
        try:
            if add:
                with _open_struct(cfg):
                    OmegaConf.update(cfg, key, parsed, merge=True, force_add=True)
            else:
                OmegaConf.select(cfg, key, throw_on_missing=True)
                if OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
                    raise ConfigKeyError(key)
                OmegaConf.update(cfg, key, parsed, merge=True)
        except (ConfigAttributeError, ConfigKeyError, OmegaConfBaseException):
            # list the keys of the deepest section of the path that exists
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            while parent and not isinstance(OmegaConf.select(cfg, parent), DictConfig):
                parent = parent.rsplit(".", 1)[0] if "." in parent else ""
            node = OmegaConf.select(cfg, parent) if parent else cfg
            valid = sorted(node.keys()) if isinstance(node, DictConfig) else []
            raise ConfigError(
                f"override {item!r}: no key {key!r} in the config. Valid keys"
                f"{' under ' + parent if parent else ''}: {valid}. Use +{key}=... to add one."
            ) from None
    return cfg


def _parse_value(text: str) -> Any:
    """YAML-parse an override value; also accept ``3e-4`` (YAML 1.1 wants ``3.0e-4``)."""
    if text == "":
        return None
    value = yaml.safe_load(text)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)  # only numerals: "nan", "inf" or "1_0" stay strings
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class _open_struct:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> None:
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, True)


def to_container(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Plain ``dict`` (resolved) of a config, for checkpoints and YAML dumps."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


#: seeds are non-negative integers below 2**32 (numpy's and Lightning's range)
MAX_SEED = 2**32 - 1


def check_seed(value: Any, *, what: str = "seed") -> int:
    """Return ``value`` as a seed, or raise :class:`ConfigError` naming it.

    A seed is a non-negative integer ``<= 2**32 - 1`` (an ``int``, or a string of
    digits); booleans, floats, negative numbers and words are refused.
    """
    v = value
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED:
        raise ConfigError(
            f"{what}={value!r}: a seed is an integer in [0, {MAX_SEED}] (2**32 - 1), e.g. "
            f"{what}=1111"
        )
    return v
