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

This module renders; it reads no files itself. :func:`build_report` runs the
three steps of the report:

1. :func:`emodistill.report.reader.read_report`: the folder's files into plain
   data (no torch, no model);
2. :func:`emodistill.report.embedding.compute_embeddings`: the one step that
   needs a model and the data. Each method's ``model.pt`` embeds its test part,
   rebuilt from the config stored in the checkpoint (``overrides`` such as
   ``dataset.root=PATH`` point to moved data); when that fails the report says
   why and carries on. Skipped with ``embedding="none"``;
3. :func:`render_report`: plain data (and the embeddings) into the HTML page.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emodistill import __version__
from emodistill._fs import atomic_write
from emodistill.report import plots
from emodistill.report.embedding import Embedding, EmbeddingMethod, compute_embeddings
from emodistill.report.reader import (
    ReportData,
    RunEntry,
    TargetInfo,
    find_runs,
    read_report,
    run_groups,
    run_modalities,
)
from emodistill.report.tables import PERCENT_METRICS, subject_norm_note
from emodistill.training.selection import NO_VALID

__all__ = ["build_report", "render_report", "find_runs", "RunEntry", "edge_tables",
           "attention_columns"]

log = logging.getLogger(__name__)


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


def _benchmark_table(summary: pd.DataFrame) -> tuple[str, list[str]]:
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


def _confusions(pred: pd.DataFrame, target: TargetInfo | None
                ) -> list[tuple[np.ndarray, list[str], str]]:
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


def _teacher_student_section(runs: list[RunEntry]) -> list[str]:
    """Put the test metrics of each fold's teacher beside the student's (KD runs).

    The teacher trained on a fold lives in ``<fold>/teacher/``; other runs give nothing.
    """
    rows = []
    for r in runs:
        s_res = r.results.get("folds", {})
        for f in r.records:
            if f.teacher_test is None or f.name not in s_res:
                continue
            key = (f"seed {r.seed}" if r.seed is not None else r.path.name) + f" / {f.name}"
            rows.append((key, f.teacher_test, s_res[f.name]["test"]))
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


def _embedding_section(label: str, emb: Embedding | str | None, seed_txt: str) -> list[str]:
    if emb is None:
        return []
    if isinstance(emb, str):
        return [_note(emb)]
    fig = plots.embedding_figure(emb.points, emb.y, categorical=emb.categorical,
                                 labels=emb.labels, method=emb.method)
    return ["<h3>Learned features</h3>" + _img(
        plots.to_png_base64(fig), f"{emb.caption} ({seed_txt}, {emb.fold})",
        f"feature embedding of {label}")]


def _method_section(label: str, runs: list[RunEntry], emb: Embedding | str | None) -> str:
    parts = [f'<h2 id="{html.escape(re.sub(r"[^A-Za-z0-9]+", "-", label))}">'
             f"{html.escape(label)}</h2>"]
    first = runs[0]
    sel = first.results.get("selection") or {}
    if sel.get("summary"):
        parts.append(_note(f"Model selection: {sel['summary']}."))
    curves, best = {}, {}
    for r in runs:
        for f in r.records:
            if f.metrics is not None:
                key = (f"seed {r.seed}" if r.seed is not None else r.path.name) + (
                    f" / {f.name}" if len(r.records) > 1 else "")
                curves[key] = f.metrics
                ep = r.best_epoch(f.name)
                best[key] = ep if ep is not None else -1
    if curves:
        chosen = ("last epoch (fixed recipe)" if sel.get("selection") == "last"
                  else "epoch selected on validation")
        if sel.get("valid_part") is False:
            chosen += f"; {NO_VALID}, so there is no validation curve"
        elif sel.get("valid_leaked_for"):
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
    preds = [f.predictions for f in first.records if f.predictions is not None]
    target = first.records[0].target if first.records else None
    modalities = run_modalities(first)
    if preds:
        pred = pd.concat(preds, ignore_index=True)
        cms = _confusions(pred, target)
        parts.append("<h3>Confusion matrices</h3>" + _img(
            plots.to_png_base64(plots.confusion_matrix_figure(cms)),
            f"Test predictions of {seed_txt} ({len(pred)} samples"
            f"{', all folds' if len(preds) > 1 else ''}): {'; '.join(c[2] for c in cms)}. "
            "Rows: true, columns: predicted; colour: fraction of the true row.",
            f"confusion matrices of {label}"))
        att = attention_columns(pred, modalities)
        if att is not None:
            order = pred["prediction"].to_numpy(float) if "prediction" in pred else None
            parts.append("<h3>Modality attention</h3>" + _img(
                plots.to_png_base64(plots.attention_figure(att, order=order)),
                f"Per-sample attention over modalities on the test part ({seed_txt}).",
                f"modality attention of {label}"))
    else:
        parts.append(_note("no predictions.csv found: confusion matrices skipped"))
    if first.records and first.records[0].metrics is not None:
        f0 = first.records[0]
        ep = first.results.get("folds", {}).get(f0.name, {}).get("best_epoch")
        edges = edge_tables(f0.metrics, modalities, epoch=ep)
        if edges:
            parts.append("<h3>Distillation-graph edges</h3>" + _img(
                plots.to_png_base64(plots.edge_heatmap(edges)),
                f"Mean learned edge weight (teacher row → student column) at the selected "
                f"epoch {ep} ({seed_txt}, {f0.name}).", f"edge heatmaps of {label}"))
    parts.extend(_embedding_section(label, emb, seed_txt))
    return "\n".join(parts)


