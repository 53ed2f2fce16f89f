import math

import numpy as np
import pandas as pd
import pytest
import torch

from emodistill.distill.gd_unit import GDUnit, edge_list, parse_prior
from emodistill.errors import ConfigError
from emodistill.report.edges import edge_history, edge_matrix, plot_gd_edges

NODES = ["text", "vision", "audio"]  # the reference order L, V, A


def _unit(**kw):
    kw.setdefault("logit_dim", 1)
    kw.setdefault("repr_dim", 8)
    kw.setdefault("gd_size", 4)
    return GDUnit(kw.pop("nodes", NODES), **kw)


def test_edge_order_matches_reference():
    # (student, teacher) = (L,V), (L,A), (V,L), (V,A), (A,L), (A,V)
    assert edge_list(NODES) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert _unit().edge_names == ["vision->text", "audio->text", "text->vision",
                                  "audio->vision", "text->audio", "vision->audio"]


def test_reference_priors():
    homo = _unit(prior={"text->vision": 1, "text->audio": 1}).prior
    e, o = math.exp(4), 1.0
    want = torch.tensor([o, o, e, o, e, o]) / (2 * e + 4)
    torch.testing.assert_close(homo, want)
    assert homo[2].item() == pytest.approx(0.482, abs=1e-3)
    assert homo[0].item() == pytest.approx(0.009, abs=1e-3)
    hetero = _unit(prior={"text->vision": 1, "text->audio": 1, "vision->audio": 1}).prior
    assert hetero[[2, 4, 5]].tolist() == pytest.approx([0.327] * 3, abs=1e-3)
    assert hetero[[0, 1, 3]].tolist() == pytest.approx([0.006] * 3, abs=1e-3)


def test_prior_entries_for_other_modalities_are_ignored_and_malformed_rejected():
    assert parse_prior({"text->eeg": 3.0}, ["text", "audio"]).tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="teacher->student"):
        parse_prior({"text-audio": 1.0}, ["text", "audio"])
    with pytest.raises(ConfigError, match="two different"):
        parse_prior({"text->text": 1.0}, ["text", "audio"])


@pytest.mark.parametrize("n_nodes", [2, 3, 4])
def test_edges_sum_to_one_per_sample_over_all_edges(n_nodes):
    nodes = [f"m{i}" for i in range(n_nodes)]
    unit = _unit(nodes=nodes, logit_dim=2)
    out = unit(torch.randn(n_nodes, 7, 2), torch.randn(n_nodes, 7, 8))
    assert out.edges.shape == (7, n_nodes * (n_nodes - 1))
    torch.testing.assert_close(out.edges.sum(1), torch.ones(7))
    assert (out.edges > 0).all()


def test_edges_sum_to_one_per_student_with_student_normalization():
    unit = _unit(normalization="student", prior={"text->vision": 1})
    out = unit(torch.randn(3, 5, 1), torch.randn(3, 5, 8))
    per_student = out.edges.view(5, 3, 2).sum(-1)
    torch.testing.assert_close(per_student, torch.ones(5, 3))
    torch.testing.assert_close(unit.prior.view(3, 2).sum(-1), torch.ones(3))


def test_weights_are_edges_plus_prior_and_no_prior_switch():
    torch.manual_seed(0)
    lg, rp = torch.randn(3, 6, 1), torch.randn(3, 6, 8)
    unit = _unit(prior={"text->audio": 2.0})
    out = unit(lg, rp)
    torch.testing.assert_close(out.weights, out.edges + unit.prior)
    expect_reg = 10.0 * (out.edges.mean(0) - unit.prior).pow(2).sum()
    torch.testing.assert_close(out.reg, expect_reg)
    bare = _unit(prior={"text->audio": 2.0}, add_prior=False)
    bare.load_state_dict(unit.state_dict())
    out2 = bare(lg, rp)
    torch.testing.assert_close(out2.weights, out2.edges)
    assert out2.reg.item() == 0.0


def test_prior_regulariser_pulls_batch_mean_edges_toward_prior():
    torch.manual_seed(1)
    unit = _unit(prior={"text->vision": 1, "text->audio": 1}, edge_temperature=1.0)
    lg, rp = torch.randn(3, 32, 1), torch.randn(3, 32, 8)
    opt = torch.optim.Adam(unit.parameters(), lr=0.05)

    def gap():
        with torch.no_grad():
            return (unit(lg, rp).edges.mean(0) - unit.prior).abs().sum().item()

    before = gap()
    for _ in range(100):
        opt.zero_grad()
        unit(lg, rp).reg.backward()  # only the regulariser
        opt.step()
    after = gap()
    # the shared edge network cannot set every edge independently (i->j and j->i differ
    # only by the order of the concatenated embeddings), so the gap does not reach 0
    assert after < 0.5 * before
    # the learned edges now favour the prior's edges (L->V, L->A)
    with torch.no_grad():
        mean = unit(lg, rp).edges.mean(0)
    assert set(mean.topk(2).indices.tolist()) == {2, 4}


