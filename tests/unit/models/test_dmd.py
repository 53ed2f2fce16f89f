import inspect

import pytest
import torch

from emodistill.checkpoint import load_checkpoint, save_checkpoint
from emodistill.config import compose, to_container
from emodistill.errors import ConfigError
from emodistill.models import build_method
from emodistill.models._mult import MulTEncoder, last_real_step, sinusoidal_positions
from emodistill.models.dmd import DEFAULT_LOSS_WEIGHTS, DMD, conv_mask
from helpers.dmd import BIN, REG, SHAPES, SMALL
from helpers.dmd import toy_batch as _batch
from helpers.dmd import toy_spec as _spec


def _model(spec, target=REG, name="dmd", **kw):
    return build_method(name, spec=spec, target=target, params={**SMALL, **kw})


# ---------------------------------------------------------------------- components
def test_conv_mask_and_last_real_step():
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    cm = conv_mask(mask, 3)
    assert cm.tolist() == [[True, True, False, False], [True, True, False, False],
                           [True, True, True, True]]
    x = torch.arange(3 * 4).view(3, 4, 1).float()
    assert last_real_step(x, cm)[:, 0].tolist() == [1.0, 5.0, 11.0]
    assert torch.equal(conv_mask(mask, 1), mask)


def test_positions_count_real_steps_and_zero_padding():
    mask = torch.tensor([[True, True, False]])
    pe = sinusoidal_positions(mask, 6)
    assert pe[0, 2].abs().sum() == 0
    assert not torch.equal(pe[0, 0], pe[0, 1])


def test_mult_encoder_causal_and_padding():
    torch.manual_seed(0)
    enc = MulTEncoder(8, 2, 2, causal=True).eval()
    x = torch.randn(1, 5, 8)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = enc(x, mask)
    x2 = x.clone()
    x2[0, 4] += 1.0  # a future step does not change earlier outputs under the causal mask
    torch.testing.assert_close(enc(x2, mask)[0, :4], out[0, :4])
    kv, kmask = torch.randn(1, 3, 8), torch.tensor([[True, True, False]])
    y = enc(x, mask, kv, kmask)
    kv2 = kv.clone()
    kv2[0, 2] = 99.0  # a padded key is ignored
    torch.testing.assert_close(enc(x, mask, kv2, kmask), y)


# ---------------------------------------------------------------------- the model


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("target", [REG, BIN], ids=["regression", "binary"])
def test_forward_backward_every_parameter_gets_a_gradient(shape, target):
    spec = _spec(SHAPES[shape])
    torch.manual_seed(0)
    model = _model(spec, target)
    b = _batch(spec, target=target.name)
    out = model(b)
    want = (6,) if target.kind == "regression" else (6, 2)
    assert out.preds.shape == want
    for m in spec.modality_names:
        assert out.logits[m].shape == want
        assert out.features[m].shape == (6, 8 + 8 * (len(spec.modalities) - 1))
    losses = model.loss(b, out)
    assert set(DEFAULT_LOSS_WEIGHTS) <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_kernel_is_clipped_to_the_sequence_length():
    model = _model(_spec(SHAPES["utterance"]), kernel_size=5)
    assert set(model.kernels.values()) == {1}
    model = _model(_spec(SHAPES["unaligned"]), kernel_size={"text": 5, "audio": 1, "vision": 3})
    assert model.kernels == {"text": 5, "audio": 1, "vision": 3}
    assert model.out_len == {"text": 6, "audio": 15, "vision": 11}


def test_reference_quirk_skip_projection_when_dims_match():
    spec = _spec({"text": (6, 8), "audio": (6, 5)})
    model = _model(spec, always_project=False)
    assert isinstance(model.proj["text"], torch.nn.Identity) and model.out_len["text"] == 6
    model(_batch(spec))  # still runs: lengths come from the spec, not from constants


def test_variable_lengths_and_missing_modalities():
    spec = _spec(SHAPES["aligned"])
    lengths = {"text": torch.tensor([12, 5, 2, 1, 12, 8]), "audio": torch.full((6,), 12),
               "vision": torch.tensor([3, 12, 12, 12, 1, 6])}
    present = {m: torch.ones(6, dtype=torch.bool) for m in spec.modality_names}
    present["audio"][1] = False
    present["vision"][4] = False
    model = _model(spec).eval()
    b = _batch(spec, lengths=lengths, present=present)
    out = model(b)
    losses = model.loss(b, out)
    assert torch.isfinite(out.preds).all() and all(torch.isfinite(v) for v in losses.values())
    edges = out.aux["sample_gd_homo_edges"]
    names = model.gd["homo"].edge_names
    assert all(edges[1, k] == 0 for k, n in enumerate(names) if "audio" in n)
    # padding content does not change the prediction
    b2 = _batch(spec, lengths=lengths, present=present)
    b2.inputs["text"][2, 5:] = 7.0
    b2.inputs = {k: v.clone() for k, v in b.inputs.items()}
    b2.inputs["text"][2, 4:] = 7.0
    torch.testing.assert_close(model(b2).preds, out.preds)


