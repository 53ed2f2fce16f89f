"""fold → parts, written once: subset, post-split (windowing), standardise on train only."""

from __future__ import annotations

import pytest
import torch

from emodistill.data.formats.physio_synthetic import make_synthetic_physio
from emodistill.data.normalize import Standardizer
from emodistill.data.parts import PARTS, fold_parts
from emodistill.data.protocols import make_folds
from emodistill.errors import ConfigError


@pytest.fixture(scope="module")
def trials():
    ds = make_synthetic_physio(3, 6, eeg_channels=2, trial_seconds=4.0, chunk_size=128, seed=1)
    fold = make_folds(ds, "subject_dependent", k=3, valid_fraction=0.2)[0]
    return ds, fold


def _same(a, b) -> bool:
    return list(a.ids) == list(b.ids) and all(
        torch.equal(a.features[m], b.features[m]) for m in a.spec.modality_names)


def test_parts_are_windowed_after_the_split_and_standardised_on_train(trials):
    ds, fold = trials
    parts, std = fold_parts(ds, fold, normalize=True)
    assert list(parts) == list(PARTS) and isinstance(std, Standardizer)
    # the same steps by hand: subset, post_split, fit on train, transform
    by_hand = {k: ds.post_split(ds.subset(getattr(fold, k))) for k in PARTS}
    fitted = Standardizer.fit(by_hand["train"])
    for k in PARTS:
        assert len(parts[k]) > len(getattr(fold, k))  # windows, not trials
        assert _same(parts[k], fitted.transform(by_hand[k]))
    # standardised with train statistics only: train is centred, test is not exactly
    x = parts["train"].features["eeg"]
    assert x.mean(dim=(0, 1)).abs().max() < 1e-4


def test_a_given_standardizer_is_applied_never_refitted(trials):
    ds, fold = trials
    _, std = fold_parts(ds, fold, normalize=True)
    only, same = fold_parts(ds, fold, ("test",), normalize=std)
    assert same is std and list(only) == ["test"]
    full, _ = fold_parts(ds, fold, normalize=True)
    assert _same(only["test"], full["test"])
    raw, none = fold_parts(ds, fold, ("valid",))
    assert none is None and _same(raw["valid"], ds.post_split(ds.subset(fold.valid)))


def test_bad_part_names_and_fitting_without_train(trials):
    ds, fold = trials
    with pytest.raises(ConfigError, match=r"fold part\(s\) \['tset'\]"):
        fold_parts(ds, fold, ("tset",))
    with pytest.raises(ConfigError, match="fits on the train part"):
        fold_parts(ds, fold, ("test",), normalize=True)


def test_subject_norm_uses_every_part_and_is_recorded(trials, tmp_path):
    from emodistill.data.subject_norm import subject_normalize

    ds, fold = trials
    by_hand = {k: ds.post_split(ds.subset(getattr(fold, k))) for k in PARTS}
    normed, _ = subject_normalize(by_hand, mode="transductive")
    only, _ = fold_parts(ds, fold, ("test",), subject_norm="transductive", record=tmp_path)
    assert list(only) == ["test"] and _same(only["test"], normed["test"])
    assert (tmp_path / "subject_norm.json").is_file()
    parts, std = fold_parts(ds, fold, subject_norm="transductive", normalize=True)
    assert _same(parts["valid"], Standardizer.fit(normed["train"]).transform(normed["valid"]))
    with pytest.raises(ConfigError, match="subject_norm='sometimes'"):
        fold_parts(ds, fold, subject_norm="sometimes")


def test_check_sees_each_part_before_normalisation_and_transform_runs_last(trials):
    ds, fold = trials
    seen = []
    parts, std = fold_parts(
        ds, fold, ("train", "test"), normalize=True,
        check=lambda p: seen.append((len(p), float(p.features["eeg"].abs().max()))),
        transform=lambda p: p.subset(list(range(2))))
    raw = {k: ds.post_split(ds.subset(getattr(fold, k))) for k in ("train", "test")}
    assert seen == [(len(v), float(v.features["eeg"].abs().max())) for v in raw.values()]
    assert all(len(p) == 2 for p in parts.values())  # after the standardisation:
    assert _same(parts["test"], std.transform(raw["test"]).subset(list(range(2))))
