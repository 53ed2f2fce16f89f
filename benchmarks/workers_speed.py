"""Fits in Ray workers (``benchmark --workers N``) against one after another, one run.

For methods without a parallel path (DMD, MKD, cross-fitted teachers, ...) the benchmark
can run its fits N at a time as Ray tasks (``emodistill.training.workers``). This script
runs the same benchmark (``--parallel off``) with ``--workers 1`` (in this process, one fit
after another) and ``--workers N``, interleaved ``--rounds`` times (1, N, N, 1, ...), and
writes the wall time of each, the ratio of their medians, the load average around each
run, and the largest per-seed metric difference between the two (the same fits: equal at
equal thread counts).

On a CPU, each worker gets one core (``OMP_NUM_THREADS=1`` in this process makes the
in-process side one thread too). On a GPU (``train.accelerator=gpu``), each worker gets a
1/N share of it, so N seeds of a launch-bound model such as DMD train at once on one GPU.

Examples (from the repository root)::

    # CPU: two DMD seeds on the Poria split, one per core
    OMP_NUM_THREADS=1 python benchmarks/workers_speed.py -e mosi_poria -d mosi_utterance \\
        -m dmd --seeds 1111-1112 --workers 2 --out benchmarks/workers_speed.md \\
        dataset.root=../shared/data/mosi_utterance train.save_checkpoint=false
    # GPU: 5 DMD seeds on MOSI-shaped synthetic data, 5 at once on one GPU vs one by one
    python benchmarks/workers_speed.py -d synthetic -m dmd --seeds 1-5 --workers 5 \\
        --out benchmarks/workers_speed_gpu.md dataset.target=sentiment \\
        train.accelerator=gpu train.save_checkpoint=false
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from emodistill.config import split_method_entries
from emodistill.training.benchmark import parse_seeds, run_benchmark


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-d", "--dataset", required=True)
    p.add_argument("-e", "--experiment", default=None)
    p.add_argument("-m", "--methods", required=True)
    p.add_argument("--seeds", default="1111-1112")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (1, N, N, 1, ...)")
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    if a.workers < 2:
        p.error("--workers: give 2 or more (1 is the baseline this script measures against)")
    order = []
    for r in range(a.rounds):
        order += [1, a.workers] if r % 2 == 0 else [a.workers, 1]
    walls: dict[int, list[float]] = {1: [], a.workers: []}
    tables = {}
    lines = []
    with tempfile.TemporaryDirectory(prefix="emodistill-workers-") as tmp:
        for i, w in enumerate(order):
            before = os.getloadavg()
            t = time.perf_counter()
            res = run_benchmark(dataset=a.dataset, methods=split_method_entries(a.methods),
                                seeds=parse_seeds(a.seeds), experiment=a.experiment,
                                overrides=a.overrides, output_dir=tmp, name=f"r{i}-w{w}",
                                parallel="off", workers=w)
            wall = time.perf_counter() - t
            walls[w].append(wall)
            tables.setdefault(w, res.per_seed)
            lines.append(f"| {i + 1} | {w} | {wall:.1f} | {before[0]:.1f} / "
                         f"{os.getloadavg()[0]:.1f} |")
            print(lines[-1], flush=True)
    one, many = statistics.median(walls[1]), statistics.median(walls[a.workers])
    metrics = [c for c in tables[1].columns if c not in ("method", "seed", "n_folds")
               and tables[1][c].dtype.kind == "f"]
    diff = (tables[1][metrics] - tables[a.workers][metrics]).abs().max().max()
    threads = torch.get_num_threads()
    text = "\n".join([
        f"# Fits in Ray workers vs one after another: {a.dataset} / {a.methods}",
        "",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} thread(s) in this process, "
        f"{'GPU: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}.",
        "",
        "Command: `python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]) + "`",
        "",
        "| run | workers | wall (s) | load average (1 min) before / after |",
        "|---|---|---|---|",
        *lines,
        "",
        f"**Median wall: {one:.1f} s one after another, {many:.1f} s with {a.workers} workers: "
        f"{one / many:.2f}x.** Largest per-seed metric difference between the two: "
        f"{diff:.2e} ({', '.join(metrics)}).",
        "",
    ])
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
