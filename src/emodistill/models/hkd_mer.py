"""HKD-MER: hierarchical distillation from the dominant modality, with attentive fusion.

Sun et al., "Muti-Modal Emotion Recognition via Hierarchical Knowledge
Distillation", IEEE Trans. Multimedia 26:9036-9046, 2024 (DOI
10.1109/TMM.2024.3385180).

**Reconstructed.** Only the paper's abstract could be checked: a *dominant*
modality (e.g. text) can become a shortcut that starves the others, so
knowledge is distilled from it to every other modality at the **feature level**
and the **label level**, and all modalities are then fused with **attention**.
No code and no full text were available; the encoders, loss forms, weights,
temperatures and the fusion equation below are the reconstruction of
``reference/dhmd_hkdmer.md`` §2.4, and every uncertain choice is a constructor
argument (and a key of ``configs/method/hkd_mer.yaml``).

Model, for modalities ``m`` with dominant ``t`` and weak modalities ``n != t``::

    h_m   = E_m(x_m)                              per-modality encoder  [B, H]
    y_m   = f_m(h_m)                              per-modality head     [B] / [B, C]
    a_m   = softmax_m(w^T tanh(W h_m + b))        attention over present modalities
    y     = f(sum_m a_m h_m)                      fused prediction (or f(concat_m h_m))

    L = task(y) + lambda_u * sum_m task(y_m)
        + lambda_f * sum_n D_feat(g_n(h_n), sg(h_t))      feature-level KD
        + lambda_l * sum_n D_label(y_n, sg(y_t))          label-level KD

``sg`` is stop-gradient: the dominant (teacher) side never receives KD
gradients. ``g_n`` is a student-side adapter (linear, MLP or identity) into the
dominant modality's feature space. ``D_feat`` is InfoNCE over the batch
(``contrastive``; the paper lists contrastive learning among its keywords),
``mse``, ``cosine`` or ``l1``; ``D_label`` is the temperature-softened KL of
Hinton et al. for class targets and L1/MSE for regression targets. KD terms use
only the samples where both modalities are present.

The dominant modality is fixed (``dominant="text"``) or chosen per fold
(``dominant="auto"``) by :meth:`HKDMER.prepare_fold` from unimodal scores on the
fold's **validation** part; the choice is written to ``<fold>/dominant.json``,
logged every epoch as ``model/dominant_index`` and stored in the checkpoint as
the ``dominant_index`` buffer.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.distill.losses.kd import FEATURE_KD, feature_kd_loss, soft_label_kd
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, FoldContext, Head, ModelOutput
from emodistill.models.baselines import EncodersMixin
from emodistill.models.encoders import masked_max, masked_mean
from emodistill.seeding import seed_everything

if TYPE_CHECKING:
    from emodistill.data.dataset import MultimodalDataset

__all__ = ["HKDMER", "ModalityAttention", "choose_dominant", "linear_probe_scores"]

log = logging.getLogger(__name__)

_ADAPTERS = ("none", "linear", "mlp")
_FUSIONS = ("attention", "concat")
_PROBES = ("linear", "unimodal")
_TEACHERS = ("joint", "pretrained", "frozen")


class ModalityAttention(nn.Module):
    """Additive attention over modalities: ``a_m = softmax_m(w^T tanh(W h_m + b))``.

    Absent modalities get weight 0; a sample with no modality gets a zero vector.

    Parameters
    ----------
    dim : int
        Feature width ``H`` (the same for every modality).
    width : int
        Width of the scoring layer ``W``.
    """

    def __init__(self, dim: int, width: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, width)
        self.score = nn.Linear(width, 1, bias=False)

    def forward(self, feats: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """Fuse ``[B, M, H]`` features with presence ``[B, M]``.

        Returns
        -------
        fused : Tensor
            ``[B, H]`` attention-weighted sum.
        weights : Tensor
            ``[B, M]`` attention weights (rows sum to 1, or 0 with no modality).
        """
        s = self.score(torch.tanh(self.proj(feats))).squeeze(-1)  # [B, M]
        s = s.masked_fill(~present, float("-inf"))
        any_present = present.any(-1, keepdim=True)
        s = torch.where(any_present, s, torch.zeros_like(s))
        w = torch.softmax(s, -1) * any_present.to(feats.dtype)
        return (w[..., None] * feats).sum(1), w


def _adapter(kind: str, dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
    return nn.Identity()


@METHODS.register("hkd_mer")
class HKDMER(EncodersMixin):
    """HKD-MER (reconstructed): dominant → weak modalities KD at two levels + attentive fusion.

    Inputs are the usual :class:`~emodistill.data.batch.Batch` (``[B, T, D]``
    per modality). ``forward`` returns the fused prediction in ``preds``, each
    modality's own head in ``logits[m]`` (same shape as ``preds``), encoder
    features ``[B, H]`` in ``features[m]`` and, per test sample,
    ``aux["sample_attention_<m>"]`` (``[B]``, fusion weights) and
    ``aux["sample_head_<m>"]`` (``[B]`` value or ``[B, C]`` probabilities).

    Parameters
    ----------
    dominant : str
        The teacher modality, or ``"auto"``: chosen per fold by
        :meth:`prepare_fold` (until then the first modality stands in).
    dominant_probe : {"linear", "unimodal"}
        How ``auto`` scores modalities on the fold's validation part: a
        closed-form linear probe on pooled features (fast) or the trained
        ``unimodal`` network.
    dominant_probe_epochs : int
        ``max_epochs`` of each unimodal probe.
    feature_kd : {"contrastive", "mse", "cosine", "l1"}
        Feature-level distance.
    feature_weight : float
        ``lambda_f`` (0 disables feature-level KD).
    feature_temperature : float
        InfoNCE temperature of ``contrastive``.
    kd_adapter : {"linear", "mlp", "none"}
        Student-side map ``g_n`` into the dominant feature space.
    label_weight : float
        ``lambda_l`` (0 disables label-level KD).
    label_temperature : float
        Softmax temperature of label KD (class targets).
    label_kd_regression : {"l1", "mse"}
        Label KD distance for regression targets.
    unimodal_weight : float
        ``lambda_u``, weight of the per-modality task losses.
    fusion : {"attention", "concat"}
        Attentive fusion, or plain concatenation (ablation).
    attention_width : int
        Width of the attention scoring layer.
    dominant_teacher : {"joint", "pretrained", "frozen"}
        ``joint`` (the original reconstruction): the dominant branch is trained
        from scratch in the same steps as the students it teaches. ``pretrained``:
        :meth:`prepare_fold` first trains the ``unimodal`` network of the dominant
        modality on the fold's training part and the dominant encoder and head
        start from it (then keep training). ``frozen``: the same, and the dominant
        encoder and head stay fixed (eval mode, no gradient): the weak heads learn
        from a teacher that knows the task and does not move.
    dominant_teacher_epochs : int, optional
        ``max_epochs`` of that pre-training (default ``train.max_epochs``);
        selected like any model (``train.selection``).
    dominant_crossfit : int
        ``k >= 2``: label-level KD targets for the training samples come from
        ``k`` cross-fitted dominant teachers (:mod:`emodistill.training.crossfit`),
        each training sample from the one that did not train on it; needs
        ``dominant_teacher`` ``pretrained`` or ``frozen``. Feature-level KD and
        the fusion keep the model's own dominant branch. 0 = off.
    dominant_init : dict, optional
        Set by :meth:`prepare_fold`: the pre-trained dominant ``encoder.*`` and
        ``head.*`` weights.
    label_teacher : MERModel, optional
        Set by :meth:`prepare_fold`: the cross-fitted dominant teacher.
    **kw
        Encoder arguments of :class:`~emodistill.models.baselines.EncodersMixin`
        and the data signature.
    """

    context_sites = ("fusion_head",)

    min_modalities = 2

    def __init__(
        self,
        *,
        dominant: str = "auto",
        dominant_probe: str = "linear",
        dominant_probe_epochs: int = 30,
        feature_kd: str = "contrastive",
        feature_weight: float = 0.1,
        feature_temperature: float = 0.1,
        kd_adapter: str = "linear",
        label_weight: float = 1.0,
        label_temperature: float = 2.0,
        label_kd_regression: str = "l1",
        unimodal_weight: float = 1.0,
        fusion: str = "attention",
        attention_width: int = 64,
        dominant_teacher: str = "joint",
        dominant_teacher_epochs: int | None = None,
        dominant_crossfit: int = 0,
        dominant_init: dict[str, Tensor] | None = None,
        label_teacher: nn.Module | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if dominant_teacher not in _TEACHERS:
            raise ConfigError(f"hkd_mer: dominant_teacher={dominant_teacher!r}; use one of "
                              f"{list(_TEACHERS)}")
        if dominant_crossfit and dominant_teacher == "joint":
            raise ConfigError("hkd_mer: dominant_crossfit needs a teacher trained before the "
                              "students: set method.dominant_teacher=pretrained or frozen")
        self.dominant_teacher = dominant_teacher
        self.dominant_crossfit = int(dominant_crossfit or 0)
        # a plain list keeps the cross-fitted teacher out of submodules (not saved/optimised)
        self._label_teacher: list[nn.Module] = [label_teacher] if label_teacher is not None else []
        for name, value, valid in (("feature_kd", feature_kd, FEATURE_KD),
                                   ("kd_adapter", kd_adapter, _ADAPTERS),
                                   ("fusion", fusion, _FUSIONS),
                                   ("dominant_probe", dominant_probe, _PROBES),
                                   ("label_kd_regression", label_kd_regression, ("l1", "mse"))):
            if value not in valid:
                raise ConfigError(f"hkd_mer: {name}={value!r}; use one of {list(valid)}")
        for name, value in (("feature_weight", feature_weight), ("label_weight", label_weight),
                            ("unimodal_weight", unimodal_weight)):
            if value < 0:
                raise ConfigError(f"hkd_mer: {name}={value} must be >= 0")
        for name, value in (("feature_temperature", feature_temperature),
                            ("label_temperature", label_temperature)):
            if value <= 0:
                raise ConfigError(f"hkd_mer: {name}={value} must be > 0")
        if dominant != "auto" and dominant not in self.modalities:
            raise ConfigError(
                f"hkd_mer: dominant={dominant!r} is not a used modality; use 'auto' or one of "
                f"{self.modalities}"
            )
        idx = 0 if dominant == "auto" else self.modalities.index(dominant)
        # a buffer, so a checkpoint remembers the dominant modality chosen on its fold
        self.register_buffer("dominant_index", torch.tensor(idx, dtype=torch.long))
        self.feature_kd, self.feature_weight = feature_kd, float(feature_weight)
        self.feature_temperature = float(feature_temperature)
        self.label_weight, self.label_temperature = float(label_weight), float(label_temperature)
        self.label_kd_regression = label_kd_regression
        self.unimodal_weight, self.fusion = float(unimodal_weight), fusion
        H = self.width
        self.heads = nn.ModuleDict({
            m: Head(H, self.n_outputs, hidden=H, dropout=self.dropout) for m in self.modalities
        })
        # one adapter per modality: the state dict does not depend on which is dominant
        self.adapters = nn.ModuleDict({m: _adapter(kd_adapter, H) for m in self.modalities})
        if fusion == "attention":
            self.attention: ModalityAttention | None = ModalityAttention(H, attention_width)
            self.fusion_head = Head(H, self.n_outputs, hidden=H, dropout=self.dropout)
        else:
            self.attention = None
            self.fusion_head = Head(len(self.modalities) * H, self.n_outputs, hidden=H,
                                    dropout=self.dropout)
        self._att_sum = np.zeros(len(self.modalities))
        self._att_n = 0
        if dominant_init is not None:
            d = self.dominant
            self.encoders[d].load_state_dict({k[len("encoder."):]: v for k, v in
                                              dominant_init.items() if k.startswith("encoder.")})
            self.heads[d].load_state_dict({k[len("head."):]: v for k, v in
                                           dominant_init.items() if k.startswith("head.")})
        if dominant_teacher == "frozen":
            for p in self._dominant_modules():
                p.requires_grad_(False)

    def _dominant_modules(self) -> list[nn.Parameter]:
        d = self.dominant
        return [*self.encoders[d].parameters(), *self.heads[d].parameters()]

    def train(self, mode: bool = True) -> HKDMER:
        """As ``nn.Module.train``; a frozen dominant branch stays in eval mode."""
        super().train(mode)
        if self.dominant_teacher == "frozen":
            self.encoders[self.dominant].eval()
            self.heads[self.dominant].eval()
        return self

    @property
    def dominant(self) -> str:
        """Name of the dominant (teacher) modality."""
        return self.modalities[int(self.dominant_index)]

    @property
    def weak(self) -> list[str]:
        """The non-dominant (student) modalities."""
        return [m for m in self.modalities if m != self.dominant]

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        feats = self.encode(batch)
        logits = {m: self.heads[m](feats[m]) for m in self.modalities}
        stacked = torch.stack([feats[m] for m in self.modalities], 1)  # [B, M, H]
        present = torch.stack([batch.present[m] for m in self.modalities], -1)  # [B, M]
        aux: dict[str, Tensor] = {}
        if self.attention is not None:
            fused, weights = self.attention(stacked, present)
            aux["attention"] = weights
            for j, m in enumerate(self.modalities):
                aux[f"sample_attention_{m}"] = weights[:, j]
        else:
            fused = stacked.flatten(1)
        for m in self.modalities:
            aux[f"sample_head_{m}"] = self.predict_values(ModelOutput(preds=logits[m])).detach()
        return ModelOutput(preds=self.fusion_head(fused), features=feats, logits=logits,
                           fused=fused, aux=aux)

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:  # noqa: D102
        task = self.task(out.preds, batch.target)
        if not self.training and "attention" in out.aux:  # validation: for epoch_logs
            # (kept out of forward so that tracing / ONNX export see pure tensor code)
            self._att_sum += out.aux["attention"].detach().sum(0).double().cpu().numpy()
            self._att_n += out.aux["attention"].shape[0]
        zero = out.preds.new_zeros(())
        uni, feat, label = zero, zero, zero
        for m in self.modalities:
            keep = batch.present[m]
            if keep.any():
                uni = uni + self.task(out.logits[m][keep], batch.target[keep])
        t = self.dominant
        label_target = out.logits[t]
        if self._label_teacher:  # cross-fitted: each training sample's own held-out teacher
            teacher = self._label_teacher[0]
            p = next(teacher.parameters(), None)
            if p is not None and p.device != out.preds.device:
                teacher.to(out.preds.device)
            teacher.eval()
            teacher.set_routing(train=self.training)  # type: ignore[operator]
            with torch.no_grad():
                label_target = teacher(batch).preds
        for n in self.weak:
            keep = batch.present[n] & batch.present[t]
            if int(keep.sum()) < 2:
                continue
            # with weight 0 the term is still measured (a diagnostic) but not optimised
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.feature_weight > 0):
                student = self.adapters[n](out.features[n][keep])
                feat = feat + feature_kd_loss(student, out.features[t][keep],
                                              kind=self.feature_kd,  # type: ignore[arg-type]
                                              temperature=self.feature_temperature)
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.label_weight > 0):
                label = label + soft_label_kd(out.logits[n][keep], label_target[keep],
                                              temperature=self.label_temperature,
                                              regression=self.label_kd_regression)  # type: ignore[arg-type]
        total = task + self.unimodal_weight * uni
        if self.feature_weight > 0:
            total = total + self.feature_weight * feat
        if self.label_weight > 0:
            total = total + self.label_weight * label
        return {"loss": total, "task": task, "unimodal": uni, "feature_kd": feat,
                "label_kd": label}

    def epoch_logs(self) -> dict[str, float]:
        """Dominant index and mean attention per modality over the validation epoch (then reset)."""
        logs = {"dominant_index": float(self.dominant_index)}
        if self._att_n:
            mean = self._att_sum / self._att_n
            logs |= {f"attention_{m}": float(v) for m, v in zip(self.modalities, mean, strict=True)}
        self._att_sum = np.zeros(len(self.modalities))
        self._att_n = 0
        return logs

    @classmethod
    def chooses_on_valid(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """List what this config chooses on the validation part, and the fix for each."""
        if params.get("dominant", "auto") == "auto":
            return [("hkd_mer's dominant modality (method.dominant=auto)",
                     "method.dominant=text, or another modality chosen without these "
                     "validation numbers")]
        return []

    @classmethod
    def prepare_fold(cls, ctx: FoldContext, params: dict[str, Any]) -> dict[str, Any]:
        """Resolve ``dominant="auto"`` on this fold's train/valid parts (never test).

        Writes ``<ctx.out>/dominant.json`` (choice, probe, metric, score per modality).
        """
        mods = list(params.get("modalities") or ctx.modalities)
        dominant = params.get("dominant", "auto")
        ctx.out.mkdir(parents=True, exist_ok=True)
        if dominant != "auto":
            record: dict[str, Any] = {"dominant": dominant, "how": "fixed in config"}
        else:
            probe = params.get("dominant_probe", "linear")
            record = choose_dominant(ctx, mods, probe=probe, params=params)
            dominant = record["dominant"]
            log.info("hkd_mer fold %s: dominant modality %s (valid %s by %s probe: %s)",
                     ctx.fold.name, dominant, record["metric"], probe, record["scores"])
        extra: dict[str, Any] = {"dominant": dominant}
        how = params.get("dominant_teacher", "joint")
        if how != "joint":
            extra |= _pretrain_dominant(ctx, params, dominant, record)
        (ctx.out / "dominant.json").write_text(json.dumps(record, indent=2, default=str))
        return extra


# ----------------------------------------------------------------- dominant teacher
def _pretrain_dominant(ctx: FoldContext, params: dict[str, Any],
                       dominant: str, record: dict[str, Any]) -> dict[str, Any]:
    """Train the dominant ``unimodal`` teacher on the fold (and its cross-fitted members).

    Returns the constructor parameters ``dominant_init`` (and ``label_teacher``);
    adds what was trained to ``record`` (written to ``dominant.json``).
    """
    from omegaconf import OmegaConf

    from emodistill.config import to_container

    method = {"name": "unimodal", "modality": dominant,
              **{k: params[k] for k in ("encoder", "width", "layers", "dropout",
                                        "encoder_params") if k in params}}
    epochs = params.get("dominant_teacher_epochs")
    sub = OmegaConf.create(to_container(ctx.cfg))
    sub.method = method
    sub.method_config = f"dominant-teacher-{dominant}"
    if epochs:
        sub.train.max_epochs = int(epochs)
    sub.train.save_checkpoint = False
    res = ctx.fit(sub, [dominant], ctx.out / "dominant_teacher")
    assert res.model is not None
    state = {k: v.detach().clone() for k, v in res.model.state_dict().items()}
    init = {k.replace(f"encoders.{dominant}.", "encoder.", 1): v for k, v in state.items()
            if k.startswith(f"encoders.{dominant}.")}
    init |= {k: v for k, v in state.items() if k.startswith("head.")}
    record["teacher"] = {"how": params.get("dominant_teacher"), "method": method,
                         "epochs": res.epochs, "selected_epoch": res.best_epoch}
    extra: dict[str, Any] = {"dominant_init": init}
    k = int(params.get("dominant_crossfit") or 0)
    if k:
        teacher = ctx.fit_crossfit(method, k, ctx.out / "dominant_teacher_crossfit",
                                   train_overrides={"max_epochs": int(epochs)} if epochs
                                   else None, modalities=[dominant], label="dominant")
        extra["label_teacher"] = teacher
        record["teacher"]["crossfit"] = k
    return extra


# ----------------------------------------------------------------- dominant choice

def _pooled(ds: MultimodalDataset, m: str) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` (length 1) or ``[N, 2D]`` mean+max pooled features, and presence ``[N]``."""
    x, mask = ds.features[m], ds.mask[m]
    z = x[:, 0] if x.shape[1] == 1 else torch.cat([masked_mean(x, mask), masked_max(x, mask)], -1)
    return z.double().cpu().numpy(), ds.present[m].cpu().numpy()


