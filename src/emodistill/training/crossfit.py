"""Cross-fitted teachers: soft targets for a training sample from a teacher that never saw it.

A teacher trained on a fold's whole training part and then asked for soft targets
on those same samples mostly repeats their labels (on MOSI's Poria features the
teacher is 99.8 % accurate on its training data: its soft labels are hard labels).
Cross-fitting (``method.teacher.crossfit: k``, ``k >= 2``) splits the fold's
training part into ``k`` parts by whole groups (the fold's group key: videos,
subjects, trials), trains member ``j`` on the other ``k - 1`` parts (selected on
the fold's validation part like any teacher, or fixed-recipe) and tests it once
on its held-out part ``j``. During distillation the soft target (and feature) for
a training sample of part ``j`` comes from member ``j`` only, so the student learns
what the teacher makes of *unseen* data. Validation and test samples, seen by no
member, go to member ``index % k``.

Files, under ``<fold>/teacher/``::

    crossfit.json          k, group key, per member: held-out groups, sizes, held-out
                           metrics; pooled held-out ("out-of-fold") metrics
    member<j>/...          each member's metrics.csv, test_metrics.json (= held out),
                           predictions.csv and model.pt

Applies to the teacher → student methods whose teacher is trained before the
student and only read while it learns (``hinton_kd``, ``kd_feature``) and to
HKD-MER's label-level KD with a pre-trained dominant teacher
(``method.dominant_teacher=pretrained|frozen``, ``method.dominant_crossfit``).
It does not apply to MKD with feedback (its feedback steps update the teacher on
the student's training samples, so the teacher sees them whatever it started
from), nor to DMD/DHMD's GD-Unit or HKD-MER's joint mode, where the "teachers"
are branches of the same model trained jointly on the same samples in the same
step (no teacher exists before the student).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from emodistill._fs import atomic_write
from emodistill.config import to_container
from emodistill.data.batch import Batch
from emodistill.data.parts import fold_parts
from emodistill.data.protocols import Fold
from emodistill.errors import ConfigError
from emodistill.models.base import MERModel, ModelOutput

if TYPE_CHECKING:
    from emodistill.data.dataset import MultimodalDataset
    from emodistill.training.run import Prepared

__all__ = ["CrossFitTeacher", "crossfit_folds", "fit_crossfit_teacher", "check_crossfit",
           "crossfit_summary",
           "group_values"]

log = logging.getLogger(__name__)


def group_values(ds: MultimodalDataset, key: str) -> np.ndarray:
    """Group value per row for a fold's ``group_key`` (``id``, ``video``, ``subject+trial``)."""
    if key == "id":
        return ds.ids.astype(str)
    keys = key.split("+")
    for k in keys:
        if k not in ds.groups:
            raise ConfigError(f"cross-fitting: dataset {ds.spec.name!r} has no group key {k!r}; "
                              f"available: {sorted(ds.groups)}")
    cols = [ds.groups[k].astype(str) for k in keys]
    return cols[0] if len(cols) == 1 else np.array(["|".join(t) for t in zip(*cols, strict=True)])


def check_crossfit(k: Any, *, method: str, params: dict[str, Any] | None = None) -> int:
    """Validate ``method.teacher.crossfit`` (0/None = off, else an integer >= 2)."""
    if k in (None, 0, False):
        return 0
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"method.teacher.crossfit={k!r}; use 0 (off) or an integer >= 2 "
                          "(the number of folds of the training groups)")
    p = params or {}
    if method == "mkd":
        raise ConfigError(
            "method.teacher.crossfit with mkd: MKD's feedback steps update the teacher on the "
            "student's training samples, so a cross-fitted teacher would see them anyway. Use "
            "method=kd_feature (MKD without feedback, the same losses) with crossfit, or "
            "method.teacher.crossfit=0."
        )
    if p.get("teacher_mode", "eval") != "eval":
        raise ConfigError("method.teacher.crossfit needs method.teacher_mode=eval")
    return int(k)


def crossfit_folds(ds: MultimodalDataset, fold: Fold, k: int, *, seed: int = 0) -> list[Fold]:
    """Member folds of ``fold``: member ``j`` trains on the training groups outside part ``j``.

    Each member fold keeps ``fold.valid`` as its validation part and uses part ``j``
    of the training rows as its (held-out) test part.
    """
    groups = group_values(ds, fold.group_key)[fold.train]
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ConfigError(
            f"method.teacher.crossfit={k}: fold {fold.name!r} has only {n_groups} training "
            f"{fold.group_key} groups; use crossfit <= {n_groups}"
        )
    out = []
    from sklearn.model_selection import GroupKFold  # seconds to import: only when used

    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for j, (tr, ho) in enumerate(splitter.split(fold.train, groups=groups)):
        out.append(Fold(f"{fold.name}-crossfit{j}", np.sort(fold.train[tr]), fold.valid,
                        np.sort(fold.train[ho]), fold.group_key))
    return out


