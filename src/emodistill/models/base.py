"""The model contract shared by baselines and distillation methods.

Every method is an :class:`MERModel`: built from the data signature (a
:class:`~emodistill.data.spec.DatasetSpec`, the target and the modalities to
use) plus its own keyword hyper-parameters; ``forward(batch)`` returns a
:class:`ModelOutput`; ``loss(batch, out)`` returns named loss terms with the
total under ``"loss"`` and the plain task loss under ``"task"``.

Teacher → student methods take a ``teacher`` keyword: the engine passes the
trained teacher model (see ``emodistill.training.run.obtain_teacher``); it is
``None`` when a saved student is loaded for inference, so the student must
work without it and must not save the teacher's weights in its state dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from emodistill._registry import Registry
from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, TargetSpec
from emodistill.errors import ConfigError

__all__ = ["ModelOutput", "MERModel", "METHODS", "build_method", "task_loss", "Head"]


@dataclass
class ModelOutput:
    """What a model returns.

    Attributes
    ----------
    preds : Tensor
        ``[B]`` regression values or ``[B, C]`` class logits.
    features : dict of str to Tensor
        Modality → ``[B, F]`` representation (the hooks feature-level KD reads).
    logits : dict of str to Tensor
        Modality → that modality's own head output (same shape as ``preds``),
        for methods with per-modality heads.
    fused : Tensor, optional
        ``[B, F]`` fused representation.
    aux : dict of str to Tensor
        Method-specific tensors (edge weights, attention over modalities...).
    """

    preds: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)
    logits: dict[str, Tensor] = field(default_factory=dict)
    fused: Tensor | None = None
    aux: dict[str, Tensor] = field(default_factory=dict)


def task_loss(preds: Tensor, target: Tensor, spec: TargetSpec, kind: str = "l1") -> Tensor:
    """Compute the supervised loss: L1 (MMSA) or MSE for regression, cross-entropy for classes.

    Parameters
    ----------
    preds : Tensor
        ``[B]`` values or ``[B, C]`` logits.
    target : Tensor
        ``[B]`` float values or int64 class indices.
    spec : TargetSpec
        The target being predicted.
    kind : {"l1", "mse"}
        Regression loss.
    """
    if spec.kind == "regression":
        t = target.to(preds.dtype)
        if kind == "mse":
            return nn.functional.mse_loss(preds, t)
        return nn.functional.l1_loss(preds, t)
    return nn.functional.cross_entropy(preds.float(), target.long())


class Head(nn.Sequential):
    """MLP head ``[B, in_dim] -> [B, n_outputs]`` (squeezed to ``[B]`` for regression).

    Parameters
    ----------
    in_dim, n_outputs : int
        Input and output widths.
    hidden : int
        Hidden width (0 = a single linear layer).
    dropout : float
        Dropout before each linear layer.
    """

    def __init__(self, in_dim: int, n_outputs: int, *, hidden: int = 0, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, n_outputs))
        super().__init__(*layers)
        self.squeeze = n_outputs == 1

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        y = super().forward(x)
        return y.squeeze(-1) if self.squeeze else y


class MERModel(nn.Module):
    """Base class of every registered method.

    Parameters
    ----------
    spec : DatasetSpec
        Data signature; only the selected modalities are kept.
    target : TargetSpec
        What to predict; fixes the output width.
    modalities : list of str, optional
        Modalities to use (default: all of ``spec``).
    regression_loss : {"l1", "mse"}
        Task loss for regression targets.
    """

    #: minimum number of modalities the method needs
    min_modalities: int = 1
    #: True for teacher → student methods whose loss needs the ``teacher`` argument
    requires_teacher: bool = False
    #: True when the method can train as one member of a stacked model
    #: (``emodistill.training.parallel``): its forward and loss are pure tensor code
    #: (no data-dependent Python control flow, no optimiser of its own)
    parallel_ok: bool = False
    #: modules whose input is the per-utterance representation and whose output the
    #: prediction (``"head"``, ``"heads.*"``); ``method.context`` puts a context layer
    #: there (see :mod:`emodistill.models.context`)
    context_sites: tuple[str, ...] = ()

    # Optional hooks the engine calls when a method defines them:
    #
    # ``epoch_logs(self) -> dict[str, float]``: called at the end of each validation
    #     epoch; the values are logged as ``model/<key>`` and land in metrics.csv
    #     (e.g. mean learned GD edge weights).
    # ``prepare_fold(cls, prep, fold, out, params) -> dict`` (classmethod): called once
    #     per fold before the model is built, with the fold's data available; returns
    #     extra constructor parameters (e.g. a dominant modality chosen on validation).
    # ``train_state(self) -> dict`` / ``load_train_state(self, state)``: Python-side
    #     training state outside ``state_dict`` (e.g. step counters), saved in the
    #     training checkpoints so that ``train --resume`` repeats an uninterrupted fit.
    # ``ModelOutput.aux`` entries whose key starts with ``sample_`` (``[B]`` or
    #     ``[B, K]``) are written to predictions.csv for every test sample.

    def __init__(
        self,
        *,
        spec: DatasetSpec,
        target: TargetSpec,
        modalities: list[str] | None = None,
        regression_loss: str = "l1",
    ) -> None:
        super().__init__()
        self.spec = spec.select(list(modalities) if modalities else None)
        self.target = target
        self.modalities = self.spec.modality_names
        self.regression_loss = regression_loss
        if len(self.modalities) < self.min_modalities:
            raise ConfigError(
                f"{type(self).__name__} needs at least {self.min_modalities} modalities; "
                f"got {self.modalities}"
            )

    @property
    def n_outputs(self) -> int:
        """Output width: 1 for regression, else the number of classes."""
        return self.target.n_outputs

    def task(self, preds: Tensor, target: Tensor) -> Tensor:
        """Task loss of ``preds`` against ``target``."""
        return task_loss(preds, target, self.target, self.regression_loss)

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        """Run the model on ``batch``."""
        raise NotImplementedError

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:
        """Named loss terms; ``"loss"`` is optimised, ``"task"`` is the plain task loss."""
        t = self.task(out.preds, batch.target)
        return {"loss": t, "task": t}

    def predict_values(self, out: ModelOutput) -> Tensor:
        """Regression values ``[B]`` or class probabilities ``[B, C]``."""
        return out.preds if self.target.kind == "regression" else out.preds.softmax(-1)


METHODS: Registry[type[MERModel]] = Registry("method")


def build_method(
    name: str, *, spec: DatasetSpec, target: TargetSpec, params: dict[str, Any] | None = None
) -> MERModel:
    """Instantiate registered method ``name`` with hyper-parameters ``params``.

    Unknown parameters raise :class:`ConfigError` listing the valid ones.
    ``params["text_encoder"]`` (every method) configures the text transformer
    for token-id modalities: when ``spec`` has one, the method is built on the
    embedded spec and the encoder is attached in front of it
    (:mod:`emodistill.models.text_encoder`).
    ``context`` (``none`` | ``sequence`` | a registered context layer) and
    ``context_params`` are taken by every method: a context layer is attached
    before the method's heads (:func:`emodistill.models.context.attach_context`).
    """
    import inspect

    cls = METHODS.get(name)
    params = dict(params or {})
    input_spec = spec
    frontend = None
    if "text_encoder" in params or any(m.is_tokens for m in spec.modalities):
        from emodistill.models.text_encoder import resolve_text_encoder

        mods = params.get("modalities")
        used = spec.select(list(mods) if mods else None)
        one = params.get("modality")  # single-modality methods: encode only that one
        if isinstance(one, str) and one in used.modality_names:
            keep = [m.name for m in used.modalities if not m.is_tokens or m.name == one]
            used = used.select(keep)
        spec, frontend = resolve_text_encoder(used, params.pop("text_encoder", None))
        if frontend is not None:
            input_spec = used
    context = params.pop("context", None) or "none"
    context_params = dict(params.pop("context_params", None) or {})
    valid: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        valid |= {
            n for n, p in inspect.signature(klass.__init__).parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no parameter(s) {unknown}; "
            f"valid: {sorted(valid - {'spec', 'target'})}"
        )
    model = cls(spec=spec, target=target, **params)
    if frontend is not None:
        from emodistill.models.text_encoder import attach_text_encoder

        attach_text_encoder(model, frontend, input_spec)
    if context not in ("none", "sequence"):  # sequence: the data carries the context
        from emodistill.models.context import attach_context

        attach_context(model, str(context), context_params)
    return model
