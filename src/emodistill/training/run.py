"""One run: config → data → protocol folds → fit on train, select on valid → test once.

Each run writes a folder::

    <output_dir>/<run_name>/
        config.yaml          resolved config
        data.json            dataset summary and fingerprint
        results.json         test metrics per fold and their mean
        <fold>/metrics.csv   per-epoch train/valid metrics
        <fold>/test_metrics.json
        <fold>/predictions.csv
        <fold>/model.pt      self-describing checkpoint (see emodistill.checkpoint)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from emodistill._fs import atomic_write, unique_dir
from emodistill.checkpoint import load_checkpoint, save_checkpoint
from emodistill.config import check_seed, to_container
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.normalize import Standardizer
from emodistill.data.parts import PARTS, fold_parts
from emodistill.data.protocols import Fold, make_folds
from emodistill.data.registry import build_dataset
from emodistill.data.spec import DatasetSpec, TargetSpec
from emodistill.data.subject_norm import check_subject_norm
from emodistill.errors import ConfigError, EmodistillError
from emodistill.metrics import HIGHER_IS_BETTER, metric_collection
from emodistill.models import METHODS, MERModel, build_method
from emodistill.models.base import FoldContext
from emodistill.optim import make_optimizer
from emodistill.param_names import rename_method_params
from emodistill.seeding import seed_everything
from emodistill.training.context_data import ContextPlan, context_plan
from emodistill.training.crossfit import check_crossfit, crossfit_summary, fit_crossfit_teacher
from emodistill.training.pooling import pool_folds
from emodistill.training.run_folders import CKPT_DIR, check_resumable, remove_checkpoints
from emodistill.training.selection import (
    check_no_valid,
    check_selection,
    fold_leaks,
    require_clean_valid,
    selection_record,
    valid_leaks,
)
from emodistill.training.trackers import check_trackers

__all__ = ["run_experiment", "RunResult", "FoldResult", "prepare", "Prepared", "fold_fingerprint",
           "fold_context", "config_fold_parts"]

if TYPE_CHECKING:
    import lightning as L

    from emodistill.training.lit import LitMER

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    """Outcome of one fold (``model`` is the selected model, kept in memory)."""

    fold: str
    test: dict[str, float]
    best_epoch: int
    epochs: int
    sizes: dict[str, int]
    path: Path
    model: MERModel | None = field(default=None, repr=False)
    #: the monitored validation metric of the selected checkpoint
    best_val: float = float("nan")


@dataclass
class RunResult:
    """Outcome of one run (all folds of one seed)."""

    path: Path
    folds: list[FoldResult] = field(default_factory=list)
    #: per-subject models (``protocol.per_subject``): one result per subject and fold,
    #: pooled into ``folds`` by :func:`emodistill.training.pooling.pool_folds`
    members: list[FoldResult] = field(default_factory=list)

    @property
    def best_val(self) -> float:
        """The monitored validation metric of the selected checkpoints, averaged over folds."""
        return float(np.mean([f.best_val for f in self.folds]))

    @property
    def mean(self) -> dict[str, float]:
        """Test metrics averaged over folds."""
        keys = self.folds[0].test.keys()
        return {k: float(np.mean([f.test[k] for f in self.folds])) for k in keys}


@dataclass
class Prepared:
    """A config checked against its data, ready to train."""

    cfg: DictConfig
    dataset: MultimodalDataset
    target: TargetSpec
    modalities: list[str]
    folds: list[Fold]
    #: modalities leaked in the validation part (see emodistill.training.selection)
    valid_leaked: list[str] = field(default_factory=list)
    #: protocol.allow_leaky: a diagnostic run, selection on leaked validation allowed
    allow_leaky: bool = False
    #: continue an interrupted run: read finished folds back, the others from checkpoints/
    resume: bool = False

    @property
    def no_valid(self) -> bool:
        """The folds have no validation part (``protocol.valid_fraction=0``)."""
        return _without_valid(self.folds)


def _without_valid(folds: Sequence[Fold]) -> bool:
    return any(len(f.valid) == 0 for f in folds)


def _check_train_cfg(cfg: DictConfig) -> None:
    t = cfg.train
    if "resume" in t:
        raise ConfigError("train.resume is not a config key: continue an interrupted run with "
                          "`emodistill train --resume RUN_DIR` (benchmarks: --resume --name NAME)")
    unknown = sorted(set(t) - _known_train_keys())
    if unknown:  # e.g. added with +train.x=...: nothing would read it
        raise ConfigError(f"train.{unknown[0]}: no such train setting, nothing would read it; "
                          f"valid: {sorted(_known_train_keys())}")
    if not str(t.monitor).startswith("val/"):
        raise ConfigError(
            f"train.monitor={t.monitor!r}: model selection must use a validation metric "
            "(val/...), never a test one"
        )
    if t.mode not in ("min", "max"):
        raise ConfigError(f"train.mode={t.mode!r}; use min or max")
    name = str(t.monitor)[4:]
    if name in HIGHER_IS_BETTER and HIGHER_IS_BETTER[name] != (t.mode == "max"):
        want = "max" if HIGHER_IS_BETTER[name] else "min"
        raise ConfigError(f"train.monitor={t.monitor} needs train.mode={want}")
    # checked here so that a bad value fails before the run folder exists
    choices = {"optimizer": ("adamw", "adam", "sgd"), "scheduler": ("plateau", "none"),
               "selection": ("best", "last"), "parallel_kernels": ("auto", "exact", "batched")}
    for key, valid in choices.items():
        if t.get(key, valid[0]) not in valid:
            raise ConfigError(f"train.{key}={t.get(key)!r}; use one of {', '.join(valid)}")

    def number(key: str, low: float, *, integer: bool = False, allow: tuple = ()) -> None:
        v = t.get(key)
        if v is None or v in allow:
            return
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or v < low:
            kind = "an integer" if integer else "a number"
            extra = "".join(f" (or {a})" for a in allow)
            raise ConfigError(f"train.{key}={v!r}; use {kind} >= {low}{extra}")

    check_trackers(cfg)
    number("max_epochs", 1, integer=True, allow=(-1,))
    number("batch_size", 1, integer=True)
    number("patience", 0, integer=True)
    number("accumulate_grad_batches", 1, integer=True)
    number("length_buckets", 0, integer=True)
    number("lr", 1e-12)
    number("weight_decay", 0)


def _known_train_keys() -> set[str]:
    """Return the train settings of ``base.yaml`` (every one the engine reads)."""
    from emodistill.config import compose

    return set(compose().train)


def prepare(
    cfg: DictConfig, dataset: MultimodalDataset | None = None, *, check_training: bool = True
) -> Prepared:
    """Load (or reuse) the data, resolve target and modalities, and make the folds.

    Everything that can be wrong with the config or the data fails here, before
    any file is written. ``check_training=False`` (``data verify``) checks the data
    and the protocol only: model selection on a leaked validation part is then
    reported in ``Prepared.valid_leaked`` instead of refused.
    """
    _check_train_cfg(cfg)
    check_seed(cfg.seed)
    ds = dataset if dataset is not None else build_dataset(to_container(cfg.dataset))
    target = ds.spec.target(cfg.dataset.target)
    mods = list(cfg.dataset.modalities) if cfg.dataset.modalities else ds.spec.modality_names
    for m in mods:
        ds.spec.modality(m)
    method_mod = cfg.method.get("modality")
    if method_mod is not None:
        ds.spec.modality(method_mod)
    proto = to_container(cfg.protocol)
    pname = proto.pop("name")
    fold_name = proto.pop("fold", None)
    allow_leaky = proto.pop("allow_leaky", False)
    subject_norm = proto.pop("subject_norm", "none")  # applied per fold in fit_fold
    used = [method_mod] if method_mod else mods
    split = proto.get("split") if pname == "split" else None
    folds = make_folds(ds, pname, **proto)
    check_subject_norm(subject_norm, ds, folds=folds)
    if fold_name is not None:
        names = [f.name for f in folds]
        pools = [f.pool for f in folds if f.pool]
        if fold_name not in names + pools:
            raise ConfigError(f"protocol.fold={fold_name!r}; valid folds: "
                              f"{sorted(set(pools)) or names}")
        folds = [f for f in folds if fold_name in (f.name, f.pool)]
    leaky = sorted({m for f in folds for m in fold_leaks(ds, f, used, split=split)["test"]})
    if leaky and not allow_leaky:
        where = f"split {split!r}" if split else f"protocol {pname!r}"
        raise ConfigError(
            f"{where} of {ds.spec.name!r} is leaky for {leaky}: those features were learned "
            "with labels on rows of its test part (see the data README). "
            "Use the honest split (e.g. protocol.split=poria) or set protocol.allow_leaky=true "
            "for a diagnostic run whose numbers must not be reported."
        )
    # the validation part: selecting on it when it is leaked is refused (training/selection.py)
    valid_leaked = valid_leaks(ds, folds, used, split=split)
    if not allow_leaky and check_training:
        check_selection(to_container(cfg.train), valid_leaked, dataset=ds.spec.name)
    no_valid = _without_valid(folds)  # protocol.valid_fraction=0
    if no_valid and check_training:
        check_no_valid(to_container(cfg.train))
    params = to_container(cfg.method)
    plan = context_plan(params, ds)  # utterance context: whole videos per part, ordered ids
    for f in folds:
        plan.check_parts(ds, {"train": f.train, "valid": f.valid, "test": f.test})
    name = params.pop("name")
    params.setdefault("modalities", mods)
    teacher = params.pop("teacher", None)
    if isinstance(teacher, dict) and teacher.get("method") and not allow_leaky:
        t_train = OmegaConf.merge(cfg.train, teacher.get("train") or {})
        t_mod = teacher["method"].get("modality")
        t_leaked = valid_leaks(ds, folds, [t_mod] if t_mod else mods, split=split)
        check_selection(to_container(t_train), t_leaked, dataset=ds.spec.name,
                        who="the teacher")
    if isinstance(teacher, dict) and teacher.get("method") and no_valid and check_training:
        check_no_valid(to_container(OmegaConf.merge(cfg.train, teacher.get("train") or {})),
                       who="the teacher")
    if isinstance(teacher, dict) and check_crossfit(teacher.get("crossfit"), method=name,
                                                    params=params):
        if teacher.get("checkpoint") or not teacher.get("method"):
            raise ConfigError("method.teacher.crossfit trains its own member teachers: set "
                              "method.teacher.method={name: ...} and method.teacher.checkpoint="
                              "null")
    elif isinstance(teacher, dict) and teacher.get("checkpoint"):
        for f in folds:  # a mismatched teacher checkpoint fails here, before any file is written
            _load_teacher_checkpoint(cfg, ds, target, f)
    _check_teacher_modalities(teacher, ds.spec)
    spec = ds.spec if ds.post_split is None else ds.post_split(ds.subset(folds[0].train[:2])).spec
    if plan.mode == "sequence":
        spec = plan.transform(ds.subset(folds[0].train[:2])).spec
    try:  # fail early on bad params, with the method named
        build_method(name, spec=spec, target=target, params=params)
    except EmodistillError:
        raise
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(
            f"method {name!r} cannot be built from its config ({type(e).__name__}: {e}); check "
            f"the method.* values: { {k: v for k, v in params.items() if k != 'modalities'} }"
        ) from None
    # methods that choose something on the validation part (HKD-MER's dominant modality)
    chooses = getattr(METHODS.get(name), "chooses_on_valid", None)
    if chooses is not None and (no_valid or not allow_leaky):
        for what, fix in chooses(params):
            require_clean_valid([] if allow_leaky else valid_leaked, what=what, fix=fix,
                                no_valid=no_valid)
    return Prepared(cfg, ds, target, mods, folds, valid_leaked, bool(allow_leaky))


def _trainer(cfg: DictConfig, callbacks: list[L.Callback], root: Path) -> L.Trainer:
    import lightning as L

    from emodistill.training.loggers import build_trackers, progress_callbacks

    t = cfg.train
    shown, bar = progress_callbacks(cfg, label="/".join(Path(root).parts[-2:]) + ": ")
    trackers = build_trackers(cfg, Path(root))
    if trackers:
        shown.append(L.pytorch.callbacks.LearningRateMonitor(logging_interval="epoch"))
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        deterministic=t.deterministic,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        gradient_clip_algorithm=t.gradient_clip_algorithm,
        callbacks=[*callbacks, *shown],
        logger=trackers or False,
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )


def config_fold_parts(
    cfg: DictConfig, ds: MultimodalDataset, fold: Fold, names: Sequence[str] = PARTS, *,
    out: Path | None = None, plan: ContextPlan | None = None,
) -> tuple[dict[str, MultimodalDataset], Standardizer | None]:
    """:func:`~emodistill.data.parts.fold_parts` with the options of a run's config.

    ``dataset.normalize`` (fit on the train part), ``protocol.subject_norm``
    (recorded in ``out/subject_norm.json`` when ``out`` is given) and the sequence
    mode of ``method.context`` (``plan``, read from ``cfg`` when not given).
    """
    if plan is None:
        method = cfg.get("method")
        plan = context_plan(to_container(method) if method is not None else {}, ds)
    subject_norm = (cfg.get("protocol") or {}).get("subject_norm", "none")
    return fold_parts(ds, fold, names, normalize=bool(cfg.dataset.normalize),
                      subject_norm=subject_norm, record=out, transform=plan.transform)


def fit_fold(prep: Prepared, fold: Fold, out: Path) -> FoldResult:
    """Train on ``fold.train``, select on ``fold.valid``, test once on ``fold.test``.

    Without a validation part (``protocol.valid_fraction=0``, a fixed recipe) no
    validation loop runs at all.
    """
    cfg, ds, target = prep.cfg, prep.dataset, prep.target
    if prep.resume and (done := _read_fold_result(out)) is not None:
        log.info("%s finished before the interruption: read back", out)
        return done
    seed_everything(int(cfg.seed))
    plan = context_plan(to_container(cfg.method), ds)
    parts, std = config_fold_parts(cfg, ds, fold, out=out, plan=plan)
    ready = {k: parts[k] for k in ("train", "valid")}  # for prepare_fold, never test
    if cfg.train.data_on_device and torch.cuda.is_available() and cfg.train.accelerator != "cpu":
        parts = {k: v.to("cuda") for k, v in parts.items()}
    method_params = rename_method_params(to_container(cfg.method))  # a resumed older run's names
    name = method_params.pop("name")
    method_params.setdefault("modalities", prep.modalities)
    if method_params.get("teacher") is not None:
        method_params["teacher"] = obtain_teacher(prep, fold, out / "teacher")
    # e.g. choose a dominant modality on this fold's valid part
    ctx = fold_context(prep, fold, out, parts=ready)
    method_params.update(METHODS.get(name).prepare_fold(ctx, method_params))
    # the spec of the split parts (windowing in post_split may change sequence lengths)
    model = build_method(name, spec=parts["train"].spec, target=target, params=method_params)
    from emodistill.training.fitted import fit_in_process, fits_in_process

    if fits_in_process(model):  # reference methods: fitted in one call, same files
        return fit_in_process(prep, fold, out, parts, std, model)
    import lightning as L  # the Lightning fit (seconds to import: only here)

    from emodistill.training.checkpointing import AtomicModelCheckpoint, ResumeCheckpoint
    from emodistill.training.history import EpochHistory
    from emodistill.training.lit import LitMER

    if cfg.train.compile:
        model.compile()
    lit = LitMER(model, to_container(cfg.train))
    history = EpochHistory()
    last_only = cfg.train.get("selection", "best") == "last"  # fixed recipe: no valid choice
    ckdir = out / CKPT_DIR  # inside the run folder: `train --resume` continues from it
    ckpt = AtomicModelCheckpoint(
        dirpath=ckdir, filename="final" if last_only else "best",
        monitor=None if last_only else cfg.train.monitor, mode=cfg.train.mode,
        save_top_k=1, enable_version_counter=False,
    )
    stop = L.pytorch.callbacks.EarlyStopping(
        monitor=cfg.train.monitor, mode=cfg.train.mode, patience=cfg.train.patience,
    )
    bs, seed = int(cfg.train.batch_size), int(cfg.seed)
    train_loader = plan.loader(
        parts["train"], target.name, batch_size=bs, shuffle=True, seed=seed,
        bucket_batches=int(cfg.train.get("length_buckets", 0) or 0))
    batches = train_loader.sampler  # BatchSampler(RandomSampler) or BucketBatchSampler
    order = getattr(getattr(batches, "sampler", batches), "generator", None)
    last = ResumeCheckpoint(ckdir, order)
    resume_from = last.last_path if prep.resume and last.last_path.is_file() else None
    if prep.resume and resume_from is None:  # killed in its first epoch: start the fold again
        remove_checkpoints(out)
    callbacks = [last, ckpt, history] if last_only else [last, ckpt, stop, history]
    trainer = _trainer(cfg, callbacks, out)
    if resume_from is not None:
        log.info("continuing %s from %s", out, resume_from)
    valid_loader = (plan.loader(parts["valid"], target.name, batch_size=bs, shuffle=False)
                    if len(parts["valid"]) else None)  # none: protocol.valid_fraction=0
    trainer.fit(lit, train_loader, valid_loader, ckpt_path=resume_from, weights_only=True)
    if last_only:
        best_epoch = int(history.rows[-1]["epoch"]) if history.rows else -1
        score = history.rows[-1].get(cfg.train.monitor) if history.rows else None
    else:
        best_epoch = _best_epoch(history.rows, cfg.train.monitor, cfg.train.mode)
        score = ckpt.best_model_score
    best_val = float(score) if score is not None else float("nan")
    # the test part is read exactly once, with the weights selected on validation
    test_loader = plan.loader(parts["test"], target.name, batch_size=bs, shuffle=False)
    if ckpt.best_model_path and trainer.is_global_zero:
        # the weights only: Lightning's ckpt_path= would also restore the callbacks' states
        state = torch.load(ckpt.best_model_path, map_location=lit.device, weights_only=True)
        lit.load_state_dict(state["state_dict"])
    if trainer.world_size == 1:
        trainer.test(lit, test_loader, verbose=False)
        test = {k[5:]: float(v) for k, v in trainer.callback_metrics.items()
                if k.startswith("test/")}
    else:  # under DDP the test part would be sharded and padded: rank 0 tests it whole
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return FoldResult(fold.name, {}, best_epoch, len(history.rows), {}, out)
        test = _test_in_process(lit, test_loader)
    out.mkdir(parents=True, exist_ok=True)
    history.write(out / "metrics.csv")
    _write_predictions(out / "predictions.csv", lit, parts["test"], target)
    atomic_write(out / "test_metrics.json", lambda f: json.dump(test, f, indent=2))
    sizes = {k: len(v) for k, v in parts.items()}
    if cfg.train.save_checkpoint:
        save_checkpoint(
            out / "model.pt", lit.model, config=to_container(cfg), standardizer=std,
            meta={"fold": fold.name, "test_metrics": test, "best_epoch": best_epoch,
                  "sizes": sizes, "data_fingerprint": ds.fingerprint(),
                  "fold_fingerprint": fold_fingerprint(ds, fold)},
        )
    result = FoldResult(fold.name, test, best_epoch, len(history.rows), sizes, out, lit.model,
                        best_val)
    _write_fold_result(result)  # last: marks the fold finished for a resume
    remove_checkpoints(out)
    return result


def _write_fold_result(res: FoldResult) -> None:
    payload = {"fold": res.fold, "test": res.test, "best_epoch": res.best_epoch,
               "epochs": res.epochs, "sizes": res.sizes, "best_val": res.best_val}
    atomic_write(res.path / "fold_result.json", lambda f: json.dump(payload, f, indent=2))


def _read_fold_result(out: Path) -> FoldResult | None:
    """Return a finished fold of an interrupted run (``fold_result.json``), else None."""
    path = out / "fold_result.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    model = load_checkpoint(out / "model.pt").model if (out / "model.pt").is_file() else None
    return FoldResult(d["fold"], d["test"], d["best_epoch"], d["epochs"], d["sizes"], out,
                      model, float(d["best_val"]))


def fold_context(
    prep: Prepared, fold: Fold, out: Path,
    parts: dict[str, MultimodalDataset] | None = None,
) -> FoldContext:
    """Build the :class:`~emodistill.models.base.FoldContext` a method's ``prepare_fold`` gets.

    Parameters
    ----------
    prep : Prepared
        The prepared run.
    fold : Fold
        The fold.
    out : Path
        The fold's output folder.
    parts : dict, optional
        Ready ``train``/``valid`` parts (built with :func:`config_fold_parts` when not given).
    """
    if parts is None:
        parts, _ = config_fold_parts(prep.cfg, prep.dataset, fold, ("train", "valid"))

    def fit(cfg: DictConfig, modalities: Any, where: Path) -> FoldResult:
        return fit_fold(Prepared(cfg, prep.dataset, prep.target, list(modalities), [fold],
                                 prep.valid_leaked, prep.allow_leaky), fold, where)

    def fit_crossfit(method_cfg: dict[str, Any], k: int, where: Path, **kw: Any) -> Any:
        return fit_crossfit_teacher(prep, fold, where, method_cfg, k, **kw)

    from emodistill.training.fitted import select_candidate

    return FoldContext(cfg=prep.cfg, dataset=prep.dataset, target=prep.target,
                       modalities=list(prep.modalities), fold=fold, out=out, parts=parts,
                       fit=fit, make_optimizer=make_optimizer, fit_crossfit=fit_crossfit,
                       select_fitted=select_candidate)


def fold_fingerprint(ds: MultimodalDataset, fold: Fold) -> str:
    """SHA-256 (16 hex digits) of the sample ids of a fold's train, valid and test parts."""
    import hashlib

    h = hashlib.sha256()
    for part in ("train", "valid", "test"):
        h.update(part.encode() + b"\x00" + "\x00".join(ds.ids[getattr(fold, part)]).encode())
    return h.hexdigest()[:16]


