"""Config composition: readable YAML files composed by name, plus dotted overrides.

Order of composition (later wins)::

    configs/base.yaml  <-  configs/dataset/<d>.yaml  <-  configs/method/<m>.yaml
                       <-  configs/experiment/<e>.yaml  <-  --config FILE  <-  a.b=c overrides

An experiment file may name its dataset and method under ``defaults``. The
composed config is in OmegaConf struct mode, so a misspelt override key is an
error listing the valid keys; prefix a key with ``+`` to add a new one.

A file may start from another file of its own group with ``inherit: <name>``
(e.g. ``method/dmd_no_gd.yaml`` is ``inherit: dmd`` plus the keys the ablation
changes). The parent is loaded first (itself possibly inheriting), the child
is merged over it (mappings merge key by key, lists and scalars are replaced),
and ``inherit`` is removed, so everything that reads a config sees the resolved
file. Keys a child adds come after its parent's keys. A nested method section
(a mapping with ``name``, e.g. a KD ``student``) to which the child gives another
``name`` is replaced by the child's section, not merged: the old method's
parameters are dropped, as for ``method.student.name=...`` in :func:`compose`.

Size parameters have one vocabulary (:mod:`emodistill.param_names`): a former
name (``method.hidden``) in an override, a ``--config`` file or a config group
file is applied under its new name (``method.width``) with a one-line
deprecation warning.

OmegaConf is used directly rather than Hydra's ``@hydra.main`` because the CLI
has several sub-commands and the benchmark composes many configs in one
process; the file layout is Hydra-compatible.
"""

from __future__ import annotations

import difflib
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from emodistill.errors import ConfigError, UnknownNameError
from emodistill.param_names import new_key, rename_section

log = logging.getLogger(__name__)

__all__ = ["compose", "list_configs", "load_group", "parent_of", "replaced_sections",
           "apply_overrides", "parse_value", "to_container", "GROUPS", "check_seed", "MAX_SEED",
           "split_top_level", "split_method_entries"]

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


INHERIT_KEY = "inherit"


def _load_group(group: str, name: str, _chain: tuple[str, ...] = ()) -> DictConfig:
    """Load ``configs/<group>/<name>.yaml`` with its ``inherit:`` chain resolved."""
    path = _config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        valid = list_configs(group)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        where = f" (inherited by {group}/{_chain[-1]}.yaml)" if _chain else ""
        raise UnknownNameError(
            f"unknown {group} config {name!r}{where}.{hint} Valid {group}s: {', '.join(valid)}"
        )
    cfg = _load_yaml(path)
    if INHERIT_KEY not in cfg:
        return cfg
    parent = cfg.pop(INHERIT_KEY)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(
            f"{path}: {INHERIT_KEY}: {parent!r} must name one {group} config, e.g. "
            f"{INHERIT_KEY}: {list_configs(group)[0]}"
        )
    chain = (*_chain, name)
    if parent in chain:
        cycle = " -> ".join(f"{group}/{n}" for n in (*chain, parent))
        raise ConfigError(f"{path}: {INHERIT_KEY} forms a cycle ({cycle}); remove one link")
    base = _load_group(group, parent, chain)
    for sec in replaced_sections(base, cfg):
        OmegaConf.update(base, sec, OmegaConf.select(cfg, sec), merge=False)
    return OmegaConf.merge(base, cfg)  # type: ignore[return-value]


def replaced_sections(parent: DictConfig, child: DictConfig) -> list[str]:
    """Dotted paths of the parent's nested method sections that ``child`` renames.

    A section is a mapping with a ``name`` below ``method`` (a KD ``student``, a
    ``teacher.method``); ``child`` replaces it when it sets another ``name`` there.
    """
    out = []
    for sec in _method_sections(parent.get("method"), "method"):
        new = OmegaConf.select(child, f"{sec}.name", default=None)
        if new is not None and new != OmegaConf.select(parent, f"{sec}.name"):
            out.append(sec)
    return out