def render_report(report: ReportData, embeddings: Mapping[str, Embedding | str] | None = None,
                  *, title: str | None = None) -> str:
    """Render what :func:`~emodistill.report.reader.read_report` read as one HTML page.

    Parameters
    ----------
    report : ReportData
        The folder's runs, read.
    embeddings : mapping of str to (Embedding or str), optional
        Per method label, its embedding or why it was skipped
        (:func:`~emodistill.report.embedding.compute_embeddings`); methods
        absent from it get no embedding section. None: no embeddings.
    title : str, optional
        Page title (default ``emodistill report: <folder name>``).

    Returns
    -------
    str
        The HTML page (no file is read or written; no model is loaded).
    """
    embeddings = embeddings or {}
    folder, runs = report.folder, report.runs
    first = report.config
    dataset = first.get("dataset", {}).get("name", "?")
    target = first.get("dataset", {}).get("target") or "?"
    protocol = first.get("protocol", {})
    norm = subject_norm_note(protocol.get("subject_norm"), run_groups(runs[0]))
    if report.kind == "benchmark" and report.summary is not None:
        table, _ = _benchmark_table(report.summary)
        seeds = sorted({r.seed for r in runs if r.seed is not None})
        scope = f"mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})"
    else:
        table, _ = _run_table(runs[0])
        scope = "one row per fold, weights selected on validation"
    groups = report.groups
    sections = [_method_section(lbl, rs, embeddings.get(lbl)) for lbl, rs in groups.items()]
    ttl = title or f"emodistill report: {folder.name}"
    toc = " · ".join(
        f'<a href="#{html.escape(re.sub(r"[^A-Za-z0-9]+", "-", lbl))}">{html.escape(lbl)}</a>'
        for lbl in groups)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(ttl)}</title><style>{_CSS}</style>
<script>{_CHECK_JS}</script></head>
<body>
<h1>{html.escape(ttl)}</h1>
<p class="meta">{html.escape(report.kind)} folder <code>{html.escape(str(folder))}</code> ·
dataset <b>{html.escape(str(dataset))}</b> · target <b>{html.escape(str(target))}</b> ·
protocol <b>{html.escape(str(protocol.get("name", "?")))}</b>
{html.escape(str(protocol.get("split", "")))}{f" · <b>{html.escape(norm)}</b>" if norm else ""}
· written {now} by emodistill {__version__}</p>
<h2>Results</h2>
<p class="meta">Test metrics, {html.escape(scope)}. Accuracies and F1 in %, MAE and Corr raw;
best value per column in bold.</p>
{table}
<p class="meta">Methods: {toc}</p>
{''.join(sections)}
</body></html>
"""


def build_report(
    path: str | Path,
    *,
    output: str | Path | None = None,
    embedding: EmbeddingMethod = "pca",
    overrides: Sequence[str] = (),
    max_points: int = 2000,
    title: str | None = None,
) -> Path:
    """Write the HTML report of a run or benchmark folder (read, embed, render).

    Parameters
    ----------
    path : path
        A benchmark folder (``summary.csv``, ``per_seed.csv``, ``runs/``) or a
        run folder (``config.yaml``, ``results.json``, ``<fold>/``).
    output : path, optional
        The HTML file (default ``<path>/report.html``).
    embedding : {"pca", "tsne", "none"}
        Projection of the learned features. ``pca`` and ``tsne`` load each
        method's ``model.pt`` and rebuild its test data
        (:mod:`emodistill.report.embedding`); ``none`` skips that step, so no
        model or dataset is loaded.
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
    report = read_report(path)
    embeddings = compute_embeddings(report, embedding, overrides=overrides,
                                    max_points=max_points)
    page = render_report(report, embeddings, title=title)
    out = Path(output).expanduser() if output else report.folder / "report.html"
    atomic_write(out, lambda f: f.write(page))
    log.info("report written to %s", out)
    return out
