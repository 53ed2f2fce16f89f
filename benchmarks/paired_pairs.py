"""Paired per-seed differences of several (method, reference) pairs of one benchmark folder.

``emodistill benchmark --reference M`` compares every method with one reference. A context
table needs each contextual method against *its own* non-contextual version (late fusion
with context vs late fusion, DMD with context vs DMD, ...). This script reads the folder's
``per_seed.csv`` and prints, with the package's own ``paired_differences``, one row per
pair: ``method − reference`` per seed, mean ± sample std, and the count of seeds where the
method is better.

Usage (from the repository root)::

    python benchmarks/paired_pairs.py runs/benchmarks/s2_std_tokens_context \
        --pair 'late_fusion(context=birnn)::late_fusion' --metrics acc2_non0,mae,corr

``--pair METHOD::REFERENCE`` may repeat; without it every method whose label has
``(context=...)`` is paired with the label without it.

``--vs OTHER`` pairs each method with the *same* method of another benchmark folder (same
seeds, one setting changed, e.g. ``protocol.valid_fraction=0``); the other folder's labels
get `` [OTHER's name]``::

    python benchmarks/paired_pairs.py runs/benchmarks/i13_poria_fusion_allvalid \
        --vs runs/benchmarks/i13_poria_fusion_carved --metrics acc,f1_macro
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

from emodistill.report.tables import paired_differences, paired_to_markdown


def default_pairs(labels: list[str]) -> list[tuple[str, str]]:
    """``X(context=c)`` → ``X`` for every contextual label whose base is present."""
    out = []
    for lab in labels:
        m = re.fullmatch(r"(.+)\(context=[^)]+\)", lab)
        if m and m.group(1) in labels:
            out.append((lab, m.group(1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--pair", action="append", default=[],
                    help="METHOD::REFERENCE (labels; labels may hold =)")
    ap.add_argument("--metrics", default="acc", help="comma-separated metric columns")
    ap.add_argument("--vs", type=Path, default=None,
                    help="another benchmark folder: pair each method with its own run there")
    a = ap.parse_args()
    per_seed = pd.read_csv(a.folder / "per_seed.csv")
    labels = list(dict.fromkeys(per_seed["method"]))
    pairs = [tuple(p.split("::", 1)) for p in a.pair] if a.pair else default_pairs(labels)
    if a.vs is not None:
        other = pd.read_csv(a.vs / "per_seed.csv")
        other["method"] = other["method"] + f" [{a.vs.name}]"
        per_seed = pd.concat([per_seed, other], ignore_index=True)
        if not a.pair:
            pairs = [(m, f"{m} [{a.vs.name}]") for m in labels
                     if f"{m} [{a.vs.name}]" in set(other["method"])]
    metrics = [m for m in a.metrics.split(",") if m]
    if not pairs:
        raise SystemExit(f"no pairs: give --pair METHOD::REFERENCE; methods are {labels}")
    rows = []
    for method, ref in pairs:
        sub = per_seed[per_seed["method"].isin([method, ref])]
        d = paired_differences(sub, ref, metrics)
        d.index = [f"{method} − {ref}"]
        rows.append(d)
    table = pd.concat(rows)
    table.index.name = "pair"
    print(paired_to_markdown(table, metrics, reference="its reference").replace(
        "| pair − its reference |", "| method − reference |"))


if __name__ == "__main__":
    main()
