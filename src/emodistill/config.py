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
    named = [base, _load_group("dataset", ds_name), _load_group("method", m_name)]
    explicit = [exp] + ([_load_yaml(Path(config_file))] if config_file is not None else [])
    cfg = OmegaConf.merge(*named, *explicit)
    _renew_renamed_sections(cfg, OmegaConf.merge(*named), explicit, overrides)
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


def _method_sections(node: Any, path: str) -> list[str]:
    """Dotted paths of nested method sections (a mapping with ``name``) below ``path``."""
    out = []
    if isinstance(node, DictConfig):
        for k, v in node.items_ex(resolve=False):
            sub = f"{path}.{k}"
            if isinstance(v, DictConfig):
                if "name" in v:
                    out.append(sub)
                out += _method_sections(v, sub)
    return out


def _method_defaults(name: str) -> DictConfig:
    """Return the ``method`` section of ``configs/method/<name>.yaml`` if it defines ``name``."""
    path = _config_dir() / "method" / f"{name}.yaml"
    if path.is_file():
        section = _load_yaml(path).get("method")
        if isinstance(section, DictConfig) and section.get("name") == name:
            return section
    return OmegaConf.create({"name": name})


def _renew_renamed_sections(cfg: DictConfig, named: DictConfig, explicit: list[DictConfig],
                            overrides: list[str] | tuple[str, ...]) -> None:
    """Give a nested method whose name is changed (a KD student) its new defaults.

    ``method.student.name=unimodal`` (an override, the experiment or ``--config``)
    replaces the whole ``method.student`` section by ``unimodal``'s defaults
    (``configs/method/unimodal.yaml``, else just the name) plus the keys given for
    that section in the layer that changed the name and in later layers; the old
    student's parameters are dropped. The same holds for ``method.teacher.method``.
    """
    layers: list[tuple[DictConfig | None, dict[str, Any]]] = [(c, {}) for c in explicit]
    flat: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep:
            flat[key.lstrip("+")] = _parse_value(value)
    layers.append((None, flat))
    for path in _method_sections(named.get("method"), "method"):
        old = OmegaConf.select(named, f"{path}.name")
        changed_at, new = None, old
        for i, (layer, items) in enumerate(layers):
            if layer is not None:
                v = OmegaConf.select(layer, f"{path}.name", default=None)
            else:
                whole = items.get(path)
                v = items.get(f"{path}.name", whole.get("name") if isinstance(whole, dict)
                              else None)
            if v is not None and v != new:
                changed_at, new = i, v
        if changed_at is None or new == old:
            continue
        fresh = _method_defaults(str(new))
        for layer, _ in layers[changed_at:]:
            sub = OmegaConf.select(layer, path) if layer is not None else None
            if isinstance(sub, DictConfig):
                fresh = OmegaConf.merge(fresh, sub)
        OmegaConf.update(cfg, path, fresh, merge=False)


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
