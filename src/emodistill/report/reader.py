"""Read run and benchmark folders into plain data (no torch, no model, no dataset).

The report is three steps; this module is the first::

    read_report(folder)                  -> ReportData    (this module: files -> plain data)
    embedding.compute_embeddings(data)   -> Embedding...  (optional: loads models and data)
    html.render_report(data, embeddings) -> str           (plain data -> HTML)

Everything here reads what the engine wrote: ``config.yaml``, ``results.json``,
``data.json``, per fold ``metrics.csv``, ``predictions.csv``,
``teacher/test_metrics.json`` and the target description inside ``model.pt``
(read from the checkpoint's pickle without torch; tensors are skipped).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emodistill.errors import DataNotFoundError

__all__ = ["RunEntry", "FoldRecord", "TargetInfo", "ReportData", "find_runs", "read_report",
           "read_target", "run_modalities", "run_groups"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetInfo:
    """What the report needs of a target (the fields of :class:`~emodistill.data.spec.TargetSpec`).

    Parameters
    ----------
    name : str
        Target name (``sentiment``, ``valence``...).
    kind : {"regression", "binary", "multiclass"}
        Task type.
    value_range : tuple of float, optional
        Closed interval of valid regression values.
    class_names : tuple of str, optional
        Class ``i`` is ``class_names[i]``.
    """

    name: str
    kind: str
    value_range: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None


@dataclass
class FoldRecord:
    """The files of one fold folder, read.

    Parameters
    ----------
    name : str
        Fold name (the folder name, e.g. ``standard`` or ``fold0``).
    path : Path
        The fold folder.
    metrics : DataFrame, optional
        ``metrics.csv`` (one row per epoch), None when absent.
    predictions : DataFrame, optional
        ``predictions.csv`` (one row per test sample), None when absent.
    teacher_test : dict of str to float, optional
        ``teacher/test_metrics.json`` of a distillation run, None when absent.
    target : TargetInfo, optional
        The target stored in ``model.pt``, None without a checkpoint.
    has_model : bool
        Whether ``model.pt`` exists (the embedding step needs it).
    """

    name: str
    path: Path
    metrics: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    teacher_test: dict[str, float] | None = None
    target: TargetInfo | None = None
    has_model: bool = False


@dataclass
class RunEntry:
    """One training run (one seed of one method) found under the report folder.

    ``folds`` are the fold folders; ``records`` their contents, filled by
    :func:`read_report` (empty after :func:`find_runs` alone).
    """

    label: str
    seed: int | None
    path: Path
    config: dict[str, Any]
    results: dict[str, Any]
    folds: list[Path] = field(default_factory=list)
    records: list[FoldRecord] = field(default_factory=list)

    def best_epoch(self, fold: str) -> int | None:
        """Return the epoch selected for ``fold`` (``results.json``), None if unrecorded."""
        ep = self.results.get("folds", {}).get(fold, {}).get("best_epoch")
        return int(ep) if ep is not None else None


@dataclass
class ReportData:
    """Everything the HTML page shows, read from a folder (see :func:`read_report`).

    Parameters
    ----------
    folder : Path
        The folder reported on.
    kind : {"benchmark", "run"}
        What the folder is.
    runs : list of RunEntry
        Its runs with their fold records, in ``per_seed.csv`` order for a benchmark.
    summary : DataFrame, optional
        A benchmark's ``summary.csv`` (index: method; ``<metric>_mean``,
        ``<metric>_std``, ``n_seeds``), None for a run folder.
    """

    folder: Path
    kind: str
    runs: list[RunEntry]
    summary: pd.DataFrame | None = None

    @property
    def groups(self) -> dict[str, list[RunEntry]]:
        """Runs by method label, in first-seen order."""
        out: dict[str, list[RunEntry]] = {}
        for r in self.runs:
            out.setdefault(r.label, []).append(r)
        return out

    @property
    def config(self) -> dict[str, Any]:
        """The first run's stored config (dataset, target and protocol of the page)."""
        return self.runs[0].config


# ---------------------------------------------------------------- discovery
def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _run_entry(path: Path, label: str | None = None) -> RunEntry:
    cfg = _read_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else {}
    res = json.loads((path / "results.json").read_text()) if (
        path / "results.json").is_file() else {}
    folds = [path / f for f in res.get("folds", {})] or sorted(
        p.parent for p in path.glob("*/metrics.csv"))
    lab = label or str(cfg.get("method_config") or cfg.get("method", {}).get("name", path.name))
    seed = cfg.get("seed")
    return RunEntry(lab, int(seed) if seed is not None else None, path, cfg, res,
                    [f for f in folds if f.is_dir()])


def _run_name(label: str, seed: int) -> str:
    # the benchmark's run folder naming (training/benchmark.py)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") + f"-seed{seed}"


