"""One whole ``emodistill benchmark`` command, today's code against an earlier commit.

Issue 12 measured its starting point as a command a user runs (the DEAP LOSO benchmark of
the unimodal MLP, 32 folds x 5 seeds: about 15 minutes per target). This script runs that
command, end to end (process start, data loading, every fit, the tables), at a baseline
commit (checked out into a temporary ``git worktree``) and at the working tree, on the
same machine, interleaved, and prints wall and CPU time of each call (``getrusage`` of the
child processes), the ratios against the baseline measured in the same run, and every
seed's metrics side by side (``per_seed.csv``). Today's code runs twice, with
``--parallel auto`` (members in parallel) and ``--parallel off`` (one fit after another:
the fixed-cost cuts alone).

Without a baseline (``--order auto,off,...``) the ratios are against ``--parallel off``.

Example (from the repository root; the figures of ``benchmarks/end_to_end_speed.md``)::

    OMP_NUM_THREADS=1 python benchmarks/end_to_end_speed.py --baseline 6324688 \\
        --out benchmarks/end_to_end_speed.md -- -e deap_eeg -d deap_bandpower -m unimodal \\
        --seeds 1111-1115 dataset.root=../shared/data/eeg_bandpower/DEAP dataset.target=valence
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
CLI = "from emodistill.cli import main; raise SystemExit(main())"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(src: Path, args: list[str], out: Path, name: str) -> tuple[float, float, pd.DataFrame]:
    """Run ``emodistill benchmark`` from ``src``; return wall s, CPU s and ``per_seed.csv``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", CLI, "benchmark", *args, "--output", str(out), "--name", name]
    c, t = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t, _children_cpu() - c
    return wall, cpu, pd.read_csv(out / name / "per_seed.csv")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", default=None,
                   help="git commit of the baseline code (needed when --order names it)")
    p.add_argument("--order", default="auto,baseline,off,auto",
                   help="comma-separated runs: baseline, auto (--parallel auto), off")
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("bench", nargs=argparse.REMAINDER,
                   help="after --: the arguments of `emodistill benchmark`")
    a = p.parse_args(argv)
    bench = [x for x in a.bench if x != "--"]
    order = a.order.split(",")
    bad = [k for k in order if k not in ("baseline", "auto", "off")]
    if bad:
        p.error(f"--order: unknown {bad}; use baseline, auto, off")
    if "baseline" in order and not a.baseline:
        p.error("--order names baseline: give its commit with --baseline")
    rows, tables = [], {}
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="emodistill-e2e-") as tmp:
        base_src = Path(tmp) / "baseline"
        if a.baseline:
            subprocess.run(["git", "worktree", "add", "--detach", "-f", str(base_src),
                            a.baseline], cwd=ROOT, check=True, capture_output=True)
        try:
            for i, kind in enumerate(order):
                src = base_src / "src" if kind == "baseline" else ROOT / "src"
                args = bench if kind == "baseline" else [*bench, "--parallel", kind]
                wall, cpu, per_seed = _run(src, args, Path(tmp) / "runs", f"{i}-{kind}")
                loads.append(os.getloadavg())
                rows.append((i + 1, kind, wall, cpu, loads[-1][0]))
                tables.setdefault(kind, per_seed)
                print(f"{i + 1} {kind}: wall {wall:.1f} s, CPU {cpu:.1f} s, "
                      f"load {loads[-1][0]:.1f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_src)], cwd=ROOT,
                           check=False, capture_output=True)
    mean = {k: (sum(r[2] for r in rows if r[1] == k) / sum(r[1] == k for r in rows),
                sum(r[3] for r in rows if r[1] == k) / sum(r[1] == k for r in rows))
            for k in dict.fromkeys(order)}
    lines = [
        "# One whole `emodistill benchmark` command: today's code against an earlier commit",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, no GPU; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Command:",
        "",
        "```bash",
        "python benchmarks/end_to_end_speed.py " + " ".join(
            x for x in (argv if argv is not None else sys.argv[1:])),
        "```",
        "",
        (f"Baseline: commit `{a.baseline}`. " if a.baseline else "")
        + "Load average (1/5/15 min) before and after each "
        "call: " + ", ".join("/".join(f"{x:.1f}" for x in ld) for ld in loads) + ".",
        "",
        "| call | code | wall (s) | CPU (s) | load after |",
        "|---|---|---|---|---|",
        *(f"| {i} | {k} | {w:.1f} | {c:.1f} | {ld:.1f} |" for i, k, w, c, ld in rows),
        "",
    ]
    ref = "baseline" if "baseline" in mean else "off" if "off" in mean else order[0]
    bw, bc = mean[ref]
    lines += [f"| code | mean wall (s) | mean CPU (s) | {ref} / this, wall | {ref} / this, CPU |",
              "|---|---|---|---|---|",
              *(f"| {k} | {w:.1f} | {c:.1f} | {bw / w:.2f}x | {bc / c:.2f}x |"
                for k, (w, c) in mean.items())]
    metrics = [m for m in ("acc", "f1_macro", "f1_weighted", "mae", "corr")
               if all(m in t.columns for t in tables.values())]
    lines += ["", "Per method and seed (each seed's mean over its folds, first call of each code):",
              "", "| method | seed | " + " | ".join(f"{m} {k}" for m in metrics for k in tables)
              + " |", "|---|---|" + "---|" * (len(metrics) * len(tables))]
    by_seed = {k: t.set_index(["method", "seed"]) for k, t in tables.items()}
    first = next(iter(by_seed.values()))
    for method, seed in first.index:
        vals = [f"{by_seed[k].at[(method, seed), m]:.4f}" for m in metrics for k in by_seed]
        lines.append(f"| {method} | {seed} | " + " | ".join(vals) + " |")
    diffs = {k: max(float((t[m] - first[m]).abs().max()) for m in metrics)
             for k, t in by_seed.items()}
    lines += ["", "Largest per-seed difference to the first call's code, over the metrics: "
              + ", ".join(f"{k} {d:.2e}" for k, d in diffs.items()) + "."]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
