"""MKD feedback on the same batch vs on a held-out slice: validation and test per seed, paired.

For each named run (``label=<run folder prefix>``, the folder ``<prefix>-seed<N>`` per seed):

* **val acc / val macro-F1**: mean over folds of ``val/acc`` / ``val/f1_macro`` at the fold's
  selected epoch (``results.json`` → ``best_epoch``; the validation part only: the numbers a
  choice of default may use);
* **test acc / test macro-F1**: the run's fold mean (``results.json`` → ``mean``);
* for MKD runs, the feedback statistics of ``metrics.csv``: ``train/fb_divergence`` and
  ``train/fb_h`` in the first epoch and in the last epoch trained, mean over folds.

Then the paired difference ``B − A`` per seed for the pair ``--pair A B`` (mean ± sample std
over seeds, seeds where B is higher), on validation and on test.

Usage (from the repository root)::

    python benchmarks/eeg_mkd_feedback.py --seeds 1111-1115 --pair same heldout \\
        alone=<bench>/runs/unimodal_modality=frontal4 same=<bench>/runs/eeg_mkd_... \\
        heldout=<bench>/runs/eeg_mkd_...   # today: same=eeg_mkd_same_..., heldout=eeg_mkd_...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from emodistill.training.benchmark import parse_seeds

VAL = ("val/acc", "val/f1_macro")


def run_row(run: Path) -> dict[str, float]:
    """Validation / test metrics (in %) and feedback statistics of one run folder."""
    res = json.loads((run / "results.json").read_text())
    val = {k: [] for k in VAL}
    fb: dict[str, list[float]] = {}
    epochs = []
    for fold, r in res["folds"].items():
        m = pd.read_csv(run / fold / "metrics.csv")
        sel = m.loc[m["epoch"] == r["best_epoch"]]
        for k in VAL:
            val[k].append(float(sel[k].iloc[0]))
        epochs.append(int(m["epoch"].max()) + 1)
        for k in ("train/fb_divergence", "train/fb_h"):
            if k in m:
                s = m[k].dropna()
                if len(s):
                    fb.setdefault(f"{k}@first", []).append(float(s.iloc[0]))
                    fb.setdefault(f"{k}@last", []).append(float(s.iloc[-1]))
    row = {"val_acc": 100 * np.mean(val["val/acc"]),
           "val_f1_macro": 100 * np.mean(val["val/f1_macro"]),
           "test_acc": 100 * res["mean"]["acc"], "test_f1_macro": 100 * res["mean"]["f1_macro"],
           "epochs": float(np.mean(epochs))}
    row.update({k: float(np.mean(v)) for k, v in fb.items()})
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="label=<run folder without -seedN>")
    ap.add_argument("--seeds", default="1111-1115")
    ap.add_argument("--pair", nargs=2, metavar=("A", "B"), help="paired difference B − A")
    a = ap.parse_args()
    seeds = parse_seeds(a.seeds)
    rows = []
    for item in a.runs:
        label, _, prefix = item.partition("=")
        for s in seeds:
            run = Path(f"{prefix}-seed{s}")
            if (run / "results.json").is_file():
                rows.append({"label": label, "seed": s, **run_row(run)})
    df = pd.DataFrame(rows)
    cols = ["val_acc", "val_f1_macro", "test_acc", "test_f1_macro", "epochs"]
    fbc = [c for c in df.columns if c.startswith("train/fb_")]
    print("| run | seed | " + " | ".join(cols + fbc) + " |")
    print("|---|---|" + "---|" * len(cols + fbc))
    for _, r in df.iterrows():
        vals = [f"{r[c]:.2f}" for c in cols] + [f"{r[c]:.4f}" for c in fbc]
        print(f"| {r['label']} | {r['seed']} | " + " | ".join(vals) + " |")
    print()
    g = df.groupby("label", sort=False)
    print("| run | seeds | " + " | ".join(cols + fbc) + " |")
    print("|---|---|" + "---|" * len(cols + fbc))
    for label, d in g:
        vals = [f"{d[c].mean():.2f} ± {d[c].std(ddof=1):.2f}" for c in cols]
        vals += [f"{d[c].mean():.4f}" for c in fbc]
        print(f"| {label} | {len(d)} | " + " | ".join(vals) + " |")
    if a.pair:
        A, B = a.pair
        x = df[df.label == A].set_index("seed")
        y = df[df.label == B].set_index("seed")
        common = sorted(set(x.index) & set(y.index))
        print()
        print(f"| {B} − {A}, paired over {len(common)} seeds | mean ± std | seeds {B} higher |")
        print("|---|---|---|")
        for c in cols[:4]:
            d = (y.loc[common, c] - x.loc[common, c]).to_numpy()
            sd = d.std(ddof=1) if len(d) > 1 else float("nan")
            print(f"| {c} | {d.mean():+.2f} ± {sd:.2f} | {int((d > 0).sum())}/{len(d)} |")
        print("per seed (" + B + " − " + A + "): " + "; ".join(
            f"{s}: val {y.loc[s, 'val_acc'] - x.loc[s, 'val_acc']:+.2f}, test "
            f"{y.loc[s, 'test_acc'] - x.loc[s, 'test_acc']:+.2f}" for s in common))


if __name__ == "__main__":
    main()
