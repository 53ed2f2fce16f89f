"""Use a trained checkpoint: predict on one sample or a batch, with any subset of modalities.

:func:`load` turns a self-describing ``model.pt`` (see :mod:`emodistill.checkpoint`)
into a :class:`Predictor`. ``Predictor.predict`` takes raw (un-normalised)
features, applies the normalisation fitted on the training part, runs the
model and returns a :class:`Prediction` that says what the numbers mean
(sentiment score and its name on the annotation scale, or class names and
probabilities).

Inputs
------
Features of modality ``m`` (``D`` features, trained maximum length ``T``):

* ``[D]``: one sample (``T`` must be 1),
* ``[B, D]`` when ``T == 1`` (a batch of vectors), ``[t, D]`` when ``T > 1``
  (one sequence of ``t <= T`` steps),
* ``[B, t, D]``: a batch of sequences of ``t <= T`` steps.

Shorter sequences are right-padded; ``lengths[m]`` (``[B]``) marks the real
steps of already padded arrays.

A model trained on token ids (``dataset.text_level=ids``: the text encoder is
fine-tuned inside it) takes raw text for that modality: one string or a list
of strings (tokenised with the model's local tokenizer), or token ids
``[t]`` / ``[B, t]`` (padding id 0).

Missing modalities
------------------
Any subset of the modalities the model was trained on may be given. A
modality that is not given (or given as ``None``, or whose ``present[m]`` is
False for a sample) is absent: its features are zeros and its presence flag is
False, exactly as in training batches (see :class:`emodistill.data.batch.Batch`).
What the model then does is the method's documented behaviour; for the
baselines:

* ``late_fusion``: the prediction is the average of the heads of the
  *present* modalities only, so it equals the prediction of those modalities
  alone;
* ``feature_fusion`` / the encoders of most methods: an absent modality
  contributes a zero feature vector (the encoder output is multiplied by the
  presence flag); accuracy drops unless the model was trained with missing
  modalities;
* ``unimodal``: the prediction needs its one modality.

A sample whose modalities are *all* absent would get the model's constant
response to zero features, a guess: :meth:`Predictor.predict` refuses it
(naming the samples), as it refuses a call in which no modality of the model
is given. A modality whose real steps are all non-finite (NaN/inf) for a
sample counts as absent for that sample (logged); isolated non-finite values
are replaced by 0 and logged, as the loaders do. Modality arrays of an input
``.npz`` file that the model does not use are ignored with a ``UserWarning``
naming them (a loaded dataset's other modalities are ignored silently: a
dataset is expected to hold more than one model uses).

Examples
--------
>>> import emodistill
>>> p = emodistill.load("runs/late_fusion-mosi-seed1111/standard/model.pt")  # doctest: +SKIP
>>> p.predict(text=text_vector, audio=audio_vector).to_records()  # doctest: +SKIP
[{'id': '0', 'target': 'sentiment', 'score': 1.42, 'label': 'weakly positive', ...}]
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from emodistill.checkpoint import LoadedCheckpoint, load_checkpoint
from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.formats.npz import read_npz_arrays
from emodistill.data.normalize import Standardizer
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import DataFormatError, DataNotFoundError
from emodistill.models.base import MERModel, ModelOutput

__all__ = [
    "load",
    "Predictor",
    "Prediction",
    "read_inputs_npz",
    "SENTIMENT_SCALE",
    "regression_label",
]

log = logging.getLogger(__name__)

#: names of the CMU-MOSI / MOSEI 7-point annotation scale ([-3, 3], rounded)
SENTIMENT_SCALE: dict[int, str] = {
    -3: "strongly negative",
    -2: "negative",
    -1: "weakly negative",
    0: "neutral",
    1: "weakly positive",
    2: "positive",
    3: "strongly positive",
}

ArrayLike = np.ndarray | Tensor | Sequence[float] | Sequence[Sequence[float]]


def regression_label(value: float, target: TargetSpec) -> str:
    """Human-readable meaning of a regression prediction.

    For the MOSI/MOSEI range ``[-3, 3]`` this is the name of the nearest point
    of the 7-point annotation scale (:data:`SENTIMENT_SCALE`); for any other
    target it is the sign: ``negative`` (< 0), ``neutral`` (0) or ``positive``.
    """
    if target.value_range is not None and tuple(target.value_range) == (-3.0, 3.0):
        return SENTIMENT_SCALE[int(np.clip(np.round(value), -3, 3))]
    return "negative" if value < 0 else ("positive" if value > 0 else "neutral")


@dataclass
class Prediction:
    """Predictions for a batch of samples, with their meaning.

    Attributes
    ----------
    ids : list of str
        ``[B]`` sample ids (``"0"``, ``"1"``... when none were given).
    target : TargetSpec
        What was predicted (name, kind, range, class names).
    values : np.ndarray
        ``[B]`` regression values, or ``[B, C]`` class probabilities.
    present : dict of str to np.ndarray
        Modality → ``[B]`` bool: which of the model's modalities each
        prediction actually used.
    """

    ids: list[str]
    target: TargetSpec
    values: np.ndarray
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_regression(self) -> bool:
        """True for a regression target."""
        return self.target.kind == "regression"

    @property
    def labels(self) -> list[str]:
        """``[B]`` label names: class names, or the regression value's name."""
        if self.is_regression:
            return [regression_label(float(v), self.target) for v in self.values]
        names = list(self.target.class_names or ())
        return [names[int(i)] for i in self.values.argmax(-1)]

    @property
    def class_index(self) -> np.ndarray:
        """``[B]`` predicted class indices (classification targets only)."""
        if self.is_regression:
            raise DataFormatError(
                f"target {self.target.name!r} is a regression target; read .values, not "
                ".class_index"
            )
        return self.values.argmax(-1)

    def modalities_used(self, i: int) -> list[str]:
        """Return the modalities present for sample ``i``."""
        return [m for m, p in self.present.items() if bool(p[i])]

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-safe dict per sample.

        Regression: ``id, target, score, label, modalities`` (plus ``polarity``).
        Classification: ``id, target, label, class_index, probabilities, modalities``.
        """
        out = []
        labels = self.labels
        for i, sid in enumerate(self.ids):
            rec: dict[str, Any] = {"id": sid, "target": self.target.name}
            if self.is_regression:
                v = float(self.values[i])
                rec["score"] = v
                rec["label"] = labels[i]
                rec["polarity"] = "negative" if v < 0 else ("positive" if v > 0 else "neutral")
                if self.target.value_range is not None:
                    rec["range"] = [float(x) for x in self.target.value_range]
            else:
                names = list(self.target.class_names or ())
                rec["label"] = labels[i]
                rec["class_index"] = int(self.values[i].argmax())
                rec["probabilities"] = {n: float(p) for n, p in zip(names, self.values[i],
                                                                    strict=True)}
            rec["modalities"] = self.modalities_used(i)
            out.append(rec)
        return out

    def to_frame(self) -> pd.DataFrame:
        """Return a table with one row per sample (probabilities as ``p_<class>`` columns)."""
        df = pd.DataFrame({"id": self.ids})
        if self.is_regression:
            df["score"] = self.values.astype(float)
            df["label"] = self.labels
        else:
            df["label"] = self.labels
            df["class_index"] = self.class_index
            for j, n in enumerate(self.target.class_names or ()):
                df[f"p_{n}"] = self.values[:, j].astype(float)
        df["modalities"] = [",".join(self.modalities_used(i)) for i in range(len(self))]
        return df


def read_inputs_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                dict[str, np.ndarray], list[str] | None]:
    """Read features from a file in the generic npz format (targets not needed).

    Parameters
    ----------
    path : path
        An ``.npz`` file with ``<modality>`` arrays and optionally
        ``modalities``, ``<modality>_lengths``, ``<modality>_present`` and ``id``
        (see :mod:`emodistill.data.formats.npz`).

    Returns
    -------
    inputs, lengths, present : dict of str to np.ndarray
        Modality → features / ``[N]`` lengths / ``[N]`` presence.
    ids : list of str or None
        The ``id`` array, when present.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataNotFoundError(f"input file {str(p)!r} does not exist")
    z = read_npz_arrays(p)
    if "modalities" in z:
        mods = [str(m) for m in z["modalities"]]
    else:
        reserved = ("id", "target_", "classes_", "range_", "group_", "split_")
        mods = [k for k in z if not k.startswith(reserved) and not k.endswith(("_lengths",
                                                                             "_present"))]
    missing = [m for m in mods if m not in z]
    if missing:
        raise DataFormatError(f"{p}: modalities {missing} are listed but have no array")
    inputs = {m: z[m] for m in mods}
    lengths = {m: z[f"{m}_lengths"] for m in mods if f"{m}_lengths" in z}
    present = {m: z[f"{m}_present"] for m in mods if f"{m}_present" in z}
    ids = [str(i) for i in z["id"]] if "id" in z else None
    return inputs, lengths, present, ids