def test_teacher_side_is_detached_in_the_distillation_terms():
    torch.manual_seed(2)
    unit = _unit(nodes=["a", "b"], detach_edge_inputs=True, w_logit=1.0)
    logits = torch.randn(2, 5, 1, requires_grad=True)
    reprs = torch.randn(2, 5, 8)
    out = unit(logits, reprs)
    out.logit.backward()
    w = out.weights.detach()  # [B, E]; edges (0<-1), (1<-0)
    diff = (logits[0] - logits[1]).detach()[:, 0]
    # d/dz0 sum_e mean_b w |z_s - sg z_t| only comes from edge (0 <- 1)
    torch.testing.assert_close(logits.grad[0, :, 0], w[:, 0] * diff.sign() / 5)
    torch.testing.assert_close(logits.grad[1, :, 0], w[:, 1] * (-diff).sign() / 5)


def test_gradients_reach_the_edge_network_and_both_endpoints():
    unit = _unit()
    logits = torch.randn(3, 4, 1, requires_grad=True)
    reprs = torch.randn(3, 4, 8, requires_grad=True)
    unit(logits, reprs).total.backward()
    assert unit.W_edge.weight.grad.abs().sum() > 0
    assert unit.W_repr.weight.grad.abs().sum() > 0
    assert (reprs.grad.abs().sum((1, 2)) > 0).all()


def test_min_cosine_reduction_and_repr_in_loss_switch():
    torch.manual_seed(3)
    lg, rp = torch.randn(3, 6, 1), torch.randn(3, 6, 8)
    unit = _unit(repr_metric="min_cosine", w_repr=10.0, repr_in_loss=True)
    out = unit(lg, rp)
    s, t = unit.student_idx, unit.teacher_idx
    cos = torch.nn.functional.cosine_similarity(rp[s], rp[t], dim=-1).clamp(min=0)  # [E, B]
    want = 10.0 * (out.weights.T.mean(1) * cos.mean(1)).sum()
    torch.testing.assert_close(out.repr, want)
    torch.testing.assert_close(out.total, out.logit + out.reg + out.repr)
    off = _unit(repr_metric="l1", repr_in_loss=False)
    o2 = off(lg, rp)
    torch.testing.assert_close(o2.total, o2.logit + o2.reg)
    assert o2.repr.item() > 0  # computed, reported, not optimised (reference HomoGD)


def test_absent_modality_edges_get_zero_weight():
    unit = _unit()
    present = torch.ones(3, 4, dtype=torch.bool)
    present[2, 1] = False  # audio missing for sample 1
    out = unit(torch.randn(3, 4, 1), torch.randn(3, 4, 8), present)
    e = out.edges[1]
    names = unit.edge_names
    for k, n in enumerate(names):
        if "audio" in n:
            assert e[k] == 0 and out.weights[1, k] == 0
    torch.testing.assert_close(out.edges.sum(1), torch.ones(4))
    assert torch.isfinite(out.total)


def test_invalid_settings_are_config_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        _unit(nodes=["text"])
    with pytest.raises(ConfigError, match="normalization"):
        _unit(normalization="row")
    with pytest.raises(ConfigError, match="metric"):
        _unit(repr_metric="kl")


def _fake_metrics(tmp_path):
    rows = []
    for ep in range(4):
        row = {"epoch": ep, "val/loss": 1.0}
        for unit in ("homo", "hetero"):
            for name in _unit().edge_names:
                row[f"model/gd_{unit}/{name}"] = 1 / 6 + 0.01 * ep * (name == "text->audio")
        rows.append(row)
    path = tmp_path / "metrics.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_edge_history_and_matrix(tmp_path):
    hist = edge_history(_fake_metrics(tmp_path))
    assert set(hist) == {"homo", "hetero"}
    assert hist["homo"].shape == (4, 6)
    assert hist["homo"]["text->audio"].iloc[-1] == pytest.approx(1 / 6 + 0.03)
    nodes, mat = edge_matrix(hist["homo"].iloc[-1].to_dict())
    assert nodes == ["text", "vision", "audio"]
    assert np.isnan(np.diag(mat)).all()
    assert mat[nodes.index("text"), nodes.index("audio")] == pytest.approx(1 / 6 + 0.03)


def test_plot_gd_edges_writes_an_image(tmp_path):
    out = plot_gd_edges(_fake_metrics(tmp_path), tmp_path / "edges.png", epoch=2)
    assert out.is_file() and out.stat().st_size > 1000
    with pytest.raises(Exception, match="no edge weights logged for epoch 9"):
        plot_gd_edges(_fake_metrics(tmp_path), tmp_path / "e.png", epoch=9)
    pd.DataFrame({"epoch": [0], "val/loss": [1.0]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(Exception, match="no 'model/gd_"):
        plot_gd_edges(tmp_path / "m.csv", tmp_path / "e.png")
