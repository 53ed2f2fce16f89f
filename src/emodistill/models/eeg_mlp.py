"""A small, strongly regularised MLP (or an average of several) for EEG band-feature tables.

The band tables have a few hundred trials per fold and 20-160 features: the generic
``unimodal`` MLP (two 128-wide layers with LayerNorm, a 128-wide head) fits the training
subjects within one or two epochs and stays below a linear probe. ``eeg_mlp`` is the small
model the field uses on such tables, with the usual regularisers as options:

* ``input_dropout``: dropout on the input features (each band value of each electrode is
  dropped independently; a cheap feature-bagging regulariser);
* ``input_noise``: Gaussian noise of this standard deviation added to the (standardised)
  inputs during training;
* ``layers`` GELU layers of ``width`` units with ``dropout`` (``layers: 0`` is a linear model,
  a torch logistic regression);
* ``label_smoothing`` in the cross-entropy;
* ``members``: ``K`` independent MLPs (own initialisation and dropout masks, trained on the
  same batches, each with its own loss) whose logits are averaged: a bagging-style average
  that lowers the variance of a small network, inside one model (so it trains, checkpoints
  and distils like any method);
* ``skip_linear``: a wide-and-deep form, ``logits = W x + MLP(x)``: a linear path on the raw
  inputs (no input dropout or noise; the logistic model) plus the MLP as a non-linear
  residual branch whose output layer starts at zero, so the model starts linear and the
  branch grows only where the data pay for it;
* ``linear_l2``: an L2 penalty ``linear_l2 * ||W||^2`` on the linear path's weights (bias
  not penalised) added to the training loss, the logistic row's shrinkage inside the model
  (``linear_l2 = 1 / (2 C N)`` matches scikit-learn's ``C`` on ``N`` training trials for
  three or more classes; for two classes it is ``1 / (C N)``, see :func:`c_to_l2`: the
  1.16 of ``eeg_mlp_skip``, chosen as ``C = 0.001`` on ``N = 430``, is ``C ≈ 0.002``).
  It applies to the skip path with ``skip_linear``, to the whole model
  with ``layers: 0``;
* ``linear_c``: the same penalty given as scikit-learn's ``C`` and scaled to each fold's
  training part (``N`` = its number of samples, passed by :meth:`EEGMLP.prepare_fold`):
  ``1 / (C N)`` for two classes, ``1 / (2 C N)`` for three or more (see :func:`c_to_l2`),
  so that the linear path's optimum is the ``logistic`` row's at that ``C``. A list is a
  grid chosen per fold on the validation part by the ``logistic`` row's own selection
  (its fits, ``train.monitor``, ties to the first), not by one network fit per ``C`` (that
  would multiply the cost by the grid size). The choice is written to the fold's
  ``linear_c.json``. ``linear_c`` and ``linear_l2`` are exclusive.

For regression targets ``label_smoothing`` must be 0; the task loss is the mean of the
members' losses.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, FoldContext, MERModel, ModelOutput, single_modality

__all__ = ["EEGMLP", "MemberLinear", "c_to_l2", "choose_linear_c"]

log = logging.getLogger(__name__)


def _c_values(linear_c: float | Sequence[float] | None) -> list[float]:
    """``linear_c`` as a list of values (``[]`` for None), each checked to be a positive number.

    Raises
    ------
    ConfigError
        Naming the bad value: an empty list, a non-number, a bool, or a value <= 0 / not finite.
    """
    if linear_c is None:
        return []
    cs = list(linear_c) if isinstance(linear_c, Sequence) and not isinstance(linear_c, str) \
        else [linear_c]
    if not cs or any(isinstance(c, bool) or not isinstance(c, int | float)
                     or not math.isfinite(c) or c <= 0 for c in cs):
        raise ConfigError(f"eeg_mlp: linear_c={linear_c!r}; use a positive number (scikit-learn's "
                          "C, e.g. 0.001) or a non-empty list of them (a grid chosen per fold "
                          "on validation), or null")
    return [float(c) for c in cs]


def c_to_l2(c: float, n_train: int, n_classes: int) -> float:
    """Return the ``linear_l2`` strength that makes the linear path scikit-learn's fit at ``C``.

    scikit-learn minimises ``||w||^2 / (2 C) + sum_i loss_i``; the model minimises the mean
    loss plus ``lambda ||W||^2``. For three or more classes (one weight column per class,
    multinomial) ``lambda = 1 / (2 C N)``. For two classes scikit-learn fits one vector
    ``w``, which the model's two columns give as ``W_1 - W_0``; at the optimum
    ``W_1 = -W_0 = w / 2``, so ``||W||^2 = ||w||^2 / 2`` and ``lambda = 1 / (C N)``.

    Parameters
    ----------
    c : float
        scikit-learn's inverse regularisation strength ``C`` (> 0).
    n_train : int
        Number ``N`` of training samples (the loss is their mean).
    n_classes : int
        Output width of the linear path (2 for a binary target).
    """
    if c <= 0 or n_train < 1 or n_classes < 2:
        raise ConfigError(f"c_to_l2: C={c}, N={n_train}, classes={n_classes}; need C > 0, "
                          "N >= 1 and at least 2 classes")
    return 1.0 / (c * n_train) if n_classes == 2 else 1.0 / (2.0 * c * n_train)


def choose_linear_c(ctx: FoldContext, modality: str, cs: list[float]) -> dict[str, Any]:
    """Choose ``C`` among ``cs`` on this fold's validation part as the ``logistic`` row does.

    Fits the registered ``logistic`` method on ``ctx.parts["train"]`` (the network's own
    train part and modality) once per ``C`` and keeps the best ``train.monitor`` on
    ``ctx.parts["valid"]`` (``ctx.select_fitted``, the engine's selection). The test
    part is never read. Torch's global random state is left as it was (the network's
    initialisation does not depend on the probe).

    Returns
    -------
    dict
        ``{"C", "how", "monitor", "scores": {C: validation monitor}, "part": "valid"}``.
    """
    from emodistill.models.base import build_method

    if ctx.select_fitted is None:
        raise ConfigError("eeg_mlp: a linear_c grid needs the engine's select_fitted in the "
                          "fold context; give one C (e.g. method.linear_c=0.002)")
    train, valid = ctx.parts["train"], ctx.parts["valid"]
    monitor, mode = str(ctx.cfg.train.monitor), str(ctx.cfg.train.mode)
    with torch.random.fork_rng(devices=[]):
        probe = build_method("logistic", spec=train.spec, target=ctx.target,
                             params={"modality": modality, "C": cs})
        sel = ctx.select_fitted(probe, train, valid, target=ctx.target.name,
                                seed=int(ctx.cfg.seed), monitor=monitor, mode=mode)
    return {"C": cs[sel.index], "how": "logistic probe on the validation part",
            "monitor": monitor, "scores": {str(c): r.get(monitor) for c, r in
                                           zip(cs, sel.rows, strict=True)}, "part": "valid"}


class MemberLinear(nn.Module):
    """``K`` independent linear maps applied side by side: ``[B, K, I]`` → ``[B, K, O]``.

    Initialised like ``K`` separate ``nn.Linear(I, O)`` layers (uniform ±1/sqrt(I)).

    Parameters
    ----------
    members, in_dim, out_dim : int
        ``K``, ``I`` and ``O``.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        # contiguous: a dropout after this layer then draws its mask in the row-major order
        # of a plain tensor (what the parallel engine's per-member masks reproduce)
        return (torch.einsum("bki,kio->bko", x, self.weight) + self.bias).contiguous()


