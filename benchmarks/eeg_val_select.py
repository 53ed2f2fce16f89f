"""Selection table of benchmarks/eeg.md: validation accuracy beside the test columns, per run label.

For every run label of a benchmark folder (``<label>-seed<N>``): **val acc** = the mean over
seeds × folds of the validation accuracy at the selected epoch (``val/acc`` of
``<fold>/metrics.csv`` at the fold's ``best_epoch``; the validation part only), and the test
accuracy and macro-F1 (mean over seeds of each run's fold mean). Choose on the first
column; the test columns are for transparency.

Usage (from the repository root)::

    python benchmarks/eeg_val_select.py runs/benchmarks/<bench> [--seeds 1111-1113]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from emodistill.training.benchmark import parse_seeds


def run_scores(run: Path) -> tuple[float, float, float]:
    """(val acc over folds, test acc, test macro-F1) of one run folder, in %."""
    res = json.loads((run / "results.json").read_text())
    val = []
    for fold, r in res["folds"].items():
        m = pd.read_csv(run / fold / "metrics.csv")
        val.append(float(m.loc[m["epoch"] == r["best_epoch"], "val/acc"].iloc[0]))
    return 100 * float(np.mean(val)), 100 * res["mean"]["acc"], 100 * res["mean"]["f1_macro"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", type=Path)
    ap.add_argument("--seeds", default="1111-1113")
    a = ap.parse_args()
    seeds = set(parse_seeds(a.seeds))
    rows = defaultdict(list)
    for run in sorted((a.bench / "runs").iterdir()):
        m = re.fullmatch(r"(.+)-seed(\d+)", run.name)
        if m and int(m.group(2)) in seeds and (run / "results.json").is_file():
            rows[m.group(1)].append(run_scores(run))
    print("| run label | seeds | val acc | test acc | test macro-F1 |")
    print("|---|---|---|---|---|")
    for label, v in sorted(rows.items(), key=lambda kv: -np.mean([r[0] for r in kv[1]])):
        val, acc, f1 = np.mean(v, axis=0)
        print(f"| {label} | {len(v)} | {val:.2f} | {acc:.2f} | {f1:.2f} |")


if __name__ == "__main__":
    main()
