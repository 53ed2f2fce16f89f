"""Reference methods (majority, logistic, trees): parity with scikit-learn, engine path, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.errors import ConfigError
from emodistill.models import build_method

MODS = {"text": (1, 6, 1.2), "audio": (3, 4, 0.5)}


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_mer(160, seed=5, modalities=MODS, samples_per_video=4)


def _model(name, ds, target, **params):
    return build_method(name, spec=ds.spec, target=ds.spec.target(target), params=params)


def _all(ds, target):
    return ds.batch(np.arange(len(ds)), target)


@pytest.mark.parametrize("target", ["polarity", "sentiment3", "sentiment"])
def test_trees_in_torch_reproduce_sklearn(ds, target):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    m = _model("trees", ds, target, max_iter=15, max_leaf_nodes=7, min_samples_leaf=5)
    m.fit(ds, target=target, seed=0, **m.candidates()[0])
    x, y = m.dataset_matrix(ds, target)
    assert x.shape == (160, 6 + 3 * 4)  # text [1x6] and audio [3x4] flattened
    kw = dict(max_iter=15, max_leaf_nodes=7, min_samples_leaf=5, early_stopping=False,
              random_state=0)
    with torch.no_grad():
        preds = m(_all(ds, target)).preds.double()
    if target == "sentiment":
        ref = HistGradientBoostingRegressor(**kw).fit(x, y).predict(x)
        np.testing.assert_allclose(preds.numpy(), ref, rtol=1e-5, atol=1e-5)
    else:
        ref = HistGradientBoostingClassifier(**kw).fit(x, y).predict_proba(x)
        np.testing.assert_allclose(preds.softmax(-1).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_logistic_reproduces_sklearn_and_majority_the_prior(ds):
    from sklearn.linear_model import LogisticRegression

    m = _model("logistic", ds, "sentiment3", C=0.1)
    m.fit(ds, target="sentiment3", seed=0, C=0.1)
    x, y = m.dataset_matrix(ds, "sentiment3")
    z = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=0.1, max_iter=5000).fit(z, y).predict_proba(z)
    with torch.no_grad():
        p = m(_all(ds, "sentiment3")).preds.softmax(-1).numpy()
    np.testing.assert_allclose(p, ref, atol=1e-5)

    maj = _model("majority", ds, "polarity")
    maj.fit(ds, target="polarity", seed=0)
    y = ds.targets["polarity"].numpy()
    with torch.no_grad():
        p = maj(_all(ds, "polarity")).preds.softmax(-1)
    np.testing.assert_allclose(p[0].numpy(), np.bincount(y) / len(y), atol=1e-6)
    assert (p.argmax(1) == int(np.bincount(y).argmax())).all()


def test_ridge_fits_the_raw_features_when_not_standardized(ds):
    from sklearn.linear_model import Ridge

    plain = _model("logistic", ds, "sentiment", C=2.0, standardize=False)
    plain.fit(ds, target="sentiment", seed=0, C=2.0)
    zed = _model("logistic", ds, "sentiment", C=2.0)
    zed.fit(ds, target="sentiment", seed=0, C=2.0)
    x, y = plain.dataset_matrix(ds, "sentiment")
    z = (x - x.mean(0)) / x.std(0)
    with torch.no_grad():
        p_raw = plain(_all(ds, "sentiment")).preds.double().numpy()
        p_std = zed(_all(ds, "sentiment")).preds.double().numpy()
    np.testing.assert_allclose(p_raw, Ridge(alpha=0.5).fit(x, y).predict(x), atol=1e-5)
    np.testing.assert_allclose(p_std, Ridge(alpha=0.5).fit(z, y).predict(z), atol=1e-5)
    assert np.abs(p_raw - p_std).max() > 1e-3  # the option changes the fit
    with pytest.raises(ConfigError, match="method.standardize='no'"):
        _model("logistic", ds, "sentiment", standardize="no")


def test_bad_reference_params_are_refused(ds):
    with pytest.raises(ConfigError, match="method.C="):
        _model("logistic", ds, "polarity", C=[0.1, -1])
    with pytest.raises(ConfigError, match="method.pool="):
        _model("trees", ds, "polarity", pool="max")


def test_a_grid_is_a_choice_on_validation_a_single_value_is_not():
    from emodistill.models.reference import Logistic, Trees

    assert Logistic.chooses_on_valid({"C": [0.01, 0.1]})
    assert not Logistic.chooses_on_valid({"C": 0.01})
    assert Trees.chooses_on_valid({"max_iter": [50, 100]})
    assert not Trees.chooses_on_valid({"max_iter": 100, "class_weight": None})