def _check_teacher_modalities(teacher: Any, spec: DatasetSpec) -> None:
    """Refuse a teacher to train on modalities the data lacks, naming them and the fix.

    ``method.teacher.method.modalities`` (e.g. ``mkd``'s ``[eeg, eog]``, MKD's teacher per
    docs/methods/mkd.md) must all be modalities of the dataset; a loaded checkpoint is checked
    by its own fingerprint instead.
    """
    if not isinstance(teacher, dict) or teacher.get("checkpoint"):
        return
    want = (teacher.get("method") or {}).get("modalities")
    if not want:
        return
    have = list(spec.modality_names)
    missing = [m for m in want if m not in have]
    if missing:
        raise ConfigError(
            f"method.teacher.method.modalities={list(want)}: dataset {spec.name!r} has no "
            f"{missing} (its modalities: {have}). Choose the teacher's modalities among the "
            f"dataset's, e.g. method.teacher.method.modalities=[{','.join(have)}], or "
            "method.teacher.method.modalities=null for all of them (mkd's default [eeg, eog] is "
            "MKD's EEG + EOG teacher, docs/methods/mkd.md)"
        )


def _load_teacher_checkpoint(
    cfg: DictConfig, ds: MultimodalDataset, target: TargetSpec, fold: Fold
) -> MERModel:
    """Load ``method.teacher.checkpoint`` for ``fold``, refusing one from another fold or data."""
    tcfg = to_container(cfg.method.teacher)
    path = Path(tcfg["checkpoint"])
    if path.is_dir():
        path = path / fold.name / "model.pt"
    loaded = load_checkpoint(path)
    meta = loaded.meta
    fp, want = meta.get("data_fingerprint"), ds.fingerprint()
    # the same fold name can hold other samples (another protocol seed or valid carve)
    same_rows = meta.get("fold_fingerprint", fold_fingerprint(ds, fold)) == fold_fingerprint(
        ds, fold)
    if not tcfg.get("allow_foreign", False) and (
        meta.get("fold") != fold.name or fp != want or not same_rows
    ):
        raise ConfigError(
            f"teacher checkpoint {str(path)!r} was trained on fold {meta.get('fold')!r} of data "
            f"{fp}{'' if same_rows else ' with other train/valid/test samples'}, but this is "
            f"fold {fold.name!r} of data {want}: it may have seen this fold's test samples. "
            "Train the teacher on the same protocol, or set method.teacher.allow_foreign=true "
            "knowingly."
        )
    if loaded.target.name != target.name:
        raise ConfigError(f"teacher predicts {loaded.target.name!r}, the student {target.name!r}")
    return loaded.model