def linear_probe_scores(train: MultimodalDataset, valid: MultimodalDataset, target: str,
                        modalities: list[str]) -> tuple[dict[str, float], str]:
    """Score a linear probe per modality on the valid part.

    Logistic regression (class targets, score = accuracy) or ridge regression
    (regression targets, score = MAE) on pooled, standardised features, fit on
    the train rows where the modality is present and scored on the valid rows
    where it is present.

    Returns
    -------
    scores : dict
        Modality → score.
    metric : str
        ``"acc"`` (higher is better) or ``"mae"`` (lower is better).
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    spec = train.spec.target(target)
    y_tr = train.targets[target].cpu().numpy()
    y_va = valid.targets[target].cpu().numpy()
    scores: dict[str, float] = {}
    for m in modalities:
        (x_tr, p_tr), (x_va, p_va) = _pooled(train, m), _pooled(valid, m)
        if p_tr.sum() < 2 or p_va.sum() < 1:
            raise ConfigError(
                f"hkd_mer dominant=auto: modality {m!r} is present in {int(p_tr.sum())} train "
                f"and {int(p_va.sum())} valid samples; set method.dominant explicitly"
            )
        if spec.kind == "regression":
            model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
            model.fit(x_tr[p_tr], y_tr[p_tr])
            scores[m] = float(np.abs(model.predict(x_va[p_va]) - y_va[p_va]).mean())
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            model.fit(x_tr[p_tr], y_tr[p_tr])
            scores[m] = float((model.predict(x_va[p_va]) == y_va[p_va]).mean())
    return scores, "mae" if spec.kind == "regression" else "acc"


def _unimodal_probe_scores(ctx: FoldContext, modalities: list[str],
                           params: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Train the ``unimodal`` network per modality; score = its best validation metric.

    ``ctx.fit`` also tests each probe (its files land in ``<ctx.out>/dominant_probe``),
    but only the validation row of the epoch selected by ``train.monitor`` is read here.
    """
    import pandas as pd
    from omegaconf import OmegaConf

    from emodistill.config import to_container

    metric = "mae" if ctx.target.kind == "regression" else "acc"
    scores: dict[str, float] = {}
    for m in modalities:
        sub = OmegaConf.create(to_container(ctx.cfg))
        sub.method = {"name": "unimodal", "modality": m,
                      **{k: params[k] for k in ("encoder", "width", "layers",
                                                "dropout", "encoder_params") if k in params}}
        sub.method_config = f"dominant-probe-{m}"
        sub.train.max_epochs = int(params.get("dominant_probe_epochs", 30))
        sub.train.save_checkpoint = False
        res = ctx.fit(sub, [m], ctx.out / "dominant_probe" / m)
        rows = pd.read_csv(res.path / "metrics.csv").to_dict("records")
        row = next(r for r in rows if int(r["epoch"]) == res.best_epoch)
        scores[m] = float(row[f"val/{metric}"])
    return scores, metric


