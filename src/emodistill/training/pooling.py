"""Per-subject models: pool their test predictions into the protocol's folds.

With ``protocol.per_subject=true`` (``subject_dependent`` only, see
:func:`emodistill.data.protocols.subject_dependent`) every fold ``fold<i>`` of the pooled
protocol becomes one fold ``fold<i>/<subject><s>`` per subject, each trained on that
subject's trials only. The engine fits them like any fold (sequentially or as members of
the parallel path) into ``<run>/fold<i>/<subject><s>/``; :func:`pool_folds` then joins the
test predictions of every subject's model of ``fold<i>`` and computes the metrics of
``fold<i>`` once over them, as the pooled model's metrics are computed over the same test
trials. The run's ``results.json`` lists the pooled folds under ``folds`` (so tables and
paired differences compare like with like) and every subject's model under ``members``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emodistill._fs import atomic_write
from emodistill.data.spec import TargetSpec
from emodistill.metrics.sets import stacked_metric_values

__all__ = ["pool_folds", "pooled_metrics"]


def pooled_metrics(target: TargetSpec, predictions: pd.DataFrame) -> dict[str, float]:
    """Compute the test metrics of ``predictions`` (rows of several models' ``predictions.csv``).

    Parameters
    ----------
    target : TargetSpec
        What was predicted (selects the metric set, as the engine does).
    predictions : pandas.DataFrame
        ``[M rows]`` with the ``target`` and ``prediction`` columns the engine writes
        (the predicted class index, or the predicted value for regression).

    Returns
    -------
    dict of str to float
        Metric name → value over all ``M`` rows, as one model's test metrics are computed.
    """
    if len(predictions) == 0:
        raise ValueError("pooled_metrics: no prediction rows to compute metrics on")
    regression = target.kind == "regression"
    dtype = torch.float32 if regression else torch.long
    pred = torch.tensor(predictions["prediction"].to_numpy(), dtype=dtype)[None]
    gold = torch.tensor(predictions["target"].to_numpy(), dtype=dtype)[None]
    return stacked_metric_values(target, pred, gold)[0]


def pool_folds(prep: Any, result: Any) -> Any:
    """Replace the per-subject folds of ``result`` by their pooled folds (no-op otherwise).

    Parameters
    ----------
    prep : Prepared
        The prepared run (its folds name their pool, :attr:`Fold.pool`).
    result : RunResult
        The run with one :class:`FoldResult` per subject model, in ``prep.folds`` order.

    Returns
    -------
    RunResult
        ``result`` with ``folds`` = one pooled :class:`FoldResult` per pool (test metrics
        over the pool's joined predictions; ``best_epoch`` -1, ``best_val`` the mean of the
        members', ``sizes`` their sums) and ``members`` = the per-subject fold results.
        Writes ``<run>/<pool>/predictions.csv`` (with a ``model`` column naming the
        subject's fold) and ``<run>/<pool>/test_metrics.json``.
    """
    from emodistill.training.run import FoldResult

    pools = {f.name: f.pool for f in prep.folds}
    if not any(pools.values()):
        return result
    members = list(result.folds)
    grouped: dict[str, list[Any]] = {}
    for fr in members:
        grouped.setdefault(pools[fr.fold], []).append(fr)
    pooled = []
    for pool, frs in grouped.items():
        out = Path(result.path) / pool
        frames = [pd.read_csv(fr.path / "predictions.csv").assign(model=fr.fold) for fr in frs]
        preds = pd.concat(frames, ignore_index=True)
        test = pooled_metrics(prep.target, preds)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "predictions.csv", lambda f, d=preds: d.to_csv(f, index=False))
        atomic_write(out / "test_metrics.json", lambda f, t=test: json.dump(t, f, indent=2))
        sizes = {k: int(sum(fr.sizes.get(k, 0) for fr in frs)) for k in frs[0].sizes}
        pooled.append(FoldResult(pool, test, -1, max(fr.epochs for fr in frs), sizes, out,
                                 None, float(np.mean([fr.best_val for fr in frs]))))
    result.folds = pooled
    result.members = members
    return result