def _as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"features of {name!r} are not a numeric array ({e})") from None


class Predictor:
    """A trained model ready for inference on raw features.

    Parameters
    ----------
    model : MERModel
        The trained model (put in eval mode).
    standardizer : Standardizer, optional
        Normalisation fitted on the training part (applied to every input).
    meta : dict, optional
        Checkpoint facts (fold, test metrics, fingerprint...).
    config : dict, optional
        The resolved run config.
    device : str or torch.device
        Where to run the model.

    Attributes
    ----------
    modalities : list of str
        The modalities the model was trained on (any subset may be given).
    target : TargetSpec
        What the model predicts.
    """

    def __init__(
        self,
        model: MERModel,
        *,
        standardizer: Standardizer | None = None,
        meta: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.standardizer = standardizer
        self.meta = dict(meta or {})
        self.config = dict(config or {})

    @classmethod
    def from_checkpoint(cls, loaded: LoadedCheckpoint, *,
                        device: str | torch.device = "cpu") -> Predictor:
        """Wrap a :class:`~emodistill.checkpoint.LoadedCheckpoint`."""
        return cls(loaded.model, standardizer=loaded.standardizer, meta=loaded.meta,
                   config=loaded.config, device=device)

    # ------------------------------------------------------------------ facts
    @property
    def modalities(self) -> list[str]:
        """Modalities the model was trained on, in order."""
        return list(self.model.modalities)

    @property
    def spec(self) -> DatasetSpec:
        """Input signature: each modality's feature dim and maximum length.

        A token-id modality (a model with a text encoder inside) keeps
        ``kind="tokens"``; :meth:`predict` takes raw text for it.
        """
        return getattr(self.model, "input_spec", self.model.spec)

    @property
    def target(self) -> TargetSpec:
        """The predicted target."""
        return self.model.target

    @property
    def method(self) -> str:
        """Registered method name of the model."""
        return str(self.config.get("method", {}).get("name", type(self.model).__name__))

    def __repr__(self) -> str:
        mods = ", ".join(f"{m.name}[{m.seq_len}x{m.dim}]" for m in self.spec.modalities)
        return f"Predictor({self.method}, target={self.target.name!r}, inputs: {mods})"

    # ----------------------------------------------------------------- inputs
    def _modality_array(self, ms: ModalitySpec, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        a = _as_float_array(x, ms.name)
        if a.ndim == 1:  # one sample, one step
            a = a[None, None, :]
        elif a.ndim == 2:
            a = a[:, None, :] if ms.seq_len == 1 else a[None]
        if a.ndim != 3:
            raise DataFormatError(
                f"modality {ms.name!r}: features of shape {a.shape}; expected [D], [B, D] "
                f"(vectors) or [t, D] / [B, t, D] (sequences) with D = {ms.dim}"
            )
        if a.shape[2] != ms.dim:
            raise DataFormatError(
                f"modality {ms.name!r}: {a.shape[2]} features per step, but the model was "
                f"trained on D = {ms.dim} (shape given: {a.shape})"
            )
        if a.shape[1] > ms.seq_len:
            raise DataFormatError(
                f"modality {ms.name!r}: sequence of {a.shape[1]} steps, longer than the "
                f"trained maximum T = {ms.seq_len}; keep the first {ms.seq_len} steps "
                f"(x[..., :{ms.seq_len}, :]) or resample the sequence"
            )
        dead = ~np.isfinite(a).any(axis=2)  # [B, t]: steps without one finite value
        a, _ = repair_nonfinite(a, what=f"predict input {ms.name}")
        return a, dead

    def make_batch(
        self,
        inputs: Mapping[str, ArrayLike | None],
        *,
        lengths: Mapping[str, ArrayLike] | None = None,
        present: Mapping[str, ArrayLike | bool] | None = None,
        strict: bool = True,
    ) -> Batch:
        """Build a normalised :class:`Batch` from raw features of any modality subset.

        Parameters
        ----------
        inputs : mapping of str to array or None
            Modality → raw features (shapes in the module docstring). Modalities
            the model uses but that are missing (or None) are absent.
        lengths : mapping of str to array, optional
            Modality → ``[B]`` true lengths (default: the given length).
        present : mapping of str to bool or array, optional
            Modality → presence, one bool or ``[B]`` bools (default: True for
            every given modality).
        strict : bool
            Refuse modality names the model does not know (set False to ignore
            extra modalities, e.g. those of a file written for several models).

        Returns
        -------
        Batch
            ``inputs`` ``[B, T, D]`` normalised and zero on padding and absent
            modalities, ``mask`` ``[B, T]``, ``present`` ``[B]``; ``target`` and
            ``index`` hold placeholders (zeros and ``0..B-1``).
        """
        lengths, present = dict(lengths or {}), dict(present or {})
        given = {k: v for k, v in inputs.items() if v is not None}
        used = [m for m in self.modalities if m in given]
        if not used:
            raise DataFormatError(
                f"none of the model's modalities {self.modalities} was given (got "
                f"{sorted(given) or 'nothing'}); give at least one of them"
            )
        extra = sorted(set(given) - set(self.modalities))
        if extra and strict:
            raise DataFormatError(
                f"modalities {extra} are not inputs of this model ({self.method}); it was "
                f"trained on {self.modalities} (any subset of them may be given)"
            )
        lengths = dict(lengths)
        arrays, dead = {}, {}
        for m in used:
            ms = self.spec.modality(m)
            if ms.is_tokens:  # raw text or token ids (serving/text_inputs.py)
                from emodistill.serving.text_inputs import token_inputs

                arrays[m], tok_len = token_inputs(self.model, ms, given[m])
                dead[m] = np.zeros(arrays[m].shape[:2], dtype=bool)
                lengths.setdefault(m, tok_len)
            else:
                arrays[m], dead[m] = self._modality_array(ms, given[m])
        sizes = {m: a.shape[0] for m, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise DataFormatError(
                f"modalities have different batch sizes {sizes}; give the same samples for "
                "every modality (mark a missing one with present[m] = False)"
            )
        B = next(iter(sizes.values()))
        feats, masks, pres = {}, {}, {}
        for ms in self.spec.modalities:
            T, m = ms.seq_len, ms.name
            steps = torch.arange(T)
            if m in arrays:
                a = arrays[m]
                t_given = a.shape[1]
                x = (torch.zeros(B, T, dtype=torch.long) if ms.is_tokens else
                     torch.zeros(B, T, ms.dim))
                x[:, :t_given] = torch.from_numpy(a)
                if m in lengths:
                    ln = torch.as_tensor(np.asarray(lengths[m]), dtype=torch.long).reshape(-1)
                    if ln.shape != (B,) or (ln < 0).any() or (ln > t_given).any():
                        raise DataFormatError(
                            f"{m}_lengths must be [{B}] ints in [0, {t_given}]; got "
                            f"{np.asarray(lengths[m]).tolist()}"
                        )
                else:
                    ln = torch.full((B,), t_given, dtype=torch.long)
                p = present.get(m, True)
                p_t = torch.as_tensor(np.asarray(p, dtype=bool)).reshape(-1)
                if p_t.numel() == 1:
                    p_t = p_t.expand(B).clone()
                if p_t.shape != (B,):
                    raise DataFormatError(
                        f"present[{m!r}] must be one bool or [{B}] bools; got shape "
                        f"{tuple(p_t.shape)}"
                    )
                real = steps[None, :t_given] < ln[:, None]
                all_nan = (torch.from_numpy(dead[m]) | ~real).all(1) & (ln > 0)
                if all_nan.any():  # nothing finite to read: absent, not a zero vector
                    log.warning("predict input %s: %d sample(s) hold only NaN/inf in every "
                                "real step; the modality counts as absent for them",
                                m, int(all_nan.sum()))
                    p_t = p_t & ~all_nan
                mk = (steps[None, :] < ln[:, None]) & p_t[:, None]
            else:
                x = (torch.zeros(B, T, dtype=torch.long) if ms.is_tokens else
                     torch.zeros(B, T, ms.dim))
                mk = torch.zeros(B, T, dtype=torch.bool)
                p_t = torch.zeros(B, dtype=torch.bool)
            feats[m], masks[m], pres[m] = (x * mk if ms.is_tokens else x * mk[..., None]), mk, p_t
        if self.standardizer is not None:
            feats = self.standardizer.transform_inputs(feats, masks)
        return Batch(feats, masks, pres, target=torch.zeros(B), index=torch.arange(B))

    def _batches(
        self,
        data: Mapping[str, ArrayLike | None] | str | Path | MultimodalDataset | None,
        arrays: dict[str, ArrayLike | None],
        lengths: Mapping[str, ArrayLike] | None,
        present: Mapping[str, ArrayLike | bool] | None,
        ids: Sequence[str] | None,
        modalities: Sequence[str] | None,
        batch_size: int,
        need_input: bool = False,
        videos: str | Sequence[str] | None = None,
    ) -> Iterator[tuple[Batch, list[str]]]:
        from emodistill.serving import context as ctx  # utterance context (method.context)

        mode, window = ctx.context_of(self.config)
        strict = True
        source = None
        if isinstance(data, MultimodalDataset):
            inputs = {m: data.features[m].cpu().numpy() for m in data.features}
            lengths = {m: data.mask[m].sum(1).cpu().numpy() for m in data.mask}
            present = {m: data.present[m].cpu().numpy() for m in data.present}
            ids = ids if ids is not None else data.ids.tolist()
            strict = False
        elif isinstance(data, str | Path):
            inputs, file_len, file_pres, file_ids = read_inputs_npz(data)
            source = str(data)
            lengths = {**file_len, **dict(lengths or {})}
            present = {**file_pres, **dict(present or {})}
            ids = ids if ids is not None else file_ids
            strict = False
        else:
            inputs = dict(data or {})
        inputs.update(arrays)
        if modalities is not None:
            unknown = sorted(set(modalities) - set(self.modalities))
            if unknown:
                raise DataFormatError(
                    f"modalities={list(modalities)}: {unknown} are not inputs of this model; "
                    f"choose among {self.modalities}"
                )
            inputs = {m: v for m, v in inputs.items() if m in modalities}
        ignored = sorted(m for m, v in inputs.items() if v is not None and m not in
                         self.modalities)
        if source is not None and ignored:
            warnings.warn(
                f"{source}: arrays {ignored} are not inputs of this model ({self.method}, "
                f"modalities {self.modalities}) and were ignored", UserWarning, stacklevel=3)
        if mode == "sequence":
            inputs = ctx.as_utterance_vectors(inputs)
        full = self.make_batch(inputs, lengths=lengths, present=present, strict=strict)
        B = full.size
        if ids is None:
            ids = [str(i) for i in range(B)]
        ids = [str(i) for i in ids]
        if len(ids) != B:
            raise DataFormatError(f"{len(ids)} ids given for {B} samples")
        if need_input:
            none = ~torch.stack([full.present[m] for m in self.modalities]).any(0)
            if none.any():
                bad = [ids[i] for i in torch.nonzero(none).reshape(-1).tolist()]
                raise DataFormatError(
                    f"{'' if source is None else source + ': '}{len(bad)} of {B} sample(s) "
                    f"have none of the model's modalities {self.modalities} present (ids "
                    f"{bad[:5]}{' ...' if len(bad) > 5 else ''}): each is absent, marked "
                    "present=False or only NaN/inf, so a prediction would be a guess. Give at "
                    "least one modality per sample, or leave these samples out"
                )
        if videos is not None or mode == "sequence":  # without videos: a context of one
            lengths_v = ctx.video_lengths(videos, B) if videos is not None else [1] * B
            steps = {m.name: m.seq_len for m in self.spec.modalities}
            yield from ctx.contextual_batches(full, ids, lengths_v, batch_size=batch_size,
                                              mode=mode, window=window, steps=steps)
            return
        for start in range(0, B, batch_size):
            sl = slice(start, start + batch_size)
            yield Batch(
                {k: v[sl] for k, v in full.inputs.items()},
                {k: v[sl] for k, v in full.mask.items()},
                {k: v[sl] for k, v in full.present.items()},
                target=full.target[sl],
                index=full.index[sl],
            ), ids[sl]

    # ---------------------------------------------------------------- predict
    @torch.no_grad()
    def forward(self, batch: Batch) -> ModelOutput:
        """Run the model on an already built (normalised) batch."""
        return self.model(batch.to(self.device))

    def predict(
        self,
        data: Mapping[str, ArrayLike | None] | str | Path | MultimodalDataset | None = None,
        *,
        lengths: Mapping[str, ArrayLike] | None = None,
        present: Mapping[str, ArrayLike | bool] | None = None,
        ids: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
        batch_size: int = 256,
        videos: str | Sequence[str] | None = None,
        **arrays: ArrayLike | None,
    ) -> Prediction:
        """Predict one sample or a batch.

        Parameters
        ----------
        data : mapping, path or MultimodalDataset, optional
            Modality → raw features (see the module docstring for shapes), an
            ``.npz`` file in the generic format, or a loaded dataset. Keyword
            arguments ``text=..., audio=...`` may be used instead of (or on top
            of) a mapping.
        lengths : mapping of str to array, optional
            Modality → ``[B]`` true lengths of padded sequences.
        present : mapping of str to bool or array, optional
            Modality → presence flags (False marks a missing modality).
        ids : sequence of str, optional
            Sample ids (default: from the file / dataset, else ``0..B-1``).
        modalities : sequence of str, optional
            Use only these modalities of the input (the others are treated as
            missing), e.g. to deploy an audio-only path.
        batch_size : int
            Samples per forward pass.
        videos : str or sequence of str, optional
            For a model trained with utterance context (``method.context``): the
            video of the utterances (one id for all, or one per utterance; each
            video's utterances together, in utterance order), used as each
            other's context. Default: every utterance is a context of one.

        Returns
        -------
        Prediction
            Values or probabilities with their meaning, per sample.
        """
        values, pres, all_ids = [], {m: [] for m in self.modalities}, []
        for batch, bid in self._batches(data, arrays, lengths, present, ids, modalities,
                                        batch_size, need_input=True, videos=videos):
            out = self.forward(batch)
            values.append(self.model.predict_values(out).float().cpu().numpy())
            for m in self.modalities:
                pres[m].append(batch.present[m].cpu().numpy())
            all_ids += bid
        return Prediction(
            ids=all_ids,
            target=self.target,
            values=np.concatenate(values),
            present={m: np.concatenate(v) for m, v in pres.items()},
        )

    @torch.no_grad()
    def embed(
        self,
        data: Mapping[str, ArrayLike | None] | str | Path | MultimodalDataset | None = None,
        *,
        lengths: Mapping[str, ArrayLike] | None = None,
        present: Mapping[str, ArrayLike | bool] | None = None,
        modalities: Sequence[str] | None = None,
        batch_size: int = 256,
        return_source: bool = False,
        **arrays: ArrayLike | None,
    ) -> np.ndarray | tuple[np.ndarray, str]:
        """Learned representations ``[B, F]`` of the inputs.

        The model's fused representation (``ModelOutput.fused``) when it has one,
        else its per-modality features concatenated, else its outputs. Takes the
        same inputs as :meth:`predict`; with ``return_source=True`` also returns
        which of ``"fused"``, ``"features"`` or ``"outputs"`` was used.
        """
        parts, source = [], "outputs"
        for batch, _ in self._batches(data, arrays, lengths, present, None, modalities,
                                      batch_size):
            out = self.forward(batch)
            if out.fused is not None:
                f, source = out.fused, "fused"
            elif out.features:
                f = torch.cat([out.features[m] for m in self.modalities if m in out.features],
                              -1)
                source = "features"
            else:
                f = out.preds if out.preds.ndim == 2 else out.preds[:, None]
            parts.append(f.float().cpu().numpy())
        emb = np.concatenate(parts)
        return (emb, source) if return_source else emb


def load(checkpoint: str | Path, *, device: str | torch.device = "cpu") -> Predictor:
    """Load a checkpoint (``model.pt``, or a run folder with one fold) as a :class:`Predictor`.

    Parameters
    ----------
    checkpoint : path
        A ``model.pt`` written by training, or a run (fold) folder holding
        exactly one ``model.pt`` below it.
    device : str or torch.device
        Where to run the model (default CPU).
    """
    p = Path(checkpoint).expanduser()
    if p.is_dir():
        found = sorted(q for q in p.rglob("model.pt") if "teacher" not in q.parts[len(p.parts):])
        if len(found) != 1:
            raise DataNotFoundError(
                f"{str(p)!r} is a folder with {len(found)} model.pt files "
                f"({[str(q.relative_to(p)) for q in found][:5]}); pass one model.pt"
            )
        p = found[0]
    return Predictor.from_checkpoint(load_checkpoint(p, map_location="cpu"), device=device)
