"""Combine the per-seed rows of several benchmark folders into one table + paired differences.

The frozen and fine-tuned runs of ``benchmarks/mosi_text_finetune.md`` were run as
separate benchmark folders (one process per method and seed, to run in parallel on a
shared machine). This reads their ``per_seed.csv``, writes the mean ± std table over
seeds and, for each method, the per-seed difference fine-tuned − frozen (same seed) with
the count of seeds where fine-tuning is better.

    python benchmarks/mosi_text_finetune_table.py runs/benchmarks/mosi_text_*
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from emodistill.report.tables import PERCENT_METRICS, aggregate, to_markdown

METRICS = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3", "acc5", "acc7", "mae", "corr"]
LOWER_IS_BETTER = {"mae"}


def main(folders: list[str]) -> None:
    parts = []
    for f in folders:
        if (Path(f) / "per_seed.csv").is_file():
            df = pd.read_csv(Path(f) / "per_seed.csv")
            # fine-tuned runs: "finetune" in the method label or in the folder name
            df["finetuned"] = df["method"].str.contains("finetune") | ("finetune" in Path(f).name)
            parts.append(df)
    rows = pd.concat(parts, ignore_index=True)
    rows["base"] = rows["method"].str.replace("(text_encoder.mode=finetune)", "", regex=False)
    rows["text"] = rows["finetuned"].map({True: "fine-tuned", False: "frozen"})
    rows["label"] = rows["base"] + " / " + rows["text"]
    # reference rows without a text encoder to fine-tune (majority, logistic): their own name
    tuned = set(rows.loc[rows["finetuned"], "base"])
    rows.loc[~rows["base"].isin(tuned), "label"] = rows["base"]
    rows = rows.sort_values(["base", "text", "seed"])
    print(to_markdown(aggregate(rows, METRICS, by="label"), METRICS))
    print("Paired difference fine-tuned − frozen, same seed (mean ± std over seeds; "
          "seeds where fine-tuning is better):\n")
    print("| method | seeds | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for base, g in rows.groupby("base"):
        ft = g[g.text == "fine-tuned"].set_index("seed")
        fr = g[g.text == "frozen"].set_index("seed")
        seeds = sorted(set(ft.index) & set(fr.index))
        if not seeds:
            continue
        cells = []
        for m in METRICS:
            d = ft.loc[seeds, m] - fr.loc[seeds, m]
            scale = 100.0 if m in PERCENT_METRICS else 1.0
            better = int(((d < 0) if m in LOWER_IS_BETTER else (d > 0)).sum())
            fmt = ".2f" if scale == 100.0 else ".4f"
            sd = f" ± {d.std(ddof=1) * scale:{fmt}}" if len(d) > 1 else ""
            cells.append(f"{d.mean() * scale:+{fmt}}{sd} ({better}/{len(d)})")
        print(f"| {base} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