@METHODS.register("eeg_mlp")
class EEGMLP(MERModel):
    """Regularised MLP on one flat feature modality, optionally an average of ``K`` members.

    Parameters
    ----------
    modality : str, optional
        The feature modality (required when the data has several).
    width : int
        Width of each hidden layer.
    layers : int
        Hidden layers per member (0 = a linear model).
    dropout : float
        Dropout after each hidden layer.
    input_dropout : float
        Dropout on the input features.
    input_noise : float
        Standard deviation of Gaussian noise added to the inputs in training.
    label_smoothing : float
        Label smoothing of the cross-entropy, in ``[0, 1)`` (classification only).
    members : int
        Number ``K`` of independent MLPs whose logits are averaged.
    skip_linear : bool
        Add a linear path on the raw inputs to the MLP's output (wide-and-deep; needs
        ``layers >= 1``); the MLP's output layer is initialised at zero.
    linear_l2 : float
        L2 penalty on the linear path's weights (the skip path, or the model with
        ``layers: 0``), added to the training loss.
    linear_c : float or list of float, optional
        The penalty as scikit-learn's ``C`` scaled to the fold's training size
        (:func:`c_to_l2`); a list is a grid chosen per fold on validation by
        :meth:`prepare_fold`. Exclusive with ``linear_l2``.
    train_size : int, optional
        ``N`` of the fold's training part (set by :meth:`prepare_fold`; needed to train with
        ``linear_c``, not to predict).
    """

    parallel_ok = True

    def __init__(self, *, modality: str | None = None, width: int = 32, layers: int = 1,
                 dropout: float = 0.5, input_dropout: float = 0.0, input_noise: float = 0.0,
                 label_smoothing: float = 0.0, members: int = 1, skip_linear: bool = False,
                 linear_l2: float = 0.0, linear_c: float | Sequence[float] | None = None,
                 train_size: int | None = None, **base: Any) -> None:
        spec = base["spec"]
        modality = single_modality(spec, modality, "eeg_mlp")
        ms = spec.modality(modality)
        base["modalities"] = [modality]
        super().__init__(**base)
        if members < 1 or layers < 0 or (layers and width < 1):
            raise ConfigError(f"eeg_mlp: members={members}, layers={layers}, width={width}; "
                              "need members >= 1, layers >= 0 and width >= 1")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout),
                        ("label_smoothing", label_smoothing)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"eeg_mlp: {name}={p}; it must be in [0, 1)")
        if skip_linear and not layers:
            raise ConfigError("eeg_mlp: skip_linear=true with layers=0 is two linear maps; use "
                              "layers >= 1 (the residual branch) or skip_linear=false")
        if linear_l2 < 0 or (linear_l2 and layers and not skip_linear):
            raise ConfigError(f"eeg_mlp: linear_l2={linear_l2} with layers={layers}, "
                              f"skip_linear={skip_linear}; it must be >= 0 and needs a linear "
                              "path (layers=0 or skip_linear=true)")
        cs = _c_values(linear_c)
        if cs and linear_l2:
            raise ConfigError(f"eeg_mlp: linear_l2={linear_l2} and linear_c={linear_c} are both "
                              "set; they give the same penalty two ways (a fixed strength, or "
                              "C scaled to each fold's training size): keep one, set the "
                              "other to 0 / null")
        if cs and layers and not skip_linear:
            raise ConfigError(f"eeg_mlp: linear_c={linear_c} with layers={layers}, "
                              f"skip_linear={skip_linear}; it needs a linear path (layers=0 or "
                              "skip_linear=true)")
        if cs and self.target.kind == "regression":
            raise ConfigError(f"eeg_mlp: linear_c={linear_c} is logistic regression's C (a "
                              "class target); for a regression target use linear_l2")
        if train_size is not None and (isinstance(train_size, bool)
                                       or not isinstance(train_size, int) or train_size < 1):
            raise ConfigError(f"eeg_mlp: train_size={train_size!r}; it must be a positive int "
                              "(the fold's number of training samples) or null")
        if len(cs) > 1 and train_size is not None:
            raise ConfigError(f"eeg_mlp: linear_c={linear_c} is a grid, chosen per fold by "
                              "EEGMLP.prepare_fold; with train_size give the one chosen C")
        if input_noise < 0:
            raise ConfigError(f"eeg_mlp: input_noise={input_noise}; it must be >= 0")
        if label_smoothing and self.target.kind == "regression":
            raise ConfigError("eeg_mlp: label_smoothing applies to classes only; set it to 0 "
                              "for a regression target")
        self.modality = modality
        self.members = members
        self.in_dim = ms.seq_len * ms.dim
        self.input_noise = float(input_noise)
        self.label_smoothing = float(label_smoothing)
        self.in_drop = nn.Dropout(input_dropout)
        blocks: list[nn.Module] = []
        d = self.in_dim
        for _ in range(layers):
            blocks += [MemberLinear(members, d, width), nn.GELU(), nn.Dropout(dropout)]
            d = width
        self.body = nn.Sequential(*blocks)
        self.out = MemberLinear(members, d, self.n_outputs)
        self.feature_dim = d
        self.linear_c = cs[0] if len(cs) == 1 else (cs or None)
        self.train_size = train_size
        if cs and train_size is not None:
            linear_l2 = c_to_l2(cs[0], train_size, self.n_outputs)
        self.linear_l2 = float(linear_l2)
        #: the penalty is in the loss (a config-level fact, the same for every stacked member)
        self.penalised = bool(linear_l2) or bool(cs)
        # the strength as a buffer: stacked per member on the parallel path, where folds
        # with the same sizes may train together with different per-fold strengths
        self.register_buffer("l2_strength", torch.tensor(self.linear_l2), persistent=False)
        self.skip: MemberLinear | None = None
        if skip_linear:
            self.skip = MemberLinear(members, self.in_dim, self.n_outputs)
            with torch.no_grad():  # the residual branch starts at zero: the model starts linear
                self.out.weight.zero_()
                self.out.bias.zero_()

    @classmethod
    def chooses_on_valid(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """List the ``linear_c`` grid as chosen on validation (refused where that is leaked)."""
        if len(_c_values(params.get("linear_c"))) > 1:
            return [("eeg_mlp's linear_c chosen from a grid",
                     "give one value (e.g. method.linear_c=0.002)")]
        return []

    @classmethod
    def prepare_fold(cls, ctx: FoldContext, params: dict[str, Any]) -> dict[str, Any]:
        """Resolve ``linear_c`` for this fold: its training size, and a grid's choice on valid.

        Writes ``<ctx.out>/linear_c.json`` (``C``, ``train_size``, the resulting
        ``linear_l2``, how ``C`` was chosen). Nothing to do without ``linear_c``.
        """
        cs = _c_values(params.get("linear_c"))
        if not cs:
            return {}
        if params.get("linear_l2"):
            raise ConfigError(f"eeg_mlp: linear_l2={params['linear_l2']} and "
                              f"linear_c={params['linear_c']} are both set; keep one")
        train = ctx.parts["train"]
        modality = single_modality(train.spec, params.get("modality"), "eeg_mlp")
        if len(cs) == 1:
            record: dict[str, Any] = {"C": cs[0], "how": "fixed in config"}
        else:
            record = choose_linear_c(ctx, modality, cs)
            log.info("eeg_mlp fold %s: linear_c %s chosen on valid (%s: %s)", ctx.fold.name,
                     record["C"], record["monitor"], record["scores"])
        n = len(train)
        record |= {"train_size": n, "linear_l2": c_to_l2(record["C"], n, ctx.target.n_outputs)}
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / "linear_c.json").write_text(json.dumps(record, indent=2))
        return {"linear_c": record["C"], "train_size": n}

    def member_logits(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Per-member outputs ``[B, K, C]`` (``C = 1``: regression) and features ``[B, K, F]``."""
        raw = batch.inputs[self.modality].reshape(-1, self.in_dim)
        x = raw
        if self.training and self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x)
        x = self.in_drop(x)
        h = self.body(x[:, None].expand(-1, self.members, -1))
        logits = self.out(h)
        if self.skip is not None:
            logits = logits + self.skip(raw[:, None].expand(-1, self.members, -1))
        return logits, h

    def weight_penalty(self) -> Tensor:
        """``linear_l2 * ||W||^2`` of the linear path, averaged over members (0 when off).

        With ``linear_c`` the strength is :func:`c_to_l2` of the fold's ``train_size``.

        Raises
        ------
        ConfigError
            In training with ``linear_c`` but no ``train_size`` (a model built by hand).
        """
        if self.training and self.linear_c is not None and self.train_size is None:
            raise ConfigError(f"eeg_mlp: linear_c={self.linear_c} needs the fold's training "
                              "size; the engine passes it (EEGMLP.prepare_fold), by hand give "
                              "train_size=N and one C")
        w = (self.skip if self.skip is not None else self.out).weight  # [K, I, C]
        return self.l2_strength.to(w.dtype) * w.pow(2).sum((1, 2)).mean()

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        logits, h = self.member_logits(batch)
        present = batch.present[self.modality][:, None].to(h.dtype)
        z = h.mean(1) * present  # [B, F]: the members' mean feature
        preds = logits.mean(1)
        preds = preds.squeeze(-1) if self.n_outputs == 1 else preds
        return ModelOutput(preds=preds, features={self.modality: z}, fused=z,
                           aux={"member_logits": logits})

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:
        """Mean of the members' own losses (each learns alone); ``task``: the average's."""
        logits = out.aux["member_logits"]  # [B, K, C]
        k = logits.shape[1]
        if self.target.kind == "regression":
            per = torch.stack([self.task(logits[:, i, 0], batch.target) for i in range(k)]).mean()
        else:
            target = batch.target.long()[:, None].expand(-1, k).reshape(-1)
            per = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target,
                                              label_smoothing=self.label_smoothing)
        if self.penalised:
            per = per + self.weight_penalty()
        return {"loss": per, "task": self.task(out.preds, batch.target)}
