"""Figures of the HTML report, drawn with matplotlib's object API (no pyplot, no global state).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`to_png_base64`
turns one into the base64 PNG the report embeds.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "to_png_base64",
    "learning_curves",
    "confusion_matrix_figure",
    "edge_heatmap",
    "attention_figure",
    "embedding_figure",
]

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def to_png_base64(fig: Figure, *, dpi: int = 96) -> str:
    """Render ``fig`` to PNG and return it base64-encoded (for ``data:`` URIs)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pick_metric(columns: Sequence[str]) -> str | None:
    for m in ("val/acc2_has0", "val/acc", "val/f1_macro", "val/corr", "val/mae"):
        if m in columns:
            return m
    others = [c for c in columns if c.startswith("val/") and c != "val/task_loss"]
    return others[0] if others else None


#: metrics that are fractions in [0, 1] (their axis is capped at 1)
_BOUNDED = ("acc", "f1", "precision", "recall", "auc", "balanced_acc")


def learning_curves(runs: Mapping[str, pd.DataFrame], *, title: str = "",
                    best_epoch: Mapping[str, int] | None = None) -> Figure:
    """Loss and one validation metric per epoch.

    Parameters
    ----------
    runs : mapping of str to DataFrame
        Run label (e.g. ``seed1111``) → its ``metrics.csv`` (``epoch``,
        ``train/task_loss``, ``val/task_loss``, ``val/<metric>``...).
    title : str
        Figure title.
    best_epoch : mapping of str to int, optional
        Run label → the epoch selected on validation (marked by a dotted line).
    """
    fig = Figure(figsize=(9.5, 3.4))
    ax_l, ax_m = fig.subplots(1, 2)
    cols = sorted({c for df in runs.values() for c in df.columns})
    metric = _pick_metric(cols)
    for i, (label, df) in enumerate(runs.items()):
        c = _COLORS[i % len(_COLORS)]
        ep = df["epoch"] if "epoch" in df else np.arange(len(df))
        if "train/task_loss" in df:
            ax_l.plot(ep, df["train/task_loss"], "--", color=c, lw=1, alpha=0.8)
        if "val/task_loss" in df:
            ax_l.plot(ep, df["val/task_loss"], "-", color=c, lw=1.4, label=label)
        if metric and metric in df:
            ax_m.plot(ep, df[metric], "-", color=c, lw=1.4, label=label)
        if best_epoch and best_epoch.get(label, -1) >= 0:
            for ax in (ax_l, ax_m):
                ax.axvline(best_epoch[label], color=c, lw=0.7, ls=":")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("task loss (dashed: train, solid: valid)")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel(metric or "(no validation metric)")
    for ax in (ax_l, ax_m):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    if metric and metric.split("/")[-1].startswith(_BOUNDED):
        lo, hi = ax_m.get_ylim()
        ax_m.set_ylim(max(lo, 0.0), min(hi, 1.0))  # a fraction: never past 1
    if len(runs) <= 8 and ax_m.get_legend_handles_labels()[0]:  # none without validation
        ax_m.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(matrices: Sequence[tuple[np.ndarray, Sequence[str], str]], *,
                            title: str = "") -> Figure:
    """One or more confusion matrices side by side (rows: true, columns: predicted).

    Parameters
    ----------
    matrices : sequence of (matrix, labels, subtitle)
        ``[K, K]`` counts, the ``K`` class labels, a subtitle each.
    """
    n = len(matrices)
    fig = Figure(figsize=(4.2 * n, 3.9))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (cm, labels, sub) in zip(axes, matrices, strict=True):
        cm = np.asarray(cm)
        rows = cm.sum(1, keepdims=True)
        frac = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        k = len(labels)
        ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0, ha="right" if k > 3 else
                      "center", fontsize=7)
        ax.set_yticks(range(k), labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(sub, fontsize=9)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def edge_heatmap(spaces: Mapping[str, pd.DataFrame], *, title: str = "") -> Figure:
    """Learned distillation-edge weights, one heatmap per space (e.g. GD unit).

    Parameters
    ----------
    spaces : mapping of str to DataFrame
        Space name → square table, rows = teacher (knowledge source), columns =
        student (receiver); NaN where there is no edge.
    """
    n = len(spaces)
    fig = Figure(figsize=(3.9 * n, 3.5))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (space, mat) in zip(axes, spaces.items(), strict=True):
        vals = mat.to_numpy(dtype=float)
        im = ax.imshow(np.ma.masked_invalid(vals), cmap="viridis")
        ax.set_xticks(range(mat.shape[1]), list(mat.columns), fontsize=8)
        ax.set_yticks(range(mat.shape[0]), list(mat.index), fontsize=8)
        ax.set_xlabel("student (to)")
        ax.set_ylabel("teacher (from)")
        ax.set_title(space, fontsize=9)
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    bright = hi > lo and (vals[i, j] - lo) / (hi - lo) > 0.6  # yellow end
                    ax.text(j, i, f"{vals[i, j]:.3f}", ha="center", va="center", fontsize=7,
                            color="black" if bright else "white")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def attention_figure(att: pd.DataFrame, *, order: Sequence[float] | None = None,
                     title: str = "", max_rows: int = 80) -> Figure:
    """Per-sample attention over modalities: mean ± std bars and a sample heatmap.

    Parameters
    ----------
    att : DataFrame
        ``[N, M]`` attention weights, one column per modality.
    order : sequence of float, optional
        ``[N]`` values to sort the heatmap rows by (e.g. the prediction).
    max_rows : int
        Samples shown in the heatmap (evenly spaced after sorting).
    """
    fig = Figure(figsize=(9.5, 3.4))
    ax_b, ax_h = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    vals = att.to_numpy(dtype=float)
    ax_b.bar(range(vals.shape[1]), np.nanmean(vals, 0), yerr=np.nanstd(vals, 0),
             color=_COLORS[: vals.shape[1]], capsize=3)
    ax_b.set_xticks(range(vals.shape[1]), list(att.columns), fontsize=8)
    ax_b.set_ylabel("attention (mean ± std over test samples)")
    ax_b.grid(alpha=0.3, axis="y")
    idx = np.argsort(np.asarray(order)) if order is not None else np.arange(len(vals))
    if len(idx) > max_rows:
        idx = idx[np.linspace(0, len(idx) - 1, max_rows).astype(int)]
    im = ax_h.imshow(vals[idx].T, aspect="auto", cmap="magma", vmin=0)
    ax_h.set_yticks(range(vals.shape[1]), list(att.columns), fontsize=8)
    ax_h.set_xlabel("test samples" + (" (sorted by prediction)" if order is not None else ""))
    fig.colorbar(im, ax=ax_h, fraction=0.03, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def embedding_figure(points: np.ndarray, color: np.ndarray, *, categorical: bool,
                     labels: Sequence[str] | None = None, title: str = "",
                     method: str = "PCA") -> Figure:
    """2-D scatter of learned features coloured by the true label.

    Parameters
    ----------
    points : np.ndarray
        ``[N, 2]`` projected features.
    color : np.ndarray
        ``[N]`` true values (regression) or class indices.
    categorical : bool
        Discrete colours with a legend (classes) or a colour bar (values).
    labels : sequence of str, optional
        Class names (categorical only).
    """
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.subplots()
    if categorical:
        for k in np.unique(color):
            sel = color == k
            name = labels[int(k)] if labels is not None and int(k) < len(labels) else str(k)
            ax.scatter(points[sel, 0], points[sel, 1], s=8, alpha=0.7,
                       color=_COLORS[int(k) % len(_COLORS)], label=name)
        ax.legend(fontsize=7, markerscale=2)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.75, c=color, cmap="coolwarm")
        fig.colorbar(sc, ax=ax, label="true value")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
