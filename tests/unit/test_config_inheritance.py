"""Configs inherit within a group: an ablation is its parent plus the keys it changes."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from emodistill import config as config_mod
from emodistill.config import (
    GROUPS,
    list_configs,
    load_group,
    parent_of,
    replaced_sections,
    to_container,
)
from emodistill.errors import ConfigError, UnknownNameError

SNAPSHOT = Path(__file__).parent / "snapshots" / "configs_before_inheritance.json"
_ABSENT = object()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of nested mappings as ``{"a.b.c": value}`` (mappings merge, so compare leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


@functools.cache
def _resolved_json(group: str, name: str) -> str:
    return json.dumps(to_container(load_group(group, name)))


def _resolved(group: str, name: str) -> dict[str, Any]:
    """The file as compose reads it, as plain data (cached: OmegaConf merges are slow)."""
    return json.loads(_resolved_json(group, name))


def _own_keys(group: str, name: str) -> dict[str, Any]:
    """The leaves a file sets itself (its ``inherit`` key excluded)."""
    raw = yaml.safe_load((config_mod._config_dir() / group / f"{name}.yaml").read_text()) or {}
    raw.pop("inherit", None)
    return _flat(raw)


def _replaced(group: str, name: str, parent: str) -> list[str]:
    """Prefixes (``"method.student."``) of the parent's sections the file renames (replaces)."""
    raw = yaml.safe_load((config_mod._config_dir() / group / f"{name}.yaml").read_text()) or {}
    secs = replaced_sections(load_group(group, parent), config_mod.OmegaConf.create(raw))
    return [f"{s}." for s in secs]