def obtain_teacher(prep: Prepared, fold: Fold, out: Path) -> MERModel:
    """Return the teacher of a teacher → student method, for this fold.

    ``method.teacher.checkpoint`` may name a teacher ``model.pt`` or a run folder
    holding ``<fold>/model.pt``; the checkpoint must come from the same fold of
    the same data (fingerprint), otherwise the teacher may have seen this fold's
    test part. Without a checkpoint the teacher (``method.teacher.method``, with
    ``method.teacher.train`` overriding the train section) is trained first on
    exactly this fold's train part, selected on its valid part, and saved under
    ``<fold>/teacher/``.
    """
    cfg = prep.cfg
    tcfg = to_container(cfg.method.teacher)
    k = check_crossfit(tcfg.get("crossfit"), method=str(cfg.method.name),
                       params=to_container(cfg.method))
    if k:  # soft targets of each training sample from a member that never saw it
        return fit_crossfit_teacher(prep, fold, out, tcfg["method"], k,
                                    train_overrides=tcfg.get("train") or None)
    if tcfg.get("checkpoint"):
        return _load_teacher_checkpoint(cfg, prep.dataset, prep.target, fold)
    if not tcfg.get("method"):
        raise ConfigError("method.teacher needs either checkpoint=PATH or method={name: ...}")
    sub = OmegaConf.create(to_container(cfg))
    sub.method = tcfg["method"]
    sub.method_config = f"teacher-{tcfg['method']['name']}"
    if tcfg.get("train"):
        sub.train = OmegaConf.merge(sub.train, tcfg["train"])
    t_mod = tcfg["method"].get("modality")
    t_leaked = valid_leaks(prep.dataset, [fold], [t_mod] if t_mod else prep.modalities,
                           split=prep.cfg.protocol.get("split"))
    teacher_prep = Prepared(sub, prep.dataset, prep.target, prep.modalities, [fold],
                            t_leaked, prep.allow_leaky, prep.resume)
    res = fit_fold(teacher_prep, fold, out)
    if res.model is None:  # read back from a resumed run that saved no model.pt: train again
        shutil.rmtree(out)
        res = fit_fold(replace(teacher_prep, resume=False), fold, out)
    assert res.model is not None
    log.info("teacher %s on %s: test %s", sub.method_config, fold.name, res.test)
    return res.model


