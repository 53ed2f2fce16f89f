import numpy as np
import pytest
import torch

from emodistill.distill.dictionary import DictionaryMatcher, sparsemax
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
