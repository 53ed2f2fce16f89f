"""One override parser: compose, evaluate and the report read ``key=value`` the same way."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from emodistill.checkpoint import save_checkpoint
from emodistill.config import apply_overrides, compose, parse_value, to_container
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError
from emodistill.models import build_method

ITEMS = ["dataset.missing_rate=1e-1", "train.lr=3e-4", "dataset.target=", "run_name=x",
         "dataset.modalities=[text,audio]", "+protocol.k=5"]


def test_parse_value():
    assert parse_value("3e-4") == pytest.approx(3e-4) and isinstance(parse_value("3e-4"), float)
    assert parse_value("") is None and parse_value("null") is None
    assert parse_value("[a, 1]") == ["a", 1] and parse_value("true") is True
    assert parse_value("inf") == "inf" and parse_value("nan") == "nan"  # only numerals


def test_stored_config_gets_the_values_compose_gives():
    stored = OmegaConf.create(to_container(compose()))
    assert not OmegaConf.is_struct(stored)
    out = apply_overrides(stored, ITEMS, source="the stored config")
    assert out is stored and not OmegaConf.is_struct(stored)  # struct flag left as it was
    assert to_container(stored) == to_container(compose(overrides=ITEMS))
    assert stored.dataset.missing_rate == 0.1 and stored.protocol.k == 5
    with pytest.raises(ConfigError, match=r"no key 'dataset.nope' in the stored config\. "
                                          r"Valid keys under dataset: \[.*'missing_rate'"):
        apply_overrides(stored, ["dataset.nope=1"], source="the stored config")
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides(stored, ["dataset.n"])


def test_report_rebuilds_data_with_the_same_parser():
    from emodistill.report.embedding import DataCache

    stored = to_container(compose(overrides=["dataset.n=60"]))
    cache = DataCache(["dataset.missing_rate=2e-1"])  # plain YAML read this as a string
    part = cache.test_part(stored, "standard")
    (key,) = cache.cache
    assert '"missing_rate": 0.2' in key and len(part) > 0
    with pytest.raises(ConfigError, match="no key 'dataset.nope' in the stored config"):
        DataCache(["dataset.nope=1"]).test_part(stored, "standard")


def test_evaluate_uses_the_same_parser(tmp_path):
    from emodistill.training.evaluate import evaluate_checkpoint

    cfg = compose(overrides=["dataset.n=60", "dataset.normalize=false"])
    ds = build_dataset(to_container(cfg.dataset))
    params = to_container(cfg.method)
    name = params.pop("name")
    model = build_method(name, spec=ds.spec, target=ds.spec.target(None), params=params)
    path = save_checkpoint(tmp_path / "model.pt", model, config=to_container(cfg),
                           standardizer=None, meta={"fold": "standard"})
    with pytest.raises(ConfigError, match="no key 'dataset.nope' in the stored config"):
        evaluate_checkpoint(path, overrides=["dataset.nope=1"])
    # 5e-1 is a number (it was a string for YAML): the data rebuilds with half the rows missing
    assert "mae" in evaluate_checkpoint(path, overrides=["dataset.missing_rate=5e-1"])
