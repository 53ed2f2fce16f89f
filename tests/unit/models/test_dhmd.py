import inspect

import pytest
import torch

from emodistill.config import compose, to_container
from emodistill.errors import ConfigError
from emodistill.models import build_method
from emodistill.models.dhmd import DHMD, DHMD_LOSS_WEIGHTS
from emodistill.models.dmd import DMD
from helpers.dmd import BIN, REG, SHAPES, SMALL
from helpers.dmd import toy_batch as _batch
from helpers.dmd import toy_spec as _spec


def _model(spec, target=REG, **kw):
    return build_method("dhmd", spec=spec, target=target, params={**SMALL, "dict_atoms": 6, **kw})


@pytest.mark.parametrize("shape", ["aligned", "unaligned", "utterance", "two_modalities"])
@pytest.mark.parametrize("target", [REG, BIN], ids=["regression", "binary"])
def test_forward_backward_every_parameter_gets_a_gradient(shape, target):
    spec = _spec(SHAPES[shape])
    torch.manual_seed(0)
    model = _model(spec, target)
    b = _batch(spec, target=target.name)
    out = model(b)
    M = len(spec.modalities)
    for m in spec.modality_names:
        assert out.aux[f"dict_homo/{m}"].shape == (6, 8)
        assert out.aux[f"dict_hetero/{m}"].shape == (6, 8 * (M - 1))
        torch.testing.assert_close(out.aux[f"dict_homo_act/{m}"].sum(-1), torch.ones(6))
    assert out.fused.shape[1] == M * 8 * (M - 1) + M * 8 + M * (8 + 8 * (M - 1))
    losses = model.loss(b, out)
    assert {"ctr_homo", "ctr_hetero"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_total_includes_the_dictionary_terms():
    spec = _spec(SHAPES["aligned"])
    model = _model(spec, loss_weights={"ctr_homo": 0.3}).eval()
    b = _batch(spec)
    losses = model.loss(b, model(b))
    w = {**DHMD_LOSS_WEIGHTS, "ctr_homo": 0.3}
    torch.testing.assert_close(losses["loss"], sum(w[k] * losses[k] for k in w))


def test_no_dictionary_is_dmd_architecture():
    spec = _spec(SHAPES["aligned"])
    torch.manual_seed(0)
    dh = _model(spec, dictionary=False).eval()
    torch.manual_seed(0)
    dm = build_method("dmd", spec=spec, target=REG, params=SMALL).eval()
    assert len(dh.dictionaries) == 0
    assert dh.state_dict().keys() == dm.state_dict().keys()
    dh.load_state_dict(dm.state_dict())
    b = _batch(spec)
    torch.testing.assert_close(dh(b).preds, dm(b).preds)
    assert not {"ctr_homo", "ctr_hetero"} & set(dh.loss(b, dh(b)))


@pytest.mark.parametrize("kw", [
    {"dict_input": "node"},
    {"ctr_mode": "activations"},
    {"ctr_edge_weighted": True},
    {"ctr_edge_weighted": True, "homo_gd": False, "hetero_gd": False},
    {"dict_normalization": "softmax", "dict_pool": "mean", "dict_width": 5},
    {"ctr_detach_teacher": True, "dict_l2_normalize": False},
    {"dict_input": "gd", "ctr_edge_weighted": True, "ctr_detach_teacher": True},
    {"dict_input": "gd", "homo_gd": False},
])
def test_variants_run(kw):
    spec = _spec(SHAPES["unaligned"])
    model = _model(spec, **kw)
    b = _batch(spec)
    losses = model.loss(b, model(b))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert model.dictionaries["homo"].atoms.grad.abs().sum() > 0


def test_missing_modalities():
    spec = _spec(SHAPES["aligned"])
    present = {m: torch.ones(6, dtype=torch.bool) for m in spec.modality_names}
    present["text"][0] = False
    model = _model(spec)
    b = _batch(spec, present=present)
    losses = model.loss(b, model(b))
    assert all(torch.isfinite(v) for v in losses.values())


def test_epoch_logs_add_dictionary_usage():
    spec = _spec(SHAPES["aligned"])
    model = _model(spec).train()
    b = _batch(spec)
    model.loss(b, model(b))
    logs = model.epoch_logs()
    assert 1 <= logs["dict_homo/active_atoms"] <= 6
    assert "gd_hetero/vision->audio" in logs


def test_bad_settings():
    spec = _spec(SHAPES["aligned"])
    with pytest.raises(ConfigError, match="dict_input"):
        _model(spec, dict_input="token")
    with pytest.raises(ConfigError, match="ctr_mode"):
        _model(spec, ctr_mode="kl")
    with pytest.raises(ConfigError, match="unknown term"):
        _model(spec, loss_weights={"ctr": 1.0})


def test_yaml_defaults_are_the_constructor_defaults():
    params = to_container(compose(dataset="synthetic", method="dhmd").method)
    params.pop("name")
    sig = {**inspect.signature(DMD.__init__).parameters,
           **inspect.signature(DHMD.__init__).parameters}
    assert params.pop("loss_weights") == DHMD_LOSS_WEIGHTS
    for k in ("dictionary", "dict_input", "dict_atoms", "dict_width", "dict_temperature",
              "dict_normalization", "dict_pool", "dict_l2_normalize", "ctr_mode",
              "ctr_temperature", "ctr_edge_weighted", "ctr_detach_teacher", "width",
              "gd_reg", "hetero_repr_metric"):
        assert params[k] == sig[k].default, k


@pytest.mark.parametrize("cfg", ["dhmd_no_dict", "dhmd_no_gd", "dhmd_no_prior",
                                 "dhmd_no_decoupling", "dhmd_hierarchical"])
def test_ablation_configs_build(cfg, synthetic_small):
    c = compose(dataset="synthetic", method=cfg,
                overrides=["method.width=8", "method.heads=2", "method.dict_atoms=4"])
    params = to_container(c.method)
    model = build_method(params.pop("name"), spec=synthetic_small.spec,
                         target=synthetic_small.spec.target("polarity"), params=params)
    assert isinstance(model, DHMD)


def test_gd_dictionary_input_is_the_gd_unit_output():
    """dict_input=gd: x̂_m = r_m + Σ_i π_{m←i} sg(r_i), the teachers detached."""
    spec = _spec(SHAPES["utterance"])
    torch.manual_seed(0)
    model = _model(spec, dict_input="gd").eval()
    b = _batch(spec)
    st = model(b).aux
    mods = spec.modality_names
    for space, gd in model.gd.items():
        w = st[f"sample_gd_{space}_edges"] + gd.prior
        for j, m in enumerate(mods):
            want = st[f"{space}_repr/{m}"].clone()
            for e, (s_, t_) in enumerate(gd.pairs):
                if s_ == j:
                    want = want + w[:, e:e + 1] * st[f"{space}_repr/{mods[t_]}"]
            torch.testing.assert_close(st[f"gd_out_{space}/{m}"], want)
    # the teachers' representations get no gradient through the GD output (with the edge
    # network's inputs detached too; otherwise the edges themselves carry a gradient)
    torch.manual_seed(0)
    model = _model(spec, dict_input="gd", detach_edge_inputs=True).eval()
    st = model(b).aux
    r_t = st["homo_repr/text"]
    g = torch.autograd.grad(st["gd_out_homo/audio"].sum(), r_t, allow_unused=True,
                            retain_graph=True)[0]
    assert g is None or float(g.abs().sum()) == 0.0
