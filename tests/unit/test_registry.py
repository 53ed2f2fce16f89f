"""The one registry per kind, and the names the configs refer to."""

from __future__ import annotations

import pytest

from emodistill._registry import Registry
from emodistill.config import compose, list_configs
from emodistill.data.protocols import PROTOCOLS
from emodistill.data.registry import DATASETS, build_dataset
from emodistill.errors import ConfigError, UnknownNameError
from emodistill.models import ENCODERS, METHODS, build_method


def test_register_get_and_listing():
    reg: Registry[object] = Registry("widget")

    @reg.register("beta")
    def beta():
        return 2

    reg.register("alpha")(int)
    assert reg.get("beta") is beta and reg.get("alpha") is int
    assert reg.names() == ["alpha", "beta"] == list(reg)
    assert "alpha" in reg and "gamma" not in reg and len(reg) == 2
    reg.register("alpha")(int)  # re-registering the same object is harmless
    with pytest.raises(ValueError, match="widget 'alpha' is registered twice"):
        reg.register("alpha")(float)


def test_unknown_name_lists_valid_names_and_suggests():
    reg: Registry[int] = Registry("widget")
    for n in ("late_fusion", "early_fusion"):
        reg.register(n)(1)
    with pytest.raises(UnknownNameError) as e:
        reg.get("late_fuson")
    msg = str(e.value)
    assert msg == ("unknown widget 'late_fuson'. Did you mean 'late_fusion'? "
                   "Valid widgets: early_fusion, late_fusion.")
    assert isinstance(e.value, KeyError)  # generic handlers keep working
    with pytest.raises(UnknownNameError, match=r"'zzz'\. Valid widgets"):
        reg.get("zzz")
    with pytest.raises(UnknownNameError, match=r"\(none\)"):
        Registry("empty").get("x")


def test_global_registries_are_filled():
    assert {"unimodal", "early_fusion", "feature_fusion", "late_fusion"} <= set(METHODS.names())
    assert {"synthetic", "mosi", "mosei", "sims", "mosi_utterance", "deap_bandpower",
            "mahnob_bandpower", "npz"} <= set(DATASETS.names())
    assert {"split", "group_kfold", "subject_dependent", "loso"} <= set(PROTOCOLS.names())
    assert {"mlp", "conv", "transformer"} <= set(ENCODERS.names())


def test_every_config_names_a_registered_entry():
    for d in list_configs("dataset"):
        cfg = compose(dataset=d)  # once per dataset: its loader and its protocol
        assert cfg.dataset.name in DATASETS and cfg.protocol.name in PROTOCOLS, d
    for m in list_configs("method"):
        assert compose(method=m).method.name in METHODS, m
    for e in list_configs("experiment"):
        assert compose(experiment=e).protocol.name in PROTOCOLS, e


def test_unknown_names_at_the_build_functions():
    with pytest.raises(UnknownNameError, match="unknown dataset 'mosii'.*Did you mean 'mosi'"):
        build_dataset({"name": "mosii"})
    with pytest.raises(ConfigError, match="dataset.name is missing; valid datasets"):
        build_dataset({"name": None})
    with pytest.raises(ConfigError, match="dataset 'synthetic'.*unexpected keyword.*'colour'"):
        build_dataset({"name": "synthetic", "colour": "red"})
    spec = build_dataset({"name": "synthetic", "n": 20}).spec
    with pytest.raises(UnknownNameError, match="unknown method 'dmdd'.*Valid methods"):
        build_method("dmdd", spec=spec, target=spec.target())


def test_one_block_registry_holds_every_reusable_block():
    from emodistill.models import BLOCKS, build_block
    from emodistill.models.context import CONTEXT_LAYERS
    from emodistill.models.encoders import MLPEncoder

    assert BLOCKS.names() == ["context", "encoder", "tokenizer", "transformer"]
    assert BLOCKS.get("encoder") is ENCODERS and BLOCKS.get("context") is CONTEXT_LAYERS
    assert {"mlp", "conv", "transformer", "minilm"} <= set(ENCODERS.names())
    assert BLOCKS.get("tokenizer").names() == ["conv", "linear", "vector"]
    assert BLOCKS.get("transformer").names() == ["mult"]
    assert {"birnn", "attention"} <= set(CONTEXT_LAYERS.names())
    assert isinstance(build_block("encoder", "mlp", 5, 1, width=8), MLPEncoder)
    with pytest.raises(UnknownNameError, match="unknown block kind 'encoders'.*'encoder'"):
        build_block("encoders", "mlp", 5, 1)
    with pytest.raises(UnknownNameError, match="unknown tokenizer 'conf'.*'conv'"):
        build_block("tokenizer", "conf", 5, 1)