def test_batch_of_one():
    spec = _spec(SHAPES["aligned"])
    model = _model(spec)
    b = _batch(spec, B=1)
    losses = model.loss(b, model(b))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])


def test_ablation_switches():
    spec = _spec(SHAPES["aligned"])
    b = _batch(spec)
    no_gd = _model(spec, homo_gd=False, hetero_gd=False)
    assert len(no_gd.gd) == 0 and "gd_homo" not in no_gd.loss(b, no_gd(b))
    assert no_gd.epoch_logs() == {}
    no_prior = _model(spec, gd_prior=False)
    out = no_prior(b)
    assert out.aux["gd_homo/reg"].item() == 0.0
    no_dec = _model(spec, loss_weights={"rec": 0, "cyc": 0, "mar": 0, "ort": 0})
    losses = no_dec.loss(b, no_dec(b))
    assert not {"rec", "cyc", "mar", "ort"} & set(losses)
    with pytest.raises(ConfigError, match="unknown term"):
        _model(spec, loss_weights={"recon": 0.1})
    with pytest.raises(ConfigError, match="at least 2"):
        _model(_spec({"text": (4, 3)}))
    with pytest.raises(ConfigError, match="divisible"):
        _model(spec, width=10, heads=3)


def test_total_is_the_weighted_sum_of_the_terms():
    spec = _spec(SHAPES["aligned"])
    model = _model(spec).eval()
    b = _batch(spec)
    losses = model.loss(b, model(b))
    want = sum(DEFAULT_LOSS_WEIGHTS[k] * losses[k] for k in DEFAULT_LOSS_WEIGHTS)
    torch.testing.assert_close(losses["loss"], want)


def test_margin_impl_loop_gives_the_same_loss():
    spec = _spec(SHAPES["aligned"])
    torch.manual_seed(0)
    a = _model(spec).eval()
    bl = _model(spec, margin_impl="loop").eval()
    bl.load_state_dict(a.state_dict())
    b = _batch(spec)
    torch.testing.assert_close(a.loss(b, a(b))["mar"], bl.loss(b, bl(b))["mar"])


def test_epoch_logs_mean_edges_sum_to_one_and_reset():
    spec = _spec(SHAPES["aligned"])
    model = _model(spec).train()
    for seed in range(3):
        b = _batch(spec, seed=seed)
        model.loss(b, model(b))
    logs = model.epoch_logs()
    homo = [v for k, v in logs.items() if k.startswith("gd_homo/")]
    assert len(homo) == 6 and sum(homo) == pytest.approx(1.0, abs=1e-5)
    assert "gd_hetero/text->audio" in logs
    assert model.epoch_logs() == {}  # reset after reading


