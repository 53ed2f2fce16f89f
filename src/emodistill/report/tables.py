"""Result tables: per-seed rows → mean ± std per method, as Markdown and CSV."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

__all__ = ["aggregate", "to_markdown", "paired_differences", "paired_to_markdown",
           "PERCENT_METRICS", "LOWER_IS_BETTER", "subject_norm_note"]

#: metrics shown ×100 (MMSA convention); the rest (mae, corr) are shown as is
PERCENT_METRICS = {
    "acc", "f1_macro", "f1_weighted", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0",
    "acc3", "acc5", "acc7", "acc2", "f1",  # acc2 / f1: the CH-SIMS set
}

#: metrics where a smaller value is better (a paired "win" is a negative difference)
LOWER_IS_BETTER = {"mae"}


def subject_norm_note(mode: object, groups: Iterable[str] | None,
                      group: str = "subject") -> str | None:
    """How a table's features were normalised per subject, for its title, or None.

    Parameters
    ----------
    mode : str or None
        ``protocol.subject_norm`` of the runs (``none``, ``transductive``, ``train``;
        None or False mean ``none``).
    groups : iterable of str, optional
        The dataset's grouping keys (``data.json`` → ``groups``); None when unknown.
    group : str
        The grouping key of subjects.

    Returns
    -------
    str or None
        ``"subject norm <mode>"`` when the option is on, or when it is off on data that
        have subjects (then ``"subject norm none"``); None for data without subjects and
        the option off (MER data), where it means nothing.
    """
    mode = "none" if mode in (None, False) else str(mode)
    if mode == "none" and group not in set(groups or ()):
        return None
    return f"subject norm {mode}"


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


def _fmt(mean: float, std: float, metric: str, *, signed: bool = False) -> str:
    if math.isnan(mean):
        return "nan"
    scale, digits = (100.0, 2) if metric in PERCENT_METRICS else (1.0, 4)
    s = f"{mean * scale:{'+' if signed else ''}.{digits}f}"
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


def paired_differences(
    per_seed: pd.DataFrame, reference: str, metrics: list[str], by: str = "method"
) -> pd.DataFrame:
    """Per-seed paired differences of every method to ``reference``.

    For each method other than ``reference`` and each metric, the difference
    ``method - reference`` is taken seed by seed over the seeds both have, then
    summarised as mean and sample std (ddof=1) with the count of seeds where the
    method is better (higher, or lower for metrics in :data:`LOWER_IS_BETTER`).

    Parameters
    ----------
    per_seed : DataFrame
        One row per (``by``, ``seed``) with one column per metric.
    reference : str
        The ``by`` value (method label) every other method is compared with.
    metrics : list of str
        Metric columns to compare.

    Returns
    -------
    DataFrame
        Indexed by method; columns ``<metric>_diff_mean``, ``<metric>_diff_std``,
        ``<metric>_wins`` and ``n_paired`` (the number of seeds in the pairing).

    Raises
    ------
    ValueError
        If ``reference`` is not a method of ``per_seed``.
    """
    labels = list(dict.fromkeys(per_seed[by]))
    if reference not in labels:
        raise ValueError(f"reference {reference!r} is not one of the methods {labels}")
    ref = per_seed[per_seed[by] == reference].set_index("seed")
    rows = {}
    for label in labels:
        if label == reference:
            continue
        cur = per_seed[per_seed[by] == label].set_index("seed")
        seeds = [s for s in cur.index if s in ref.index]
        row: dict[str, float] = {}
        for m in metrics:
            d = cur.loc[seeds, m].astype(float) - ref.loc[seeds, m].astype(float)
            better = d < 0 if m in LOWER_IS_BETTER else d > 0
            row[f"{m}_diff_mean"] = float(d.mean()) if len(d) else math.nan
            row[f"{m}_diff_std"] = float(d.std(ddof=1)) if len(d) > 1 else math.nan
            row[f"{m}_wins"] = int(better.sum())
        row["n_paired"] = len(seeds)
        rows[label] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = by
    return out


def paired_to_markdown(
    paired: pd.DataFrame, metrics: list[str], *, reference: str, title: str = ""
) -> str:
    """Markdown table of paired differences: ``+d ± s (wins/n)`` per metric."""
    head = "| " + " | ".join([f"{paired.index.name or 'method'} − {reference}", *metrics]) + " |"
    sep = "|" + "---|" * (len(metrics) + 1)
    rows = [
        "| " + " | ".join(
            [str(idx)]
            + [f"{_fmt(r[f'{m}_diff_mean'], r[f'{m}_diff_std'], m, signed=True)} "
               f"({int(r[f'{m}_wins'])}/{int(r['n_paired'])})" for m in metrics]
        ) + " |"
        for idx, r in paired.iterrows()
    ]
    note = (f"Per seed: method − {reference} on the same seed; mean ± sample std over seeds; "
            "(w/n) = seeds where the method is better (higher; lower for "
            f"{', '.join(sorted(LOWER_IS_BETTER))}).")
    lines = ([f"### {title}", ""] if title else []) + [head, sep, *rows, "", note]
    return "\n".join(lines) + "\n"
