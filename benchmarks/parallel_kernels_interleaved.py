"""The parallel path's kernels interleaved in one process: member loop, exact, batched.

Trains the same members with ``fit_members`` once per entry of ``--order`` (``loop``: the
exact path with the checked batched formulations switched off, i.e. the plain member loop;
``exact``: the exact path as it runs by default on CPU; ``batched``: vmap's batched rules;
``exact_gelu_loop``: the exact path with the default erf-GELU run once per member, as it was
before 2026-12-03),
in that order, and prints CPU ms per member-epoch, the number of check verdicts and the CPU
time the checks took, and whether every run's per-member results (selected epoch, test
metrics) equal the first run's.

Example (from the repository root; the figures of ``benchmarks/parallel.md``, section
"Exact kernels batched where checked equal")::

    OMP_NUM_THREADS=1 python benchmarks/parallel_kernels_interleaved.py -e deap_eeg \\
        -d deap_bandpower -m unimodal --seeds 1111-1115 \\
        --order exact,batched,loop,loop,batched,exact dataset.root=../shared/data/eeg_bandpower/DEAP
    # section "Cuts of 2026-12-03": erf-GELU batched (exact) against per member
    OMP_NUM_THREADS=1 python benchmarks/parallel_kernels_interleaved.py -e deap_eeg \\
        -d deap_bandpower -m unimodal --seeds 1111-1115 \\
        --order exact_gelu_loop,exact,exact,exact_gelu_loop \\
        dataset.root=../shared/data/eeg_bandpower/DEAP
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from torch.nn import functional as F

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.training import parallel_kernels as K
from emodistill.training import parallel_pointwise as PW
from emodistill.training.benchmark import parse_seeds
from emodistill.training.parallel import Member, fit_members
from emodistill.training.run import prepare

KINDS = ("loop", "exact", "batched", "exact_gelu_loop")


class _GeluPerMember:
    """Within: erf-GELU is routed once per member too (the exact path before 2026-12-03)."""

    def __enter__(self) -> None:
        self.old = PW.SENSITIVE
        PW.SENSITIVE = self.old | {F.gelu}

    def __exit__(self, *exc: object) -> None:
        PW.SENSITIVE = self.old


def _cpu() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    return a.ru_utime + a.ru_stime


def _timed(f: Callable[..., bool], acc: list[float]) -> Callable[..., bool]:
    """``f``, adding the CPU time of each call to ``acc[0]``."""

    def g(*args: Any) -> bool:
        t = time.process_time()
        try:
            return f(*args)
        finally:
            acc[0] += time.process_time() - t

    return g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-d", "--dataset", required=True)
    p.add_argument("-e", "--experiment", default=None)
    p.add_argument("-m", "--method", required=True)
    p.add_argument("--seeds", default="1111-1115")
    p.add_argument("--folds", type=int, default=None, help="first N folds only (default all)")
    p.add_argument("--order", default="exact,batched,loop,loop,batched,exact")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    order = a.order.split(",")
    bad = [k for k in order if k not in KINDS]
    if bad:
        p.error(f"--order: unknown {bad}; use {', '.join(KINDS)}")
    warnings.filterwarnings("ignore")
    base = compose(dataset=a.dataset, method=a.method, experiment=a.experiment,
                   overrides=list(a.overrides))
    ds = build_dataset(to_container(base.dataset))
    first = None
    with tempfile.TemporaryDirectory(prefix="emodistill-kernels-") as tmp:
        for r, kind in enumerate(order):
            members = []
            for seed in parse_seeds(a.seeds):
                cfg = compose(dataset=a.dataset, method=a.method, experiment=a.experiment,
                              overrides=[*a.overrides, f"seed={seed}",
                                         "train.progress_bar=false"])
                prep = prepare(cfg, ds)
                members += [Member(prep, f, Path(tmp) / f"{r}-{kind}" / f"s{seed}" / f.name)
                            for f in (prep.folds[:a.folds] if a.folds else prep.folds)]
            K.batched_verdicts().clear()
            checks = [0.0]
            fwd, bwd = K._forward_equal, K._backward_equal
            K._forward_equal = _timed(fwd, checks)
            K._backward_equal = _timed(bwd, checks)
            load = os.getloadavg()[0]
            c, t = _cpu(), time.perf_counter()
            try:
                gelu = _GeluPerMember() if kind == "exact_gelu_loop" else nullcontext()
                with K.checked_batching(kind != "loop"), gelu:
                    res = fit_members(members, exact=kind != "batched")
            finally:
                K._forward_equal, K._backward_equal = fwd, bwd
            c, t = _cpu() - c, time.perf_counter() - t
            epochs = sum(x.epochs for x in res)
            out = [(x.best_epoch, x.test) for x in res]
            first = out if first is None else first
            print(f"{kind}: {len(members)} members, {epochs} member-epochs, CPU {c:.1f} s, "
                  f"wall {t:.1f} s, {1000 * c / epochs:.1f} CPU ms per member-epoch; "
                  f"{len(K.batched_verdicts())} checks ({sum(K.batched_verdicts().values())} "
                  f"equal) taking {checks[0]:.2f} CPU s; load {load:.1f}; results equal to the "
                  f"first run: {out == first}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
