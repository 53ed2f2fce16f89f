"""Validation scores, paired validation differences and cross-fitted teachers' held-out scores.

``emodistill benchmark`` tabulates test metrics. On a leak-free dataset a default may only
change where it helps on *validation*; this script reads each run's ``results.json`` of a
benchmark folder and prints, per method, the selected validation score (``best_val``, the
monitored metric) and, with ``--reference``, the per-seed paired difference to the reference
method on validation and on one test metric, with the count of seeds where the method is
better. For runs with a cross-fitted teacher it also prints the teacher's pooled held-out
score (``results.json`` → ``teacher.heldout``) and, for a teacher trained on the whole
training part, its test score (``<fold>/teacher/test_metrics.json``) beside the student's.

Usage (from the repository root)::

    python benchmarks/leakfree_summary.py runs/benchmarks/kd_leakfree_hkd \
        --reference hkd_mer --metric acc2_non0
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import yaml

from emodistill.metrics import HIGHER_IS_BETTER


def _rows(folder: Path) -> list[dict]:
    rows = []
    for res in sorted((folder / "runs").glob("*/results.json")):
        run = res.parent
        m = re.match(r"(.+)-seed(\d+)(?:-\d+)?$", run.name)
        if not m:
            continue
        r = json.loads(res.read_text())
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        held = (r.get("teacher") or {}).get("heldout") or {}
        t_test = [json.loads(t.read_text()) for t in run.glob("*/teacher/test_metrics.json")]
        rows.append({"label": m.group(1), "seed": int(m.group(2)),
                     "best_val": float(np.mean([f["best_val"] for f in r["folds"].values()])),
                     "test": r["mean"], "mode": cfg["train"]["mode"],
                     "monitor": cfg["train"]["monitor"],
                     "teacher_heldout": ({k: float(np.mean([h[k] for h in held.values()]))
                                          for k in next(iter(held.values()))} if held else None),
                     "teacher_test": ({k: float(np.mean([t[k] for t in t_test])) for k in t_test[0]}
                                      if t_test else None)})
    return rows


def _ms(v: list[float], scale: float = 1.0) -> str:
    a = np.asarray(v, float) * scale
    return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}" if len(a) > 1 else f"{a.mean():.4f}"


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--reference", default=None, help="run label (folder name without -seedN)")
    ap.add_argument("--metric", default="acc2_non0", help="test metric for the paired column")
    a = ap.parse_args()
    rows = _rows(a.folder)
    if not rows:
        raise SystemExit(f"no runs with results.json under {a.folder}/runs")
    labels = sorted({r["label"] for r in rows})
    mon, mode = rows[0]["monitor"], rows[0]["mode"]
    print(f"### validation ({mon}, {'lower' if mode == 'min' else 'higher'} is better) and "
          f"test {a.metric}\n")
    print(f"| method | valid {mon} | test {a.metric} | teacher held-out {a.metric} "
          f"(cross-fitted: its held-out training groups) | teacher test {a.metric} | seeds |")
    print("|---|---|---|---|---|---|")
    for lab in labels:
        rs = [r for r in rows if r["label"] == lab]
        th = [r["teacher_heldout"][a.metric] for r in rs
              if r["teacher_heldout"] and a.metric in r["teacher_heldout"]]
        tt = [r["teacher_test"][a.metric] for r in rs
              if r["teacher_test"] and a.metric in r["teacher_test"]]
        print(f"| {lab} | {_ms([r['best_val'] for r in rs])} | "
              f"{_ms([r['test'][a.metric] for r in rs])} | {_ms(th) if th else '-'} | "
              f"{_ms(tt) if tt else '-'} | {len(rs)} |")
    if not a.reference:
        return
    ref = {r["seed"]: r for r in rows if r["label"] == a.reference}
    if not ref:
        raise SystemExit(f"--reference {a.reference!r}: no such label; labels: {labels}")
    sign = -1.0 if mode == "min" else 1.0
    print(f"\n### paired to {a.reference} (same seed): method − reference\n")
    print(f"| method | Δ valid {mon} | valid better in | Δ test {a.metric} | test better in |")
    print("|---|---|---|---|---|")
    for lab in labels:
        if lab == a.reference:
            continue
        pairs = [(r, ref[r["seed"]]) for r in rows if r["label"] == lab and r["seed"] in ref]
        if not pairs:
            continue
        dv = [x["best_val"] - y["best_val"] for x, y in pairs]
        dt = [x["test"][a.metric] - y["test"][a.metric] for x, y in pairs]
        tsign = 1.0 if HIGHER_IS_BETTER.get(a.metric, True) else -1.0
        print(f"| {lab} | {_ms(dv)} | {sum(sign * d > 0 for d in dv)}/{len(dv)} | "
              f"{_ms(dt)} | {sum(tsign * d > 0 for d in dt)}/{len(dt)} |")


if __name__ == "__main__":
    main()