def _test_in_process(lit: LitMER, loader: Any) -> dict[str, float]:
    """Run the test step over ``loader`` in this process (no Trainer, no sharding)."""
    lit.eval()
    lit.test_metrics = metric_collection(lit.model.target, prefix="test/",
                                         sync_on_compute=False).to(lit.device)
    with torch.no_grad():
        for i, batch in enumerate(loader):
            lit.test_step(batch.to(lit.device), i)
    test = {k[5:]: float(v) for k, v in lit.test_metrics.compute().items()}
    lit.test_metrics.reset()
    return test


def _best_epoch(rows: list[dict[str, float]], monitor: str, mode: str) -> int:
    vals = [(r[monitor], r["epoch"]) for r in rows if monitor in r]
    if not vals:
        return -1
    # ModelCheckpoint keeps the first epoch reaching the best value (strict improvement),
    # so ties resolve to the earliest epoch in both modes
    sign = 1.0 if mode == "min" else -1.0
    return int(min(vals, key=lambda v: (sign * v[0], v[1]))[1])


def _write_predictions(
    path: Path, lit: LitMER, test: MultimodalDataset, target: TargetSpec
) -> None:
    idx = torch.cat([o[0] for o in lit.test_outputs]).cpu().numpy()
    vals = torch.cat([o[1] for o in lit.test_outputs]).float().cpu().numpy()
    gold = torch.cat([o[2] for o in lit.test_outputs]).cpu().numpy()
    cols: dict[str, Any] = {"id": test.ids[idx], "target": gold}  # one DataFrame at the end
    for key in lit.test_outputs[0][3]:
        extra = torch.cat([o[3][key] for o in lit.test_outputs]).float().cpu().numpy()
        if extra.ndim == 1:
            cols[key] = extra
        else:
            for j in range(extra.shape[1]):
                cols[f"{key}_{j}"] = extra[:, j]
    if target.kind == "regression":
        cols["prediction"] = vals
    else:
        names = list(target.class_names or ())
        cols["target_name"] = [names[int(i)] for i in gold]
        cols["prediction"] = vals.argmax(1)
        cols["prediction_name"] = [names[int(i)] for i in cols["prediction"]]
        for i, n in enumerate(names):
            cols[f"p_{n}"] = vals[:, i]
    df = pd.DataFrame(cols)
    lit.test_outputs.clear()
    atomic_write(path, lambda f: df.to_csv(f, index=False))