def load_group(group: str, name: str) -> DictConfig:
    """One config file of ``group`` as :func:`compose` uses it (``inherit:`` resolved).

    Parameters
    ----------
    group : {"dataset", "method", "experiment"}
        The config group.
    name : str
        File name without ``.yaml``.

    Returns
    -------
    DictConfig
        The file's mapping merged over its parent's (recursively); no ``inherit`` key.
    """
    if group not in GROUPS:
        raise UnknownNameError(f"unknown config group {group!r}; valid: {', '.join(GROUPS)}")
    return _load_group(group, name)


def parent_of(group: str, name: str) -> str | None:
    """Return the ``inherit:`` parent named by ``configs/<group>/<name>.yaml`` itself, or None."""
    path = _config_dir() / group / f"{name}.yaml"
    raw = _load_yaml(path) if path.is_file() else {}
    parent = raw.get(INHERIT_KEY)
    return str(parent) if parent is not None else None


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
    named = [base, _load_group("dataset", ds_name),
             _renamed(_load_group("method", m_name), f"method/{m_name}.yaml")]
    explicit = [_renamed(exp, f"experiment/{experiment}.yaml")]
    if config_file is not None:
        explicit.append(_renamed(_load_yaml(Path(config_file)), str(config_file)))
    cfg = OmegaConf.merge(*named, *explicit)
    _renew_renamed_sections(cfg, OmegaConf.merge(*named), explicit, overrides)
    cfg.experiment = experiment or "default"
    cfg.dataset_config, cfg.method_config = ds_name, m_name
    OmegaConf.set_struct(cfg, True)
    apply_overrides(cfg, overrides)
    return cfg


def _deprecated(old: str, new: str, where: str) -> None:
    log.warning("%s: %s is now %s (the former name still works; please rename it)",
                where, old, new)


def _renamed(layer: DictConfig, where: str) -> DictConfig:
    """``layer`` with the former size names of its method section renamed (with a warning)."""
    section = layer.get("method")
    if not isinstance(section, DictConfig):
        return layer
    plain = OmegaConf.to_container(section, resolve=False)
    new, renamed = rename_section(plain)  # type: ignore[arg-type]
    if not renamed:
        return layer
    for item in renamed:
        old, _, nk = item.partition(" -> ")
        _deprecated(old, nk, where)
    layer = layer.copy()
    layer.method = OmegaConf.create(new)
    return layer


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
        section = _renamed(_load_group("method", name),  # inherit: resolved
                           f"method/{name}.yaml").get("method")
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
            flat[key.lstrip("+")] = parse_value(value)
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


def apply_overrides(
    cfg: DictConfig, overrides: list[str] | tuple[str, ...], *, source: str = "the config"
) -> DictConfig:
    """Apply dotted ``key=value`` overrides to ``cfg`` in place (the one override parser).

    Used by :func:`compose` and by everything that rebuilds data from a stored
    config (``evaluate``, the report), so a value means the same everywhere.

    Parameters
    ----------
    cfg : DictConfig
        The config to change; its struct flag is left as it was.
    overrides : list of str
        ``a.b=value`` changes an existing key, ``+a.b=value`` adds one. Values are
        parsed by :func:`parse_value` (YAML, plus ``3e-4`` as a float; empty = null).
    source : str
        How error messages name ``cfg`` (e.g. ``"the stored config"``).

    Returns
    -------
    DictConfig
        ``cfg`` itself.

    Raises
    ------
    ConfigError
        An item without ``=``, or a key that is not in ``cfg`` (the message lists
        the valid keys of the deepest existing section and suggests ``+``).
    """
    struct = OmegaConf.is_struct(cfg)
    OmegaConf.set_struct(cfg, True)
    try:
        for item in overrides:
            _apply_one(cfg, item, source)
    finally:
        OmegaConf.set_struct(cfg, struct)
    return cfg


