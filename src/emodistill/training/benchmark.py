"""Several methods × seeds on one dataset → one mean ± std table of every metric.

Methods are named by their config file (``configs/method/<name>.yaml``) and may
carry overrides after a colon: ``unimodal:modality=audio`` or
``late_fusion:aux_weight=0.5,dropout=0.1`` (commas inside brackets or quotes do
not split: ``late_fusion:hidden_sizes=[8,16]``; a key starting with ``train.`` overrides
that entry's train section instead, e.g. ``eeg_hinton_kd_fm:train.max_epochs=120``, and a
leading ``+`` adds a key: ``+teacher.train.selection=best``; on the command line
:func:`emodistill.config.split_method_entries` splits ``-m``). A ``unimodal`` entry without a
modality expands to one entry per modality of the dataset. For k-fold
protocols each seed's number is the mean over its folds; the table reports
mean ± sample std over seeds.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from emodistill._fs import atomic_write, unique_dir
from emodistill.config import check_seed, compose, split_top_level, to_container
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError
from emodistill.metrics import metric_names
from emodistill.report.tables import (
    aggregate,
    paired_differences,
    paired_to_markdown,
    subject_norm_note,
    to_markdown,
)
from emodistill.training.run import prepare
from emodistill.training.workers import WorkerFit, fit_in_workers

__all__ = ["run_benchmark", "parse_seeds", "BenchmarkResult", "expand_methods"]

log = logging.getLogger(__name__)


def parse_seeds(text: str) -> list[int]:
    """Parse ``"1111-1115"``, ``"1,2,3"`` or ``"7"`` into a list of seeds.

    Every seed must be an integer in ``[0, 2**32 - 1]``; empty items (``1,,2``),
    descending ranges, repeats and anything else are refused with a
    :class:`ConfigError` before any run starts.
    """
    seeds: list[int] = []
    usage = "use e.g. 1111-1115 or 1,2,3 (integers in [0, 2**32 - 1])"
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"seeds={text!r} has an empty item; {usage}")
        a, sep, b = part.partition("-")
        if sep and a:  # a range lo-hi
            lo, hi = (check_seed(x, what=f"seeds={text!r}: {x!r}") for x in (a, b))
            if hi < lo:
                raise ConfigError(f"seeds={text!r}: range {part} is descending; {usage}")
            seeds += list(range(lo, hi + 1))
        else:
            seeds.append(check_seed(part, what=f"seeds={text!r}: {part!r}"))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds={text!r} repeats {repeated}; each seed once")
    return seeds


@dataclass
class MethodEntry:
    """One row of the benchmark: a method config plus overrides."""

    label: str
    config: str
    overrides: list[str]


def expand_methods(entries: list[str], modalities: list[str],
                   overrides: list[str] | tuple[str, ...] = ()) -> list[MethodEntry]:
    """Parse method entries (see module docstring) and expand bare ``unimodal``.

    A bare ``unimodal`` becomes one entry per modality, or only the modality a
    global ``method.modality=...`` override names.
    """
    fixed = [o.split("=", 1)[1] for o in overrides if o.startswith("method.modality=")]
    modalities = fixed[-1:] or modalities
    out = []
    for e in entries:
        name, _, rest = e.partition(":")
        ov = [_entry_override(kv) for kv in split_top_level(rest) if kv]
        if name == "unimodal" and not any(o.startswith("method.modality=") for o in ov):
            out += [MethodEntry(f"unimodal({m})", name, [*ov, f"method.modality={m}"])
                    for m in modalities]
        else:
            out.append(MethodEntry(e if not rest else f"{name}({rest})", name, ov))
    return out


def _entry_override(kv: str) -> str:
    """Turn an entry's ``key=value`` into an override: a method key unless it is ``train.*``.

    A leading ``+`` (add a key the config lacks) stays in front: ``+teacher.train.x=1`` →
    ``+method.teacher.train.x=1``.
    """
    plus, body = ("+", kv[1:]) if kv.startswith("+") else ("", kv)
    return plus + (body if body.startswith("train.") else f"method.{body}")


@dataclass
class BenchmarkResult:
    """Per-seed rows, the aggregated table and where they were written."""

    per_seed: pd.DataFrame
    summary: pd.DataFrame
    markdown: str
    path: Path
    paired: pd.DataFrame | None = None


def _ordered_columns(per_seed: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Put ``per_seed``'s columns in one order: method, seed, n_folds, ``metrics``, the rest.

    The sequential and parallel paths return a run's metrics in different orders; the
    tables written from either path must be the same file.
    """
    head = ["method", "seed", "n_folds", *[m for m in metrics if m in per_seed.columns]]
    return per_seed[head + sorted(c for c in per_seed.columns if c not in head)]


