"""Paired differences between runs of two benchmark folders (same data, folds and seeds).

For each (method A, method B) pair: the per-seed difference of the fold-mean test metric
(mean ± sample std over seeds, seeds where A is better) and the per-(seed, fold) difference
(mean, and folds×seeds where A is better / worse). Runs are matched by seed and fold name;
the fold fingerprints must agree, else the pair is refused.

Usage (from the repository root)::

    python benchmarks/eeg_paired.py \
        A=runs/benchmarks/<bench A>/runs/<run label A> \
        B=runs/benchmarks/<bench B>/runs/<run label B> [--metric acc] [--seeds 1111-1113]

``<run label>`` is the run folder name without ``-seed<N>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emodistill.training.benchmark import parse_seeds


def fold_scores(prefix: str, seed: int, metric: str) -> dict[str, float]:
    """Fold name → test ``metric`` of run ``<prefix>-seed<seed>``."""
    res = json.loads((Path(f"{prefix}-seed{seed}") / "results.json").read_text())
    return {f: v["test"][metric] for f, v in res["folds"].items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="+", help="NAME=RUN_PREFIX; every later one vs the first")
    ap.add_argument("--metric", default="acc")
    ap.add_argument("--seeds", default="1111-1113")
    a = ap.parse_args()
    seeds = parse_seeds(a.seeds)
    named = [p.split("=", 1) for p in a.pairs]
    base_name, base = named[0]
    print(f"| {a.metric}: method − {base_name} | per seed (mean ± std) | seeds better | "
          "per seed×fold (mean) | seed×folds better / worse |")
    print("|---|---|---|---|---|")
    for name, prefix in named[1:]:
        per_seed, cells = [], []
        for s in seeds:
            x, y = fold_scores(prefix, s, a.metric), fold_scores(base, s, a.metric)
            if set(x) != set(y):
                raise SystemExit(f"{name} and {base_name} have different folds for seed {s}")
            d = np.array([x[f] - y[f] for f in sorted(x)]) * 100
            per_seed.append(np.mean([x[f] for f in x]) * 100 - np.mean([y[f] for f in y]) * 100)
            cells += d.tolist()
        ps, c = np.array(per_seed), np.array(cells)
        sd = f" ± {ps.std(ddof=1):.2f}" if len(ps) > 1 else ""
        print(f"| {name} | {ps.mean():+.2f}{sd} | {int((ps > 0).sum())}/{len(ps)} | "
              f"{c.mean():+.2f} | {int((c > 0).sum())} / {int((c < 0).sum())} of {len(c)} |")


if __name__ == "__main__":
    main()
