"""In-memory multimodal dataset: the one container every loader produces."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec
from emodistill.errors import DataFormatError, EmptySplitError

__all__ = ["MultimodalDataset", "repair_nonfinite"]

log = logging.getLogger(__name__)


def repair_nonfinite(x: np.ndarray, *, what: str, fill: float = 0.0) -> tuple[np.ndarray, int]:
    """Replace ``NaN`` and ``±inf`` by ``fill`` (MMSA's rule for audio ``-inf``).

    Parameters
    ----------
    x : np.ndarray
        Feature array of any shape.
    what : str
        Name used in the log message (e.g. ``"mosi train audio"``).
    fill : float
        Replacement value.

    Returns
    -------
    repaired : np.ndarray
        Copy of ``x`` (float32) without non-finite values.
    count : int
        Number of values replaced; logged at WARNING level when non-zero.
    """
    x = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        x = x.copy()
        x[bad] = fill
        log.warning("%s: replaced %d non-finite values (NaN/inf) by %s", what, count, fill)
    return x, count


class MultimodalDataset:
    """Samples with several modalities, targets, ids and groups, held in memory.

    Parameters
    ----------
    spec : DatasetSpec
        The dataset's declared contract; arrays are checked against it.
    features : mapping of str to array
        Modality → ``[N, T, D]`` float features (``[N, D]`` is accepted as ``T = 1``);
        for a ``tokens`` modality (:attr:`ModalitySpec.kind`) ``[N, T]`` integer
        token ids, kept as int64 (see :mod:`emodistill.data.tokens`).
    targets : mapping of str to array
        Target name → ``[N]`` values (float regression, int class indices).
    ids : sequence of str
        ``[N]`` sample identifiers.
    groups : mapping of str to array, optional
        Group key → ``[N]`` group labels (video, speaker, subject, trial).
    lengths : mapping of str to array, optional
        Modality → ``[N]`` true lengths; steps ``>= length`` are padding.
        Default: full length.
    present : mapping of str to array, optional
        Modality → ``[N]`` bool presence. Default: all present.
    splits : mapping of str to array, optional
        Named predefined splits: name → ``[N]`` strings in {train, valid, test}
        (``""`` for samples outside that split).
    info : dict, optional
        Free-form provenance (source files, repairs made) written to run logs.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        features: Mapping[str, np.ndarray | Tensor],
        *,
        targets: Mapping[str, np.ndarray | Tensor],
        ids: Sequence[str] | np.ndarray,
        groups: Mapping[str, np.ndarray] | None = None,
        lengths: Mapping[str, np.ndarray] | None = None,
        present: Mapping[str, np.ndarray] | None = None,
        splits: Mapping[str, np.ndarray] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.ids = np.asarray(ids, dtype=str)
        n = len(self.ids)
        self.features: dict[str, Tensor] = {}
        self.mask: dict[str, Tensor] = {}
        self.present: dict[str, Tensor] = {}
        for ms in spec.modalities:
            if ms.name not in features:
                raise DataFormatError(
                    f"{spec.name}: modality {ms.name!r} declared in the spec but not given; "
                    f"given: {sorted(features)}"
                )
            if ms.is_tokens:  # int64 ids [N, T] with the attention mask as padding mask
                from emodistill.data.tokens import check_token_modality

                x, m, p = check_token_modality(
                    spec.name, ms, features[ms.name], n,
                    None if lengths is None else lengths.get(ms.name),
                    None if present is None else present.get(ms.name))
                self.features[ms.name], self.mask[ms.name], self.present[ms.name] = x, m, p
                continue
            x = torch.as_tensor(np.asarray(features[ms.name], dtype=np.float32))
            if x.ndim == 2:
                x = x[:, None, :]
            if x.ndim != 3 or x.shape[0] != n or x.shape[2] != ms.dim or x.shape[1] > ms.seq_len:
                raise DataFormatError(
                    f"{spec.name}: modality {ms.name!r} has shape {tuple(x.shape)}; expected "
                    f"[{n}, <= {ms.seq_len}, {ms.dim}] (N, T, D) from the spec"
                )
            if x.shape[1] < ms.seq_len:  # right-pad to the declared length
                x = torch.nn.functional.pad(x, (0, 0, 0, ms.seq_len - x.shape[1]))
            if not torch.isfinite(x).all():
                raise DataFormatError(
                    f"{spec.name}: modality {ms.name!r} holds NaN/inf; repair it in the loader "
                    "with emodistill.data.dataset.repair_nonfinite (logged) before building"
                )
            steps = torch.arange(ms.seq_len)
            if lengths is not None and ms.name in lengths:
                ln = torch.as_tensor(np.asarray(lengths[ms.name]), dtype=torch.long)
                if ln.shape != (n,) or (ln < 0).any() or (ln > ms.seq_len).any():
                    raise DataFormatError(
                        f"{spec.name}: {ms.name}_lengths must be [{n}] ints in [0, {ms.seq_len}]"
                    )
                m = steps[None, :] < ln[:, None]
            else:
                m = torch.ones(n, ms.seq_len, dtype=torch.bool)
            p = (
                torch.as_tensor(np.asarray(present[ms.name], dtype=bool))
                if present is not None and ms.name in present
                else torch.ones(n, dtype=torch.bool)
            )
            if p.shape != (n,):
                raise DataFormatError(f"{spec.name}: presence of {ms.name!r} must have shape [{n}]")
            m = m & p[:, None]
            x = x * m[..., None]  # padding and absent modalities are exact zeros
            self.features[ms.name], self.mask[ms.name], self.present[ms.name] = x, m, p
        self.targets: dict[str, Tensor] = {}
        for ts in spec.targets:
            if ts.name not in targets:
                raise DataFormatError(f"{spec.name}: target {ts.name!r} missing from the data")
            y = np.asarray(targets[ts.name])
            if y.shape != (n,):
                raise DataFormatError(
                    f"{spec.name}: target {ts.name!r} has shape {y.shape}; expected ({n},)"
                )
            if ts.kind == "regression":
                y = y.astype(np.float32)
                if not np.isfinite(y).all():
                    raise DataFormatError(f"{spec.name}: target {ts.name!r} has NaN/inf values")
                if ts.value_range is not None:
                    lo, hi = ts.value_range
                    bad = (y < lo) | (y > hi)
                    if bad.any():
                        raise DataFormatError(
                            f"{spec.name}: {int(bad.sum())} values of target {ts.name!r} lie "
                            f"outside [{lo}, {hi}] (e.g. {float(y[bad][0])} at id "
                            f"{str(self.ids[bad][0])!r}); fix the labels or the declared range"
                        )
                self.targets[ts.name] = torch.as_tensor(y)
            else:
                if not np.issubdtype(y.dtype, np.integer):
                    if y.dtype.kind not in "bf" or not np.all(np.equal(np.mod(y, 1), 0)):
                        raise DataFormatError(
                            f"{spec.name}: class target {ts.name!r} must hold integer class "
                            f"indices; got values like {y[:3]!r}"
                        )
                y = y.astype(np.int64)
                bad = (y < 0) | (y >= ts.num_classes)
                if bad.any():
                    raise DataFormatError(
                        f"{spec.name}: target {ts.name!r} has class index {y[bad][0]} at id "
                        f"{str(self.ids[bad][0])!r}; valid indices are 0..{ts.num_classes - 1} "
                        f"({', '.join(ts.class_names or ())})"
                    )
                self.targets[ts.name] = torch.as_tensor(y)
        self.groups = {k: np.asarray(v) for k, v in (groups or {}).items()}
        for k, v in self.groups.items():
            if v.shape != (n,):
                raise DataFormatError(f"{spec.name}: group {k!r} must have shape ({n},)")
        self.splits = {k: np.asarray(v, dtype=str) for k, v in (splits or {}).items()}
        for k, v in self.splits.items():
            bad = set(np.unique(v)) - {"train", "valid", "test", ""}
            if v.shape != (n,) or bad:
                raise DataFormatError(
                    f"{spec.name}: split {k!r} must be [{n}] strings in train/valid/test; "
                    f"found {sorted(str(b) for b in bad)}"
                )
        self.info = dict(info or {})
        #: optional transform applied by the engine to each part *after* the split
        #: (e.g. windowing trials into windows), so no trial spans two parts
        self.post_split: Callable[[MultimodalDataset], MultimodalDataset] | None = None

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        mods = ", ".join(f"{m.name}[{m.seq_len}x{m.dim}]" for m in self.spec.modalities)
        return f"MultimodalDataset({self.spec.name!r}, n={len(self)}, {mods})"

    def subset(self, index: np.ndarray | Sequence[int], *,
               allow_empty: bool = False) -> MultimodalDataset:
        """Return a new dataset with rows ``index`` (no data is shared for writing).

        An empty ``index`` is an :class:`EmptySplitError` unless ``allow_empty``
        (a fold without a validation part, ``protocol.valid_fraction=0``).
        """
        idx = np.asarray(index)
        if idx.dtype == bool:  # a boolean mask, not the rows 0 and 1
            if idx.shape != (len(self),):
                raise DataFormatError(
                    f"{self.spec.name}: boolean subset mask has shape {idx.shape}; expected "
                    f"({len(self)},)"
                )
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        if idx.size == 0 and not allow_empty:
            raise EmptySplitError(f"{self.spec.name}: subset with no samples requested")
        t = torch.as_tensor(idx)
        out = object.__new__(MultimodalDataset)
        out.spec = self.spec
        out.ids = self.ids[idx]
        out.features = {k: v[t] for k, v in self.features.items()}
        out.mask = {k: v[t] for k, v in self.mask.items()}
        out.present = {k: v[t] for k, v in self.present.items()}
        out.targets = {k: v[t] for k, v in self.targets.items()}
        out.groups = {k: v[idx] for k, v in self.groups.items()}
        out.splits = {k: v[idx] for k, v in self.splits.items()}
        out.info = dict(self.info)
        out.post_split = self.post_split
        out._fingerprint = None
        return out

    def batch(self, index: Tensor | np.ndarray | Sequence[int], target: str) -> Batch:
        """Gather rows ``index`` into a :class:`Batch` for target ``target``."""
        t = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return Batch(
            inputs={k: v[t] for k, v in self.features.items()},
            mask={k: v[t] for k, v in self.mask.items()},
            present={k: v[t] for k, v in self.present.items()},
            target=self.targets[target][t],
            index=t,
        )

    def to(self, device: torch.device | str) -> MultimodalDataset:
        """Move all tensors to ``device`` in place (keeps data on a GPU); returns self."""
        for d in (self.features, self.mask, self.present, self.targets):
            for k in d:
                d[k] = d[k].to(device)
        return self

    def with_features(self, features: dict[str, Tensor]) -> MultimodalDataset:
        """Return a shallow copy whose features are replaced (masks unchanged)."""
        out = self.subset(np.arange(len(self)), allow_empty=True)  # a copy
        out.features = {k: features[k] if not features[k].is_floating_point()  # token ids
                        else features[k] * out.mask[k][..., None] for k in out.features}
        out._fingerprint = None
        return out

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) over ids, features, masks and targets (cached)."""
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update("\x00".join(self.ids.tolist()).encode())
        for d in (self.features, self.mask, self.present, self.targets):
            for k in sorted(d):
                h.update(k.encode())
                h.update(np.ascontiguousarray(d[k].cpu().numpy()).tobytes())
        self._fingerprint: str | None = h.hexdigest()[:16]
        return self._fingerprint

    def summary(self) -> dict[str, Any]:
        """Return counts, shapes and label statistics for ``data verify`` and run logs."""
        out: dict[str, Any] = {
            "dataset": self.spec.name,
            "n_samples": len(self),
            "modalities": {
                m.name: {
                    "shape": [len(self), m.seq_len, m.dim],
                    "present": int(self.present[m.name].sum()),
                    "mean_length": round(float(self.mask[m.name].sum(1).float().mean()), 2),
                }
                for m in self.spec.modalities
            },
            "targets": {},
            "groups": {k: int(len(np.unique(v))) for k, v in self.groups.items()},
            "splits": {
                k: {s: int((v == s).sum()) for s in ("train", "valid", "test") if (v == s).any()}
                for k, v in self.splits.items()
            },
            "fingerprint": self.fingerprint(),
        }
        for ts in self.spec.targets:
            y = self.targets[ts.name].cpu().numpy()
            if ts.kind == "regression":
                out["targets"][ts.name] = {
                    "kind": ts.kind,
                    "min": float(y.min()),
                    "max": float(y.max()),
                    "mean": round(float(y.mean()), 4),
                }
            else:
                counts = np.bincount(y, minlength=ts.num_classes)
                out["targets"][ts.name] = {
                    "kind": ts.kind,
                    "counts": dict(zip(ts.class_names or (), counts.tolist(), strict=True)),
                }
        return out
