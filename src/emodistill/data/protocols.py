"""Evaluation protocols as code: every split is made on groups, before any windowing.

Each protocol returns a list of :class:`Fold` (train / valid / test row indices)
and asserts that its group key never spans two parts of a fold. Validation
sets are always carved out of the training part, so model selection never
sees the test part.

``valid_fraction=0`` carves no validation part: the fold's ``valid`` is empty and
the whole training part is trained on. Only a fixed recipe may use it (nothing
is selected on validation; the engine checks it, see ``training/selection.py``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emodistill._registry import Registry
from emodistill.data.dataset import MultimodalDataset
from emodistill.errors import ConfigError, EmptySplitError, LeakageError

__all__ = ["Fold", "PROTOCOLS", "make_folds", "check_disjoint"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """Row indices of one train / valid / test partition.

    Attributes
    ----------
    name : str
        Fold name (``"poria"``, ``"fold3"``, ``"subject07"``, ``"fold3/subject07"``...).
    train, valid, test : np.ndarray
        int64 row indices, disjoint.
    group_key : str
        The group key whose values never span two parts.
    pool : str or None
        Per-subject models (``subject_dependent`` with ``per_subject=True``): the name of
        the pooled fold (``"fold3"``) whose test predictions this fold's model joins; the
        metrics are computed once over the pool's test part
        (:func:`emodistill.training.pooling.pool_folds`). None for an ordinary fold.
    """

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    group_key: str
    pool: str | None = None


ProtocolFn = Callable[..., list[Fold]]
PROTOCOLS: Registry[ProtocolFn] = Registry("protocol")


def _groups(ds: MultimodalDataset, key: str | list[str]) -> np.ndarray:
    keys = [key] if isinstance(key, str) else list(key)
    for k in keys:
        if k not in ds.groups:
            raise ConfigError(
                f"dataset {ds.spec.name!r} has no group key {k!r}; available: {sorted(ds.groups)}"
            )
    if len(keys) == 1:
        return ds.groups[keys[0]].astype(str)
    cols = [ds.groups[k].astype(str) for k in keys]
    return np.array(["|".join(t) for t in zip(*cols, strict=True)])


def check_disjoint(fold: Fold, groups: np.ndarray, *, valid_optional: bool = False) -> None:
    """Raise :class:`LeakageError` if a group value occurs in two parts of ``fold``.

    An empty part is an :class:`EmptySplitError`, except an empty ``valid`` part
    when ``valid_optional`` (``protocol.valid_fraction=0``).
    """
    parts = {"train": fold.train, "valid": fold.valid, "test": fold.test}
    seen: dict[str, set[str]] = {k: set(groups[v].tolist()) for k, v in parts.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        both = seen[a] & seen[b]
        if both:
            raise LeakageError(
                f"fold {fold.name!r}: {fold.group_key} {sorted(both)[:3]} appear in both "
                f"{a} and {b}"
            )
    idx = np.concatenate(list(parts.values()))
    if len(np.unique(idx)) != len(idx):
        raise LeakageError(f"fold {fold.name!r}: a row appears in two parts")
    for k, v in parts.items():
        if len(v) == 0 and not (k == "valid" and valid_optional):
            raise EmptySplitError(
                f"fold {fold.name!r}: the {k} part is empty; use fewer folds, a smaller "
                "valid_fraction, or more data"
            )


def _carve_valid(
    train: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``train`` rows into (train, valid) by whole groups (``fraction=0``: no valid)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(
            f"protocol.valid_fraction={fraction}; use a value in (0, 1), or 0 for no validation "
            "part (a fixed recipe trained on all training data)"
        )
    if fraction == 0:
        return np.sort(train), np.zeros(0, dtype=np.int64)
    g = groups[train]
    if len(np.unique(g)) < 2:
        raise EmptySplitError(
            f"cannot carve a validation set out of train: it holds a single group {str(g[0])!r}"
        )
    from sklearn.model_selection import GroupShuffleSplit  # lazy: `emodistill list` stays fast

    gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    tr, va = next(gss.split(train, groups=g))
    return np.sort(train[tr]), np.sort(train[va])


def _finish(folds: list[Fold], groups: np.ndarray, valid_fraction: float) -> list[Fold]:
    for f in folds:  # valid_fraction=0: an empty valid part was asked for
        check_disjoint(f, groups, valid_optional=valid_fraction == 0)
    return folds


@PROTOCOLS.register("split")
def predefined_split(
    ds: MultimodalDataset,
    *,
    split: str = "standard",
    valid_group: str | None = None,
    valid_fraction: float = 0.15,
    valid_seed: int = 0,
) -> list[Fold]:
    """Use a predefined split stored with the data (``standard``, ``poria``...).

    When the split has no ``valid`` part, one is carved out of ``train`` by whole
    ``valid_group`` groups (e.g. whole videos for MOSI's Poria split);
    ``valid_fraction=0`` carves none (an empty ``valid`` part).
    """
    if split not in ds.splits:
        raise ConfigError(
            f"dataset {ds.spec.name!r} has no predefined split {split!r}; "
            f"available: {sorted(ds.splits) or 'none'} (or use protocol group_kfold)"
        )
    lab = ds.splits[split]
    train, valid, test = (np.flatnonzero(lab == s) for s in ("train", "valid", "test"))
    key = valid_group or "id"
    groups = _groups(ds, valid_group) if valid_group else ds.ids.astype(str)
    if len(valid) == 0:
        if valid_group is None and valid_fraction != 0:
            raise ConfigError(
                f"split {split!r} has no valid part; set protocol.valid_group (e.g. video) so "
                "one is carved out of train by whole groups"
            )
        train, valid = _carve_valid(train, groups, valid_fraction, valid_seed)
    elif valid_fraction == 0:
        raise ConfigError(
            f"protocol.valid_fraction=0: split {split!r} of {ds.spec.name!r} has its own valid "
            "part, nothing is carved out of train; valid_fraction=0 applies to a carved "
            "validation part only (remove the override)"
        )
    return _finish([Fold(split, train, valid, test, key)], groups, valid_fraction)


@PROTOCOLS.register("group_kfold")
def group_kfold(
    ds: MultimodalDataset,
    *,
    group: str = "video",
    k: int = 5,
    valid_fraction: float = 0.15,
    seed: int = 0,
) -> list[Fold]:
    """K-fold over whole groups (video, speaker, subject); valid carved by group from train."""
    groups = _groups(ds, group)
    n_groups = len(np.unique(groups))
    if not 2 <= k <= n_groups:
        raise ConfigError(f"protocol.k={k}; use 2 <= k <= {n_groups} (number of {group}s)")
    from sklearn.model_selection import GroupKFold

    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (tr, te) in enumerate(splitter.split(np.arange(len(ds)), groups=groups)):
        tr, va = _carve_valid(tr, groups, valid_fraction, seed + i)
        folds.append(Fold(f"fold{i}", tr, va, np.sort(te), group))
    return _finish(folds, groups, valid_fraction)


@PROTOCOLS.register("subject_dependent")
def subject_dependent(
    ds: MultimodalDataset,
    *,
    subject: str = "subject",
    trial: str = "trial",
    k: int = 5,
    valid_fraction: float = 0.15,
    seed: int = 0,
    per_subject: bool = False,
) -> list[Fold]:
    """Subject-dependent k-fold over whole trials.

    Unlike TorchEEG's ``KFoldPerSubjectGroupbyTrial``, which splits the windows
    *inside* each trial (so neighbouring windows of one trial land in train and
    test), whole trials are held out here. Each subject's trials are split into
    ``k`` folds; fold ``i`` tests on the ``i``-th part of every subject and trains
    one pooled model on the rest, so every test subject is also seen in training
    but no trial (and none of its windows) is in two parts. Validation trials are
    carved per fold from the training trials.

    ``per_subject=True`` (``protocol.per_subject``) trains one model per subject instead
    of one pooled model: fold ``i`` becomes one fold ``fold<i>/<subject><s>`` per subject,
    whose train and valid parts are that subject's trials outside its ``i``-th part
    (validation trials carved from them, per subject) and whose test part is that
    subject's ``i``-th part, the same test trials as the pooled fold ``i``. Each such
    fold names its pooled fold in :attr:`Fold.pool`; the run computes the metrics of
    fold ``i`` once over the test predictions of all its subjects' models, as the
    pooled model's are computed.
    """
    if not isinstance(per_subject, bool):
        raise ConfigError(f"protocol.per_subject={per_subject!r}; use true (one model per "
                          "subject) or false (one pooled model per fold)")
    subj = _groups(ds, subject)
    trial_key = _groups(ds, [subject, trial])
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for s in np.unique(subj):
        trials = np.unique(trial_key[subj == s])
        if len(trials) < k:
            raise ConfigError(
                f"subject {str(s)!r} has {len(trials)} trials, fewer than protocol.k={k}"
            )
        rng.shuffle(trials)
        for i, chunk in enumerate(np.array_split(trials, k)):
            parts[i].append(np.flatnonzero(np.isin(trial_key, chunk)))
    if per_subject:
        folds = _per_subject_folds(parts, subj, trial_key, key=f"{subject}+{trial}",
                                   subject=subject, valid_fraction=valid_fraction, seed=seed)
        return _finish(folds, trial_key, valid_fraction)
    folds = []
    for i in range(k):
        te = np.sort(np.concatenate(parts[i]))
        tr = np.setdiff1d(np.arange(len(ds)), te)
        tr, va = _carve_valid(tr, trial_key, valid_fraction, seed + i)
        tr, va = _keep_subjects_in_train(tr, va, subj, trial_key)
        folds.append(Fold(f"fold{i}", tr, va, te, f"{subject}+{trial}"))
    return _finish(folds, trial_key, valid_fraction)


def _per_subject_folds(
    parts: list[list[np.ndarray]], subj: np.ndarray, trial_key: np.ndarray, *, key: str,
    subject: str, valid_fraction: float, seed: int,
) -> list[Fold]:
    """One fold per (part, subject): the subject's own trials only, valid carved per subject."""
    folds = []
    for i, chunks in enumerate(parts):
        for te in chunks:  # one chunk per subject, in the order of np.unique(subj)
            s = str(subj[te[0]])
            own = np.flatnonzero(subj == s)
            tr = np.setdiff1d(own, te)
            need = 2 if valid_fraction > 0 else 1  # one to train on (and one to validate on)
            if len(np.unique(trial_key[tr])) < need:
                lack = "a single trial" if need == 2 else "no trial"
                raise EmptySplitError(
                    f"protocol.per_subject: subject {s!r} has {lack} outside test part {i}, "
                    f"too few to {'train and validate' if need == 2 else 'train'} on; use a "
                    "smaller protocol.k or per_subject=false")
            tr, va = _carve_valid(tr, trial_key, valid_fraction, seed + i)
            folds.append(Fold(f"fold{i}/{subject}{s}", tr, va, np.sort(te),
                              key, pool=f"fold{i}"))
    return folds


def _keep_subjects_in_train(
    train: np.ndarray, valid: np.ndarray, subj: np.ndarray, trial_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move one validation trial back to train for any subject left without a training trial.

    The validation carve draws whole trials across all subjects; with few trials per
    subject it can take all of a subject's training trials, which would break the
    subject-dependent promise that every test subject is seen in training.
    """
    for s in np.setdiff1d(np.unique(subj[valid]), np.unique(subj[train])):
        first = trial_key[valid][subj[valid] == s][0]
        back = valid[trial_key[valid] == first]
        train, valid = np.sort(np.concatenate([train, back])), np.setdiff1d(valid, back)
    return train, valid


@PROTOCOLS.register("loso")
def leave_one_subject_out(
    ds: MultimodalDataset,
    *,
    subject: str = "subject",
    valid_fraction: float = 0.15,
    seed: int = 0,
) -> list[Fold]:
    """Leave-one-subject-out; validation subjects are carved out of the training subjects."""
    groups = _groups(ds, subject)
    folds = []
    from sklearn.model_selection import LeaveOneGroupOut

    for tr, te in LeaveOneGroupOut().split(np.arange(len(ds)), groups=groups):
        tr, va = _carve_valid(tr, groups, valid_fraction, seed)
        folds.append(Fold(f"{subject}{groups[te[0]]}", tr, va, np.sort(te), subject))
    return _finish(folds, groups, valid_fraction)


def _protocol_params(fn: ProtocolFn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "ds"]


def make_folds(ds: MultimodalDataset, name: str, **params: object) -> list[Fold]:
    """Run protocol ``name`` on ``ds`` with ``params`` (clear errors on bad names).

    Parameters that belong to *other* protocols (a dataset config's ``split`` when
    ``protocol.name=loso`` is chosen on the command line) are ignored with a log
    line; a parameter no protocol knows is an error listing the valid ones.
    """
    fn = PROTOCOLS.get(name)
    if params.get("per_subject") and name != "subject_dependent":
        raise ConfigError(f"protocol.per_subject={params['per_subject']!r} needs "
                          f"protocol.name=subject_dependent (got {name!r}): per-subject models "
                          "train and test on each subject's own trials")
    own = _protocol_params(fn)
    foreign = {k for other in PROTOCOLS.names() if other != name
               for k in _protocol_params(PROTOCOLS.get(other))} - set(own)
    ignored = sorted(k for k in params if k in foreign)
    if ignored:
        log.debug("protocol %r ignores %s (parameters of other protocols)", name, ignored)
    unknown = sorted(k for k in params if k not in own and k not in foreign)
    if unknown:
        raise ConfigError(
            f"protocol {name!r} has no parameter(s) {unknown}; valid parameters: {own}"
        )
    return fn(ds, **{k: v for k, v in params.items() if k in own})
