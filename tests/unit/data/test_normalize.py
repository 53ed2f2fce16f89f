"""Standardisation: statistics from real steps of the training part only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emodistill.config import compose
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.data.normalize import Standardizer
from emodistill.training import run as run_mod
from emodistill.training.run import prepare


def _numpy_stats(ds, rows, m):
    x, mk = ds.features[m].numpy()[rows], ds.mask[m].numpy()[rows]
    real = x[mk].astype(np.float64)
    return real.mean(0), real.std(0)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 1000), missing=st.sampled_from([0.0, 0.4]))
def test_fit_uses_real_steps_of_the_given_rows_only(seed, missing):
    ds = make_synthetic_mer(60, seed=seed, missing_rate=missing, samples_per_video=5)
    train = np.flatnonzero(ds.splits["standard"] == "train")
    std = Standardizer.fit(ds.subset(train))
    for m in ds.spec.modality_names:
        mu, sd = _numpy_stats(ds, train, m)
        np.testing.assert_allclose(std.mean[m].numpy(), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std.std[m].numpy(), sd, rtol=1e-5, atol=1e-5)


def test_transform_zscores_real_steps_and_keeps_padding_zero():
    ds = make_synthetic_mer(100, seed=4, missing_rate=0.3)
    std = Standardizer.fit(ds)
    out = std.transform(ds)
    for m in ds.spec.modality_names:
        mk = out.mask[m].numpy()
        real = out.features[m].numpy()[mk]
        np.testing.assert_allclose(real.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(real.std(0), 1, atol=1e-3)
        assert (out.features[m].numpy()[~mk] == 0).all()
    assert out.fingerprint() != ds.fingerprint()
    # the input dataset is untouched
    assert ds.fingerprint() == make_synthetic_mer(100, seed=4, missing_rate=0.3).fingerprint()


def test_constant_feature_and_absent_modality():
    ds = make_synthetic_mer(20, seed=0, samples_per_video=2)
    feats = {k: v.clone() for k, v in ds.features.items()}
    feats["text"][..., 0] = 5.0 * ds.mask["text"]  # constant on real steps
    ds2 = ds.with_features(feats)
    std = Standardizer.fit(ds2)
    assert std.std["text"][0] == 1.0 and std.mean["text"][0] == pytest.approx(5.0)
    empty = ds2.subset(np.arange(20))
    empty.mask["audio"][:] = False
    std = Standardizer.fit(empty)
    assert (std.mean["audio"] == 0).all() and (std.std["audio"] == 1).all()


def test_dict_round_trip():
    std = Standardizer.fit(make_synthetic_mer(30, seed=1))
    back = Standardizer.from_dict(std.to_dict())
    for m in std.mean:
        torch.testing.assert_close(back.mean[m], std.mean[m])
        torch.testing.assert_close(back.std[m], std.std[m])


def test_engine_fits_on_training_rows_only(monkeypatch, tmp_path):
    """fit_fold standardises with statistics of the fold's train part, nothing else."""
    ds = make_synthetic_mer(120, seed=9, samples_per_video=6)
    cfg = compose(dataset="synthetic", method="feature_fusion",
                  overrides=["method.width=8", f"output_dir={tmp_path}"])
    fit = Standardizer.fit

    class Stop(Exception):
        pass

    def engine_stats(data):
        """The Standardizer fit_fold fits on ``data`` (training is stopped right after)."""
        prep = prepare(cfg, data)
        seen = {}

        def spy(cls, part, eps=1e-6):
            seen["ids"], seen["std"] = part.ids.copy(), fit(part, eps)
            raise Stop

        with monkeypatch.context() as mp:
            mp.setattr(Standardizer, "fit", classmethod(spy))  # wherever fit_fold calls it
            with pytest.raises(Stop):
                run_mod.fit_fold(prep, prep.folds[0], tmp_path / "f")
        return prep.folds[0], seen

    fold, seen = engine_stats(ds)
    np.testing.assert_array_equal(np.sort(seen["ids"]), np.sort(ds.ids[fold.train]))
    for m in ds.spec.modality_names:
        mu, sd = _numpy_stats(ds, fold.train, m)
        np.testing.assert_allclose(seen["std"].mean[m].numpy(), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(seen["std"].std[m].numpy(), sd, rtol=1e-5, atol=1e-5)

    def perturbed(rows, fn):
        feats = {k: v.clone() for k, v in ds.features.items()}
        for k in feats:
            feats[k][rows] = fn(feats[k][rows])
        return ds.with_features(feats)

    # perturbing the test and valid rows leaves the statistics unchanged...
    outside = np.concatenate([fold.test, fold.valid])
    _, other = engine_stats(perturbed(outside, lambda x: x * 9 + 100))
    for m in ds.spec.modality_names:
        torch.testing.assert_close(other["std"].mean[m], seen["std"].mean[m])
        torch.testing.assert_close(other["std"].std[m], seen["std"].std[m])
    # ...perturbing a training row does not
    _, moved = engine_stats(perturbed(fold.train[:1], lambda x: x + 100))
    assert not torch.allclose(moved["std"].mean["text"], seen["std"].mean["text"])
