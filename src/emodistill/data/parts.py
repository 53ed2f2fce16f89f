"""A fold's parts as a model sees them: subset → post-split → standardise.

Training, evaluation, the report and methods that look at a fold's data
(e.g. HKD-MER choosing its dominant modality) all turn a fold into parts here,
so the parts a model was trained, selected and tested on are built one way.
"""

from __future__ import annotations

from collections.abc import Sequence

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.normalize import Standardizer
from emodistill.data.protocols import Fold
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
) -> tuple[dict[str, MultimodalDataset], Standardizer | None]:
    """Cut ``ds`` into the parts ``names`` of ``fold``, ready for a model.

    Each part is ``ds.subset(fold.<name>)``; the dataset's ``post_split``
    transform (e.g. windowing trials) is applied to each part *after* the split,
    so a trial never gives windows to two parts; then the features are
    standardised.

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
    parts = {k: ds.subset(getattr(fold, k)) for k in names}
    if ds.post_split is not None:  # e.g. windowing: only after the split
        parts = {k: ds.post_split(v) for k, v in parts.items()}
    if normalize is True:
        if "train" not in parts:
            raise ConfigError("fold_parts(normalize=True) fits on the train part: include 'train'")
        std: Standardizer | None = Standardizer.fit(parts["train"])
    else:
        std = normalize if isinstance(normalize, Standardizer) else None
    if std is not None:
        parts = {k: std.transform(v) for k, v in parts.items()}
    return parts, std
