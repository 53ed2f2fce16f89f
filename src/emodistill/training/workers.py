"""Whole fits side by side in Ray workers: the benchmark's fits that cannot be stacked.

:func:`fit_in_workers` trains each ``(key, config)`` as one ``run_experiment`` (the same
fit as in this process: it writes the same run folder and, at the same thread count, the
same numbers) in a Ray task, ``workers`` at a time, on this machine (or a running Ray
cluster, ``address``). It is how a method without a parallel path (DMD, MKD, cross-fitted
teachers, function matching, ...) uses both cores of a small machine, or shares one GPU
between several seeds (``gpus_per_fit`` of a GPU each; a launch-bound model like DMD leaves
most of a large GPU idle). Ray is an optional dependency (extra ``ray``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emodistill.errors import ConfigError

__all__ = ["WorkerFit", "fit_in_workers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerFit:
    """One fit for a worker: ``run_experiment(cfg, output_dir=...)`` or ``resume=...``."""

    key: Hashable
    cfg: DictConfig
    output_dir: Path | None = None
    resume: Path | None = None

    def run(self, dataset: Any = None) -> Any:
        """Train it here (``dataset``: the built data, or None to build it from the config)."""
        from emodistill.training.run import run_experiment

        if self.resume is not None:
            return run_experiment(self.cfg, dataset=dataset, resume=self.resume)
        return run_experiment(self.cfg, dataset=dataset, output_dir=self.output_dir)


def _fit(fit: WorkerFit, cwd: str, threads: int) -> tuple[int, dict[str, float]]:
    """Run ``fit`` where the caller stands (the body of one Ray task)."""
    import torch

    os.chdir(cwd)  # relative paths in the config (dataset.root, ...) mean the caller's
    torch.set_num_threads(threads)
    res = fit.run()
    return len(res.folds), dict(res.mean)


def fit_in_workers(fits: Sequence[WorkerFit], *, workers: int, cpus_per_fit: int = 1,
                   gpus_per_fit: float | None = None,
                   address: str | None = None) -> dict[Hashable, tuple[int, dict[str, float]]]:
    """Train ``fits`` in Ray tasks, ``workers`` at once; return ``key -> (folds, mean)``.

    Parameters
    ----------
    fits : sequence of WorkerFit
        The fits, each a finished config (seed included) and where its run folder goes.
    workers : int
        Fits at once (at least 1). A local Ray instance started here gets
        ``workers * cpus_per_fit`` CPUs.
    cpus_per_fit : int
        CPUs (torch threads) per fit.
    gpus_per_fit : float, optional
        Share of a GPU per fit; default ``1 / workers`` where CUDA is available, else 0.
    address : str, optional
        A running Ray cluster (``"auto"``); ``None`` starts a local instance for the call.

    Raises
    ------
    ConfigError
        For ``workers`` or ``cpus_per_fit`` below 1.
    ImportError
        Without Ray (``pip install 'emodistill[ray]'``).
    """
    if int(workers) < 1 or int(cpus_per_fit) < 1:
        raise ConfigError(f"workers={workers}, cpus_per_fit={cpus_per_fit}: each must be a "
                          "positive whole number (--workers 1 trains one fit after another "
                          "in this process)")
    try:
        import ray
    except ImportError:
        raise ImportError("--workers needs Ray: pip install 'emodistill[ray]' (or use "
                          "--workers 1)") from None
    import torch

    if gpus_per_fit is None:
        gpus_per_fit = 1.0 / workers if torch.cuda.is_available() else 0.0
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers * cpus_per_fit,
                 include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(_fit).options(num_cpus=cpus_per_fit, num_gpus=gpus_per_fit)
        cwd = str(Path.cwd())
        refs = {}
        for f in fits:
            log.info("workers: %s%s", f.key, " (continued)" if f.resume else "")
            cfg = OmegaConf.create(OmegaConf.to_yaml(f.cfg, resolve=True))  # plain, resolved
            refs[f.key] = task.remote(WorkerFit(f.key, cfg, f.output_dir, f.resume), cwd,
                                      int(cpus_per_fit))
        out: dict[Hashable, Any] = {}
        for key, ref in refs.items():
            out[key] = ray.get(ref)
        return out
    finally:
        if started:
            ray.shutdown()
