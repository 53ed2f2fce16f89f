"""Teacher → student distillation methods: Hinton KD and fused-feature KD.

A student method (any single-modality method, by default the EmotionKD-style
``physio_student``) is wrapped and trained against a teacher (any trained
method, e.g. ``physio_teacher`` or ``feature_fusion``) that the engine passes
as the ``teacher`` argument (see ``emodistill.training.run.obtain_teacher``)::

    method:
      name: hinton_kd
      modality: eog                      # the student's modality
      student: {name: physio_student}    # the student architecture and its params
      teacher:
        method: {name: physio_teacher}   # trained first on the same fold...
        checkpoint: null                 # ...or loaded from a run of the same fold/data

Losses (the teacher side is detached; the teacher is run in eval mode):

* ``hinton_kd``: ``ce_weight * CE(y, p_S) + kd_weight * T^2 * KL(q_T^T || p_S^T)``
  (Hinton et al. 2015; the MKD ablation "Variation 1"). For regression targets the
  KL term is the MSE between student and teacher predictions.
* ``kd_feature``: the above ``+ feature_weight * d(P(z_S), z_T)`` where ``z_T`` is the
  teacher's fused feature, ``z_S`` the student's feature and ``P`` a learned
  projection to the teacher's width (MKD "Variation 2"; EmotionKD regresses the
  student's fused feature on the teacher's with MSE). Widths are checked. ``d`` is a
  distance (``mse``, ``cosine``, ``l1``) or ``contrastive``: InfoNCE over the batch at
  ``feature_temperature`` (HKD-MER's feature-level ``D_feat``, reconstructed), each
  projected student row paired with its own teacher row against the other rows.

Function matching (our addition, not in the seed papers; Beyer et al. 2022, "Knowledge
distillation: A good teacher is patient and consistent"): with ``kd_mixup: a > 0`` every
training batch is also mixed (:mod:`emodistill.distill.mixup`: all modalities with one
per-sample ``lam ~ Beta(a, a)`` and one partner permutation), teacher and student both run
on the mixed batch and the distillation terms are taken there, so the student sees the
teacher's function between training points, not only at the points the teacher fitted.
The supervised term stays on the clean batch (``kd_mixup_ce: false``) or uses the mixed
labels (``true``). ``kd_mixup_target: labels`` is the placebo: the same draws and loss form
with the mixed one-hot labels in place of the teacher (label mixup, no teacher knowledge).

The teacher is kept out of the registered submodules, so it is neither
optimised by the default engine nor saved in the student's state dict; a saved
student is loaded with ``teacher=None`` and runs alone.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec
from emodistill.distill.losses import feature_kd_loss, soft_label_kd
from emodistill.distill.losses.kd import FEATURE_KD
from emodistill.distill.mixup import check_mixup_alpha, draw_mix, mix_batch, mixed_task_loss
from emodistill.errors import ConfigError
from emodistill.models.base import METHODS, MERModel, ModelOutput, build_method

__all__ = ["HintonKD", "FeatureKD", "probe_batch", "output_feature"]


def probe_batch(spec: DatasetSpec, n: int = 2, device: torch.device | str = "cpu") -> Batch:
    """Make a batch of ``n`` zero samples with every modality of ``spec`` present (probes)."""
    return Batch(
        inputs={m.name: (torch.full((n, m.seq_len), 101, dtype=torch.long, device=device)
                         if m.is_tokens else torch.zeros(n, m.seq_len, m.dim, device=device))
                for m in spec.modalities},
        mask={m.name: torch.ones(n, m.seq_len, dtype=torch.bool, device=device)
              for m in spec.modalities},
        present={m.name: torch.ones(n, dtype=torch.bool, device=device) for m in spec.modalities},
        target=torch.zeros(n, dtype=torch.long, device=device),
        index=torch.arange(n, device=device),
    )


def output_feature(out: ModelOutput, *, who: str) -> Tensor:
    """Return the ``[B, F]`` feature for feature KD: ``fused``, else the only modality feature."""
    if out.fused is not None:
        return out.fused
    if len(out.features) == 1:
        return next(iter(out.features.values()))
    raise ConfigError(
        f"the {who} exposes no fused feature (ModelOutput.fused is None and it has "
        f"{len(out.features)} modality features); feature KD needs one: use a method that "
        "returns a fused feature (physio_teacher, feature_fusion, unimodal, physio_student)"
    )


@torch.no_grad()
def _probe_width(model: MERModel, *, who: str) -> int:
    was = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        device = p.device if p is not None else "cpu"
        return int(output_feature(model(probe_batch(model.spec, device=device)), who=who).shape[-1])
    finally:
        model.train(was)


@METHODS.register("hinton_kd")
class HintonKD(MERModel):
    """Teacher → student distillation with Hinton's soft-label loss.

    Parameters
    ----------
    student : dict, optional
        The student method: ``{name: <registered method>, **params}`` (default
        ``{name: physio_student}``). It must accept ``modality``.
    modality : str
        The student's modality (required unless the dataset has only one).
    teacher : MERModel, optional
        The trained teacher (passed by the engine; ``None`` at inference).
    ce_weight, kd_weight : float
        Weights of the supervised and the soft-label terms.
    temperature : float
        Softmax temperature ``T`` of the soft labels (the KL term is scaled by ``T^2``).
    teacher_mode : {"eval", "train"}
        Mode the teacher runs in when it produces targets (``eval``: no dropout,
        running batch-norm statistics).
    kd_mixup : float
        Function matching (Beyer et al. 2022; our addition): ``a > 0`` mixes each training
        batch (every modality, one ``lam ~ Beta(a, a)`` per sample, one partner permutation)
        and takes the distillation terms on the mixed batch, teacher and student on the same
        mixed input. ``0`` (default): off, the plain loss.
    kd_mixup_ce : bool
        With ``kd_mixup > 0``: the supervised term on the mixed batch with the mixed labels
        (``True``) or on the clean batch (``False``, default: the student-alone loss plus a
        distillation term on the mixed points).
    kd_mixup_target : {"teacher", "labels"}
        With ``kd_mixup > 0``: distil the teacher on the mixed points (default), or the
        placebo ``labels``: the same draws and weights with the mixed one-hot labels in place
        of the teacher's soft labels (``kd`` is then the mixed-label cross-entropy; the
        teacher is not used).
    kd_mixup_seed : int, optional
        Seed of the mixing draws' own ``torch.Generator``; ``None`` (default): the run seed
        (``torch.initial_seed()`` when the method is built, which the engine has set with
        ``seed_everything(seed)``). The global random stream is not touched by the draws.
    """

    requires_teacher = True
    parallel_ok = True

    def __init__(self, *, student: dict[str, Any] | None = None, modality: str | None = None,
                 teacher: MERModel | None = None, ce_weight: float = 1.0, kd_weight: float = 1.0,
                 temperature: float = 4.0, teacher_mode: Literal["eval", "train"] = "eval",
                 kd_mixup: float = 0.0, kd_mixup_ce: bool = False,
                 kd_mixup_target: Literal["teacher", "labels"] = "teacher",
                 kd_mixup_seed: int | None = None, **base: Any) -> None:
        spec: DatasetSpec = base["spec"]
        if modality is None:
            if len(spec.modalities) != 1:
                raise ConfigError(
                    f"method {type(self).__name__} needs method.modality (the student's "
                    f"modality), one of {spec.modality_names}"
                )
            modality = spec.modality_names[0]
        spec.modality(modality)
        base["modalities"] = [modality]
        super().__init__(**base)
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature}; it must be > 0")
        if teacher_mode not in ("eval", "train"):
            raise ConfigError(f"teacher_mode={teacher_mode!r}; use eval or train")
        scfg = dict(student or {"name": "physio_student"})
        sname = scfg.pop("name", "physio_student")
        if getattr(METHODS.get(sname), "requires_teacher", False):
            raise ConfigError(f"student method {sname!r} itself needs a teacher; pick a plain "
                              "single-modality method (physio_student, unimodal)")
        self.student = build_method(sname, spec=self.spec, target=self.target,
                                    params={**scfg, "modality": modality})
        self.student_name = sname
        self.modality = modality
        self.ce_weight, self.kd_weight = ce_weight, kd_weight
        self.temperature = temperature
        self.teacher_mode = teacher_mode
        self.kd_mixup = check_mixup_alpha(kd_mixup)
        if kd_mixup_target not in ("teacher", "labels"):
            raise ConfigError(f"kd_mixup_target={kd_mixup_target!r}; use teacher (function "
                              "matching) or labels (the label-mixup placebo)")
        self.kd_mixup_ce, self.kd_mixup_target = bool(kd_mixup_ce), kd_mixup_target
        if self.kd_mixup > 0:
            tokens = [m.name for m in spec.modalities if m.is_tokens]
            if tokens:
                raise ConfigError(
                    f"method.kd_mixup={kd_mixup}: modalities {tokens} hold token ids, which "
                    "cannot be mixed; use pre-extracted features (e.g. dataset.text_level="
                    "pooled) or set method.kd_mixup=0")
        # the mixing draws' own generator, made on first use (seed fixed now: the run seed)
        self.kd_mixup_seed = (int(kd_mixup_seed) if kd_mixup_seed is not None
                              else int(torch.initial_seed()))
        self._mix_gen: torch.Generator | None = None
        # a plain list keeps the teacher out of submodules: not optimised, not saved
        self._teacher: list[MERModel] = []
        self._teacher_gates: tuple[Tensor, int] | None = None
        if teacher is not None:
            self.attach_teacher(teacher)

    # -- teacher ------------------------------------------------------------------------------

    def attach_teacher(self, teacher: MERModel) -> None:
        """Use ``teacher`` (checked against the student's target)."""
        if teacher.target.kind != self.target.kind or teacher.n_outputs != self.n_outputs:
            raise ConfigError(
                f"teacher predicts {teacher.target.name!r} ({teacher.target.kind}, "
                f"{teacher.n_outputs} outputs) but the student {self.target.name!r} "
                f"({self.target.kind}, {self.n_outputs} outputs); train the teacher on the same "
                "dataset.target"
            )
        if self.kd_mixup > 0 and hasattr(teacher, "set_routing"):
            raise ConfigError(
                "method.kd_mixup > 0 with a cross-fitted teacher (method.teacher.crossfit): a "
                "mixed sample has two source trials and no single member that saw neither; "
                "set method.teacher.crossfit=0 or method.kd_mixup=0")
        self._teacher = [teacher]

    @property
    def teacher(self) -> MERModel | None:
        """The teacher, or ``None`` (inference)."""
        return self._teacher[0] if self._teacher else None

    def _need_teacher(self) -> MERModel:
        t = self.teacher
        if t is None:
            raise ConfigError(
                f"method {type(self).__name__} trains against a teacher but has none: set "
                "method.teacher.method={name: ...} (trained first on the same fold) or "
                "method.teacher.checkpoint=PATH"
            )
        return t

    def _sync_teacher(self, batch: Batch) -> MERModel:
        t = self._need_teacher()
        dev = batch.target.device
        p = next(t.parameters(), None)
        if p is not None and p.device != dev:
            t.to(dev)
        return t

    def teacher_outputs(self, batch: Batch) -> ModelOutput:
        """Teacher outputs on ``batch`` for teaching (no gradient, ``teacher_mode``)."""
        t = self._sync_teacher(batch)
        t.train(self.teacher_mode == "train")
        set_routing = getattr(t, "set_routing", None)
        if set_routing is not None:  # a cross-fitted teacher: training rows to their member
            set_routing(train=self.training)
        with torch.no_grad():
            return t(batch)

    # -- student ------------------------------------------------------------------------------

    def forward(self, batch: Batch) -> ModelOutput:
        """Run the student (the teacher is not used)."""
        return self.student(batch)

    def distill_terms(self, s_out: ModelOutput, t_out: ModelOutput, *,
                      detach_teacher: bool = True,
                      projected: Tensor | None = None) -> dict[str, Tensor]:
        """Unweighted distillation terms of student output ``s_out`` against ``t_out``.

        Returns ``{"kd": ...}`` (soft-label term); subclasses add more.
        """
        kd = soft_label_kd(s_out.preds, t_out.preds, temperature=self.temperature,
                           regression="mse", detach_teacher=detach_teacher)
        return {"kd": kd}

    def distill_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """Weighted sum of the distillation terms (without the supervised term)."""
        return self.kd_weight * terms["kd"]

    def mix_generator(self) -> torch.Generator:
        """Return the ``torch.Generator`` of the mixing draws (seeded with ``kd_mixup_seed``)."""
        if self._mix_gen is None:
            self._mix_gen = torch.Generator().manual_seed(self.kd_mixup_seed)
        return self._mix_gen

    def train_state(self) -> dict[str, Any]:
        """Return the mixing generator's state (a resumed fit continues its draws), or ``{}``."""
        return {} if self._mix_gen is None else {"kd_mixup_rng": self._mix_gen.get_state()}

    def load_train_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`train_state` returned."""
        if state.get("kd_mixup_rng") is not None:
            self.mix_generator().set_state(state["kd_mixup_rng"])

    def mixup_loss(self, batch: Batch, task: Tensor) -> dict[str, Tensor]:
        """Compute the training loss with function matching (``kd_mixup > 0``).

        ``ce_weight * sup + distillation(student(mix), teacher(mix))`` where ``mix`` is the
        batch mixed by one draw of :func:`~emodistill.distill.mixup.draw_mix` and ``sup`` the
        clean ``task`` (``kd_mixup_ce: false``) or the mixed-label loss on ``mix``.
        """
        draw = draw_mix(batch.size, self.kd_mixup, self.mix_generator())
        mixed = mix_batch(batch, draw)
        s_mix = self(mixed)
        terms: dict[str, Tensor]
        if self.kd_mixup_target == "labels":  # placebo: the mixed labels teach
            terms = {"kd": mixed_task_loss(s_mix.preds, batch.target, draw, self.target,
                                           self.regression_loss)}
            dist = self.kd_weight * terms["kd"]
        else:
            terms = self.distill_terms(s_mix, self.teacher_outputs(mixed))
            dist = self.distill_loss(terms)
        if self.kd_mixup_ce:  # the placebo's kd term is this very loss: not computed again
            sup = (terms["kd"] if self.kd_mixup_target == "labels"
                   else mixed_task_loss(s_mix.preds, batch.target, draw, self.target,
                                        self.regression_loss))
            terms["task_mixed"] = sup
        else:
            sup = task
        return self._loss_terms(sup, dist, task, terms)

    def _loss_terms(self, sup: Tensor, dist: Tensor, task: Tensor,
                    terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": ce_weight * sup + dist (+ the student's weight penalty), "task", terms}``."""
        total = self.ce_weight * sup + dist
        penalty = getattr(self.student, "weight_penalty", None)
        if penalty is not None:  # e.g. eeg_mlp's linear_l2: the student's own shrinkage
            total = total + penalty()
        return {"loss": total, "task": task, **terms}

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, Tensor]:
        """``ce_weight * task + distillation``; only the task loss without a teacher (eval).

        With ``kd_mixup > 0`` in training: :meth:`mixup_loss` (``out`` gives the clean task
        term).
        """
        task = self.task(out.preds, batch.target)
        if self.training and self.kd_mixup > 0:
            if self.kd_mixup_target == "teacher":
                self._need_teacher()
            return self.mixup_loss(batch, task)
        if self.teacher is None:
            if self.training:
                self._need_teacher()
            return {"loss": task, "task": task}
        t_out = self.teacher_outputs(batch)
        if not self.training and "gates" in t_out.aux:  # e.g. physio_teacher's modality gates
            g = t_out.aux["gates"].detach()
            prev = self._teacher_gates
            self._teacher_gates = (g.sum(0) + (prev[0].to(g.device) if prev else 0),
                                   g.shape[0] + (prev[1] if prev else 0))
        terms = self.distill_terms(out, t_out)
        return self._loss_terms(task, self.distill_loss(terms), task, terms)

    def epoch_logs(self) -> dict[str, float]:
        """Report the teacher's mean modality gates on validation samples since the last call."""
        if not self._teacher_gates or self.teacher is None:
            return {}
        total, n = self._teacher_gates
        self._teacher_gates = None
        mods = self.teacher.modalities
        return {f"teacher_gate_{m}": float(v) for m, v in zip(mods, total / n, strict=True)}


