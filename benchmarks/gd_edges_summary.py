"""Learned GD-Unit edge weights of DMD/DHMD runs, mean ± std over seeds.

Reads the run folders of an ``emodistill benchmark`` output (``<bench>/runs/*``), takes
from each fold's ``metrics.csv`` the per-epoch mean learned edge weights
(``model/gd_<unit>/<teacher>-><student>``) at the epoch selected on validation
(``results.json`` ``best_epoch``), averages folds per seed, and prints one Markdown
table per GD unit: method × edge, mean ± sample std over seeds. With ``--plots DIR`` it
also draws the heatmaps of the first seed of every method.

Usage (from the repository root)::

    python benchmarks/gd_edges_summary.py runs/benchmarks/decoupled_mosi-1 [--plots DIR]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from emodistill.report.edges import edge_history, plot_gd_edges


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", help="benchmark output folder (holds runs/)")
    p.add_argument("--plots", default=None, help="folder for heatmaps of the first seed")
    a = p.parse_args(argv)
    # unit -> method -> edge -> [per-seed values]
    table: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    plotted = set()
    for run in sorted(Path(a.bench, "runs").iterdir()):
        res = run / "results.json"
        if not res.is_file():
            continue
        method = re.sub(r"-seed\d+(-\d+)?$", "", run.name)
        folds = json.loads(res.read_text())["folds"]
        per_fold: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for fold, info in folds.items():
            hist = edge_history(run / fold / "metrics.csv")
            for unit, frame in hist.items():
                ep = info["best_epoch"] if info["best_epoch"] in frame.index else frame.index[-1]
                for edge, v in frame.loc[ep].items():
                    per_fold[unit][edge].append(float(v))
            if hist and a.plots and method not in plotted:
                plotted.add(method)
                plot_gd_edges(run / fold / "metrics.csv", Path(a.plots) / f"{method}.png",
                              epoch=info["best_epoch"], title=f"{run.name} / {fold}")
        for unit, edges in per_fold.items():
            for edge, vals in edges.items():
                table[unit][method][edge].append(float(np.mean(vals)))
    for unit, methods in table.items():
        edges = list(next(iter(methods.values())))
        print(f"\n{unit} GD: mean learned edge weight at the selected epoch (mean ± std over "
              "seeds; uniform = 1/6 for 3 modalities)\n")
        print("| method | " + " | ".join(edges) + " |")
        print("|---|" + "---|" * len(edges))
        for method, vals in methods.items():
            cells = []
            for e in edges:
                v = np.array(vals[e])
                sd = v.std(ddof=1) if len(v) > 1 else 0.0
                cells.append(f"{v.mean():.4f} ± {sd:.4f}")
            print(f"| {method} (n={len(vals[edges[0]])}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