def find_runs(path: str | Path) -> tuple[str, list[RunEntry]]:
    """Classify ``path`` and list its runs (their files are not read yet).

    Returns
    -------
    kind : {"benchmark", "run"}
        A benchmark folder (``per_seed.csv``, ``runs/``) or one run folder
        (``config.yaml``, ``results.json``, ``<fold>/``).
    runs : list of RunEntry
        For a benchmark, in ``per_seed.csv`` order, labelled by method.
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataNotFoundError(f"report: {str(p)!r} is not a folder; give a run folder or a "
                                "benchmark folder")
    if (p / "per_seed.csv").is_file():
        per_seed = pd.read_csv(p / "per_seed.csv")
        run_dirs = sorted(d for d in (p / "runs").glob("*") if (d / "config.yaml").is_file())
        by_name = {d.name: d for d in run_dirs}
        used: set[Path] = set()
        runs = []
        for _, row in per_seed.iterrows():
            label, seed = str(row["method"]), int(row["seed"])
            d = by_name.get(str(row["run"])) if "run" in row and isinstance(
                row.get("run"), str) else by_name.get(_run_name(label, seed))
            if d is None:  # older benchmarks: match on method config and seed
                cands = [e for e in run_dirs if e not in used and
                         (cfg := _read_yaml(e / "config.yaml")).get("seed") == seed and
                         label.startswith(str(cfg.get("method_config")))]
                d = cands[0] if cands else None
            if d is None:
                log.warning("report: no run folder found for %s seed %d", label, seed)
                continue
            used.add(d)
            runs.append(_run_entry(d, label))
        return "benchmark", runs
    if (p / "config.yaml").is_file():
        return "run", [_run_entry(p)]
    if (p / "metrics.csv").is_file() and (p.parent / "config.yaml").is_file():
        return "run", [_run_entry(p.parent)]
    raise DataNotFoundError(
        f"report: {str(p)!r} is neither a benchmark folder (per_seed.csv) nor a run folder "
        "(config.yaml + <fold>/metrics.csv)"
    )


# ------------------------------------------------------------------ reading
class _NoTensors(pickle.Unpickler):
    """Unpickle a ``torch.save`` payload's plain parts; every non-builtin object becomes None."""

    _SAFE = {("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._SAFE:
            return super().find_class(module, name)
        return _none  # torch's tensor/storage rebuilders and anything else: nothing runs

    def persistent_load(self, pid: Any) -> None:  # tensor storages live in other zip members
        return None


def _none(*args: Any, **kwargs: Any) -> None:
    return None


def read_target(checkpoint: str | Path) -> TargetInfo | None:
    """Read the target stored in a ``model.pt`` without torch (None if absent or unreadable).

    The checkpoint is torch's zip format (``<name>/data.pkl`` plus one member
    per tensor); only the pickle is read, with every class other than
    ``OrderedDict`` replaced by None, so no code of the file runs.
    """
    path = Path(checkpoint)
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as z:
            member = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            with z.open(member) as f:
                payload = _NoTensors(f).load()
        t = payload["target"]
    except (zipfile.BadZipFile, StopIteration, KeyError, TypeError, pickle.UnpicklingError,
            EOFError, AttributeError) as e:
        log.warning("report: no target read from %s (%s)", path, e)
        return None
    return TargetInfo(str(t["name"]), str(t["kind"]),
                      value_range=tuple(t["value_range"]) if t.get("value_range") else None,
                      class_names=tuple(t["class_names"]) if t.get("class_names") else None)


def _read_fold(path: Path) -> FoldRecord:
    mcsv, pcsv = path / "metrics.csv", path / "predictions.csv"
    tjson = path / "teacher" / "test_metrics.json"
    return FoldRecord(
        name=path.name, path=path,
        metrics=pd.read_csv(mcsv) if mcsv.is_file() else None,
        predictions=pd.read_csv(pcsv) if pcsv.is_file() else None,
        teacher_test=json.loads(tjson.read_text()) if tjson.is_file() else None,
        target=read_target(path / "model.pt"),
        has_model=(path / "model.pt").is_file(),
    )


def run_modalities(run: RunEntry) -> list[str]:
    """Return a run's modalities: its config's ``dataset.modalities``, else ``data.json``."""
    mods = run.config.get("dataset", {}).get("modalities")
    if mods:
        return list(mods)
    djson = run.path / "data.json"
    if djson.is_file():
        return list(json.loads(djson.read_text()).get("modalities", {}))
    return []


def run_groups(run: RunEntry) -> list[str] | None:
    """Return a run's grouping keys from its ``data.json`` (None when it has none)."""
    djson = run.path / "data.json"
    if not djson.is_file():
        return None
    return list(json.loads(djson.read_text()).get("groups") or [])


def read_report(path: str | Path) -> ReportData:
    """Read a run or benchmark folder into :class:`ReportData` (no torch, no model).

    Raises
    ------
    DataNotFoundError
        ``path`` is not a run or benchmark folder, holds no runs, or a run or
        benchmark in it did not finish (the message says how to continue it).
    """
    folder = Path(path).expanduser()
    if (folder / "runs").is_dir() and not (folder / "per_seed.csv").is_file():
        raise DataNotFoundError(
            f"report: the benchmark {str(folder)!r} did not finish (no per_seed.csv; killed?). "
            f"Finish it with `emodistill benchmark ... --resume --name {folder.name}`, then "
            "report it")
    kind, runs = find_runs(folder)
    if not runs:
        raise DataNotFoundError(f"report: no run folders found under {str(folder)!r}")
    unfinished = [r.path for r in runs if not r.results]
    if unfinished:
        raise DataNotFoundError(
            f"report: the run {str(unfinished[0])!r} did not finish (no results.json; killed?): "
            f"there is nothing to report yet. Continue it with `emodistill train --resume "
            f"{unfinished[0]}`, then report it")
    for r in runs:
        r.records = [_read_fold(f) for f in r.folds]
    summary = (pd.read_csv(folder / "summary.csv", index_col=0)
               if kind == "benchmark" and (folder / "summary.csv").is_file() else None)
    return ReportData(folder, kind, runs, summary)