#: environment variables through which a launcher gives a process its rank (Lightning's list)
_RANK_ENV = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _process_rank() -> int:
    """Return the process's rank in a DDP job, as Lightning's ``rank_zero_only.rank`` (0 alone).

    Lightning is imported only when a launcher gave the process a rank: without one it
    reads 0 too, and a run that needs no Lightning fit (the parallel path, the reference
    methods) is spared its import.
    """
    if not any(k in os.environ for k in _RANK_ENV):
        return 0
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(rank_zero_only.rank)


def default_run_name(cfg: DictConfig, target: TargetSpec) -> str:
    """Name a run ``<method config>-<dataset>-<target>-seed<seed>``."""
    return f"{cfg.method_config}-{cfg.dataset.name}-{target.name}-seed{cfg.seed}"


def run_experiment(
    cfg: DictConfig,
    *,
    dataset: MultimodalDataset | None = None,
    output_dir: str | Path | None = None,
    resume: str | Path | None = None,
) -> RunResult:
    """Run every selected fold of ``cfg`` and write the run folder.

    Parameters
    ----------
    cfg : DictConfig
        A composed config (see :func:`emodistill.config.compose`).
    dataset : MultimodalDataset, optional
        Reuse an already loaded dataset (the benchmark loads data once).
    output_dir : path, optional
        Parent folder of the run folder (default ``cfg.output_dir``).
    resume : path, optional
        An interrupted run folder of ``cfg`` to continue in place: finished folds
        are read back, the others continue from their last checkpoint (see
        :mod:`emodistill.training.checkpointing`).
    """
    prep = prepare(cfg, dataset)
    rank = _process_rank()
    if resume is not None and rank == 0:
        run_dir = Path(resume)
        check_resumable(run_dir, cfg, prep.dataset.fingerprint())
        return _run_folds(replace(prep, resume=True), run_dir)
    parent = Path(output_dir or cfg.output_dir)
    name = cfg.run_name or default_run_name(cfg, prep.target)
    if rank != 0:  # DDP worker: trains, never writes (rank 0 does)
        result = RunResult(parent / name)
        for fold in prep.folds:
            result.folds.append(fit_fold(prep, fold, result.path / fold.name))
        return result
    return _run_folds(prep, new_run_dir(prep, parent / name))


