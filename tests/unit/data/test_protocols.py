"""Protocols: group-disjoint, covering, non-empty parts on random group structures."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GroupKFold

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.protocols import PROTOCOLS, Fold, check_disjoint, make_folds
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, EmptySplitError, LeakageError, UnknownNameError

# derandomize: CI explores the same 40 structures on every run (no flaky counterexamples)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def make_ds(groups: dict[str, np.ndarray], splits: dict[str, np.ndarray] | None = None):
    n = len(next(iter(groups.values())))
    spec = DatasetSpec("toy", (ModalitySpec("x", 2, 1),),
                       (TargetSpec("y", "binary", class_names=("a", "b")),),
                       tuple(groups))
    return MultimodalDataset(
        spec, {"x": np.arange(2 * n, dtype=np.float32).reshape(n, 2)},
        targets={"y": np.arange(n) % 2}, ids=[f"r{i}" for i in range(n)],
        groups=groups, splits=splits)


def check_fold(f: Fold, groups: np.ndarray, n: int) -> None:
    parts = [f.train, f.valid, f.test]
    for p in parts:
        assert len(p) > 0
        assert p.dtype.kind == "i" and (np.diff(p) > 0).all()  # sorted, no duplicates
    both = np.concatenate(parts)
    assert len(both) == len(set(both.tolist())) and both.min() >= 0 and both.max() < n
    tr, va, te = (set(groups[p].tolist()) for p in parts)
    assert not (tr & va) and not (tr & te) and not (va & te)


@st.composite
def grouped(draw, min_groups=3, max_groups=12):
    """Rows with a random number of rows per group (1..6)."""
    n_groups = draw(st.integers(min_groups, max_groups))
    sizes = draw(st.lists(st.integers(1, 6), min_size=n_groups, max_size=n_groups))
    labels = np.repeat([f"g{i}" for i in range(n_groups)], sizes)
    perm = draw(st.permutations(range(len(labels))))
    return labels[np.array(perm)]


@SETTINGS
@given(groups=grouped(), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_group_kfold_properties(groups, k, seed):
    k = min(k, len(set(groups)))
    ds = make_ds({"video": groups})
    try:
        folds = make_folds(ds, "group_kfold", group="video", k=k, seed=seed)
    except EmptySplitError:
        # only legitimate when some training part holds a single group (nothing to carve)
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        n_train = [len(set(groups[tr])) for tr, _ in splitter.split(groups, groups=groups)]
        assert min(n_train) < 2
        return
    assert len(folds) == k
    for f in folds:
        check_fold(f, groups, len(ds))
        assert len(f.train) + len(f.valid) + len(f.test) == len(ds)  # every row used
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(len(ds)))  # test parts partition the rows


@SETTINGS
@given(groups=grouped(min_groups=3, max_groups=10), frac=st.floats(0.05, 0.5),
       seed=st.integers(0, 2**16))
def test_loso_properties(groups, frac, seed):
    ds = make_ds({"subject": groups})
    folds = make_folds(ds, "loso", valid_fraction=frac, seed=seed)
    assert len(folds) == len(set(groups))
    for f in folds:
        check_fold(f, groups, len(ds))
        (held_out,) = set(groups[f.test].tolist())  # exactly one subject per test fold
        assert f.name == f"subject{held_out}"
        assert set(f.test.tolist()) == set(np.flatnonzero(groups == held_out).tolist())
        assert len(f.train) + len(f.valid) + len(f.test) == len(ds)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(ds)))


@st.composite
def subjects_trials(draw):
    """Subjects x trials x windows: several rows per trial, as after windowing."""
    k = draw(st.integers(2, 4))
    n_subj = draw(st.integers(2, 5))
    subj, trial = [], []
    for s in range(n_subj):
        n_trials = draw(st.integers(2 * k, 3 * k + 2))
        for t in range(n_trials):
            w = draw(st.integers(1, 3))
            subj += [f"s{s}"] * w
            trial += [f"t{t}"] * w  # trial names repeat across subjects on purpose
    perm = np.array(draw(st.permutations(range(len(subj)))))
    return k, np.array(subj)[perm], np.array(trial)[perm]


@SETTINGS
@given(data=subjects_trials(), seed=st.integers(0, 2**16))
def test_subject_dependent_properties(data, seed):
    k, subj, trial = data
    ds = make_ds({"subject": subj, "trial": trial})
    folds = make_folds(ds, "subject_dependent", k=k, seed=seed)
    key = np.char.add(np.char.add(subj, "|"), trial)  # a trial is (subject, trial)
    assert len(folds) == k
    for f in folds:
        check_fold(f, key, len(ds))  # no trial (none of its windows) in two parts
        assert set(subj[f.test]) == set(subj) == set(subj[f.train])  # every subject in both
        assert len(f.train) + len(f.valid) + len(f.test) == len(ds)
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(len(ds)))


@SETTINGS
@given(groups=grouped(min_groups=6, max_groups=12), seed=st.integers(0, 2**16))
def test_predefined_split_with_carved_valid(groups, seed):
    names = sorted(set(groups.tolist()))
    rng = np.random.default_rng(seed)
    test_groups = set(rng.choice(names, 2, replace=False).tolist())
    split = np.where(np.isin(groups, list(test_groups)), "test", "train")
    ds = make_ds({"video": groups}, {"poria": split})
    (f,) = make_folds(ds, "split", split="poria", valid_group="video", valid_seed=seed)
    check_fold(f, groups, len(ds))
    assert set(f.test.tolist()) == set(np.flatnonzero(split == "test").tolist())
    assert set(np.concatenate([f.train, f.valid]).tolist()) == set(
        np.flatnonzero(split == "train").tolist())


def test_predefined_split_with_its_own_valid_part():
    g = np.array(["a", "a", "b", "c", "d", "d"])
    split = np.array(["train", "train", "valid", "test", "test", ""])
    (f,) = make_folds(make_ds({"video": g}, {"standard": split}), "split", split="standard")
    assert (f.train.tolist(), f.valid.tolist(), f.test.tolist()) == ([0, 1], [2], [3, 4])


def test_predefined_split_that_is_leaky_by_group():
    g = np.array(["a", "a", "b", "b", "c", "c"])
    split = np.array(["train", "test", "train", "train", "valid", "valid"])
    ds = make_ds({"video": g}, {"standard": split})
    with pytest.raises(LeakageError, match="video.*'a'.*train and test"):
        make_folds(ds, "split", split="standard", valid_group="video")


def test_check_disjoint_catches_hand_made_leaks():
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    leaky = Fold("bad", np.array([0, 2]), np.array([4]), np.array([1, 5]), "video")
    with pytest.raises(LeakageError, match=r"fold 'bad': video \['a'\].*train and test"):
        check_disjoint(leaky, groups)
    with pytest.raises(LeakageError, match=r"\['c'\].*valid and test"):
        check_disjoint(Fold("v", np.array([0, 1]), np.array([4]), np.array([5]), "video"), groups)
    with pytest.raises(LeakageError, match="row"):  # a duplicated row
        check_disjoint(Fold("r", np.array([0, 0, 1]), np.array([2]), np.array([3]), "id"),
                       np.array(["0", "1", "2", "3", "4", "5"]))
    with pytest.raises(EmptySplitError, match="valid part is empty"):
        check_disjoint(Fold("e", np.array([0, 1]), np.array([], dtype=int), np.array([2]), "v"),
                       groups)
    check_disjoint(Fold("ok", np.array([0, 1]), np.array([2, 3]), np.array([4, 5]), "v"), groups)


def test_clear_errors():
    ds = make_ds({"video": np.array(["a", "a", "b", "b", "c", "c"])},
                 {"standard": np.array(["train"] * 4 + ["test"] * 2)})
    with pytest.raises(UnknownNameError, match="Valid protocols: group_kfold, loso"):
        make_folds(ds, "lost")
    with pytest.raises(ConfigError, match="no group key 'speaker'.*video"):
        make_folds(ds, "group_kfold", group="speaker")
    with pytest.raises(ConfigError, match=r"protocol.k=4; use 2 <= k <= 3"):
        make_folds(ds, "group_kfold", group="video", k=4)
    with pytest.raises(ConfigError, match="no predefined split 'poria'.*standard"):
        make_folds(ds, "split", split="poria")
    with pytest.raises(ConfigError, match="valid_group"):
        make_folds(ds, "split", split="standard")
    with pytest.raises(ConfigError, match=r"valid_fraction=1.5"):
        make_folds(ds, "split", split="standard", valid_group="video", valid_fraction=1.5)
    with pytest.raises(ConfigError, match=r"'loso' has no parameter\(s\) \['subjct'\]; valid "
                                          r"parameters: \['subject', 'valid_fraction', 'seed'\]"):
        make_folds(ds, "loso", subjct="video")
    # two groups: a k=2 training part holds one group, so no validation group can be carved
    two = make_ds({"video": np.array(["a", "a", "b", "b"])})
    with pytest.raises(EmptySplitError, match="single group"):
        make_folds(two, "group_kfold", group="video", k=2)
    few = make_ds({"subject": np.array(["s"] * 4), "trial": np.array(["1", "2", "3", "4"])})
    with pytest.raises(ConfigError, match="subject 's' has 4 trials, fewer than protocol.k=5"):
        make_folds(few, "subject_dependent", k=5)


def test_parameters_of_other_protocols_are_ignored(caplog):
    # a dataset config sets split/valid_group; choosing group_kfold on the command line
    # must not trip over them
    ds = make_ds({"video": np.repeat(["a", "b", "c", "d", "e", "f"], 2)},
                 {"standard": np.array(["train"] * 8 + ["test"] * 4)})
    with caplog.at_level("DEBUG", logger="emodistill"):
        folds = make_folds(ds, "group_kfold", group="video", k=2, split="standard",
                           valid_group="video", valid_seed=3)
    assert len(folds) == 2
    assert "ignores ['split', 'valid_group', 'valid_seed']" in caplog.text


def test_registry_lists_every_protocol():
    assert set(PROTOCOLS.names()) >= {"split", "group_kfold", "subject_dependent", "loso"}


@pytest.mark.parametrize("name, params, keys", [
    ("split", {"split": "poria", "valid_group": "video"}, {"video": 1}),
    ("group_kfold", {"group": "video", "k": 3}, {"video": 1}),
    ("loso", {"subject": "video"}, {"video": 1}),
    ("subject_dependent", {"subject": "video", "trial": "trial", "k": 2}, {"video": 1,
                                                                           "trial": 1}),
])
def test_valid_fraction_zero_trains_on_the_carved_rows_and_keeps_the_test_part(name, params,
                                                                               keys):
    videos = np.repeat([f"v{i}" for i in range(8)], 6)
    trials = np.tile([f"t{i}" for i in range(6)], 8)
    groups = {"video": videos, "trial": trials}
    split = np.where(np.isin(videos, ["v0", "v5"]), "test", "train")
    ds = make_ds({k: groups[k] for k in keys}, {"poria": split})
    carved = make_folds(ds, name, **params)
    whole = make_folds(ds, name, valid_fraction=0, **params)
    assert [f.name for f in whole] == [f.name for f in carved]
    for c, w in zip(carved, whole, strict=True):
        assert len(c.valid) > 0 and len(w.valid) == 0 and w.valid.dtype == np.int64
        assert w.test.tolist() == c.test.tolist()  # the test part is unchanged
        assert w.train.tolist() == sorted(c.train.tolist() + c.valid.tolist())


def test_valid_fraction_zero_errors():
    g = np.array(["a", "a", "b", "c", "d", "d"])
    own = make_ds({"video": g}, {"standard": np.array(["train", "train", "valid", "test",
                                                       "test", ""])})
    with pytest.raises(ConfigError, match="valid_fraction=0: split 'standard'.*own valid part"):
        make_folds(own, "split", split="standard", valid_fraction=0)
    with pytest.raises(ConfigError, match=r"valid_fraction=-0.1; use a value in \(0, 1\), or 0"):
        make_folds(own, "group_kfold", group="video", k=2, valid_fraction=-0.1)
    # no validation group needed when nothing is carved
    ds = make_ds({"video": g}, {"poria": np.array(["train"] * 4 + ["test"] * 2)})
    (f,) = make_folds(ds, "split", split="poria", valid_fraction=0)
    assert (f.train.tolist(), f.valid.tolist(), f.test.tolist()) == ([0, 1, 2, 3], [], [4, 5])
    # an empty valid part is allowed only when asked for
    fold = Fold("e", np.array([0, 1]), np.array([], dtype=np.int64), np.array([4]), "v")
    check_disjoint(fold, g, valid_optional=True)
    with pytest.raises(EmptySplitError, match="valid part is empty"):
        check_disjoint(fold, g)


@SETTINGS
@given(data=subjects_trials(), seed=st.integers(0, 2**16))
def test_per_subject_folds_hold_one_subject_and_the_pooled_test_trials(data, seed):
    k, subj, trial = data
    ds = make_ds({"subject": subj, "trial": trial})
    pooled = {f.name: f for f in make_folds(ds, "subject_dependent", k=k, seed=seed)}
    folds = make_folds(ds, "subject_dependent", k=k, seed=seed, per_subject=True)
    key = np.char.add(np.char.add(subj, "|"), trial)
    assert len(folds) == k * len(set(subj))
    for f in folds:
        check_fold(f, key, len(ds))
        # a subject's model never sees another subject's rows, in any part
        rows = np.concatenate([f.train, f.valid, f.test])
        assert len(set(subj[rows])) == 1
        s = subj[rows[0]]
        assert f.name == f"{f.pool}/subject{s}" and f.pool in pooled
        # every trial of the subject is in one part; its test trials are the pooled fold's
        assert sorted(rows.tolist()) == np.flatnonzero(subj == s).tolist()
        p = pooled[f.pool]
        assert f.test.tolist() == p.test[subj[p.test] == s].tolist()
    for name, p in pooled.items():
        joined = np.concatenate([f.test for f in folds if f.pool == name])
        assert sorted(joined.tolist()) == p.test.tolist()
    assert all(f.pool is None for f in pooled.values())


def test_per_subject_errors_name_the_fix():
    ds = make_ds({"subject": np.repeat(["a", "b"], 4), "trial": np.tile(list("1234"), 2)})
    with pytest.raises(ConfigError, match=r"per_subject=True needs protocol.name="
                                          r"subject_dependent \(got 'loso'\)"):
        make_folds(ds, "loso", per_subject=True)
    with pytest.raises(ConfigError, match=r"per_subject='yes'; use true"):
        make_folds(ds, "subject_dependent", k=2, per_subject="yes")
    # k=2 with 2 trials: one trial outside each test part, nothing left to validate on
    two = make_ds({"subject": np.repeat(["a", "b"], 2), "trial": np.tile(list("12"), 2)})
    with pytest.raises(EmptySplitError, match="subject 'a' has a single trial outside test "):
        make_folds(two, "subject_dependent", k=2, per_subject=True)


def test_per_subject_without_a_valid_part_trains_on_all_the_subjects_other_trials():
    ds = make_ds({"subject": np.repeat(["a", "b"], 4), "trial": np.tile(list("1234"), 2)})
    carved = make_folds(ds, "subject_dependent", k=2, per_subject=True)
    whole = make_folds(ds, "subject_dependent", k=2, per_subject=True, valid_fraction=0)
    for c, w in zip(carved, whole, strict=True):
        assert c.name == w.name and len(w.valid) == 0
        assert w.test.tolist() == c.test.tolist()
        assert w.train.tolist() == sorted(c.train.tolist() + c.valid.tolist())
    # one trial outside the test part is enough when nothing is validated on
    two = make_ds({"subject": np.repeat(["a", "b"], 2), "trial": np.tile(list("12"), 2)})
    folds = make_folds(two, "subject_dependent", k=2, per_subject=True, valid_fraction=0)
    assert all(len(f.train) == 1 and len(f.valid) == 0 for f in folds)
