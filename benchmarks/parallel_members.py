"""Members in parallel vs one fit after another: wall time and per-member metrics, one run.

For each method, the same members (seeds x the first ``--folds`` folds) are trained
twice in this process, on data loaded once: sequentially (``fit_fold``, one Lightning
fit each, today's path) and in parallel (``emodistill.training.parallel.fit_members``,
one stacked model). The ratio of the two wall times and every member's test metrics side
by side are written to a Markdown file. ``--full-parallel`` additionally trains every
fold x seed on the parallel path only (its wall time and per-seed means).

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
import platform
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
        f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
        "shared with other jobs at the time (wall times are indicative, ratios are measured "
        "in the same run).",
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
            members = _members(a.dataset, a.experiment, entry, seeds, a.folds,
                               list(a.overrides), ds, root / "seq")
            t, c = time.perf_counter(), time.process_time()
            seq = [fit_fold(m.prep, m.fold, m.out) for m in members]
            t_seq, c_seq = time.perf_counter() - t, time.process_time() - c
            members_p = _members(a.dataset, a.experiment, entry, seeds, a.folds,
                                 list(a.overrides), ds, root / "par")
            t, c = time.perf_counter(), time.process_time()
            par = fit_members(members_p, max_chunk=a.max_chunk)
            t_par, c_par = time.perf_counter() - t, time.process_time() - c
            metric = next(iter(seq[0].test))
            keys = list(seq[0].test)
            diffs = {k: max(abs(s.test[k] - q.test[k]) for s, q in zip(seq, par, strict=True))
                     for k in keys}
            same_epoch = sum(s.best_epoch == q.best_epoch for s, q in zip(seq, par, strict=True))
            lines += [
                f"## {entry}: {len(members)} members ({len(seeds)} seed(s) x "
                f"{len(members) // len(seeds)} fold(s))",
                "",
                "| path | wall time (s) | CPU time (s) | CPU time per member (s) |",
                "|---|---|---|---|",
                f"| sequential (fit_fold, Lightning) | {t_seq:.1f} | {c_seq:.1f} | "
                f"{c_seq / len(members):.2f} |",
                f"| parallel (fit_members, stacked) | {t_par:.1f} | {c_par:.1f} | "
                f"{c_par / len(members):.3f} |",
                "",
                f"**Speed-up: {t_seq / t_par:.1f}x in wall time, {c_seq / c_par:.1f}x in CPU "
                "time** (this process's CPU seconds, which the other jobs on the shared machine "
                "do not inflate). Largest per-member test difference: "
                + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
                + f"; same selected epoch for {same_epoch}/{len(members)} members.",
                "",
                f"| seed | fold | best epoch seq / par | {metric} seq | {metric} par |"
                + "".join(f" {k} seq | {k} par |" for k in keys[1:]),
                "|---|---|---|---|---|" + "---|---|" * (len(keys) - 1),
            ]
            for m, s, q in zip(members, seq, par, strict=True):
                lines.append(
                    f"| {m.prep.cfg.seed} | {m.fold.name} | {s.best_epoch} / {q.best_epoch} | "
                    + " | ".join(f"{s.test[k]:.4f} | {q.test[k]:.4f}" for k in keys) + " |")
            lines.append("")
            if a.full_parallel:
                full_seeds = parse_seeds(a.full_seeds)
                allm = _members(a.dataset, a.experiment, entry, full_seeds, None,
                                list(a.overrides), ds, root / "full")
                t, c = time.perf_counter(), time.process_time()
                res = fit_members(allm, max_chunk=a.max_chunk)
                t_full, c_full = time.perf_counter() - t, time.process_time() - c
                lines += [
                    f"### {entry}, every fold x {len(full_seeds)} seeds on the parallel path: "
                    f"{len(allm)} members in {t_full:.1f} s wall, {c_full:.1f} s CPU "
                    f"({c_full / len(allm):.3f} CPU s each; the sequential path above took "
                    f"{c_seq / len(members):.2f} CPU s per member, i.e. "
                    f"~{c_seq / len(members) * len(allm) / 60:.1f} CPU min for these: "
                    f"{c_seq / len(members) * len(allm) / c_full:.1f}x)",
                    "",
                    "| seed | folds | " + " | ".join(keys) + " |",
                    "|---|---|" + "---|" * len(keys),
                ]
                per_seed = {}
                for m, r in zip(allm, res, strict=True):
                    per_seed.setdefault(int(m.prep.cfg.seed), []).append(r.test)
                for seed, tests in per_seed.items():
                    lines.append(f"| {seed} | {len(tests)} | " + " | ".join(
                        f"{100 * np.mean([t[k] for t in tests]):.2f}" for k in keys) + " |")
                means = [np.mean([t[k] for t in ts]) for ts in per_seed.values() for k in keys]
                arr = np.array(means).reshape(len(per_seed), len(keys)) * 100
                lines.append("| mean ± std | | " + " | ".join(
                    f"{arr[:, i].mean():.2f} ± {arr[:, i].std(ddof=1) if len(arr) > 1 else 0:.2f}"
                    for i in range(len(keys))) + " |")
                lines.append("")
            Path(a.out).write_text("\n".join(lines) + "\n")
            print("\n".join(lines), flush=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