def _apply_one(cfg: DictConfig, item: str, source: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-3)")
    key, value = item.split("=", 1)
    add = key.startswith("+")
    key = key.lstrip("+")
    parsed = parse_value(value)
    renamed = new_key(key)
    if renamed is not None and OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
        _deprecated(key, renamed, f"override {item!r}")
        key = renamed
    try:
        if add:
            with _open_struct(cfg):
                OmegaConf.update(cfg, key, parsed, merge=True, force_add=True)
        else:
            OmegaConf.select(cfg, key, throw_on_missing=True)
            current = OmegaConf.select(cfg, key, default="__absent__")
            if current == "__absent__":
                raise ConfigKeyError(key)
            # a mapping merges into a mapping; anything else (a mapping in place of a list,
            # e.g. dataset.montages={mine: [Fz, Cz]} over []) replaces the value
            OmegaConf.update(cfg, key, parsed, merge=isinstance(current, DictConfig))
    except (ConfigAttributeError, ConfigKeyError, OmegaConfBaseException):
        # list the keys of the deepest section of the path that exists
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        while parent and not isinstance(OmegaConf.select(cfg, parent), DictConfig):
            parent = parent.rsplit(".", 1)[0] if "." in parent else ""
        node = OmegaConf.select(cfg, parent) if parent else cfg
        valid = sorted(node.keys()) if isinstance(node, DictConfig) else []
        raise ConfigError(
            f"override {item!r}: no key {key!r} in {source}. Valid keys"
            f"{' under ' + parent if parent else ''}: {valid}. Use +{key}=... to add one."
        ) from None


def parse_value(text: str) -> Any:
    """YAML-parse an override value; also accept ``3e-4`` (YAML 1.1 wants ``3.0e-4``).

    ``""`` is None; only numerals become floats (``"nan"``, ``"inf"``, ``"1_0"`` stay strings).
    """
    if text == "":
        return None
    value = yaml.safe_load(text)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


_parse_value = parse_value  # the former private name
_ABSENT = object()


_OPEN, _CLOSE = "([{", ")]}"


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` on ``sep`` outside brackets and quotes.

    ``"a=1,b=[1,2],c='x,y'"`` → ``["a=1", "b=[1,2]", "c='x,y'"]``: a comma inside
    ``[...]``, ``{...}``, ``(...)`` or a quoted string (a quote that starts a value)
    belongs to its value. Items
    are stripped; empty items are kept (the caller decides whether they are errors).

    Raises
    ------
    ConfigError
        Unbalanced brackets or an unclosed quote (the message shows ``text``).
    """
    items: list[str] = []
    depth: list[str] = []
    quote: str | None = None
    cur: list[str] = []
    for ch in str(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"" and "".join(cur).rstrip()[-1:] in ("", *"=:,[{("):
            quote = ch  # a quote opens only where a value starts (``it's`` is a word)
        elif ch in _OPEN:
            depth.append(_CLOSE[_OPEN.index(ch)])
        elif ch in _CLOSE:
            if not depth or depth.pop() != ch:
                raise ConfigError(f"{text!r}: unbalanced {ch!r}; close every bracket it opens")
        elif ch == sep and not depth:
            items.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        missing = quote or depth[-1]
        raise ConfigError(f"{text!r}: {missing!r} is never closed")
    items.append("".join(cur).strip())
    return items


_KEY_VALUE = re.compile(r"\+?[A-Za-z_][\w.]*=")


def split_method_entries(text: str) -> list[str]:
    """Split a ``-m`` list of method entries: ``"unimodal,late_fusion:aux_weight=0.5,dropout=0.1"``.

    Entries are ``NAME`` or ``NAME:key=value,key=value,...`` separated by commas.
    A comma-separated item that looks like ``key=value`` continues the overrides
    of the entry before it; any other item starts a new entry. Commas inside
    brackets or quotes never split (``late_fusion:hidden_sizes=[8,16]``).

    Returns
    -------
    list of str
        One ``NAME`` or ``NAME:k=v,...`` string per method entry.

    Raises
    ------
    ConfigError
        An empty item, or a ``key=value`` with no ``NAME:`` entry before it.
    """
    entries: list[str] = []
    for item in split_top_level(text):
        if not item:
            continue  # "a,,b" and a trailing comma: as before, ignored
        if _KEY_VALUE.match(item):
            if not entries or ":" not in entries[-1]:
                name = entries[-1] if entries else "late_fusion"
                where = f"after {entries[-1]!r}" if entries else "first"
                raise ConfigError(
                    f"-m {text!r}: {item!r} comes {where} without a method; overrides follow "
                    f"the method's name and a colon, e.g. {name}:{item}")
            entries[-1] += f",{item}"
        else:
            entries.append(item)
    return entries


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