def _select(stack: list[Tensor], member: Tensor) -> Tensor:
    x = torch.stack(stack)  # [k, B, ...]
    idx = member.view(1, -1, *([1] * (x.ndim - 2))).expand(1, *x.shape[1:])
    return x.gather(0, idx).squeeze(0)


class CrossFitTeacher(MERModel):
    """``k`` teachers; each sample's outputs come from the member that did not train on it.

    Parameters
    ----------
    members : list of MERModel
        The member teachers (same method and data signature).
    train_assignment : Tensor
        ``[N_train]`` int64: the member whose held-out part holds row ``i`` of the
        student's training part (the loader's ``Batch.index``).
    member_train_ids : list of set of str
        Sample ids each member was trained on (for checks and tests).
    rescale : list of dict, optional
        Per member, modality → ``(scale, shift)`` ``[D]`` mapping the student's
        standardised inputs to the member's own standardisation (each member was
        standardised on its own training rows): ``x_j = x * scale + shift``.
    """

    def __init__(self, members: list[MERModel], train_assignment: Tensor,
                 member_train_ids: list[set[str]] | None = None,
                 rescale: list[dict[str, tuple[Tensor, Tensor]]] | None = None) -> None:
        first = members[0]
        super().__init__(spec=first.spec, target=first.target, modalities=first.modalities,
                         regression_loss=first.regression_loss)
        self.members = nn.ModuleList(members)
        self.register_buffer("train_assignment", train_assignment.long(), persistent=False)
        self.member_train_ids = member_train_ids or []
        self.rescale = rescale
        self.route_train = False

    @property
    def n_members(self) -> int:
        """Number of members ``k``."""
        return len(self.members)

    def set_routing(self, *, train: bool) -> None:
        """Route by the training assignment (``train``) or by ``index % k`` (other parts)."""
        self.route_train = bool(train)

    def member_of(self, batch: Batch) -> Tensor:
        """``[B]`` member per sample of ``batch``."""
        idx = batch.index.long()
        if self.route_train:
            a = self.train_assignment.to(idx.device)
            if int(idx.max()) >= len(a):
                raise ConfigError(
                    f"cross-fitted teacher: batch index {int(idx.max())} outside the training "
                    f"part ({len(a)} rows); the routing only holds for the training loader"
                )
            return a[idx]
        return idx % self.n_members

    def member_batch(self, batch: Batch, j: int) -> Batch:
        """``batch`` in member ``j``'s standardisation."""
        if not self.rescale:
            return batch
        inputs = {}
        for m, x in batch.inputs.items():
            if m not in self.rescale[j]:
                inputs[m] = x
                continue
            a, b = (t.to(x.device, x.dtype) for t in self.rescale[j][m])
            inputs[m] = (x * a + b) * batch.mask[m][..., None].to(x.dtype)
        return dataclasses.replace(batch, inputs=inputs)

    def forward(self, batch: Batch) -> ModelOutput:
        """Every member runs on the batch; each sample keeps its own member's outputs.

        ``aux["crossfit_member"]`` is the ``[B]`` member index.
        """
        member = self.member_of(batch)
        outs = [m(self.member_batch(batch, j)) for j, m in enumerate(self.members)]
        o0 = outs[0]
        B = member.shape[0]

        def pick(get: Any) -> Tensor | None:
            vals = [get(o) for o in outs]
            return None if vals[0] is None else _select(vals, member)

        features = {k: _select([o.features[k] for o in outs], member) for k in o0.features}
        logits = {k: _select([o.logits[k] for o in outs], member) for k in o0.logits}
        aux = {k: _select([o.aux[k] for o in outs], member) for k, v in o0.aux.items()
               if torch.is_tensor(v) and v.ndim >= 1 and v.shape[0] == B
               and all(k in o.aux and o.aux[k].shape == v.shape for o in outs)}
        aux["crossfit_member"] = member
        return ModelOutput(preds=pick(lambda o: o.preds), features=features, logits=logits,
                           fused=pick(lambda o: o.fused), aux=aux)


