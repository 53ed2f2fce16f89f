"""A self-contained HTML report of a run folder or a benchmark folder.

``emodistill report DIR`` writes ``DIR/report.html``: one file, no external
resources (CSS inline, figures as base64 PNG ``data:`` URIs), holding

* the results table: mean ± std over seeds (benchmark) or over folds (run),
  the best value of each metric in bold;
* per method: learning curves from ``metrics.csv`` (every seed), confusion
  matrices from ``predictions.csv`` (7-point and 2-class for sentiment
  scores, the classes for class targets), the learned distillation-edge
  heatmaps when ``metrics.csv`` has ``model/<space>/<teacher>-><student>``
  columns (at the selected epoch), the per-sample modality attention when
  ``predictions.csv`` has ``sample_attention_*`` columns, and a 2-D
  embedding (PCA or t-SNE) of the learned features of the test part.

The embedding needs the data: it is rebuilt from the config stored in the
checkpoint (``overrides`` such as ``dataset.root=PATH`` point to moved data);
when that fails the report says why and carries on.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from emodistill import __version__
from emodistill._fs import atomic_write
from emodistill.errors import DataNotFoundError
from emodistill.report import plots
from emodistill.report.tables import PERCENT_METRICS

__all__ = ["build_report", "find_runs", "RunEntry", "edge_tables", "attention_columns"]

log = logging.getLogger(__name__)

EmbeddingMethod = Literal["pca", "tsne", "none"]


@dataclass
class RunEntry:
    """One training run (one seed of one method) found under the report folder."""

    label: str
    seed: int | None
    path: Path
    config: dict[str, Any]
    results: dict[str, Any]
    folds: list[Path] = field(default_factory=list)


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
    """Classify ``path`` and list its runs.

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


# ------------------------------------------------------------------- tables
def _fmt(mean: float, std: float | None, metric: str) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    scale, digits = (100.0, 2) if metric in PERCENT_METRICS else (1.0, 4)
    s = f"{mean * scale:.{digits}f}"
    if std is not None and not np.isnan(std):
        s += f" ± {std * scale:.{digits}f}"
    return s


def _higher_is_better(metric: str) -> bool:
    from emodistill.metrics import HIGHER_IS_BETTER

    return HIGHER_IS_BETTER.get(metric, metric not in ("mae", "loss", "task_loss"))


