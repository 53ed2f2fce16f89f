"""A fold's parts as a model sees them: subset → post-split → subject norm → standardise.

Training (sequential and parallel), evaluation, the report, cross-fitted teachers
and methods that look at a fold's data (e.g. HKD-MER choosing its dominant
modality) all turn a fold into parts here, so the parts a model was trained,
selected and tested on are built one way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.normalize import Standardizer
from emodistill.data.protocols import Fold
from emodistill.data.subject_norm import check_subject_norm, record_subject_norm, subject_normalize
from emodistill.errors import ConfigError

__all__ = ["fold_parts", "PARTS"]

#: the parts of a fold, in the order they are built
PARTS = ("train", "valid", "test")


def fold_parts(
    ds: MultimodalDataset,
    fold: Fold,
    names: Sequence[str] = PARTS,
    *,
    normalize: bool | Standardizer = False,
    subject_norm: Any = "none",
    record: Path | None = None,
    check: Callable[[MultimodalDataset], None] | None = None,
    transform: Callable[[MultimodalDataset], MultimodalDataset] | None = None,
) -> tuple[dict[str, MultimodalDataset], Standardizer | None]:
    """Cut ``ds`` into the parts ``names`` of ``fold``, ready for a model.

    The steps, in order: each part is ``ds.subset(fold.<name>)``; the dataset's
    ``post_split`` transform (e.g. windowing trials) is applied to each part
    *after* the split, so a trial never gives windows to two parts; ``check``
    sees each part; each subject is standardised with its own statistics
    (``subject_norm``); the features are standardised (``normalize``); last,
    ``transform`` (e.g. utterance context's sequence mode).

    Parameters
    ----------
    ds : MultimodalDataset
        The whole dataset (``[N, T, D]`` per modality).
    fold : Fold
        Row indices of the parts.
    names : sequence of str
        Which of ``"train"``, ``"valid"``, ``"test"`` to build.
    normalize : bool or Standardizer
        ``False``: no standardisation. ``True``: fit a :class:`Standardizer` on
        the train part only (``"train"`` must be in ``names``) and apply it to
        every part. A fitted ``Standardizer`` (e.g. a checkpoint's): apply it,
        never refit.
    subject_norm : {"none", "transductive", "train"}
        ``protocol.subject_norm`` (:mod:`emodistill.data.subject_norm`); its
        statistics come from the fold's parts (all three are built for them
        whatever ``names`` holds), features only, never labels.
    record : Path, optional
        Folder to write ``subject_norm.json`` into (the engine's fold folder).
    check : callable, optional
        Called on each part after the split and windowing, before any
        normalisation (e.g. refusing feature dims a checkpoint was not trained on).
    transform : callable, optional
        Applied to each part last, after the standardisation.

    Returns
    -------
    parts : dict of str to MultimodalDataset
        ``name → part``, in the order of ``names``.
    standardizer : Standardizer or None
        The statistics applied (None when ``normalize`` is False).
    """
    bad = [n for n in names if n not in PARTS]
    if bad:
        raise ConfigError(f"fold part(s) {bad}; valid parts: {list(PARTS)}")
    mode = check_subject_norm(subject_norm, ds)
    built = PARTS if mode != "none" else tuple(names)
    # an empty valid part: a fold without validation (protocol.valid_fraction=0)
    parts = {k: ds.subset(getattr(fold, k), allow_empty=k == "valid") for k in built}
    if ds.post_split is not None:  # e.g. windowing: only after the split
        parts = {k: ds.post_split(v) for k, v in parts.items()}
    if check is not None:
        for v in parts.values():
            check(v)
    if mode != "none":
        parts, info = subject_normalize(parts, mode=mode)
        if record is not None:
            record_subject_norm(record, info)
    parts = {k: parts[k] for k in names}
    if normalize is True:
        if "train" not in parts:
            raise ConfigError("fold_parts(normalize=True) fits on the train part: include 'train'")
        std: Standardizer | None = Standardizer.fit(parts["train"])
    else:
        std = normalize if isinstance(normalize, Standardizer) else None
    if std is not None:
        parts = {k: std.transform(v) for k, v in parts.items()}
    if transform is not None:
        parts = {k: transform(v) for k, v in parts.items()}
    return parts, std
