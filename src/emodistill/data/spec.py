"""The data contract: what a dataset declares about itself.

A :class:`DatasetSpec` names the modalities (with feature dim and sequence
length), the targets (regression or classification) and the grouping keys
(video, speaker, subject, trial). Models are built from a spec, and checkpoints
store it so that loading them needs nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from emodistill.errors import ConfigError

__all__ = ["ModalitySpec", "TargetSpec", "DatasetSpec", "TaskKind", "InputKind"]

TaskKind = Literal["regression", "binary", "multiclass"]
#: ``features``: float ``[N, T, D]`` arrays; ``tokens``: int64 token ids ``[N, T]`` of a
#: vocabulary of ``D`` entries (e.g. WordPiece ids for a text transformer)
InputKind = Literal["features", "tokens"]


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality.

    Parameters
    ----------
    name : str
        Modality name (``text``, ``audio``, ``vision``, ``eeg``, ``eog``, ``gsr``...).
    dim : int
        Feature dimension ``D``.
    seq_len : int
        Maximum sequence length ``T`` (1 for utterance- or trial-level vectors).
    kind : {"features", "tokens"}
        ``features`` (default): float features ``[N, T, D]``. ``tokens``: int64
        token ids ``[N, T]`` (``dim`` = the vocabulary size, padding id 0, the
        padding mask = the attention mask); a model turns them into features
        with a text encoder (:mod:`emodistill.models.text_encoder`).
    """

    name: str
    dim: int
    seq_len: int = 1
    kind: InputKind = "features"

    def __post_init__(self) -> None:
        if self.dim < 1 or self.seq_len < 1:
            raise ConfigError(
                f"modality {self.name!r}: dim={self.dim} and seq_len={self.seq_len} must be >= 1"
            )
        if self.kind not in ("features", "tokens"):
            raise ConfigError(
                f"modality {self.name!r}: kind={self.kind!r}; use 'features' or 'tokens'"
            )

    @property
    def is_tokens(self) -> bool:
        """True for token-id inputs (``kind == "tokens"``)."""
        return self.kind == "tokens"


@dataclass(frozen=True)
class TargetSpec:
    """One prediction target.

    Parameters
    ----------
    name : str
        Target name (``sentiment``, ``polarity``, ``valence``...).
    kind : {"regression", "binary", "multiclass"}
        Task type. Binary and multiclass targets are integer class indices.
    value_range : tuple of float, optional
        Closed interval of valid regression values (``(-3, 3)`` for MOSI/MOSEI).
    class_names : tuple of str, optional
        Names of the classes, index ``i`` naming class ``i``.
    """

    name: str
    kind: TaskKind
    value_range: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("regression", "binary", "multiclass"):
            raise ConfigError(
                f"target {self.name!r}: kind={self.kind!r}; use regression, binary or multiclass"
            )
        if self.kind != "regression" and not self.class_names:
            raise ConfigError(f"target {self.name!r}: a {self.kind} target needs class_names")
        if self.kind == "binary" and len(self.class_names or ()) != 2:
            raise ConfigError(f"target {self.name!r}: binary targets have exactly 2 class_names")

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for regression)."""
        return 0 if self.kind == "regression" else len(self.class_names or ())

    @property
    def n_outputs(self) -> int:
        """Width of the model output: 1 for regression, else the number of classes."""
        return 1 if self.kind == "regression" else self.num_classes


@dataclass(frozen=True)
class DatasetSpec:
    """Everything a model needs to know about a dataset.

    Parameters
    ----------
    name : str
        Dataset name.
    modalities : tuple of ModalitySpec
        Input modalities, in canonical order.
    targets : tuple of TargetSpec
        Available targets; a run selects one.
    group_keys : tuple of str
        Grouping keys present in the data (``video``, ``speaker``, ``subject``, ``trial``).
    """

    name: str
    modalities: tuple[ModalitySpec, ...]
    targets: tuple[TargetSpec, ...]
    group_keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def modality_names(self) -> list[str]:
        """Names of the modalities, in order."""
        return [m.name for m in self.modalities]

    def modality(self, name: str) -> ModalitySpec:
        """Return the spec of modality ``name`` (clear error if absent)."""
        for m in self.modalities:
            if m.name == name:
                return m
        raise ConfigError(
            f"dataset {self.name!r} has no modality {name!r}; it has {self.modality_names}"
        )

    def target(self, name: str | None = None) -> TargetSpec:
        """Return target ``name``, or the first target when ``name`` is None."""
        if name is None:
            return self.targets[0]
        for t in self.targets:
            if t.name == name:
                return t
        raise ConfigError(
            f"dataset {self.name!r} has no target {name!r}; "
            f"valid targets: {[t.name for t in self.targets]}"
        )

    def select(self, modalities: list[str] | None) -> DatasetSpec:
        """Return a spec restricted to ``modalities`` (all when None), keeping their order."""
        if modalities is None:
            return self
        for name in modalities:
            self.modality(name)
        keep = tuple(m for m in self.modalities if m.name in modalities)
        return DatasetSpec(self.name, keep, self.targets, self.group_keys)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON/YAML-safe) for configs and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"],
            modalities=tuple(ModalitySpec(**m) for m in d["modalities"]),
            targets=tuple(
                TargetSpec(
                    name=t["name"],
                    kind=t["kind"],
                    value_range=tuple(t["value_range"]) if t.get("value_range") else None,
                    class_names=tuple(t["class_names"]) if t.get("class_names") else None,
                )
                for t in d["targets"]
            ),
            group_keys=tuple(d.get("group_keys", ())),
        )