def _table_html(rows: list[tuple[str, dict[str, tuple[float, float | None]], str]],
                metrics: list[str], *, first: str, last: str | None) -> str:
    best: dict[str, float] = {}
    if len(rows) > 1:
        for m in metrics:
            vals = [r[1][m][0] for r in rows if m in r[1] and not np.isnan(r[1][m][0])]
            if vals:
                best[m] = max(vals) if _higher_is_better(m) else min(vals)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [first, *metrics] +
                   ([last] if last else []))
    body = []
    for name, vals, extra in rows:
        cells = []
        for m in metrics:
            mean, std = vals.get(m, (float("nan"), None))
            txt = html.escape(_fmt(mean, std, m))
            cells.append(f"<td><b>{txt}</b></td>" if best.get(m) == mean else f"<td>{txt}</td>")
        tail = f"<td>{html.escape(extra)}</td>" if last else ""
        body.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}{tail}</tr>")
    return (f'<table class="results"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _benchmark_table(folder: Path) -> tuple[str, list[str]]:
    summary = pd.read_csv(folder / "summary.csv", index_col=0)
    metrics = [c[:-5] for c in summary.columns if c.endswith("_mean")]
    rows = []
    for name, r in summary.iterrows():
        vals = {m: (float(r[f"{m}_mean"]), float(r[f"{m}_std"])) for m in metrics}
        rows.append((str(name), vals, str(int(r.get("n_seeds", 0)))))
    return _table_html(rows, metrics, first="method", last="seeds"), metrics


def _run_table(run: RunEntry) -> tuple[str, list[str]]:
    folds = run.results.get("folds", {})
    metrics = list(next(iter(folds.values()))["test"]) if folds else []
    rows = [(f, {m: (float(v["test"][m]), None) for m in metrics}, str(v.get("best_epoch", "")))
            for f, v in folds.items()]
    if len(folds) > 1:
        agg = {m: (float(np.mean([v["test"][m] for v in folds.values()])),
                   float(np.std([v["test"][m] for v in folds.values()], ddof=1)))
               for m in metrics}
        rows.append((f"mean ± std over {len(folds)} folds", agg, ""))
    return _table_html(rows, metrics, first="fold", last="selected epoch"), metrics


# ---------------------------------------------------------------- analyses
def edge_tables(metrics: pd.DataFrame, modalities: Sequence[str], *,
                epoch: int | None = None) -> dict[str, pd.DataFrame]:
    """Learned edge weights per space from ``model/<space>/<teacher>-><student>`` columns.

    Parameters
    ----------
    metrics : DataFrame
        A ``metrics.csv``.
    modalities : sequence of str
        Node names (full modality names; their unique initials are accepted too).
    epoch : int, optional
        Row to read (default: the last row with edge values).

    Returns
    -------
    dict of str to DataFrame
        Space → ``[M, M]`` table (rows teacher, columns student, NaN: no edge).
    """
    names = list(modalities)
    alias = {m: m for m in names}
    initials = [m[0] for m in names]
    if len(set(initials)) == len(initials):
        alias |= {m[0]: m for m in names} | {m[0].upper(): m for m in names}
    if "text" in names and "l" not in alias:
        alias |= {"l": "text", "L": "text"}  # "language" in the DMD papers
    node = "|".join(sorted(map(re.escape, alias), key=len, reverse=True))
    pat = re.compile(rf"^model/(?:(?P<space>.+?)[/_.:])?(?P<src>{node})"
                     rf"(?:->|→|_to_|-to-|2)(?P<dst>{node})$")
    found: dict[str, dict[tuple[str, str], str]] = {}
    for c in metrics.columns:
        mt = pat.match(str(c))
        if mt and alias[mt["src"]] != alias[mt["dst"]]:
            found.setdefault(mt["space"] or "edges", {})[(alias[mt["src"]],
                                                          alias[mt["dst"]])] = c
    out = {}
    for space, edges in found.items():
        cols = list(edges.values())
        rows = metrics.dropna(subset=cols, how="all")
        if rows.empty:
            continue
        if epoch is not None and "epoch" in rows and (rows["epoch"] == epoch).any():
            row = rows[rows["epoch"] == epoch].iloc[-1]
        else:
            row = rows.iloc[-1]
        mat = pd.DataFrame(np.nan, index=names, columns=names)
        for (s, d), c in edges.items():
            mat.loc[s, d] = float(row[c])
        out[space] = mat
    return out


def attention_columns(pred: pd.DataFrame, modalities: Sequence[str]) -> pd.DataFrame | None:
    """Per-sample modality attention from ``sample_attention_*`` columns (None if absent).

    Columns ``sample_attention_<modality>`` keep their modality name;
    ``sample_attention_<j>`` are mapped to the ``j``-th modality.
    """
    cols = [c for c in pred.columns if str(c).startswith("sample_attention_")]
    if not cols:
        return None
    rename = {}
    for c in cols:
        suffix = str(c)[len("sample_attention_"):]
        if suffix.isdigit() and int(suffix) < len(modalities):
            rename[c] = modalities[int(suffix)]
        else:
            rename[c] = suffix
    return pred[cols].rename(columns=rename).astype(float)


def _confusions(pred: pd.DataFrame, target: Any) -> list[tuple[np.ndarray, list[str], str]]:
    from sklearn.metrics import confusion_matrix

    if target is not None and target.kind != "regression" or "prediction_name" in pred:
        names = list(target.class_names) if target is not None and target.class_names else \
            sorted(set(pred.get("target_name", pred["target"]).astype(str)))
        k = len(names)
        cm = confusion_matrix(pred["target"].astype(int), pred["prediction"].astype(int),
                              labels=list(range(k)))
        return [(cm, names, f"{k} classes")]
    y, p = pred["target"].to_numpy(float), pred["prediction"].to_numpy(float)
    out = []
    rng = tuple(target.value_range) if target is not None and target.value_range else None
    if rng == (-3.0, 3.0) or (rng is None and np.abs(y).max() <= 3 and np.abs(y).max() > 1):
        from emodistill.serving.predict import SENTIMENT_SCALE

        yc, pc = (np.clip(np.round(v), -3, 3).astype(int) for v in (y, p))
        cm = confusion_matrix(yc, pc, labels=list(range(-3, 4)))
        out.append((cm, [f"{k} {SENTIMENT_SCALE[k].replace('strongly ', 'str. ')}"
                         for k in range(-3, 4)], "7-point scale (Acc-7 bins)"))
    cm2 = confusion_matrix(y >= 0, p >= 0, labels=[False, True])
    out.append((cm2, ["negative", "non-negative"], "2-class (Acc-2, has-0)"))
    return out


class _DataCache:
    """Datasets rebuilt from stored configs, loaded once per dataset section."""

    def __init__(self, overrides: Sequence[str]) -> None:
        self.overrides = list(overrides)
        self.cache: dict[str, Any] = {}

    def test_part(self, ck_config: dict[str, Any], fold: str) -> Any:
        from omegaconf import OmegaConf

        from emodistill.config import apply_overrides, to_container
        from emodistill.data.parts import fold_parts
        from emodistill.data.protocols import make_folds
        from emodistill.data.registry import build_dataset

        cfg = apply_overrides(OmegaConf.create(ck_config), self.overrides,
                              source="the stored config")
        dcfg = to_container(cfg.dataset)
        key = json.dumps(dcfg, sort_keys=True, default=str)
        if key not in self.cache:
            self.cache[key] = build_dataset(dcfg)
        ds = self.cache[key]
        proto = to_container(cfg.protocol)
        name = proto.pop("name")
        subject_norm = proto.pop("subject_norm", None)
        for k in ("fold", "allow_leaky"):
            proto.pop(k, None)
        folds = {f.name: f for f in make_folds(ds, name, **proto)}
        # as the model was tested, less the standardisation (the predictor applies its own)
        return fold_parts(ds, folds[fold], ("test",), subject_norm=subject_norm)[0]["test"]


def _embedding(fold_dir: Path, data: _DataCache, method: EmbeddingMethod,
               max_points: int, seed: int = 0) -> tuple[str, str]:
    """(base64 PNG, caption) of the 2-D embedding of the test part's learned features."""
    from emodistill.serving.predict import load

    pred = load(fold_dir / "model.pt")
    part = data.test_part(pred.config, str(pred.meta.get("fold", fold_dir.name)))
    feats, source = pred.embed(part, return_source=True)
    y = part.targets[pred.target.name].cpu().numpy()
    rng = np.random.default_rng(seed)
    if len(feats) > max_points:
        keep = np.sort(rng.choice(len(feats), max_points, replace=False))
        feats, y = feats[keep], y[keep]
    if method == "tsne" and len(feats) > 5:
        from sklearn.manifold import TSNE

        pts = TSNE(n_components=2, init="pca", random_state=seed,
                   perplexity=min(30.0, (len(feats) - 1) / 3)).fit_transform(feats)
        name, extra = "t-SNE", ""
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(feats)
        pts = pca.transform(feats)
        ev = pca.explained_variance_ratio_
        name, extra = "PCA", f"; explained variance {ev[0]:.0%} + {ev[1]:.0%}"
    cat = pred.target.kind != "regression"
    fig = plots.embedding_figure(pts, y, categorical=cat,
                                 labels=list(pred.target.class_names or ()) or None,
                                 method=name)
    what = {"fused": "fused representation", "features": "modality features (concatenated)",
            "outputs": "outputs"}[source]
    cap = (f"{name} of the learned {what} ({feats.shape[1]}-d) of {len(feats)} test samples, "
           f"coloured by the true {pred.target.name}{extra}.")
    return plots.to_png_base64(fig), cap


# ------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:3px;margin-top:32px}h3{font-size:1.0em;margin:18px 0 6px}
.meta{color:#555;font-size:.9em}.note{color:#8a5a00;font-size:.88em}
table.results{border-collapse:collapse;font-size:.86em;margin:8px 0}
table.results th,table.results td{border:1px solid #ccc;padding:4px 8px;text-align:right;
white-space:nowrap}table.results thead th{background:#f2f4f7;text-align:center}
table.results tbody th{text-align:left;background:#fafafa}
figure{margin:8px 0 14px}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}code{background:#f4f4f4;padding:0 3px}
"""

# marks the body with how many images decoded (read by the headless-browser test)
_CHECK_JS = """
window.addEventListener("load",function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}
document.body.setAttribute("data-images-total",String(im.length));
document.body.setAttribute("data-images-rendered",String(ok));});
"""


def _img(b64: str, caption: str, alt: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _modalities(run: RunEntry) -> list[str]:
    mods = run.config.get("dataset", {}).get("modalities")
    if mods:
        return list(mods)
    djson = run.path / "data.json"
    if djson.is_file():
        return list(json.loads(djson.read_text()).get("modalities", {}))
    return []


def _target(fold_dir: Path) -> Any:
    ck = fold_dir / "model.pt"
    if not ck.is_file():
        return None
    import torch

    from emodistill.data.spec import TargetSpec

    t = torch.load(ck, map_location="cpu", weights_only=True)["target"]
    return TargetSpec(t["name"], t["kind"],
                      value_range=tuple(t["value_range"]) if t["value_range"] else None,
                      class_names=tuple(t["class_names"]) if t["class_names"] else None)


def _teacher_student_section(runs: list[RunEntry]) -> list[str]:
    """Put the test metrics of each fold's teacher beside the student's (KD runs).

    The teacher trained on a fold lives in ``<fold>/teacher/``; other runs give nothing.
    """
    rows = []
    for r in runs:
        for f in r.folds:
            t_file, s_res = f / "teacher" / "test_metrics.json", r.results.get("folds", {})
            if not t_file.is_file() or f.name not in s_res:
                continue
            key = (f"seed {r.seed}" if r.seed is not None else r.path.name) + f" / {f.name}"
            rows.append((key, json.loads(t_file.read_text()), s_res[f.name]["test"]))
    if not rows:
        return []
    metrics = [m for m in rows[0][2] if m in rows[0][1]]
    head = "".join(f"<th>{html.escape(m)} teacher</th><th>{html.escape(m)} student</th>"
                   f"<th>Δ</th>" for m in metrics)
    body = []
    for key, t, st in rows:
        cells = "".join(f"<td>{float(t[m]):.4f}</td><td>{float(st[m]):.4f}</td>"
                        f"<td>{float(st[m]) - float(t[m]):+.4f}</td>" for m in metrics)
        body.append(f"<tr><td>{html.escape(key)}</td>{cells}</tr>")
    if len(rows) > 1:
        cells = "".join(
            f"<td>{np.mean([float(t[m]) for _, t, _ in rows]):.4f}</td>"
            f"<td>{np.mean([float(st[m]) for _, _, st in rows]):.4f}</td>"
            f"<td>{np.mean([float(st[m]) - float(t[m]) for _, t, st in rows]):+.4f}</td>"
            for m in metrics)
        body.append(f"<tr><td>mean over {len(rows)}</td>{cells}</tr>")
    return ["<h3>Teacher vs student</h3><p>Test metrics of the teacher trained on the same "
            "fold (its <code>teacher/</code> folder) and of the student distilled from it; "
            "Δ = student − teacher. The teacher sees more modalities than the student.</p>"
            f"<table><tr><th>run / fold</th>{head}</tr>{''.join(body)}</table>"]


def _method_section(label: str, runs: list[RunEntry], data: _DataCache,
                    embedding: EmbeddingMethod, max_points: int) -> str:
    parts = [f'<h2 id="{html.escape(re.sub(r"[^A-Za-z0-9]+", "-", label))}">'
             f"{html.escape(label)}</h2>"]
    first = runs[0]
    sel = first.results.get("selection") or {}
    if sel.get("summary"):
        parts.append(_note(f"Model selection: {sel['summary']}."))
    curves, best = {}, {}
    for r in runs:
        for f in r.folds:
            mcsv = f / "metrics.csv"
            if mcsv.is_file():
                key = (f"seed {r.seed}" if r.seed is not None else r.path.name) + (
                    f" / {f.name}" if len(r.folds) > 1 else "")
                curves[key] = pd.read_csv(mcsv)
                best[key] = int(r.results.get("folds", {}).get(f.name, {}).get("best_epoch", -1))
    if curves:
        chosen = ("last epoch (fixed recipe)" if sel.get("selection") == "last"
                  else "epoch selected on validation")
        if sel.get("valid_leaked_for"):
            chosen += "; the validation curve is LEAKED, a diagnostic only"
        fig = plots.learning_curves(curves, best_epoch=best)
        parts.append("<h3>Learning curves</h3>" + _img(
            plots.to_png_base64(fig),
            f"Per-epoch task loss (train dashed, validation solid) and a validation metric; "
            f"dotted lines mark the {chosen} ({len(curves)} run(s)).",
            f"learning curves of {label}"))
    else:
        parts.append(_note("no metrics.csv found: learning curves skipped"))
    seed_txt = f"seed {first.seed}" if first.seed is not None else first.path.name
    parts.extend(_teacher_student_section(runs))
    preds = [pd.read_csv(f / "predictions.csv") for f in first.folds
             if (f / "predictions.csv").is_file()]
    target = _target(first.folds[0]) if first.folds else None
    if preds:
        pred = pd.concat(preds, ignore_index=True)
        cms = _confusions(pred, target)
        parts.append("<h3>Confusion matrices</h3>" + _img(
            plots.to_png_base64(plots.confusion_matrix_figure(cms)),
            f"Test predictions of {seed_txt} ({len(pred)} samples"
            f"{', all folds' if len(preds) > 1 else ''}): {'; '.join(c[2] for c in cms)}. "
            "Rows: true, columns: predicted; colour: fraction of the true row.",
            f"confusion matrices of {label}"))
        att = attention_columns(pred, _modalities(first))
        if att is not None:
            order = pred["prediction"].to_numpy(float) if "prediction" in pred else None
            parts.append("<h3>Modality attention</h3>" + _img(
                plots.to_png_base64(plots.attention_figure(att, order=order)),
                f"Per-sample attention over modalities on the test part ({seed_txt}).",
                f"modality attention of {label}"))
    else:
        parts.append(_note("no predictions.csv found: confusion matrices skipped"))
    if first.folds and (first.folds[0] / "metrics.csv").is_file():
        f0 = first.folds[0]
        ep = first.results.get("folds", {}).get(f0.name, {}).get("best_epoch")
        edges = edge_tables(pd.read_csv(f0 / "metrics.csv"), _modalities(first), epoch=ep)
        if edges:
            parts.append("<h3>Distillation-graph edges</h3>" + _img(
                plots.to_png_base64(plots.edge_heatmap(edges)),
                f"Mean learned edge weight (teacher row → student column) at the selected "
                f"epoch {ep} ({seed_txt}, {f0.name}).", f"edge heatmaps of {label}"))
    if embedding != "none" and first.folds:
        f0 = first.folds[0]
        if not (f0 / "model.pt").is_file():
            parts.append(_note("no model.pt (train.save_checkpoint=false): embedding skipped"))
        else:
            try:
                b64, cap = _embedding(f0, data, embedding, max_points)
                parts.append("<h3>Learned features</h3>" + _img(
                    b64, f"{cap} ({seed_txt}, {f0.name})", f"feature embedding of {label}"))
            except Exception as e:  # the report must not fail on a moved dataset
                log.warning("report: embedding of %s skipped: %s", label, e)
                parts.append(_note(
                    f"embedding skipped: the test data could not be rebuilt from the stored "
                    f"config ({e}); rerun with e.g. dataset.root=PATH"))
    return "\n".join(parts)


def build_report(
    path: str | Path,
    *,
    output: str | Path | None = None,
    embedding: EmbeddingMethod = "pca",
    overrides: Sequence[str] = (),
    max_points: int = 2000,
    title: str | None = None,
) -> Path:
    """Write the HTML report of a run or benchmark folder.

    Parameters
    ----------
    path : path
        A benchmark folder (``summary.csv``, ``per_seed.csv``, ``runs/``) or a
        run folder (``config.yaml``, ``results.json``, ``<fold>/``).
    output : path, optional
        The HTML file (default ``<path>/report.html``).
    embedding : {"pca", "tsne", "none"}
        Projection of the learned features (``none`` skips the data rebuild).
    overrides : sequence of str
        ``key=value`` overrides of the stored configs when rebuilding the test
        data (e.g. ``dataset.root=../shared/data/mosi_utterance``).
    max_points : int
        At most this many test samples in the embedding plot.
    title : str, optional
        Page title.

    Returns
    -------
    Path
        The written report.
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
    first = runs[0].config
    dataset = first.get("dataset", {}).get("name", "?")
    target = first.get("dataset", {}).get("target") or "?"
    protocol = first.get("protocol", {})
    if kind == "benchmark" and (folder / "summary.csv").is_file():
        table, _ = _benchmark_table(folder)
        seeds = sorted({r.seed for r in runs if r.seed is not None})
        scope = f"mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})"
    else:
        table, _ = _run_table(runs[0])
        scope = "one row per fold, weights selected on validation"
    groups: dict[str, list[RunEntry]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    data = _DataCache(overrides)
    sections = [_method_section(lbl, rs, data, embedding, max_points)
                for lbl, rs in groups.items()]
    ttl = title or f"emodistill report: {folder.name}"
    toc = " · ".join(
        f'<a href="#{html.escape(re.sub(r"[^A-Za-z0-9]+", "-", lbl))}">{html.escape(lbl)}</a>'
        for lbl in groups)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(ttl)}</title><style>{_CSS}</style>
<script>{_CHECK_JS}</script></head>
<body>
<h1>{html.escape(ttl)}</h1>
<p class="meta">{html.escape(kind)} folder <code>{html.escape(str(folder))}</code> ·
dataset <b>{html.escape(str(dataset))}</b> · target <b>{html.escape(str(target))}</b> ·
protocol <b>{html.escape(str(protocol.get("name", "?")))}</b>
{html.escape(str(protocol.get("split", "")))} · written {now} by emodistill {__version__}</p>
<h2>Results</h2>
<p class="meta">Test metrics, {html.escape(scope)}. Accuracies and F1 in %, MAE and Corr raw;
best value per column in bold.</p>
{table}
<p class="meta">Methods: {toc}</p>
{''.join(sections)}
</body></html>
"""
    out = Path(output).expanduser() if output else folder / "report.html"
    atomic_write(out, lambda f: f.write(page))
    log.info("report written to %s", out)
    return out
