"""How a model is selected, and whether the validation part may be used to select it.

A loader declares in ``info["leaky_splits"]`` which of its features were learned
with labels on which rows, per modality. Two forms, both keyed by a predefined
split name:

* a list, ``{"standard": ["text", "vision"]}``: every part of that split is
  leaked for those modalities (their test part holds rows the features were
  trained on); the engine refuses the split unless ``protocol.allow_leaky``;
* a mapping part → modalities, ``{"poria": {"train": ["text", "vision"]}}``:
  the rows of that part were seen *with their labels* by the feature extractor
  of those modalities. Any validation or test part of any fold that holds such
  rows is leaked for those modalities; a validation part carved out of a leaked
  training part is therefore leaked too.

Selecting on a leaked validation part (early stopping, checkpoint choice, the
plateau scheduler, HKD-MER's dominant-modality choice, teacher selection,
sweeps) is refused with a :class:`~emodistill.errors.ConfigError` naming the two
honest ways out:

1. a fixed recipe: ``train.selection=last`` with a fixed epoch budget
   (``train.max_epochs``), ``train.scheduler=none`` and hyper-parameters taken
   from a leak-free dataset, named in ``train.recipe_from`` (recorded in the run
   folder);
2. leak-free features (e.g. dataset ``mosi_raw_features``).

``train.selection``:

* ``best`` (default): the checkpoint with the best ``train.monitor`` on the
  validation part, early stopping after ``train.patience`` epochs without
  improvement;
* ``last``: the weights after exactly ``train.max_epochs`` epochs; the
  validation part is still evaluated each epoch (a diagnostic curve) but never
  read to choose anything.

Since a fixed recipe reads nothing from the validation part, it may train on it:
``protocol.valid_fraction=0`` carves no validation part (every fold's ``valid``
is empty; see :func:`check_no_valid`). Anything that would select on validation
is then refused: ``train.selection=best``, the plateau scheduler, a method that
chooses on validation (:func:`require_clean_valid` with ``no_valid``), sweeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from emodistill.errors import ConfigError

if TYPE_CHECKING:
    from emodistill.data.dataset import MultimodalDataset
    from emodistill.data.protocols import Fold

__all__ = ["SELECTIONS", "NO_VALID", "label_seen_rows", "fold_leaks", "valid_leaks",
           "check_selection", "check_no_valid", "selection_record", "require_clean_valid",
           "honest_ways_out"]

#: valid values of ``train.selection``
SELECTIONS: tuple[str, ...] = ("best", "last")

#: how a run without a validation part (``protocol.valid_fraction=0``) is described
NO_VALID = "no validation part: fixed recipe trained on all training data"

_KEEP_VALID = "or keep a validation part (protocol.valid_fraction > 0, e.g. 0.15)"


def honest_ways_out(modalities: Sequence[str]) -> str:
    """Return the sentence naming the two honest alternatives to leaked selection."""
    return (
        "Two honest ways out: (1) a fixed recipe, train.selection=last with a fixed "
        "train.max_epochs, train.scheduler=none and hyper-parameters taken from a leak-free "
        "dataset, named in train.recipe_from=... (recorded in the run folder); or (2) "
        f"leak-free features for {list(modalities)} (e.g. dataset mosi_raw_features: MiniLM "
        "text embeddings never saw MOSI labels, the openSMILE audio is hand-designed)."
    )


def _declared(ds: MultimodalDataset) -> Mapping[str, Any]:
    decl = ds.info.get("leaky_splits", {}) or {}
    if not isinstance(decl, Mapping):
        raise ConfigError(
            f"dataset {ds.spec.name!r}: info['leaky_splits'] must map split names to a list of "
            f"modalities or to {{part: [modalities]}}; found {type(decl).__name__}"
        )
    return decl


def label_seen_rows(ds: MultimodalDataset) -> dict[str, np.ndarray]:
    """Modality → ``[N]`` bool mask of rows whose labels its features were learned on.

    Read from the mapping form of ``info["leaky_splits"]`` (see the module docstring).
    """
    seen: dict[str, np.ndarray] = {}
    for split, parts in _declared(ds).items():
        if not isinstance(parts, Mapping):
            continue  # list form: handled by whole-split refusal
        if split not in ds.splits:
            continue  # e.g. a subset without that split column
        lab = np.asarray(ds.splits[split]).astype(str)
        for part, mods in parts.items():
            rows = lab == str(part)
            for m in mods:
                seen[m] = seen.get(m, np.zeros(len(ds), dtype=bool)) | rows
    return seen


def fold_leaks(ds: MultimodalDataset, fold: Fold, modalities: Iterable[str], *,
               split: str | None = None) -> dict[str, list[str]]:
    """Which modalities are leaked in the ``valid`` and ``test`` parts of ``fold``.

    Parameters
    ----------
    ds : MultimodalDataset
        The whole dataset (fold indices refer to its rows).
    fold : Fold
        Row indices of the parts.
    modalities : iterable of str
        The modalities the model reads.
    split : str, optional
        The predefined split the fold comes from (``protocol.split``), for the
        list form of the declaration.

    Returns
    -------
    dict
        ``{"valid": [...], "test": [...]}``, sorted modality names.
    """
    mods = list(modalities)
    decl = _declared(ds)
    whole = decl.get(split, []) if split is not None else []
    whole = list(whole) if not isinstance(whole, Mapping) else []
    seen = label_seen_rows(ds)
    out: dict[str, set[str]] = {"valid": set(), "test": set()}
    for part in out:
        rows = np.asarray(getattr(fold, part))
        for m in mods:
            if m in whole or (m in seen and len(rows) and bool(seen[m][rows].any())):
                out[part].add(m)
    return {k: sorted(v) for k, v in out.items()}


def valid_leaks(ds: MultimodalDataset, folds: Iterable[Fold], modalities: Iterable[str], *,
                split: str | None = None) -> list[str]:
    """Modalities leaked in the validation part of any of ``folds``."""
    mods = list(modalities)
    leaked: set[str] = set()
    for f in folds:
        leaked |= set(fold_leaks(ds, f, mods, split=split)["valid"])
    return sorted(leaked)


def check_selection(train: Mapping[str, Any], leaked: Sequence[str], *, dataset: str,
                    who: str = "the model") -> None:
    """Refuse validation-based selection when the validation part is leaked.

    Parameters
    ----------
    train : mapping
        The ``train`` config section (``selection``, ``scheduler``, ``recipe_from``...).
    leaked : sequence of str
        Modalities leaked in the validation part (:func:`valid_leaks`).
    dataset : str
        Dataset name, for the message.
    who : str
        What is being selected (``"the model"``, ``"the teacher"``...).
    """
    sel = train.get("selection", "best")
    if sel not in SELECTIONS:
        raise ConfigError(f"train.selection={sel!r}; use one of {', '.join(SELECTIONS)}")
    if sel == "last":
        me = train.get("max_epochs")
        if me is None or int(me) < 1:
            raise ConfigError(
                f"train.selection=last needs a fixed epoch budget: train.max_epochs={me!r}; "
                "set a positive number of epochs"
            )
    if not leaked:
        return
    where = (f"the validation part of {dataset!r} is leaked for {list(leaked)} (those features "
             "were learned with labels on the training split it was carved from; see the data "
             "README)")
    if sel == "best":
        raise ConfigError(
            f"train.selection=best would select {who} on leaked validation numbers: {where}. "
            + honest_ways_out(leaked)
        )
    if train.get("scheduler", "none") == "plateau":
        raise ConfigError(
            f"train.scheduler=plateau steps the learning rate of {who} on a validation metric, "
            f"but {where}; set train.scheduler=none for the fixed recipe. "
            + honest_ways_out(leaked)
        )
    if not train.get("recipe_from"):
        raise ConfigError(
            f"train.selection=last on leaked validation ({where}) needs the source of its "
            "hyper-parameters: set train.recipe_from='<leak-free dataset and how they were "
            "chosen>' (recorded in the run folder). " + honest_ways_out(leaked)
        )


def check_no_valid(train: Mapping[str, Any], *, who: str = "the model") -> None:
    """Refuse selecting ``who`` on a validation part that ``protocol.valid_fraction=0`` removed.

    Parameters
    ----------
    train : mapping
        The ``train`` config section (``selection``, ``scheduler``...).
    who : str
        What is being trained (``"the model"``, ``"the teacher"``...).
    """
    head = "protocol.valid_fraction=0 leaves no validation part, but"
    sel = train.get("selection", "best")
    if sel != "last":
        raise ConfigError(
            f"{head} train.selection={sel} would select {who} on it (best checkpoint and early "
            "stopping). Set train.selection=last with a fixed train.max_epochs (a fixed "
            f"recipe) {_KEEP_VALID}."
        )
    if train.get("scheduler", "none") == "plateau":
        raise ConfigError(
            f"{head} train.scheduler=plateau steps the learning rate of {who} on a validation "
            f"metric. Set train.scheduler=none {_KEEP_VALID}."
        )


def selection_record(train: Mapping[str, Any], leaked: Sequence[str], *,
                     no_valid: bool = False) -> dict[str, Any]:
    """How a model is selected, for ``results.json`` and the report.

    Parameters
    ----------
    train : mapping
        The ``train`` config section.
    leaked : sequence of str
        Modalities leaked in the validation part.
    no_valid : bool
        The folds have no validation part (``protocol.valid_fraction=0``).

    Returns
    -------
    dict
        ``selection``, ``monitor``, ``mode``, ``max_epochs``, ``patience``,
        ``recipe_from``, ``valid_leaked_for``, ``valid_part`` (False without one)
        and a one-line ``summary``.
    """
    sel = str(train.get("selection", "best"))
    rec: dict[str, Any] = {
        "selection": sel,
        "monitor": train.get("monitor"),
        "mode": train.get("mode"),
        "max_epochs": train.get("max_epochs"),
        "patience": train.get("patience") if sel == "best" else None,
        "scheduler": train.get("scheduler"),
        "recipe_from": train.get("recipe_from"),
        "valid_leaked_for": list(leaked),
        "valid_part": not no_valid,
    }
    if sel == "best":
        s = (f"checkpoint with the best {rec['monitor']} ({rec['mode']}) on the validation part, "
             f"early stopping after {rec['patience']} epochs without improvement "
             f"(at most {rec['max_epochs']} epochs)")
    else:
        s = (f"{NO_VALID}: the weights after exactly {rec['max_epochs']} epochs "
             "(protocol.valid_fraction=0)" if no_valid else
             f"fixed recipe: the weights after exactly {rec['max_epochs']} epochs; the "
             "validation part is not read to choose anything")
        if rec["recipe_from"]:
            s += f"; hyper-parameters from {rec['recipe_from']}"
    if leaked and not no_valid:
        s += (f". The validation part is LEAKED for {list(leaked)}: its curve is a diagnostic "
              "only and must not be read as held-out performance")
    rec["summary"] = s
    return rec


def require_clean_valid(leaked: Sequence[str], *, what: str, fix: str,
                        no_valid: bool = False) -> None:
    """Refuse a choice ``what`` made on a leaked (or absent: ``no_valid``) validation part."""
    if no_valid:
        raise ConfigError(
            f"{what} is chosen on the validation part, but protocol.valid_fraction=0 leaves "
            f"none. Fix it in the config instead ({fix}) {_KEEP_VALID}."
        )
    if leaked:
        raise ConfigError(
            f"{what} is chosen on the validation part, which is leaked for {list(leaked)}. "
            f"Fix it in the config instead ({fix}), or use leak-free features for "
            f"{list(leaked)} (e.g. dataset mosi_raw_features)."
        )