@METHODS.register("kd_feature")
class FeatureKD(HintonKD):
    """Hinton KD plus distillation of the teacher's fused feature through a projection.

    The student's feature ``z_S [B, F_S]`` goes through a learned projection
    ``P: F_S → F_T`` and is pulled to the teacher's fused feature ``z_T [B, F_T]``
    (``ModelOutput.fused``). ``F_T`` is read from the teacher; a mismatch at
    run time raises a :class:`ConfigError` naming both widths.

    Parameters
    ----------
    feature_weight : float
        Weight of the feature term.
    feature_loss : {"mse", "cosine", "l1", "contrastive"}
        Distance between projected student and teacher features ``[B, F_T]``:
        ``mse`` / ``l1`` (mean over entries), ``cosine`` (``1 - cos``, batch mean), or
        ``contrastive``: InfoNCE over the batch (HKD-MER's feature-level KD,
        :func:`~emodistill.distill.losses.contrastive_alignment`), the mean over rows
        ``i`` of ``-log softmax_j(cos(P(z_S)_i, z_T_j) / feature_temperature)[i]``; the
        negatives are the other rows of the same batch (of the same member on the
        members-in-parallel path), so it is 0 for a batch of one row.
    feature_temperature : float
        InfoNCE temperature of ``contrastive`` (> 0; HKD-MER's default 0.1). Unused by
        the distances.
    projector : {"linear", "mlp"}
        The projection ``P`` (``mlp``: Linear-GELU-Linear with hidden width ``F_T``).
    teacher_dim : int, optional
        ``F_T`` when no teacher is given (normally read from the teacher). Without
        either, the projection is not built (inference) and its saved weights are
        ignored on load.
    **kw
        See :class:`HintonKD`.
    """

    def __init__(self, *, feature_weight: float = 1.0,
                 feature_loss: Literal["mse", "cosine", "l1", "contrastive"] = "mse",
                 feature_temperature: float = 0.1,
                 projector: Literal["linear", "mlp"] = "linear", teacher_dim: int | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        if feature_loss not in FEATURE_KD:
            raise ConfigError(f"method.feature_loss={feature_loss!r}; use one of mse, cosine, "
                              "l1, contrastive")
        if (isinstance(feature_temperature, bool)
                or not isinstance(feature_temperature, (int, float))
                or not math.isfinite(feature_temperature) or feature_temperature <= 0):
            raise ConfigError(f"method.feature_temperature={feature_temperature!r}; it must be a "
                              "finite number > 0 (the InfoNCE temperature, e.g. 0.1)")
        if projector not in ("linear", "mlp"):
            raise ConfigError(f"projector={projector!r}; use linear or mlp")
        self.feature_weight, self.feature_loss = feature_weight, feature_loss
        self.feature_temperature = float(feature_temperature)
        self.student_dim = _probe_width(self.student, who=f"student {self.student_name!r}")
        t = self.teacher
        if t is not None:
            found = _probe_width(t, who="teacher")
            if teacher_dim is not None and teacher_dim != found:
                raise ConfigError(
                    f"method.teacher_dim={teacher_dim} but the teacher's fused feature has width "
                    f"{found}; remove teacher_dim (it is read from the teacher)"
                )
            teacher_dim = found
        self.teacher_dim = teacher_dim
        self.projector: nn.Module | None = None
        # a cross-fitted teacher has k members, each with its own feature space: one
        # projection per member (training/crossfit.py); a plain teacher has one
        n_members = int(getattr(t, "n_members", 1)) if t is not None else 1
        if teacher_dim is not None:
            def make() -> nn.Module:
                if projector == "linear":
                    return nn.Linear(self.student_dim, teacher_dim)
                return nn.Sequential(nn.Linear(self.student_dim, teacher_dim), nn.GELU(),
                                     nn.Linear(teacher_dim, teacher_dim))

            self.projector = make() if n_members == 1 else nn.ModuleList(
                [make() for _ in range(n_members)])
        self.register_load_state_dict_pre_hook(self._drop_unbuilt_projector)

    def _drop_unbuilt_projector(self, module: nn.Module, state_dict: dict[str, Any], prefix: str,
                                *args: Any) -> None:
        if self.projector is None:  # inference without a teacher: the projection is unused
            for k in [k for k in state_dict if k.startswith(prefix + "projector.")]:
                del state_dict[k]

    def project(self, s_out: ModelOutput, member: Tensor | None = None) -> Tensor:
        """Project the student's feature to the teacher's width ``[B, F_T]``.

        With a cross-fitted teacher, ``member`` ``[B]`` picks each sample's projection
        (the member that produced its teacher feature).
        """
        if self.projector is None:
            raise ConfigError(
                "kd_feature has no projection: it was built without a teacher and without "
                "method.teacher_dim"
            )
        z = output_feature(s_out, who=f"student {self.student_name!r}")
        if isinstance(self.projector, nn.ModuleList):
            if member is None:
                raise ConfigError("kd_feature with a cross-fitted teacher: the teacher output "
                                  "carries no aux['crossfit_member']")
            proj = torch.stack([p(z) for p in self.projector])  # [k, B, F_T]
            return proj[member, torch.arange(z.shape[0], device=z.device)]
        return self.projector(z)

    def distill_terms(self, s_out: ModelOutput, t_out: ModelOutput, *,
                      detach_teacher: bool = True,
                      projected: Tensor | None = None) -> dict[str, Tensor]:
        """Soft-label term ``kd`` and feature term ``feature`` (``projected`` may be given).

        Parameters
        ----------
        s_out, t_out : ModelOutput
            Student and teacher outputs on the same ``B`` rows.
        detach_teacher : bool
            ``True`` (teaching): no gradient into the teacher's logits or feature;
            ``False``: the terms are differentiable in the teacher too (MKD's feedback
            steps), for every ``feature_loss``.
        projected : Tensor, optional
            The projected student feature ``[B, F_T]`` when the caller computed it
            (MKD's functional look-ahead); else :meth:`project` is applied.

        Returns
        -------
        dict of str to Tensor
            Unweighted scalar terms ``{"kd": ..., "feature": ...}``.
        """
        terms = super().distill_terms(s_out, t_out, detach_teacher=detach_teacher)
        zt = output_feature(t_out, who="teacher")
        zs = (self.project(s_out, t_out.aux.get("crossfit_member")) if projected is None
              else projected)
        if zs.shape[-1] != zt.shape[-1]:
            raise ConfigError(
                f"feature KD: the projected student feature has width {zs.shape[-1]} but the "
                f"teacher's fused feature has width {zt.shape[-1]}; set method.teacher_dim="
                f"{zt.shape[-1]} or leave it unset so it is read from the teacher"
            )
        terms["feature"] = feature_kd_loss(zs, zt, kind=self.feature_loss,  # type: ignore[arg-type]
                                           temperature=self.feature_temperature,
                                           detach_teacher=detach_teacher)
        return terms

    def distill_loss(self, terms: dict[str, Tensor]) -> Tensor:  # noqa: D102
        return super().distill_loss(terms) + self.feature_weight * terms["feature"]