def fit_crossfit_teacher(prep: Prepared, fold: Fold, out: Path, method_cfg: dict[str, Any],
                         k: int, *, train_overrides: dict[str, Any] | None = None,
                         modalities: list[str] | None = None,
                         label: str = "teacher") -> CrossFitTeacher:
    """Train ``k`` members of ``method_cfg`` on ``fold`` (see the module docstring).

    Parameters
    ----------
    prep : Prepared
        The student's prepared run (data, config, leak record).
    fold : Fold
        The student's fold.
    out : Path
        Folder of the teacher files (``crossfit.json``, ``member<j>/``).
    method_cfg : dict
        The teacher method ``{name: ..., **params}``.
    k : int
        Number of members.
    train_overrides : dict, optional
        Overrides of the ``train`` section for the members.
    modalities : list of str, optional
        Modalities of the members (default: the run's).
    label : str
        Name used in logs and ``method_config`` of the members.

    Returns
    -------
    CrossFitTeacher
    """
    from emodistill.training.run import Prepared, fit_fold
    from emodistill.training.selection import valid_leaks

    cfg, ds = prep.cfg, prep.dataset
    mods = modalities or prep.modalities
    members_folds = crossfit_folds(ds, fold, k, seed=int(cfg.seed))
    members: list[MERModel] = []
    record: dict[str, Any] = {"k": k, "group_key": fold.group_key, "method": method_cfg,
                              "members": []}
    groups = group_values(ds, fold.group_key)
    held_metrics: list[tuple[int, dict[str, float]]] = []
    for j, mf in enumerate(members_folds):
        sub = OmegaConf.create(to_container(cfg))
        sub.method = method_cfg
        sub.method_config = f"{label}-{method_cfg['name']}-crossfit{j}"
        if train_overrides:
            sub.train = OmegaConf.merge(sub.train, train_overrides)
        m_mod = method_cfg.get("modality")
        leaked = valid_leaks(ds, [mf], [m_mod] if m_mod else mods,
                             split=cfg.protocol.get("split"))
        res = fit_fold(Prepared(sub, ds, prep.target, mods, [mf], leaked, prep.allow_leaky),
                       mf, out / f"member{j}")
        assert res.model is not None
        res.model.eval()
        members.append(res.model)
        held_metrics.append((len(mf.test), res.test))
        record["members"].append({
            "member": j, "n_train": int(len(mf.train)), "n_heldout": int(len(mf.test)),
            "heldout_groups": sorted(set(groups[mf.test].tolist())), "heldout_test": res.test,
        })
        log.info("%s crossfit member %d/%d on %s: held-out %s", label, j + 1, k, fold.name,
                 res.test)
    n = sum(h[0] for h in held_metrics)
    keys = held_metrics[0][1].keys()
    record["heldout_mean"] = {key: float(sum(c * m[key] for c, m in held_metrics) / n)
                              for key in keys}
    # the student's training part, exactly as fit_fold builds it (post-split rows)
    subject_norm = (cfg.get("protocol") or {}).get("subject_norm", "none")
    part = fold_parts(ds, fold, ("train",), subject_norm=subject_norm)[0]["train"]
    part_groups = group_values(part, fold.group_key)
    owner = {g: j for j, mf in enumerate(members_folds) for g in set(groups[mf.test].tolist())}
    missing = sorted(set(part_groups.tolist()) - set(owner))
    if missing:  # cannot happen: every training group is held out by exactly one member
        raise ConfigError(f"cross-fitting: training groups {missing[:3]} held out by no member")
    assignment = torch.as_tensor([owner[g] for g in part_groups.tolist()], dtype=torch.long)
    seen = [set(ds.ids[mf.train].tolist()) for mf in members_folds]
    rescale = None
    if cfg.dataset.normalize:  # as fit_fold: each member standardised on its own train rows
        from emodistill.data.normalize import Standardizer

        s_std = Standardizer.fit(part)
        rescale = []
        for mf in members_folds:
            m_std = fold_parts(ds, mf, ("train",), normalize=True, subject_norm=subject_norm)[1]
            assert m_std is not None
            rescale.append({k: (s_std.std[k] / m_std.std[k],
                                (s_std.mean[k] - m_std.mean[k]) / m_std.std[k])
                            for k in s_std.mean})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "crossfit.json", lambda f: json.dump(record, f, indent=2, default=str))
    return CrossFitTeacher(members, assignment, seen, rescale)


def crossfit_summary(cfg: Any, run_dir: Path, folds: list[str]) -> dict[str, Any] | None:
    """Return the teacher record of ``results.json``: crossfit k, held-out metrics per fold.

    ``None`` when the method has no teacher section. ``heldout`` holds, per fold, the
    members' size-weighted mean metrics on their held-out training groups (the
    teacher's accuracy on data it did not see, beside the student's).
    """
    tcfg = cfg.method.get("teacher") if hasattr(cfg.method, "get") else None
    if not tcfg or not hasattr(tcfg, "get"):
        return None
    k = int(tcfg.get("crossfit") or 0)
    rec: dict[str, Any] = {"crossfit": k,
                           "how": (f"cross-fitted: {k} members, each training sample's soft "
                                   "target from the member that held it out") if k else
                                  "one teacher trained on the fold's whole training part"}
    if k:
        held = {}
        for f in folds:
            path = Path(run_dir) / f / "teacher" / "crossfit.json"
            if path.is_file():
                held[f] = json.loads(path.read_text())["heldout_mean"]
        rec["heldout"] = held
    return rec
