"""Heatmaps of learned graph-distillation (GD-Unit) edge weights.

DMD and DHMD log, per epoch, the mean learned weight of every edge of each
GD-Unit as ``model/gd_<unit>/<teacher>-><student>`` columns of a fold's
``metrics.csv``. This module draws, for each unit, the teacher × student
matrix at one epoch (the last by default) and the edge × epoch history.

Command line (writes ``gd_edges.png`` next to each ``metrics.csv`` found)::

    python -m emodistill.report.edges runs/<run>            # or a fold folder or a CSV
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emodistill.errors import DataFormatError, DataNotFoundError

__all__ = ["edge_history", "edge_matrix", "plot_gd_edges", "main"]

_COL = re.compile(r"^model/gd_(?P<unit>[^/]+)/(?P<teacher>[^/]+)->(?P<student>[^/]+)$")


def edge_history(metrics: str | Path | pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-epoch edge weights of every GD unit found in a ``metrics.csv``.

    Parameters
    ----------
    metrics : path or DataFrame
        A fold's ``metrics.csv`` (or its contents).

    Returns
    -------
    dict of str to DataFrame
        Unit name (``homo``, ``hetero``) → frame indexed by epoch with one
        column per edge ``"teacher->student"``. Empty when nothing was logged.
    """
    df = pd.read_csv(metrics) if not isinstance(metrics, pd.DataFrame) else metrics
    units: dict[str, dict[str, str]] = {}
    for col in df.columns:
        m = _COL.match(str(col))
        if m:
            units.setdefault(m["unit"], {})[col] = f"{m['teacher']}->{m['student']}"
    out = {}
    for unit, cols in units.items():
        sub = df[["epoch", *cols]].dropna(subset=list(cols), how="all") if "epoch" in df else \
            df[list(cols)].dropna(how="all")
        frame = sub[list(cols)].rename(columns=cols)
        frame.index = sub["epoch"].astype(int) if "epoch" in sub else range(len(sub))
        frame.index.name = "epoch"
        out[unit] = frame
    return out


def edge_matrix(weights: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """Teacher × student matrix of ``{"teacher->student": weight}`` (NaN on the diagonal).

    Returns
    -------
    nodes : list of str
        Modalities in the order they first appear as students (the GD node order).
    matrix : ndarray
        ``[M, M]``, row = teacher, column = student.
    """
    pairs = []
    for name, w in weights.items():
        t, _, s = str(name).partition("->")
        if not s:
            raise DataFormatError(f"edge name {name!r} is not 'teacher->student'")
        pairs.append((t, s, float(w)))
    nodes: list[str] = []
    for n in [s for _, s, _ in pairs] + [t for t, _, _ in pairs]:  # students first: GD order
        if n not in nodes:
            nodes.append(n)
    mat = np.full((len(nodes), len(nodes)), np.nan)
    for t, s, w in pairs:
        mat[nodes.index(t), nodes.index(s)] = w
    return nodes, mat


def plot_gd_edges(metrics: str | Path | pd.DataFrame, path: str | Path, *,
                  epoch: int | None = None, title: str | None = None) -> Path:
    """Draw the edge heatmaps of every GD unit into ``path`` (PNG/PDF/SVG).

    Parameters
    ----------
    metrics : path or DataFrame
        A fold's ``metrics.csv``.
    path : path
        Output image.
    epoch : int, optional
        Epoch of the teacher × student matrices (default: the last logged one).
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hist = edge_history(metrics)
    if not hist:
        raise DataFormatError(
            f"{metrics if not isinstance(metrics, pd.DataFrame) else 'metrics'}: no "
            "'model/gd_<unit>/<teacher>-><student>' columns; train a method with GD units "
            "(dmd, dhmd) to log edge weights"
        )
    units = list(hist)
    fig = Figure(figsize=(5.2 * len(units), 8.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(units), squeeze=False)
    for k, unit in enumerate(units):
        frame = hist[unit]
        ep = frame.index[-1] if epoch is None else epoch
        if ep not in frame.index:
            raise DataFormatError(f"GD unit {unit!r}: no edge weights logged for epoch {ep}; "
                                  f"logged epochs {list(frame.index)}")
        nodes, mat = edge_matrix(frame.loc[ep].to_dict())
        ax = axes[0, k]
        im = ax.imshow(mat, cmap="viridis", vmin=0.0, vmax=max(np.nanmax(mat), 1e-6))
        ax.set_xticks(range(len(nodes)), nodes)
        ax.set_yticks(range(len(nodes)), nodes)
        ax.set_xlabel("student (target)")
        ax.set_ylabel("teacher (source)")
        ax.set_title(f"{unit} GD: mean learned edge, epoch {ep}")
        for i in range(len(nodes)):
            for j in range(len(nodes)):
                if not np.isnan(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.3f}", ha="center", va="center", fontsize=9,
                            color="k" if mat[i, j] > 0.6 * np.nanmax(mat) else "w")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax = axes[1, k]
        im = ax.imshow(frame.to_numpy().T, aspect="auto", cmap="viridis",
                       interpolation="nearest")
        ax.set_yticks(range(frame.shape[1]), list(frame.columns))
        ax.set_xlabel("epoch")
        ticks = np.linspace(0, len(frame) - 1, min(len(frame), 8)).round().astype(int)
        ax.set_xticks(ticks, [str(frame.index[t]) for t in ticks])
        ax.set_title(f"{unit} GD: edges over epochs")
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m emodistill.report.edges PATH [--epoch N]``: one PNG per metrics.csv."""
    p = argparse.ArgumentParser(prog="python -m emodistill.report.edges",
                                description="GD edge heatmaps from metrics.csv files")
    p.add_argument("path", help="a run folder, a fold folder or a metrics.csv")
    p.add_argument("--epoch", type=int, default=None, help="epoch of the matrices (default last)")
    p.add_argument("--name", default="gd_edges.png", help="output file name per fold")
    a = p.parse_args(argv)
    root = Path(a.path)
    if not root.exists():
        raise DataNotFoundError(f"{root} does not exist")
    files = [root] if root.is_file() else sorted(root.rglob("metrics.csv"))
    if not files:
        raise DataNotFoundError(f"no metrics.csv below {root}")
    for f in files:
        out = plot_gd_edges(f, f.parent / a.name, epoch=a.epoch, title=str(f.parent))
        print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
