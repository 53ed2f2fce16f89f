"""Result tables: per-seed rows → mean ± std per method, as Markdown and CSV."""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["aggregate", "to_markdown", "PERCENT_METRICS"]

#: metrics shown ×100 (MMSA convention); the rest (mae, corr) are shown as is
PERCENT_METRICS = {
    "acc", "f1_macro", "f1_weighted", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0",
    "acc3", "acc5", "acc7", "acc2", "f1",  # acc2 / f1: the CH-SIMS set
}


def aggregate(per_seed: pd.DataFrame, metrics: list[str], by: str = "method") -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds of every metric, one row per ``by`` value.

    Columns are ``<metric>_mean``, ``<metric>_std`` and ``n_seeds``; row order
    follows the first appearance in ``per_seed``.
    """
    order = list(dict.fromkeys(per_seed[by]))
    g = per_seed.groupby(by, sort=False)
    out = pd.DataFrame(index=pd.Index(order, name=by))
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1)
    out["n_seeds"] = g.size()
    return out


def _fmt(mean: float, std: float, metric: str) -> str:
    if math.isnan(mean):
        return "nan"
    scale, digits = (100.0, 2) if metric in PERCENT_METRICS else (1.0, 4)
    s = f"{mean * scale:.{digits}f}"
    if not math.isnan(std):
        s += f" ± {std * scale:.{digits}f}"
    return s


def to_markdown(summary: pd.DataFrame, metrics: list[str], *, title: str = "") -> str:
    """Markdown table of ``mean ± std`` (accuracies and F1 in %, MAE/Corr raw)."""
    head = "| " + " | ".join([summary.index.name or "method", *metrics, "seeds"]) + " |"
    sep = "|" + "---|" * (len(metrics) + 2)
    rows = [
        "| " + " | ".join(
            [str(idx)]
            + [_fmt(r[f"{m}_mean"], r[f"{m}_std"], m) for m in metrics]
            + [str(int(r["n_seeds"]))]
        ) + " |"
        for idx, r in summary.iterrows()
    ]
    return "\n".join(([f"### {title}", ""] if title else []) + [head, sep, *rows]) + "\n"
