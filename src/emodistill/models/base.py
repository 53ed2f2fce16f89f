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

The engine calls the hooks declared on :class:`MERModel` (``prepare_fold``,
``epoch_logs``, ``configure_optimizers`` + ``training_step``); a method
overrides the ones it needs. A method never imports the engine
(``emodistill.training``): what it needs of a fold comes in a
:class:`FoldContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from emodistill._registry import Registry
from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, TargetSpec
from emodistill.distill.losses import task_loss
from emodistill.errors import ConfigError
from emodistill.optim import make_optimizer
from emodistill.param_names import rename_method_params

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from emodistill.data.dataset import MultimodalDataset
    from emodistill.data.protocols import Fold

__all__ = ["ModelOutput", "MERModel", "METHODS", "build_method", "Head", "single_modality",
           "FoldContext", "FittedFold"]


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


class FittedFold(Protocol):
    """What :attr:`FoldContext.fit` returns (the engine's ``FoldResult`` is one)."""

    #: the fold's run folder (``metrics.csv``, ``predictions.csv``, ...)
    path: Path
    #: epoch of the checkpoint selected on the valid part (-1 if none)
    best_epoch: int
    #: the monitored validation metric of that checkpoint
    best_val: float
    #: test metrics of the selected weights
    test: dict[str, float]
    #: number of epochs trained
    epochs: int
    #: the selected model (None in a DDP worker)
    model: MERModel | None


@dataclass
class FoldContext:
    """What the engine hands :meth:`MERModel.prepare_fold` for one fold.

    Attributes
    ----------
    cfg : DictConfig
        The run's resolved config (read it; do not change it).
    dataset : MultimodalDataset
        The whole dataset, before the split.
    target : TargetSpec
        The target being predicted.
    modalities : list of str
        The run's modalities.
    fold : Fold
        The fold being trained.
    out : Path
        The fold's output folder (created by whoever writes into it).
    parts : dict of str to MultimodalDataset
        ``"train"`` and ``"valid"`` exactly as the model will see them
        (post-split, standardised on train; see
        :func:`emodistill.data.parts.fold_parts`). The test part is not here:
        nothing chosen before training may look at it.
    fit : callable ``(cfg, modalities, out) -> FittedFold``
        Train another config (e.g. a probe) on exactly this fold: fit on its
        train part, select on its valid part, test once, write a run folder at
        ``out``. The engine provides it; it re-seeds the RNGs from ``cfg.seed``.
    make_optimizer : callable
        The engine's optimiser factory (:func:`emodistill.optim.make_optimizer`).
    fit_crossfit : callable ``(method_cfg, k, out, *, train_overrides=None,
        modalities=None, label="teacher") -> nn.Module``
        Train ``k`` cross-fitted members of ``method_cfg`` on this fold's train
        part (``emodistill.training.crossfit.fit_crossfit_teacher``); the engine
        provides it.
    select_fitted : callable ``(model, train, valid, *, target, seed, monitor, mode)``
        Fit each candidate of a fitted-in-process method (e.g. ``logistic`` with a C
        grid) on a part and keep the best on another, as the reference rows select
        (``emodistill.training.fitted.select_candidate``); the engine provides it.
    """

    cfg: DictConfig
    dataset: MultimodalDataset
    target: TargetSpec
    modalities: list[str]
    fold: Fold
    out: Path
    parts: dict[str, MultimodalDataset]
    fit: Callable[[DictConfig, Sequence[str], Path], FittedFold]
    make_optimizer: Callable[..., torch.optim.Optimizer] = make_optimizer
    fit_crossfit: Callable[..., nn.Module] | None = None
    select_fitted: Callable[..., Any] | None = None


def single_modality(spec: DatasetSpec, modality: str | None, method: str) -> str:
    """Return the one modality a single-input method reads (``modality`` or the only one).

    Raises
    ------
    ConfigError
        When ``modality`` is None and the dataset has several (naming them), or when it
        names a modality the dataset lacks.
    """
    if modality is None:
        if len(spec.modalities) != 1:
            raise ConfigError(f"method {method!r} needs method.modality, one of "
                              f"{spec.modality_names}")
        modality = spec.modality_names[0]
    spec.modality(modality)
    return modality


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

    # Besides the hooks below, ``ModelOutput.aux`` entries whose key starts with
    # ``sample_`` (``[B]`` or ``[B, K]``) are written to predictions.csv for every test
    # sample.
    # ``train_state(self) -> dict`` / ``load_train_state(self, state)`` (optional):
    # Python-side training state outside ``state_dict`` (e.g. step counters), saved in
    # the training checkpoints so that ``train --resume`` repeats an uninterrupted fit.

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

    # ------------------------------------------------------------- engine hooks
    @classmethod
    def prepare_fold(cls, ctx: FoldContext, params: dict[str, Any]) -> dict[str, Any]:
        """Choose constructor parameters from this fold's data, before the model is built.

        Called once per fold (after a teacher is obtained, before ``__init__``),
        e.g. to pick a dominant modality on the valid part.

        Parameters
        ----------
        ctx : FoldContext
            The fold's ready train/valid parts, its output folder, a ``fit``
            callable and the optimiser factory.
        params : dict
            The constructor parameters from the config (``modalities`` filled in).

        Returns
        -------
        dict
            Parameters to update ``params`` with (default: none).
        """
        return {}

    def epoch_logs(self) -> dict[str, float]:
        """Per-epoch model statistics, logged as ``model/<key>`` into metrics.csv.

        Called at the end of each validation epoch (e.g. mean learned GD edge
        weights); a method resets what it accumulated. Default: nothing.
        """
        return {}

    def configure_optimizers(self, train_cfg: dict[str, Any]) -> list[torch.optim.Optimizer]:
        """Optimisers of a method that runs its own steps (manual optimisation).

        Override together with :meth:`training_step` (e.g. MKD: student and
        teacher optimisers). The default automatic path (one optimiser from the
        ``train`` section over all parameters) does not call it.

        Parameters
        ----------
        train_cfg : dict
            The ``train`` config section (build with :func:`emodistill.optim.make_optimizer`).
        """
        raise NotImplementedError(f"{type(self).__name__} uses the engine's optimiser")

    def training_step(self, batch: Batch, optimizers: list[Any], lit: Any) -> dict[str, Tensor]:
        """One manual training step: zero, ``lit.manual_backward``, step the ``optimizers``.

        Override together with :meth:`configure_optimizers`. Returns named terms,
        logged as ``train/<key>``; a ``plateau`` scheduler on the first optimiser
        is stepped once per epoch by the engine.

        Parameters
        ----------
        batch : Batch
            A training batch.
        optimizers : list
            The (Lightning-wrapped) optimisers of :meth:`configure_optimizers`.
        lit : LightningModule
            Provides ``manual_backward``.
        """
        raise NotImplementedError(f"{type(self).__name__} uses the engine's training step")

    @classmethod
    def manual_optimization(cls) -> bool:
        """Tell whether the method overrides both manual-optimisation hooks."""
        return (cls.configure_optimizers is not MERModel.configure_optimizers
                and cls.training_step is not MERModel.training_step)


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
    Former size names (:data:`~emodistill.param_names.SIZE_ALIASES`, e.g. ``hidden``
    for ``width``) are accepted silently, so older checkpoints load.
    ``context`` (``none`` | ``sequence`` | a registered context layer) and
    ``context_params`` are taken by every method: a context layer is attached
    before the method's heads (:func:`emodistill.models.context.attach_context`).
    """
    import inspect

    cls = METHODS.get(name)
    # former size names (an older checkpoint's stored parameters) -> the vocabulary
    params = rename_method_params(params or {})
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