def run_benchmark(
    *,
    dataset: str,
    methods: list[str],
    seeds: list[int],
    experiment: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    output_dir: str | Path = "runs/benchmarks",
    name: str | None = None,
    resume: bool = False,
    reference: str | None = None,
    parallel: str | int = "off",
    workers: int = 1,
) -> BenchmarkResult:
    """Run ``methods`` × ``seeds`` on ``dataset`` and write the tables.

    Writes ``per_seed.csv``, ``summary.csv`` and ``summary.md`` into a new
    folder under ``output_dir``; the runs themselves go in its ``runs/``.
    With ``resume``, the folder ``output_dir/name`` is reused: a run whose
    ``results.json`` exists and whose saved config equals the composed one is
    read back instead of trained; an unfinished run continues from its last
    checkpoint. Without ``name`` the one unfinished folder of the default name
    (``<dataset>-<target>`` or ``<dataset>-<target>-N``) is resumed.
    With ``reference`` (a method entry or its label, e.g. ``logistic`` or
    ``unimodal(text)``), every other method's per-seed difference to it is
    added (``paired.csv`` and a second table in ``summary.md``).
    With ``parallel`` (``"auto"`` or a chunk size N), the seeds × folds of a method
    that supports it train as one stacked model (``emodistill.training.parallel``,
    at most N members at once); other methods, and ``"off"``, fit one run after
    another. Which path each seed took is logged and written (``training_path`` in
    ``per_seed.csv``, a line per method in ``summary.md``). On the parallel path a
    resumed run's finished folds are read back and its unfinished ones trained again (in
    parallel; that path keeps no training checkpoints).
    With ``workers`` > 1, the fits left to one fit each run ``workers`` at a time in Ray
    workers (:mod:`emodistill.training.workers`; extra ``ray``), the same fits as in this
    process.
    """
    seeds = [check_seed(s, what="seeds") for s in seeds]  # before any folder exists
    if int(workers) < 1:
        raise ConfigError(f"--workers {workers}: give a positive number of fits at once "
                          "(1: one after another in this process)")
    base = compose(dataset=dataset, method=methods[0].partition(":")[0],
                   experiment=experiment, overrides=list(overrides))
    ds = build_dataset(to_container(base.dataset))
    target = ds.spec.target(base.dataset.target)
    mods = list(base.dataset.modalities) if base.dataset.modalities else ds.spec.modality_names
    entries = expand_methods(methods, mods, overrides)
    ref_label = _reference_label(reference, entries) if reference else None
    cfgs = {}
    for entry in entries:  # compose and check everything before training anything
        for seed in seeds:
            run_name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", entry.label).strip("_")
            cfg = compose(dataset=dataset, method=entry.config, experiment=experiment,
                          overrides=[*overrides, *entry.overrides, f"seed={seed}",
                                     f"run_name={run_name}-seed{seed}"])
            prepare(cfg, ds)
            cfgs[(entry.label, seed)] = cfg
    folder = Path(output_dir) / (name or f"{dataset}-{target.name}")
    if resume:
        out = folder if name else _unfinished_folder(folder)
        if not out.is_dir():
            raise ConfigError(f"--resume: no benchmark folder {out}; run it once without "
                              "--resume")
    else:
        out = unique_dir(folder)
    log.info("benchmark folder: %s%s", out, " (resumed)" if resume else "")
    finished = {key: _finished_run(out / "runs" / cfg.run_name, cfg) if resume else None
                for key, cfg in cfgs.items()}
    in_parallel, why_not = _run_parallel_entries(cfgs, finished, ds, out / "runs", parallel)
    results: dict[tuple[str, int], tuple[int, dict[str, float], str]] = {}
    todo: list[WorkerFit] = []  # one fit each, in this process or in workers
    for (label, seed), cfg in cfgs.items():
        done = finished[(label, seed)]
        run_dir = out / "runs" / cfg.run_name
        if done is not None:
            log.info("benchmark: %s seed %d read back from %s", label, seed, done[0])
            results[(label, seed)] = done[1:]
        elif (label, seed) in in_parallel:
            res = in_parallel[(label, seed)]
            results[(label, seed)] = (len(res.folds), res.mean, "parallel")
        elif resume and run_dir.is_dir():  # interrupted: continue from its checkpoints
            todo.append(WorkerFit((label, seed), cfg, resume=run_dir))
        else:
            todo.append(WorkerFit((label, seed), cfg, output_dir=out / "runs"))
    if int(workers) > 1 and todo:
        log.info("benchmark: %d fit(s) on the sequential path, %d at once in Ray workers",
                 len(todo), workers)
        fitted = fit_in_workers(todo, workers=int(workers))
        results.update({k: (*v, "sequential") for k, v in fitted.items()})
    else:
        for f in todo:
            label, seed = f.key
            log.info("benchmark: %s seed %d%s", label, seed,
                     f" continues {f.resume}" if f.resume else "")
            res = f.run(ds)
            results[f.key] = (len(res.folds), res.mean, "sequential")
    rows = [{"method": label, "seed": seed, "n_folds": n, **mean, "training_path": path}
            for (label, seed), (n, mean, path) in ((k, results[k]) for k in cfgs)]
    metrics = metric_names(target)
    per_seed = _ordered_columns(pd.DataFrame(rows), metrics)
    summary = aggregate(per_seed, metrics)
    title = f"{dataset} / {target.name} / protocol {base.protocol.name}"
    norm = subject_norm_note(base.protocol.get("subject_norm"), ds.groups)
    if norm:  # e.g. "... / protocol loso, subject norm transductive"
        title += f", {norm}"
    md = to_markdown(summary, metrics, title=title)
    paired = None
    if ref_label is not None:
        paired = paired_differences(per_seed, ref_label, metrics)
        md += "\n" + paired_to_markdown(paired, metrics, reference=ref_label,
                                        title=f"paired difference to {ref_label}")
        atomic_write(out / "paired.csv", lambda f: paired.to_csv(f))
    md += "\n" + _paths_to_markdown(per_seed, why_not)
    atomic_write(out / "per_seed.csv", lambda f: per_seed.to_csv(f, index=False))
    atomic_write(out / "summary.csv", lambda f: summary.to_csv(f))
    atomic_write(out / "summary.md", lambda f: f.write(md))
    return BenchmarkResult(per_seed, summary, md, out, paired)


