"""Several benchmark folders side by side: accuracy, macro-F1 and the paired difference to a row.

Reads each folder's ``per_seed.csv`` (written by ``emodistill benchmark``) and prints one
markdown table: per method and folder, mean ± sample std over seeds of accuracy and macro-F1
(in %), and the per-seed difference to the reference method of the same folder (mean ± std,
seeds where the method is better). Usage (from the repository root)::

    python benchmarks/eeg_compact.py --reference "logistic(modality=eeg)" \
        none=runs/benchmarks/<bench A> train=runs/benchmarks/<bench B> ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def _ms(v: pd.Series) -> str:
    sd = f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""
    return f"{v.mean():.2f}{sd}"


def _diff(v: pd.Series) -> str:
    sd = f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""
    return f"{v.mean():+.2f}{sd} ({int((v > 0).sum())}/{len(v)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("benches", nargs="+", help="NAME=BENCH_FOLDER")
    ap.add_argument("--reference", default="logistic(modality=eeg)")
    a = ap.parse_args()
    print("| method | folder | seeds | acc | macro-F1 | acc − ref (seeds above) | "
          "macro-F1 − ref (seeds above) |")
    print("|---|---|---|---|---|---|---|")
    for item in a.benches:
        name, folder = item.split("=", 1)
        df = pd.read_csv(Path(folder) / "per_seed.csv")
        ref = df[df["method"] == a.reference].set_index("seed")
        for method, g in df.groupby("method", sort=False):
            g = g.set_index("seed")
            acc, f1 = 100 * g["acc"], 100 * g["f1_macro"]
            if method == a.reference or ref.empty:
                d_acc = d_f1 = "–"
            else:
                d_acc = _diff(acc - 100 * ref["acc"].reindex(g.index))
                d_f1 = _diff(f1 - 100 * ref["f1_macro"].reindex(g.index))
            print(f"| {method} | {name} | {len(g)} | {_ms(acc)} | {_ms(f1)} | {d_acc} | {d_f1} |")


if __name__ == "__main__":
    main()