def _under(key: str, prefixes: list[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


def _inheriting() -> list[tuple[str, str, str]]:
    return [(g, n, p) for g in GROUPS for n in list_configs(g)
            if (p := parent_of(g, n)) is not None]


def test_the_ablations_inherit():
    found = {f"{g}/{n}": p for g, n, p in _inheriting()}
    expected = {
        **{f"method/dmd_no_{a}": "dmd" for a in ("decoupling", "gd", "prior")},
        **{f"method/dhmd_no_{a}": "dhmd" for a in ("decoupling", "dict", "gd", "prior")},
        **{f"method/hkd_mer_{a}": "hkd_mer"
           for a in ("concat", "no_feature_kd", "no_kd", "no_label_kd")},
        "method/mkd_lookahead": "mkd", "method/mkd": "kd_feature",
        "method/kd_feature": "hinton_kd", "method/dhmd": "dmd",
        "method/dhmd_hierarchical": "dhmd",
        "method/hinton_kd_mlp": "hinton_kd", "method/hinton_kd_mlp_crossfit": "hinton_kd_mlp",
        "method/kd_feature_mlp": "hinton_kd_mlp",
        "method/kd_feature_mlp_crossfit": "kd_feature_mlp",
        "method/eeg_hinton_kd": "hinton_kd_mlp", "method/eeg_kd_feature": "eeg_hinton_kd",
        "method/eeg_kd_feature_hkd": "eeg_kd_feature",
        "method/eeg_mkd": "eeg_kd_feature", "method/eeg_mkd_same": "eeg_mkd",
        "method/eeg_mkd_lookahead": "eeg_mkd",
        "dataset/deap_de": "deap", "experiment/dmd_mosei": "dmd_mosi",
        "method/eeg_mlp_ens": "eeg_mlp", "method/eeg_hinton_kd_t1": "eeg_hinton_kd",
        "method/eeg_hinton_kd_crossfit": "eeg_hinton_kd",
        "method/eeg_hinton_kd_logistic": "eeg_hinton_kd", "method/eeg_mlp_skip": "eeg_mlp",
        "method/eeg_mlp_skip_c": "eeg_mlp_skip",
        "method/eeg_hinton_kd_logistic_crossfit": "eeg_hinton_kd_logistic",
        "method/eeg_hinton_kd_logistic_lin": "eeg_hinton_kd_logistic",
        "method/hinton_kd_text_views": "hinton_kd_mlp",
        "method/hinton_kd_text_views_crossfit": "hinton_kd_text_views",
        "method/eeg_hinton_kd_fm": "eeg_hinton_kd",
        "method/eeg_hinton_kd_logistic_fm": "eeg_hinton_kd_logistic",
        "method/eeg_mixup_placebo": "eeg_hinton_kd_logistic_fm",
    }
    assert found == expected


@pytest.mark.parametrize("group,name,parent", _inheriting(),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_child_equals_parent_except_where_its_file_says(group, name, parent):
    child = _flat(_resolved(group, name))
    base = _flat(_resolved(group, parent))
    own = _own_keys(group, name)
    # a section that names another method (a KD student) replaces the parent's: it is the
    # file's section, whole, and none of the parent's keys under it are kept
    renamed = _replaced(group, name, parent)
    assert "inherit" not in child
    # every key the file sets is resolved to the file's value ...
    assert {k: child[k] for k in own} == own
    assert {k for k in child if _under(k, renamed)} == {k for k in own if _under(k, renamed)}
    # ... and changes (or adds) something: no copied line that repeats the parent
    repeats = sorted(k for k, v in own.items()
                     if base.get(k, _ABSENT) == v and not _under(k, renamed))
    assert not repeats, f"{group}/{name}.yaml repeats its parent's values at {repeats}"
    # everything else is the parent's, and no other parent key is lost
    assert {k: v for k, v in child.items() if k not in own and not _under(k, renamed)} == {
        k: v for k, v in base.items() if k not in own and not _under(k, renamed)}


def test_resolved_configs_equal_the_files_before_inheritance():
    """Each converted file resolves to what the full copy held before (values and keys).

    The snapshot holds the files as loaded before the conversion. The expected
    config is today's parent with the changes the old child made to the old
    parent, so the test keeps meaning something when a parent later changes; while
    the parent is unchanged it is exactly the old file.
    """
    snap = json.loads(SNAPSHOT.read_text())["configs"]
    checked = 0
    for group, name, parent in _inheriting():
        if f"{group}/{name}" not in snap:  # written with inherit: from the start
            continue
        old_child, old_parent = snap[f"{group}/{name}"], snap[f"{group}/{parent}"]
        oc, op = _flat(old_child), _flat(old_parent)
        renamed = _replaced(group, name, parent)  # sections the child states whole
        assert not {k for k in set(op) - set(oc) if not _under(k, renamed)}, \
            "inheritance cannot remove a key"
        changes = {k: v for k, v in oc.items()
                   if op.get(k, _ABSENT) != v or _under(k, renamed)}
        new_parent = {k: v for k, v in _flat(_resolved(group, parent)).items()
                      if not _under(k, renamed)}
        new_child = _flat(_resolved(group, name))
        assert new_child == new_parent | changes, f"{group}/{name}"
        if new_parent == op:
            assert _resolved(group, name) == old_child
        checked += 1
    assert checked == 25  # eeg_mkd_heldout removed (its setting is eeg_mkd's default)


def _with_configs(monkeypatch, tmp_path: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(config_mod, "_config_dir", lambda: tmp_path)


def test_chains_merge_mappings_and_replace_lists(monkeypatch, tmp_path):
    _with_configs(monkeypatch, tmp_path, {
        "method/a.yaml": "method: {name: a, w: {x: 1, y: 2}, l: [1, 2], k: 1}\n",
        "method/b.yaml": "inherit: a\nmethod: {w: {y: 3}, l: [9]}\n",
        "method/c.yaml": "inherit: b\nmethod: {name: c, new: true}\n",
    })
    assert to_container(load_group("method", "c")) == {
        "method": {"name": "c", "w": {"x": 1, "y": 3}, "l": [9], "k": 1, "new": True}}
    assert parent_of("method", "c") == "b" and parent_of("method", "a") is None


def test_a_renamed_method_section_is_replaced_not_merged(monkeypatch, tmp_path):
    _with_configs(monkeypatch, tmp_path, {
        "method/a.yaml": "method: {name: a, student: {name: x, p: 1, q: 2}, t: {u: 1}}\n",
        "method/b.yaml": "inherit: a\nmethod: {student: {name: y, q: 3}}\n",
        "method/c.yaml": "inherit: a\nmethod: {student: {q: 3}}\n",
    })
    assert to_container(load_group("method", "b"))["method"] == {
        "name": "a", "student": {"name": "y", "q": 3}, "t": {"u": 1}}
    # the same name merges as any mapping
    assert to_container(load_group("method", "c"))["method"]["student"] == {
        "name": "x", "p": 1, "q": 3}


def test_unknown_parent_names_the_child_and_close_names(monkeypatch, tmp_path):
    _with_configs(monkeypatch, tmp_path, {
        "method/dmd.yaml": "method: {name: dmd}\n",
        "method/dmd_x.yaml": "inherit: dmdd\nmethod: {k: 1}\n",
    })
    with pytest.raises(UnknownNameError, match=r"'dmdd' \(inherited by method/dmd_x.yaml\)"
                                               r".*Did you mean 'dmd'"):
        load_group("method", "dmd_x")


def test_cycle_and_bad_parent_are_errors(monkeypatch, tmp_path):
    _with_configs(monkeypatch, tmp_path, {
        "method/a.yaml": "inherit: b\nmethod: {k: 1}\n",
        "method/b.yaml": "inherit: a\nmethod: {k: 2}\n",
        "method/c.yaml": "inherit: [a]\nmethod: {k: 2}\n",
    })
    with pytest.raises(ConfigError, match="cycle .method/a -> method/b -> method/a"):
        load_group("method", "a")
    with pytest.raises(ConfigError, match="must name one method config"):
        load_group("method", "c")
    with pytest.raises(UnknownNameError, match="unknown config group 'methods'"):
        load_group("methods", "a")