def new_run_dir(prep: Prepared, path: Path) -> Path:
    """Create the run folder ``path`` (made unique) with its ``config.yaml`` and ``data.json``."""
    run_dir = unique_dir(path)
    cfg = prep.cfg
    atomic_write(run_dir / "config.yaml", lambda f: f.write(OmegaConf.to_yaml(cfg, resolve=True)))
    summary = prep.dataset.summary() | {"info": prep.dataset.info}
    atomic_write(run_dir / "data.json", lambda f: json.dump(summary, f, indent=2, default=str))
    log.info("run %s: %d fold(s), data %s", run_dir, len(prep.folds), summary["fingerprint"])
    return run_dir


def _run_folds(prep: Prepared, run_dir: Path) -> RunResult:
    result = RunResult(run_dir)
    for fold in prep.folds:
        result.folds.append(fit_fold(prep, fold, run_dir / fold.name))
    write_results(prep, pool_folds(prep, result))
    return result


def _fold_records(folds: Sequence[FoldResult]) -> dict[str, dict[str, Any]]:
    """``results.json``'s record of each fold (or per-subject model): name → its results."""
    return {f.fold: {"test": f.test, "best_epoch": f.best_epoch, "epochs": f.epochs,
                     "best_val": f.best_val, "sizes": f.sizes} for f in folds}


def write_results(prep: Prepared, result: RunResult, *, path: str = "sequential") -> None:
    """Write a finished run's ``results.json`` (folds, selection, mean, teacher record).

    ``path``: how its folds were trained, ``"sequential"`` (one fit each) or
    ``"parallel"`` (stacked members, :mod:`emodistill.training.parallel`).
    """
    cfg = prep.cfg
    payload = {
        "training_path": path,
        "folds": _fold_records(result.folds),
        "monitor": cfg.train.monitor,
        "selection": selection_record(to_container(cfg.train), prep.valid_leaked,
                                      no_valid=prep.no_valid)
        | {"allow_leaky": prep.allow_leaky},
        "mean": result.mean,
    }
    if result.members:  # protocol.per_subject: the subjects' own models, pooled above
        payload["per_subject"] = {"pooled_folds": [f.fold for f in result.folds],
                                  "models": len(result.members)}
        payload["members"] = _fold_records(result.members)
    teacher_record = crossfit_summary(cfg, result.path, [f.fold for f in result.folds])
    if teacher_record:
        payload["teacher"] = teacher_record
    atomic_write(result.path / "results.json", lambda f: json.dump(payload, f, indent=2))
