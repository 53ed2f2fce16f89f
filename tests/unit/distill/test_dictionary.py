import numpy as np
import pytest
import torch

from emodistill.distill.dictionary import (
    DictionaryMatcher,
    activation_divergence,
    dictionary_contrastive,
    sparsemax,
)
from emodistill.distill.losses import contrastive_alignment
from emodistill.errors import ConfigError


def _sparsemax_np(z):
    """Projection onto the simplex (Martins & Astudillo, Algorithm 1)."""
    zs = np.sort(z)[::-1]
    cs = np.cumsum(zs)
    k = np.arange(1, len(z) + 1)
    kz = k[1 + k * zs > cs].max()
    tau = (cs[kz - 1] - 1) / kz
    return np.maximum(z - tau, 0)


def test_sparsemax_matches_the_simplex_projection():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 9)) * rng.uniform(0.1, 5, size=(20, 1))
    got = sparsemax(torch.tensor(x, dtype=torch.float64)).numpy()
    want = np.stack([_sparsemax_np(r) for r in x])
    np.testing.assert_allclose(got, want, atol=1e-10)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-10)
    assert (got >= 0).all() and (got == 0).any()


def test_sparsemax_other_dim_and_gradient():
    x = torch.randn(4, 6, 3, requires_grad=True)
    y = sparsemax(x, dim=1)
    torch.testing.assert_close(y.sum(1), torch.ones(4, 3))
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()


def _seqs(B=5, T=(3, 1), dims=(6, 4)):
    seqs = {"a": torch.randn(B, T[0], dims[0]), "b": torch.randn(B, T[1], dims[1])}
    masks = {"a": torch.ones(B, T[0], dtype=torch.bool), "b": torch.ones(B, T[1], dtype=torch.bool)}
    return seqs, masks


@pytest.mark.parametrize("norm", ["sparsemax", "softmax", "sigmoid"])
@pytest.mark.parametrize("pool", ["max", "mean", "sum"])
def test_matcher_shapes_and_activations(norm, pool):
    torch.manual_seed(0)
    dm = DictionaryMatcher(["a", "b"], {"a": 6, "b": 4}, dim=8, size=5, normalization=norm,
                           pool=pool)
    seqs, masks = _seqs()
    out, act = dm(seqs, masks)
    assert out["a"].shape == (5, 8) and act["b"].shape == (5, 5)
    for m in ("a", "b"):
        torch.testing.assert_close(act[m].sum(-1), torch.ones(5))
        assert (act[m] >= 0).all()
        torch.testing.assert_close(out[m].norm(dim=-1), torch.ones(5))  # l2-normalised
    sum(o.sum() for o in out.values()).backward()
    assert dm.atoms.grad is not None and dm.atoms.grad.abs().sum() > 0


def test_matcher_ignores_padded_steps():
    torch.manual_seed(1)
    dm = DictionaryMatcher(["a"], {"a": 6}, dim=8, size=7)
    x = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out1, _ = dm({"a": x}, {"a": mask})
    x2 = x.clone()
    x2[0, 2:] = 100.0  # change only padded steps
    out2, _ = dm({"a": x2}, {"a": mask})
    torch.testing.assert_close(out1["a"], out2["a"])


def test_matcher_rejects_bad_settings():
    with pytest.raises(ConfigError, match="normalization"):
        DictionaryMatcher(["a"], {"a": 2}, dim=2, normalization="entmax")
    with pytest.raises(ConfigError, match="pool"):
        DictionaryMatcher(["a"], {"a": 2}, dim=2, pool="attention")


def test_contrastive_matches_shared_symmetric_infonce_for_two_modalities():
    torch.manual_seed(2)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    got = dictionary_contrastive({"a": a, "b": b}, temperature=0.2)
    want = contrastive_alignment(a, b, temperature=0.2, detach_b=False, symmetric=True)
    torch.testing.assert_close(got, want)


def test_contrastive_is_low_for_aligned_and_high_for_shuffled_pairs():
    f = torch.eye(6)
    aligned = dictionary_contrastive({"a": f, "b": f, "c": f}, temperature=0.1)
    shuffled = dictionary_contrastive({"a": f, "b": f[torch.randperm(6)], "c": f}, temperature=0.1)
    assert aligned < 0.01 < 1.0 < shuffled


def test_contrastive_ignores_absent_samples_and_uses_pair_weights():
    torch.manual_seed(3)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    present = {"a": torch.tensor([1, 1, 1, 1, 0], dtype=torch.bool),
               "b": torch.ones(5, dtype=torch.bool)}
    l1 = dictionary_contrastive({"a": a, "b": b}, present)
    a2 = a.clone()
    a2[4] = 50.0
    b2 = b.clone()
    b2[4] = -50.0  # b's sample 4 has no partner: neither anchor nor candidate
    l2 = dictionary_contrastive({"a": a2, "b": b2}, present)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(l1, dictionary_contrastive({"a": a[:4], "b": b[:4]}))
    # zero weight on one direction leaves the other direction's InfoNCE
    only_ab = dictionary_contrastive({"a": a, "b": b}, pair_weights={("b", "a"): 0.0})
    want = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
        / 0.1, torch.arange(5))
    torch.testing.assert_close(only_ab, want)


def test_contrastive_detach_teacher_blocks_the_teacher_gradient():
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    dictionary_contrastive({"a": a, "b": b}, pair_weights={("b", "a"): 0.0},
                           detach_teacher=True).backward()
    assert a.grad.abs().sum() > 0 and (b.grad is None or not b.grad.any())


def test_activation_divergence():
    p = torch.softmax(torch.randn(4, 6), -1)
    assert activation_divergence({"a": p, "b": p.clone()}).item() == pytest.approx(0, abs=1e-6)
    q = torch.softmax(torch.randn(4, 6) * 3, -1)
    js = activation_divergence({"a": p, "b": q})
    assert 0 < js.item() <= np.log(2) + 1e-6
