"""When does KD help a headset student? KD gain against the teacher's margin, per (seed, fold).

For every (seed, fold) of the given runs: the teacher's margin over the student alone
(teacher − alone) and the KD student's gain (KD − alone), on one test metric. Prints the
Pearson/Spearman correlation of the two and the mean gain in bins of the margin (terciles).
Runs are matched by seed and fold name (the same folds and data, see eeg_paired.py).

Usage (from the repository root)::

    python benchmarks/eeg_kd_when.py --seeds 1111-1115 --metric acc \
        alone=runs/benchmarks/<bench>/runs/<student alone label> \
        teacher=runs/benchmarks/<bench>/runs/<full-cap teacher label> \
        KD1=runs/benchmarks/<bench>/runs/<kd label> [KD2=...]

``<label>`` is the run folder name without ``-seed<N>``.

Caveat built in: margin (teacher − alone) and gain (KD − alone) share the student-alone
score, so its noise alone makes them correlate (a low "alone" on a fold raises both). The
``placebo`` row measures that artifact: the "KD" run replaced by the student alone of the
next seed (cyclic), a run that learned nothing from any teacher. Only a KD row above its
placebo row says more than the shared noise.
"""

from __future__ import annotations

import argparse

import numpy as np
from eeg_paired import fold_scores
from scipy.stats import spearmanr

from emodistill.training.benchmark import parse_seeds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="alone=PREFIX teacher=PREFIX NAME=PREFIX ...")
    ap.add_argument("--metric", default="acc")
    ap.add_argument("--seeds", default="1111-1115")
    a = ap.parse_args()
    seeds = parse_seeds(a.seeds)
    named = dict(p.split("=", 1) for p in a.runs)
    alone, teacher = named.pop("alone"), named.pop("teacher")
    print(f"| {a.metric}: KD − alone | corr(margin, gain) Pearson / Spearman | "
          "mean gain when teacher margin is low / mid / high (terciles) | margin terciles |")
    print("|---|---|---|---|")
    rows = [(name, prefix, False) for name, prefix in named.items()] + [("placebo", alone, True)]
    for name, prefix, placebo in rows:
        margin, gain = [], []
        for i, s in enumerate(seeds):
            other = seeds[(i + 1) % len(seeds)] if placebo else s
            al, te = (fold_scores(p, s, a.metric) for p in (alone, teacher))
            kd = fold_scores(prefix, other, a.metric)
            if not set(al) == set(te) == set(kd):
                raise SystemExit(f"{name}: runs have different folds for seed {s}")
            for f in sorted(al):
                margin.append(100 * (te[f] - al[f]))
                gain.append(100 * (kd[f] - al[f]))
        m, g = np.array(margin), np.array(gain)
        cuts = np.quantile(m, [1 / 3, 2 / 3])
        bins = np.digitize(m, cuts)
        means = " / ".join(f"{g[bins == b].mean():+.2f} (n={int((bins == b).sum())})"
                           for b in range(3))
        edges = f"≤ {cuts[0]:+.1f} / ≤ {cuts[1]:+.1f} / > {cuts[1]:+.1f}"
        print(f"| {name} | {np.corrcoef(m, g)[0, 1]:+.2f} / {spearmanr(m, g)[0]:+.2f} | "
              f"{means} | {edges} |")


if __name__ == "__main__":
    main()
