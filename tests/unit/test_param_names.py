"""One vocabulary of size parameters; the former names keep working where users meet them."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import pytest
import torch
import yaml

from emodistill.checkpoint import load_checkpoint, save_checkpoint
from emodistill.config import compose, list_configs, load_group, to_container
from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError
from emodistill.models import METHODS, build_method
from emodistill.param_names import SIZE_ALIASES, new_key, rename_method_params, rename_section

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods" / "README.md"
REG = TargetSpec("y", "regression", value_range=(-3.0, 3.0))
SPEC = DatasetSpec(name="toy", modalities=(ModalitySpec("text", 6, 1), ModalitySpec("audio", 4, 1)),
                   targets=(REG,), group_keys=("video",))


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_no_config_file_and_no_constructor_uses_a_former_name():
    for name in list_configs("method") + list_configs("experiment"):
        group = "method" if name in list_configs("method") else "experiment"
        keys = {k.rsplit(".", 1)[-1] for k in _leaves(to_container(load_group(group, name)))}
        assert not keys & set(SIZE_ALIASES), f"{group}/{name}.yaml"
    for name in METHODS.names():
        for klass in METHODS.get(name).__mro__[:-1]:
            if "__init__" in vars(klass):
                params = set(inspect.signature(klass.__init__).parameters)
                assert not params & set(SIZE_ALIASES), f"{name}: {klass.__name__}"


def test_the_vocabulary_is_documented_in_one_place():
    text = DOC.read_text()
    for old, new in SIZE_ALIASES.items():
        assert re.search(rf"`{new}`.*`{old}`", text), f"{old} -> {new} missing from {DOC}"


def test_an_old_override_works_with_a_one_line_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="emodistill.config"):
        cfg = compose(method="late_fusion", overrides=["method.hidden=8",
                                                       "method.encoder_layers=1"])
    assert cfg.method.width == 8 and cfg.method.layers == 1 and "hidden" not in cfg.method
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and all("\n" not in m for m in msgs)
    assert "method.hidden is now method.width" in msgs[0]
    # nested sections and context layers too
    cfg = compose(method="hinton_kd", overrides=["method.student.depth=2",
                                                "method.teacher.method.head_hidden=4",
                                                "method.context=birnn",
                                                "+method.context_params.hidden=6"])
    assert cfg.method.student.layers == 2 and cfg.method.teacher.method.head_width == 4
    assert cfg.method.context_params.width == 6


def test_an_old_name_in_a_config_file_works_and_a_conflict_is_an_error(tmp_path, caplog):
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump({"method": {"d_model": 20, "num_heads": 4}}))
    with caplog.at_level(logging.WARNING, logger="emodistill.config"):
        cfg = compose(method="dmd", config_file=f)
    assert (cfg.method.width, cfg.method.heads) == (20, 4) and "d_model" not in cfg.method
    assert any("method.d_model is now method.width" in r.getMessage() for r in caplog.records)
    f.write_text(yaml.safe_dump({"method": {"d_model": 20, "width": 30}}))
    with pytest.raises(ConfigError, match=r"'d_model' is the former name of 'width'"):
        compose(method="dmd", config_file=f)


def test_rename_section_keeps_order_and_leaves_free_mappings_alone():
    sec = {"name": "hinton_kd", "hidden": 1, "loss_weights": {"hidden": 2},
           "student": {"name": "unimodal", "encoder_layers": 3},
           "teacher": {"train": {"depth": 4}, "method": {"name": "x", "ff": 5}}}
    new, renamed = rename_section(sec)
    assert list(new) == ["name", "width", "loss_weights", "student", "teacher"]
    assert new["loss_weights"] == {"hidden": 2}  # a free mapping, not a method section
    assert new["student"] == {"name": "unimodal", "layers": 3}
    assert new["teacher"] == {"train": {"depth": 4}, "method": {"name": "x", "ff_width": 5}}
    assert len(renamed) == 3 and "method.student.encoder_layers -> method.student.layers" in renamed
    assert new_key("method.teacher.method.num_heads") == "method.teacher.method.heads"
    assert new_key("train.hidden") is None and new_key("method.width") is None


def test_old_parameters_build_the_same_model():
    old = {"hidden": 8, "encoder_layers": 1, "attention_hidden": 4}
    torch.manual_seed(0)
    a = build_method("hkd_mer", spec=SPEC, target=REG, params={"dominant": "text", **old})
    torch.manual_seed(0)
    b = build_method("hkd_mer", spec=SPEC, target=REG,
                     params={"dominant": "text", **rename_method_params(old)})
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_checkpoint_with_the_former_names_loads(tmp_path):
    params = {"hidden": 8, "encoder_layers": 1, "modalities": ["text", "audio"]}
    model = build_method("late_fusion", spec=SPEC, target=REG, params=params)
    config = {"seed": 1, "method": {"name": "late_fusion", "hidden": 8, "encoder_layers": 1}}
    path = save_checkpoint(tmp_path / "model.pt", model, config=config, standardizer=None)
    raw = torch.load(path, weights_only=True)
    assert raw["method_params"]["hidden"] == 8  # stored under the former name
    ck = load_checkpoint(path)
    assert ck.model.width == 8
    x = {m: torch.randn(3, 1, d) for m, d in (("text", 6), ("audio", 4))}
    batch = Batch(inputs=x, mask={m: torch.ones(3, 1, dtype=torch.bool) for m in x},
                  present={m: torch.ones(3, dtype=torch.bool) for m in x},
                  target=torch.zeros(3), index=torch.arange(3))
    model.eval()
    torch.testing.assert_close(ck.model(batch).preds, model(batch).preds)