def _paths_to_markdown(per_seed: pd.DataFrame, why_not: dict[str, str]) -> str:
    """One line per method: how its seeds were trained (``training_path`` of ``per_seed``).

    Paired rows compare like with like only when both methods took the same path at the
    same thread count (the two paths are equal to rounding, not always bit for bit).
    """
    lines = ["Training path (per seed: `training_path` of `per_seed.csv`):", ""]
    for label, g in per_seed.groupby("method", sort=False):
        counts = g["training_path"].value_counts()
        said = ", ".join(f"{p} ({n} seed{'s' if n > 1 else ''})" for p, n in counts.items())
        why = f"; parallel path not used: {why_not[label]}" if label in why_not else ""
        lines.append(f"* {label}: {said}{why}")
    return "\n".join(lines) + "\n"


def _run_parallel_entries(
    cfgs: dict[tuple[str, int], Any], finished: dict[tuple[str, int], Any], ds: Any,
    runs_dir: Path, parallel: str | int,
) -> tuple[dict[tuple[str, int], Any], dict[str, str]]:
    """Train every method that supports it on the parallel path.

    Returns its results by key, and for each method left to one fit per member why.
    """
    from emodistill.training.parallel import parallel_unsupported, run_parallel

    mode = str(parallel).strip().lower()
    if mode in ("off", "0", "false", "no"):
        log.info("benchmark: --parallel off: one fit per seed and fold")
        return {}, {key[0]: "--parallel off" for key in cfgs}
    if mode != "auto" and not (mode.isdigit() and int(mode) > 0):
        raise ConfigError(f"--parallel {parallel!r}; use auto, off or a positive chunk size N")
    max_chunk = None if mode == "auto" else int(mode)
    todo: dict[str, list[tuple[str, int]]] = {}
    for key in cfgs:
        if finished[key] is None:  # new, or interrupted (continued in place)
            todo.setdefault(key[0], []).append(key)
    out: dict[tuple[str, int], Any] = {}
    why_not: dict[str, str] = {}
    for label, keys in todo.items():
        why = parallel_unsupported(cfgs[keys[0]])
        if why is not None:
            log.info("benchmark: %s: one fit per seed and fold (parallel path not used: %s)",
                     label, why)
            why_not[label] = why
            continue
        old = [runs_dir / cfgs[k].run_name if (runs_dir / cfgs[k].run_name).is_dir() else None
               for k in keys]
        n_old = sum(o is not None for o in old)
        log.info("benchmark: %s: %d seed(s) x folds trained in parallel (chunk %s)%s", label,
                 len(keys), max_chunk or "auto",
                 f"; {n_old} interrupted run(s) continued: finished folds read back, the "
                 "others trained again" if n_old else "")
        results = run_parallel([cfgs[k] for k in keys], dataset=ds, output_dir=runs_dir,
                               max_chunk=max_chunk, resume=old)
        out.update(zip(keys, results, strict=True))
    return out, why_not


