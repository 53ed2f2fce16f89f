"""Reference methods fitted in one call: majority class, logistic regression, boosted trees.

These are the rows a reviewer asks for beside every neural method. They run through the same
protocols, folds, run folders and benchmark tables as every other method; only the fit
differs: instead of the Lightning loop the engine calls :meth:`FittedMethod.fit` once per
candidate setting, scores each candidate on the fold's validation part with the configured
``train.monitor`` and keeps the best (see :mod:`emodistill.training.fitted`).

Every fitted quantity lives in registered **buffers**, so the standard checkpoint
(``model.pt``, read with ``torch.load(weights_only=True)``) holds the whole model and no
pickled estimator is ever written or read:

* ``majority``: the training part's class log-priors (regression: its mean);
* ``logistic``: the standardisation statistics and the coefficients;
* ``trees``: the node tables of scikit-learn's fitted ``HistGradientBoosting*`` estimator
  (feature, threshold, children, leaf values), evaluated by a vectorised traversal in torch.
  The traversal reproduces ``predict_proba`` (tested against scikit-learn), but reads two
  private attributes of the estimator (``_predictors``, ``_baseline_prediction``); a
  scikit-learn release that renames them fails loudly at fit time, never silently.

Inputs: each selected modality ``[B, T, D]`` is flattened to ``T*D`` values (padding steps are
zero) when ``T*D <= flatten_limit``, else averaged over its real steps to ``D`` values
(``pool``); absent modalities contribute zeros. The modalities are concatenated.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, MERModel, ModelOutput

__all__ = ["FittedMethod", "Majority", "Logistic", "Trees", "design_matrix"]

log = logging.getLogger(__name__)

_NEG = -30.0  # log-prior of a class absent from the training part (finite: CE stays finite)


def design_matrix(
    inputs: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    present: Mapping[str, Tensor],
    modalities: Sequence[str],
    pool: Mapping[str, str],
) -> Tensor:
    """Concatenate the modalities of a batch into one ``[B, F]`` float64 matrix.

    Parameters
    ----------
    inputs, mask, present : mapping of str to Tensor
        ``[B, T, D]`` features, ``[B, T]`` padding masks and ``[B]`` presence per modality.
    modalities : sequence of str
        The modalities to use, in order.
    pool : mapping of str to {"flatten", "mean"}
        Per modality: flatten ``T*D`` values, or average the real steps to ``D`` values.
    """
    cols = []
    for m in modalities:
        x, mk = inputs[m].double(), mask[m].to(inputs[m].device)
        x = x * mk[..., None] * present[m].to(x.device)[:, None, None]
        if pool[m] == "flatten":
            cols.append(x.reshape(x.shape[0], -1))
        else:
            n = mk.sum(1, keepdim=True).clamp(min=1).double()
            cols.append(x.sum(1) / n)
    return torch.cat(cols, 1)


class FittedMethod(MERModel):
    """Base of the methods the engine fits in one call instead of a gradient loop.

    Subclasses implement :meth:`fit` (on a training part) and may list several candidate
    settings in :meth:`candidates`; the engine fits each and keeps the one with the best
    validation ``train.monitor``. All fitted state must be in buffers (saved in ``model.pt``).

    Parameters
    ----------
    modality : str or list of str, optional
        Use only these modalities (default: the run's modalities).
    pool : {"auto", "flatten", "mean"}
        How a ``[T, D]`` modality becomes a vector (``auto``: flatten when ``T*D`` is at most
        ``flatten_limit``, else mean over real steps).
    flatten_limit : int
        Largest ``T*D`` flattened under ``pool: auto``.
    """

    #: the engine fits this method with :meth:`fit`, not with the Lightning loop
    fitted_in_process: ClassVar[bool] = True
    #: one fit per member can be stacked as a teacher on the parallel path (same buffer
    #: shapes whatever the data, a forward without Python control flow on buffer values)
    stacks_as_teacher: ClassVar[bool] = True

    def __init__(self, *, modality: str | list[str] | None = None, pool: str = "auto",
                 flatten_limit: int = 4096, **base: Any) -> None:
        if modality is not None:  # restrict to these modalities (e.g. a headset montage)
            base["modalities"] = [modality] if isinstance(modality, str) else list(modality)
        super().__init__(**base)
        if pool not in ("auto", "flatten", "mean"):
            raise ConfigError(f"method.pool={pool!r}; use auto, flatten or mean")
        self.pool = {
            m.name: ("flatten" if pool == "flatten"
                     or (pool == "auto" and m.seq_len * m.dim <= flatten_limit) else "mean")
            for m in self.spec.modalities
        }
        self.n_features = sum(
            m.seq_len * m.dim if self.pool[m.name] == "flatten" else m.dim
            for m in self.spec.modalities
        )
        # a parameter-free model still needs a device anchor for .to() / probes
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    #: hyper-parameters that may be a list (a grid selected on validation)
    _GRID: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def chooses_on_valid(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """List what this config chooses on the validation part (a grid), and the fix."""
        grid = [k for k in cls._GRID
                if isinstance(params.get(k), list | tuple) and len(params[k]) > 1]
        if not grid:
            return []
        return [(f"the {', '.join(grid)} of {cls.__name__.lower()} chosen from a grid",
                 "give one value each (e.g. method.C=0.01)")]

    # -- the fit interface used by emodistill.training.fitted ---------------------------
    def candidates(self) -> list[dict[str, Any]]:
        """Return the settings to try, each passed to :meth:`fit` as keyword arguments."""
        return [{}]

    def fit(self, train: MultimodalDataset, *, target: str, seed: int, **choice: Any) -> None:
        """Fit on the training part ``train`` (target ``target``) with setting ``choice``."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------
    def matrix(self, inputs: Mapping[str, Tensor], mask: Mapping[str, Tensor],
               present: Mapping[str, Tensor]) -> Tensor:
        """``[B, F]`` float64 design matrix of the method's modalities."""
        return design_matrix(inputs, mask, present, self.modalities, self.pool)

    def dataset_matrix(self, ds: MultimodalDataset, target: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X [N, F], y [N])`` of a dataset part as NumPy arrays."""
        x = self.matrix(ds.features, ds.mask, ds.present).cpu().numpy()
        return x, ds.targets[target].cpu().numpy()

    def _set(self, name: str, value: Tensor | np.ndarray) -> None:
        """(Re)place buffer ``name`` (fitted shapes are known only after the fit)."""
        self._buffers[name] = torch.as_tensor(value).to(self._anchor.device)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # fitted buffers change shape with the data (trees, classes): take the saved shapes
        for name in list(self._buffers):
            key = prefix + name
            if key in state_dict and self._buffers[name] is not None:
                self._buffers[name] = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _class_logits(self, scores: Tensor) -> Tensor:
        return scores.float()

    @staticmethod
    def _grid(values: dict[str, Any]) -> list[dict[str, Any]]:
        """Cartesian product of the list-valued entries of ``values`` (scalars stay fixed)."""
        keys = list(values)
        lists = [v if isinstance(v, list | tuple) else [v] for v in values.values()]
        for k, v in zip(keys, lists, strict=True):
            if not v:
                raise ConfigError(f"method.{k}=[]: give a value or a non-empty list")
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


@METHODS.register("majority")
class Majority(FittedMethod):
    """Predict the training part's majority class (regression: its mean), whatever the input.

    The predicted probabilities are the training part's class frequencies, so ties go to the
    lowest class index, and log-loss on validation is that of the class prior.
    """

    def __init__(self, **base: Any) -> None:
        super().__init__(**base)
        self.register_buffer("prior", torch.zeros(self.n_outputs))

    def fit(self, train: MultimodalDataset, *, target: str, seed: int, **choice: Any) -> None:  # noqa: D102
        y = train.targets[target].cpu().numpy()
        if self.target.kind == "regression":
            self._set("prior", torch.tensor([float(np.mean(y))], dtype=torch.float64))
            return
        counts = np.bincount(y.astype(np.int64), minlength=self.n_outputs).astype(np.float64)
        with np.errstate(divide="ignore"):
            logp = np.where(counts > 0, np.log(counts / counts.sum()), _NEG)
        self._set("prior", torch.tensor(logp))

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        b = batch.size
        p = self.prior.float().to(batch.target.device)
        preds = p.expand(b) if self.target.kind == "regression" else p.expand(b, -1)
        return ModelOutput(preds=preds.clone())


@METHODS.register("logistic")
class Logistic(FittedMethod):
    """Standardised logistic regression (regression targets: ridge regression).

    Features are z-scored with the training part's statistics inside the model (on top of
    any engine normalisation; ``standardize=false`` keeps them as they are), then
    scikit-learn's ``LogisticRegression`` (lbfgs, multinomial for several classes) is
    fitted; for a regression target ``Ridge`` with ``alpha = 1 / C``.

    Parameters
    ----------
    C : float or list of float
        Inverse regularisation strength; a list is a grid selected on validation.
    class_weight : {None, "balanced"}
        ``balanced`` reweights classes inversely to their training frequency.
    max_iter : int
        Solver iterations.
    standardize : bool
        z-score each feature with the training part's statistics (default). ``false`` fits
        on the raw features: the better probe for an embedding whose scale carries meaning,
        e.g. a normalised sentence vector (benchmarks/kd_leakfree.md, "The ridge row").
    """

    _GRID = ("C",)

    def __init__(self, *, C: float | list[float] = (0.001, 0.01, 0.1, 1.0),  # noqa: N803
                 class_weight: str | None = None, max_iter: int = 5000,
                 standardize: bool = True, **base: Any) -> None:
        super().__init__(**base)
        if not isinstance(standardize, bool):
            raise ConfigError(f"method.standardize={standardize!r}; use true or false")
        self.standardize = standardize
        cs = list(C) if isinstance(C, list | tuple) else [C]
        if not cs or any(isinstance(c, bool) or not isinstance(c, int | float) or c <= 0
                         for c in cs):
            raise ConfigError(f"method.C={C!r}; use a positive number or a list of them")
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"method.class_weight={class_weight!r}; use null or balanced")
        self.C, self.class_weight, self.max_iter = cs, class_weight, int(max_iter)
        f, k = self.n_features, self.n_outputs
        self.register_buffer("mean", torch.zeros(f, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(f, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(k, f, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(k, dtype=torch.float64))

    def candidates(self) -> list[dict[str, Any]]:  # noqa: D102
        return [{"C": c} for c in self.C]

    def fit(self, train: MultimodalDataset, *, target: str, seed: int,  # noqa: D102
            C: float = 1.0, **choice: Any) -> None:  # noqa: N803
        from sklearn.linear_model import LogisticRegression, Ridge

        x, y = self.dataset_matrix(train, target)
        if self.standardize:
            mu, sd = x.mean(0), x.std(0)
            sd = np.where(sd < 1e-12, 1.0, sd)
        else:  # the identity transform: the buffers keep one code path in forward
            mu, sd = np.zeros(x.shape[1]), np.ones(x.shape[1])
        z = (x - mu) / sd
        self._set("mean", mu)
        self._set("scale", sd)
        if self.target.kind == "regression":
            est = Ridge(alpha=1.0 / C).fit(z, y.astype(np.float64))
            self._set("weight", np.asarray(est.coef_, dtype=np.float64)[None, :])
            self._set("bias", np.asarray([est.intercept_], dtype=np.float64))
            return
        classes = np.unique(y)
        w = np.zeros((self.n_outputs, x.shape[1]))
        b = np.full(self.n_outputs, _NEG)
        if len(classes) == 1:  # nothing to separate: the only class seen wins
            log.warning("logistic: the training part holds one class (%d); predicting it",
                        int(classes[0]))
            b[int(classes[0])] = 0.0
        else:
            est = LogisticRegression(C=C, max_iter=self.max_iter, class_weight=self.class_weight,
                                     random_state=seed).fit(z, y)
            idx = est.classes_.astype(np.int64)
            if len(idx) == 2:  # sklearn's binary form: one score for the second class
                b[idx] = (0.0, float(est.intercept_[0]))
                w[idx[1]] = est.coef_[0]
            else:
                w[idx], b[idx] = est.coef_, est.intercept_
        self._set("weight", w)
        self._set("bias", b)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        x = self.matrix(batch.inputs, batch.mask, batch.present).to(self.mean.device)
        z = (x - self.mean) / self.scale
        s = z @ self.weight.T + self.bias
        preds = s[:, 0] if self.target.kind == "regression" else s
        return ModelOutput(preds=preds.float().to(batch.target.device))


@METHODS.register("trees")
class Trees(FittedMethod):
    """Gradient-boosted trees: scikit-learn's ``HistGradientBoostingClassifier`` (or ``Regressor``).

    The fitted trees are stored as node tables in buffers and evaluated in torch, so the
    checkpoint is the standard pickle-free ``model.pt``. Every estimator parameter below may
    be a list: the Cartesian grid is selected on validation. scikit-learn's own early stopping
    is off (its internal split would be a second, unreported validation part).

    Parameters
    ----------
    learning_rate, max_iter, max_leaf_nodes, max_depth, min_samples_leaf, l2_regularization
        As in scikit-learn (defaults are its defaults; ``max_depth: null`` = unlimited).
    class_weight : {None, "balanced"}
        As in scikit-learn.
    """

    _PARAMS = ("learning_rate", "max_iter", "max_leaf_nodes", "max_depth", "min_samples_leaf",
               "l2_regularization")
    _GRID = _PARAMS
    # the node tables' shapes differ from fit to fit and the traversal loops over the fitted
    # depth (a Python int): members' trees cannot be stacked under vmap
    stacks_as_teacher = False

    def __init__(self, *, learning_rate: float | list[float] = 0.1,
                 max_iter: int | list[int] = 100, max_leaf_nodes: int | list[int] = 31,
                 max_depth: int | None | list[int | None] = None,
                 min_samples_leaf: int | list[int] = 20,
                 l2_regularization: float | list[float] = 0.0,
                 class_weight: str | None = None, **base: Any) -> None:
        super().__init__(**base)
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"method.class_weight={class_weight!r}; use null or balanced")
        self.class_weight = class_weight
        self.grid = self._grid({
            "learning_rate": learning_rate, "max_iter": max_iter, "max_leaf_nodes": max_leaf_nodes,
            "max_depth": max_depth, "min_samples_leaf": min_samples_leaf,
            "l2_regularization": l2_regularization,
        })
        k = 1 if self.target.kind in ("regression", "binary") else self.n_outputs
        # node tables [n_trees, max_nodes]; an unfitted model has one leaf tree of value 0
        self.register_buffer("baseline", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("feature", torch.zeros(1, 1, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(1, 1, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(1, 1, dtype=torch.long))
        self.register_buffer("right", torch.zeros(1, 1, dtype=torch.long))
        self.register_buffer("missing_left", torch.zeros(1, 1, dtype=torch.bool))
        self.register_buffer("leaf", torch.ones(1, 1, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(1, 1, dtype=torch.float64))
        self.register_buffer("tree_output", torch.zeros(1, dtype=torch.long))
        self.register_buffer("depth", torch.zeros((), dtype=torch.long))

    def candidates(self) -> list[dict[str, Any]]:  # noqa: D102
        return list(self.grid)

    def fit(self, train: MultimodalDataset, *, target: str, seed: int, **choice: Any) -> None:  # noqa: D102
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        x, y = self.dataset_matrix(train, target)
        params = {k: choice[k] for k in self._PARAMS if k in choice}
        if self.target.kind == "regression":
            est = HistGradientBoostingRegressor(early_stopping=False, random_state=seed, **params)
            est.fit(x, y.astype(np.float64))
        else:
            if len(np.unique(y)) < 2:
                raise ConfigError(
                    f"trees: the training part holds only class {int(y[0])}; a classifier "
                    "needs two classes (use majority for this protocol)")
            if self.target.kind == "multiclass" and len(np.unique(y)) != self.n_outputs:
                raise ConfigError(
                    f"trees: the training part holds {len(np.unique(y))} of "
                    f"{self.n_outputs} classes; the exported trees need every class present")
            est = HistGradientBoostingClassifier(early_stopping=False, random_state=seed,
                                                 class_weight=self.class_weight, **params)
            est.fit(x, y)
        self._export(est)

    def _export(self, est: Any) -> None:
        try:
            predictors, base = est._predictors, np.asarray(est._baseline_prediction)
        except AttributeError as e:  # a scikit-learn that renamed its internals
            raise ConfigError(
                f"trees: this scikit-learn ({type(est).__module__}) has no {e.name!r}; the "
                "tree export needs scikit-learn's HistGradientBoosting internals (tested "
                "with 1.9)") from None
        trees = [(k, p.nodes) for it in predictors for k, p in enumerate(it)]
        if any(bool(nodes["is_categorical"].any()) for _, nodes in trees):
            raise ConfigError("trees: categorical splits are not exported (none are requested)")
        n, width = len(trees), max(len(nodes) for _, nodes in trees)
        tabs = {
            "feature": np.zeros((n, width), np.int64), "threshold": np.zeros((n, width)),
            "left": np.zeros((n, width), np.int64), "right": np.zeros((n, width), np.int64),
            "missing_left": np.zeros((n, width), bool), "leaf": np.ones((n, width), bool),
            "value": np.zeros((n, width)),
        }
        for t, (_, nodes) in enumerate(trees):
            m = len(nodes)
            tabs["feature"][t, :m] = nodes["feature_idx"]
            tabs["threshold"][t, :m] = nodes["num_threshold"]
            tabs["left"][t, :m] = nodes["left"]
            tabs["right"][t, :m] = nodes["right"]
            tabs["missing_left"][t, :m] = nodes["missing_go_to_left"]
            tabs["leaf"][t, :m] = nodes["is_leaf"]
            tabs["value"][t, :m] = nodes["value"]
        for k, v in tabs.items():
            self._set(k, v)
        self._set("baseline", base.reshape(-1).astype(np.float64))
        self._set("tree_output", np.asarray([k for k, _ in trees], np.int64))
        self._set("depth", torch.tensor(max(int(nodes["depth"].max()) for _, nodes in trees)))

    def raw_scores(self, x: Tensor) -> Tensor:
        """``[B, K]`` raw boosting scores (before the link) of a ``[B, F]`` float64 matrix."""
        b, n = x.shape[0], self.feature.shape[0]
        trees = torch.arange(n, device=x.device)[None, :]
        node = torch.zeros(b, n, dtype=torch.long, device=x.device)
        for _ in range(int(self.depth)):
            f = self.feature[trees, node]
            v = x.gather(1, f)
            go_left = torch.where(torch.isnan(v), self.missing_left[trees, node],
                                  v <= self.threshold[trees, node])
            nxt = torch.where(go_left, self.left[trees, node], self.right[trees, node])
            node = torch.where(self.leaf[trees, node], node, nxt)
        leaf_values = self.value[trees, node]  # [B, n_trees]
        out = self.baseline[None, :].repeat(b, 1)
        return out.index_add(1, self.tree_output, leaf_values)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        x = self.matrix(batch.inputs, batch.mask, batch.present).to(self.value.device)
        raw = self.raw_scores(x)
        if self.target.kind == "regression":
            preds = raw[:, 0]
        elif self.target.kind == "binary":  # P(class 1) = sigmoid(raw) = softmax([0, raw])
            preds = torch.cat([torch.zeros_like(raw), raw], 1)
        else:
            preds = raw
        return ModelOutput(preds=preds.float().to(batch.target.device))
