"""Members in parallel vs one fit after another: wall time and per-member metrics, one run.

For each method, members (seeds x the first ``--folds`` folds) are trained on data
loaded once, sequentially (``fit_fold``, one Lightning fit each, today's path) and in
parallel (``emodistill.training.parallel.fit_members``, one stacked model), interleaved
in this process (sequential block, parallel run, sequential block, ...; ``--repeats``
parallel runs) so that both see the same load on a shared machine. Wall time and CPU
time (``getrusage``: user + sys, children included) per member and their ratios, the
load average between the blocks, and every sequential member's test metrics beside the
parallel run's for the same seed and fold go to a Markdown file. ``--full-parallel``
makes the parallel side train every fold x ``--full-seeds`` (the sequential side stays
the subset, and its per-member rate is the baseline).

Examples (from the repository root)::

    # DEAP LOSO, unimodal MLP: sequential subset 8 folds x 2 seeds, parallel on all 32 x 5
    python benchmarks/parallel_members.py -e deap_eeg -d deap_bandpower -m unimodal \\
        --seeds 1111-1112 --folds 8 --full-seeds 1111-1115 --full-parallel \\
        --out benchmarks/parallel_deap_loso.md dataset.root=../shared/data/eeg_bandpower/DEAP
    # MOSI Poria fusion baselines, 5 seeds
    python benchmarks/parallel_members.py -e mosi_poria -d mosi_utterance \\
        -m unimodal:modality=text,early_fusion,feature_fusion,late_fusion --seeds 1111-1115 \\
        --out benchmarks/parallel_mosi_poria.md dataset.root=../shared/data/mosi_utterance
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.training.benchmark import parse_seeds
from emodistill.training.parallel import Member, fit_members
from emodistill.training.run import fit_fold, prepare


def _members(dataset: str, experiment: str | None, entry: str, seeds: list[int],
             folds: int | None, overrides: list[str], ds, root: Path) -> list[Member]:
    name, _, rest = entry.partition(":")
    ov = [f"method.{kv.strip()}" for kv in rest.split(",") if kv.strip()]
    out = []
    for seed in seeds:
        cfg = compose(dataset=dataset, method=name, experiment=experiment,
                      overrides=[*overrides, *ov, f"seed={seed}", "train.progress_bar=false"])
        prep = prepare(cfg, ds)
        for fold in prep.folds[:folds] if folds else prep.folds:
            out.append(Member(prep, fold, root / f"{name}-seed{seed}" / fold.name))
    return out


def _cpu() -> float:
    """CPU seconds (user + sys) of this process and its waited-for children."""
    a, b = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _compare(a: argparse.Namespace, entry: str, seeds: list[int], ds, root: Path) -> list[str]:
    """Sequential subset and parallel run(s) of one method, interleaved; Markdown lines.

    Order: sequential block 1, parallel run 1, sequential block 2, parallel run 2, ...
    (``--repeats`` parallel runs, the sequential members split into ``repeats + 1``
    blocks), so both paths see the same load on a shared machine.
    """
    seq_m = _members(a.dataset, a.experiment, entry, seeds, a.folds, list(a.overrides), ds,
                     root / "seq")
    par_seeds = parse_seeds(a.full_seeds) if a.full_parallel else seeds
    par_folds = None if a.full_parallel else a.folds
    blocks = np.array_split(np.arange(len(seq_m)), a.repeats + 1)
    seq: list = []
    t_seq = c_seq = 0.0
    par_runs: list[tuple[float, float]] = []
    par_res: list = []
    par_m: list[Member] = []
    loads = [_load()]
    for r, block in enumerate(blocks):
        t, c = time.perf_counter(), _cpu()
        seq += [fit_fold(seq_m[i].prep, seq_m[i].fold, seq_m[i].out) for i in block]
        t_seq, c_seq = t_seq + time.perf_counter() - t, c_seq + _cpu() - c
        loads.append(_load())
        if r == a.repeats:
            break
        pm = _members(a.dataset, a.experiment, entry, par_seeds, par_folds, list(a.overrides),
                      ds, root / f"par{r}")
        t, c = time.perf_counter(), _cpu()
        res = fit_members(pm, max_chunk=a.max_chunk, device=a.device)
        par_runs.append((time.perf_counter() - t, _cpu() - c))
        loads.append(_load())
        if r == 0:
            par_res, par_m = res, pm
    n_seq, n_par = len(seq_m), len(par_m)
    t_par = float(np.mean([w for w, _ in par_runs]))
    c_par = float(np.mean([c for _, c in par_runs]))
    by_key = {(int(m.prep.cfg.seed), m.fold.name): r for m, r in zip(par_m, par_res,
                                                                       strict=True)}
    par = [by_key[(int(m.prep.cfg.seed), m.fold.name)] for m in seq_m]
    keys = list(seq[0].test)
    diffs = {k: max(abs(s.test[k] - q.test[k]) for s, q in zip(seq, par, strict=True))
             for k in keys}
    same_epoch = sum(s.best_epoch == q.best_epoch for s, q in zip(seq, par, strict=True))
    ws, cs = t_seq / n_seq, c_seq / n_seq
    wp, cp = t_par / n_par, c_par / n_par
    # members stop early at different epochs: the rate per trained epoch is the fair unit
    e_seq, e_par = sum(r.epochs for r in seq), sum(r.epochs for r in par_res)
    cse, cpe = c_seq / e_seq, c_par / e_par
    wse, wpe = t_seq / e_seq, t_par / e_par
    lines = [
        f"## {entry}: sequential {n_seq} members ({len(seeds)} seed(s) x "
        f"{n_seq // len(seeds)} fold(s)), parallel {n_par} members "
        f"({len(par_seeds)} seed(s) x {n_par // len(par_seeds)} fold(s)), "
        f"{len(par_runs)} parallel run(s) interleaved with {len(blocks)} sequential blocks",
        "",
        f"Load average (1/5/15 min) before, between and after the blocks: {', '.join(loads)}.",
        "",
        "| path | members | epochs trained | wall time (s) | CPU time (s) | wall per member (s) | "
        "CPU per member (s) | CPU ms per member-epoch |",
        "|---|---|---|---|---|---|---|---|",
        f"| sequential (fit_fold, Lightning) | {n_seq} | {e_seq} | {t_seq:.1f} | {c_seq:.1f} | "
        f"{ws:.3f} | {cs:.3f} | {1000 * cse:.1f} |",
        f"| parallel (fit_members, stacked; mean of {len(par_runs)}) | {n_par} | {e_par} | "
        f"{t_par:.1f} | {c_par:.1f} | {wp:.3f} | {cp:.3f} | {1000 * cpe:.1f} |",
        "",
        f"**Speed-up per member-epoch: {wse / wpe:.1f}x in wall time, {cse / cpe:.1f}x in CPU "
        f"time; per member: {ws / wp:.1f}x wall, {cs / cp:.1f}x CPU** (members stop early at "
        "different epochs, so the rate per trained epoch is the like-for-like figure when the "
        "two sides train different member sets) "
        f"(CPU time: user + sys of this process, `getrusage`; parallel runs: "
        + ", ".join(f"{w:.1f} s wall / {c:.1f} s CPU" for w, c in par_runs)
        + f"). For all {n_par} members the sequential path would take ~{cs * n_par:.0f} CPU s"
        f" (~{ws * n_par:.0f} s wall) at its measured rate. Largest per-member test "
        "difference (the sequential members against the same seed and fold of the first "
        "parallel run): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        + f"; same selected epoch for {same_epoch}/{n_seq} members.",
        "",
        f"| seed | fold | best epoch seq / par | {keys[0]} seq | {keys[0]} par |"
        + "".join(f" {k} seq | {k} par |" for k in keys[1:]),
        "|---|---|---|---|---|" + "---|---|" * (len(keys) - 1),
    ]
    for m, s, q in zip(seq_m, seq, par, strict=True):
        lines.append(f"| {m.prep.cfg.seed} | {m.fold.name} | {s.best_epoch} / {q.best_epoch} | "
                     + " | ".join(f"{s.test[k]:.4f} | {q.test[k]:.4f}" for k in keys) + " |")
    lines.append("")
    if a.full_parallel:
        lines += [f"### {entry}: every fold x {len(par_seeds)} seeds on the parallel path "
                  "(first run), per-seed means over folds", "",
                  "| seed | folds | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        per_seed: dict[int, list] = {}
        for m, r in zip(par_m, par_res, strict=True):
            per_seed.setdefault(int(m.prep.cfg.seed), []).append(r.test)
        for seed, tests in per_seed.items():
            lines.append(f"| {seed} | {len(tests)} | " + " | ".join(
                f"{100 * np.mean([t[k] for t in tests]):.2f}" for k in keys) + " |")
        arr = np.array([[np.mean([t[k] for t in ts]) for k in keys]
                        for ts in per_seed.values()]) * 100
        lines.append("| mean ± std | | " + " | ".join(
            f"{arr[:, i].mean():.2f} ± {arr[:, i].std(ddof=1) if len(arr) > 1 else 0:.2f}"
            for i in range(len(keys))) + " |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-d", "--dataset", required=True)
    p.add_argument("-e", "--experiment", default=None)
    p.add_argument("-m", "--methods", required=True, help="comma-separated entries")
    p.add_argument("--seeds", default="1111-1112", help="seeds of the side-by-side comparison")
    p.add_argument("--folds", type=int, default=None, help="first N folds only (default all)")
    p.add_argument("--full-parallel", action="store_true",
                   help="also train every fold x --full-seeds on the parallel path alone")
    p.add_argument("--full-seeds", default="1111-1115")
    p.add_argument("--max-chunk", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2,
                   help="parallel runs, interleaved with repeats + 1 sequential blocks")
    p.add_argument("--device", default=None, help="parallel path device (default: cuda if "
                   "available, else cpu); the sequential path uses train.accelerator")
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    seeds = parse_seeds(a.seeds)
    base = compose(dataset=a.dataset, method=a.methods.split(",")[0].partition(":")[0],
                   experiment=a.experiment, overrides=list(a.overrides))
    t0 = time.perf_counter()
    ds = build_dataset(to_container(base.dataset))
    t_data = time.perf_counter() - t0
    lines = [
        f"# Members in parallel vs sequential: {a.dataset} / {base.dataset.target} / "
        f"protocol {base.protocol.name}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
        f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
        f"{os.cpu_count()} CPU cores; 1-min load average at the start {os.getloadavg()[0]:.1f} "
        "(other jobs on the machine show there and in the load line below; ratios are "
        "measured in the same run).",
        "",
        "Command:",
        "",
        "```bash",
        "python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]),
        "```",
        "",
        f"Data loaded once ({len(ds)} rows) in {t_data:.1f} s and shared by every member.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="emodistill-parbench-") as tmp:
        root = Path(tmp)
        for entry in a.methods.split(","):
            lines += _compare(a, entry, seeds, ds, root / entry.replace(":", "_"))
            Path(a.out).write_text("\n".join(lines) + "\n")
            print("\n".join(lines), flush=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