def choose_dominant(ctx: FoldContext, modalities: list[str], *, probe: str = "linear",
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pick the modality with the best unimodal score on the valid part (never the test part).

    Parameters
    ----------
    ctx : FoldContext
        The fold: its ready ``train``/``valid`` parts (the only data read),
        config, target, output folder and ``fit`` (for the ``unimodal`` probe).
    modalities : list of str
        Candidates; ties go to the first in this order.
    probe : {"linear", "unimodal"}
        See :class:`HKDMER` ``dominant_probe``.
    params : dict, optional
        Method parameters (encoder sizes and epochs of the ``unimodal`` probe).

    Returns
    -------
    dict
        ``{"dominant", "how", "probe", "metric", "scores", "part": "valid"}``.
    """
    if probe == "linear":
        scores, metric = linear_probe_scores(ctx.parts["train"], ctx.parts["valid"],
                                             ctx.target.name, modalities)
    elif probe == "unimodal":
        scores, metric = _unimodal_probe_scores(ctx, modalities, params or {})
        # re-seed so the HKD-MER model starts from the same state as with a fixed dominant
        seed_everything(int(ctx.cfg.seed))
    else:
        raise ConfigError(f"dominant_probe={probe!r}; use one of {list(_PROBES)}")
    sign = -1.0 if metric == "mae" else 1.0
    best = max(modalities, key=lambda m: (sign * scores[m], -modalities.index(m)))
    return {"dominant": best, "how": "auto", "probe": probe, "metric": metric,
            "scores": scores, "part": "valid"}