def test_bf16_autocast_is_close_to_fp32():
    spec = _spec(SHAPES["aligned"])
    torch.manual_seed(0)
    model = _model(spec).eval()
    b = _batch(spec)
    with torch.no_grad():
        ref = model(b).preds
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(b).preds.float()
    assert (low - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


def test_yaml_defaults_are_the_constructor_defaults():
    params = to_container(compose(dataset="synthetic", method="dmd").method)
    params.pop("name")
    sig = inspect.signature(DMD.__init__).parameters
    engine_keys = set(to_container(compose(dataset="synthetic", method="unimodal").method))
    for k, v in params.items():
        if k not in sig and k in engine_keys:  # base.yaml keys every method gets (text_encoder)
            continue
        default = sig[k].default
        if k == "loss_weights":
            assert v == DEFAULT_LOSS_WEIGHTS
        elif k == "input_dropout":
            assert v == {"text": 0.5} and default is None
        elif k == "attn_dropout_modality":
            assert v == {"audio": 0.2, "vision": 0.0} and default is None
        elif k in ("homo_prior", "hetero_prior"):
            from emodistill.models.dmd import DEFAULT_HETERO_PRIOR, DEFAULT_HOMO_PRIOR
            assert v == (DEFAULT_HOMO_PRIOR if k == "homo_prior" else DEFAULT_HETERO_PRIOR)
        else:
            assert v == default, k


@pytest.mark.parametrize("cfg", ["dmd_no_gd", "dmd_no_prior", "dmd_no_decoupling"])
def test_ablation_configs_build(cfg, synthetic_small):
    c = compose(dataset="synthetic", method=cfg, overrides=["method.width=8",
                                                           "method.heads=2"])
    params = to_container(c.method)
    model = build_method(params.pop("name"), spec=synthetic_small.spec,
                         target=synthetic_small.spec.target("sentiment"), params=params)
    assert isinstance(model, DMD)


def test_checkpoint_round_trip(tmp_path):
    spec = _spec(SHAPES["unaligned"])
    torch.manual_seed(0)
    model = _model(spec).train()
    b = _batch(spec)
    model.loss(b, model(b))  # edge statistics accumulate in buffers that are not saved
    model.eval()
    cfg = {"method": {"name": "dmd", **SMALL}}
    save_checkpoint(tmp_path / "model.pt", model, config=cfg, standardizer=None)
    loaded = load_checkpoint(tmp_path / "model.pt").model
    assert not any(k.startswith(("_edge", "_atoms")) for k in model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(b).preds, model(b).preds)


def test_attention_implementations_agree():
    from emodistill.models._mult import _Attention

    torch.manual_seed(0)
    sd = _Attention(8, 2, 0.5, "sdpa").eval()
    man = _Attention(8, 2, 0.5, "manual").eval()
    man.load_state_dict(sd.state_dict())
    q, kv = torch.randn(3, 5, 8), torch.randn(3, 4, 8)
    allowed = torch.rand(3, 1, 5, 4) > 0.3
    allowed[..., 0] = True
    torch.testing.assert_close(man(q, kv, allowed), sd(q, kv, allowed))
    torch.testing.assert_close(man(q, None, None), sd(q, None, None))
    # training: the explicit path drops attention weights with probability p, rescaled by 1/(1-p)
    ref = man(q, kv, None)
    man.train()
    with torch.no_grad():
        outs = torch.stack([man(q, kv, None) for _ in range(400)])
    assert not torch.allclose(outs[0], ref)
    torch.testing.assert_close(outs.mean(0), ref, atol=0.1, rtol=0.1)


def test_manual_attention_is_the_masked_fill_formulation_bit_for_bit():
    # the additive mask and the multiplicative dropout keep the previous formulation's
    # values (masked_fill of -inf scores, masked_fill of dropped weights) and gradients
    from emodistill.models._mult import _allowed, _Attention

    torch.manual_seed(0)
    man = _Attention(8, 2, 0.3, "manual").train()
    q, kv = torch.randn(3, 5, 8, requires_grad=True), torch.randn(3, 6, 8)
    mask_kv = torch.ones(3, 6, dtype=torch.bool)
    mask_kv[1, 4:] = False
    allowed = _allowed(5, mask_kv, True, 6, q.device)

    def previous(q):
        w, b = man.in_proj.weight, man.in_proj.bias
        qq = torch.nn.functional.linear(q, w[:8], b[:8]).view(3, 5, 2, 4).transpose(1, 2)
        kk, vv = (t.view(3, 6, 2, 4).transpose(1, 2)
                  for t in torch.nn.functional.linear(kv, w[8:], b[8:]).chunk(2, -1))
        att = ((qq @ kk.transpose(-1, -2)) * 4 ** -0.5).masked_fill(~allowed, float("-inf"))
        att = att.softmax(-1)
        att = att.masked_fill(torch.rand_like(att) < 0.3, 0.0) * (1.0 / (1.0 - 0.3))
        return man.out_proj((att @ vv).transpose(1, 2).reshape(3, 5, 8))

    torch.manual_seed(1)
    new = man(q, kv, allowed)
    (g_new,) = torch.autograd.grad(new.square().sum(), q)
    torch.manual_seed(1)
    old = previous(q)
    (g_old,) = torch.autograd.grad(old.square().sum(), q)
    assert torch.equal(new, old) and torch.equal(g_new, g_old)


def test_grouped_transformers_equal_the_separate_modules_and_share_the_checkpoint():
    import copy

    import emodistill.models.dmd as dmd_module

    spec = _spec({"text": (6, 10), "audio": (6, 4), "vision": (6, 5)})  # aligned: one length
    torch.manual_seed(0)
    sep = _model(spec)
    grp = copy.deepcopy(sep)
    grp.grouped_transformers = True
    b = _batch(spec, lengths={m: torch.tensor([6, 4, 6, 2, 6, 5]) for m in spec.modality_names})
    groups: list[int] = []
    real = dmd_module.run_grouped
    dmd_module.run_grouped = lambda encs, *a: groups.append(len(encs)) or real(encs, *a)
    try:
        sep.eval(), grp.eval()
        with torch.no_grad():
            torch.testing.assert_close(grp(b).preds, sep(b).preds, atol=1e-5, rtol=1e-5)
        assert groups == [3, 6, 3]  # self-attention, cross-modal, memory transformers
        for m in (sep, grp):  # training without dropout: same loss and gradients
            m.train()
            for mod in m.modules():
                if isinstance(mod, torch.nn.Dropout):
                    mod.p = 0.0
                if isinstance(getattr(mod, "dropout", None), float):
                    mod.dropout = 0.0
            m.loss(b, m(b))["loss"].backward()
        for (n, p), q in zip(sep.named_parameters(), grp.parameters(), strict=True):
            assert q.grad is not None, n
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=n)
    finally:
        dmd_module.run_grouped = real
    assert list(sep.state_dict()) == list(grp.state_dict())  # old checkpoints load either way
    # with dropout on, grouped training runs and draws each encoder's own attention rate
    g2 = _model(spec, grouped_transformers=True).train()
    g2.loss(b, g2(b))["loss"].backward()
    # unaligned inputs fall back to the separate modules
    un = _model(_spec({"text": (6, 10), "audio": (4, 4)}), grouped_transformers=True).eval()
    with torch.no_grad():
        un(_batch(_spec({"text": (6, 10), "audio": (4, 4)})))