def _reference_label(reference: str, entries: list[MethodEntry]) -> str:
    """Return the label of the entry ``reference`` names (its label, or unique config)."""
    labels = [e.label for e in entries]
    if reference in labels:
        return reference
    by_config = [e.label for e in entries if e.config == reference]
    if len(by_config) == 1:
        return by_config[0]
    if by_config:
        raise ConfigError(f"--reference {reference!r} names several entries {by_config}; "
                          "give one of these labels")
    raise ConfigError(f"--reference {reference!r} is not among the benchmarked methods "
                      f"{labels}; add it to -m or name one of these")


def _unfinished_folder(folder: Path) -> Path:
    """Return the one unfinished folder among ``folder`` and ``folder-N`` (no ``--name``).

    A benchmark folder is finished once it holds ``summary.md``. Raises ConfigError
    when none or several are unfinished, naming them.
    """
    pattern = re.compile(re.escape(folder.name) + r"(-\d+)?")
    found = sorted((p for p in folder.parent.glob(f"{folder.name}*")
                    if p.is_dir() and pattern.fullmatch(p.name)),
                   key=lambda p: (len(p.name), p.name))
    unfinished = [p for p in found if not (p / "summary.md").is_file()]
    if len(unfinished) == 1:
        return unfinished[0]
    if not found:
        return folder  # the caller says there is nothing to resume
    if not unfinished:
        raise ConfigError(f"--resume: every benchmark folder of this name finished "
                          f"({', '.join(p.name for p in found)}); nothing to resume. Pass "
                          "--name NAME to re-read one")
    raise ConfigError(f"--resume: {len(unfinished)} unfinished benchmark folders could be "
                      f"meant ({', '.join(p.name for p in unfinished)}); choose one with "
                      "--name NAME")


def _finished_run(run_dir: Path, cfg: Any) -> tuple[Path, int, dict[str, float], str] | None:
    """Read a finished run of ``cfg`` back; None if absent or unfinished.

    Returns its folder, fold count, mean metrics and training path (``"unknown"`` for a
    run written before ``results.json`` recorded it).

    An unfinished run folder stays (the caller continues it from its checkpoints)
    unless it holds no config yet (killed at its start), which is removed.
    Raises ConfigError when the folder holds a run of a different config.
    """
    if not run_dir.is_dir():
        return None
    results = run_dir / "results.json"
    if not (run_dir / "config.yaml").is_file():  # killed before it wrote anything useful
        shutil.rmtree(run_dir)
        return None
    saved = (run_dir / "config.yaml").read_text()
    now = OmegaConf.to_yaml(cfg, resolve=True)
    if saved != now:
        diff = [ln.strip() for ln in difflib.unified_diff(saved.splitlines(), now.splitlines(),
                                                          "saved", "now", n=0)
                if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]
        raise ConfigError(
            f"--resume: {run_dir} was trained with a different config than the one composed "
            f"now ({'; '.join(diff[:6])}); pass the same overrides, or use a new --name "
            "instead of --resume")
    if not results.is_file():  # interrupted: continued by the caller
        log.warning("benchmark: %s is unfinished (no results.json); continuing it", run_dir)
        return None
    payload = json.loads(results.read_text())
    return (run_dir, len(payload["folds"]), {k: float(v) for k, v in payload["mean"].items()},
            str(payload.get("training_path", "unknown")))
