"""Run and benchmark folders in the engine's layout, written by hand (fast, no training).

The metrics, predictions and checkpoints are made up but have the exact columns
and files the engine writes, including the optional ``model/<space>/<a>-><b>``
edge columns (DMD-style GD units) and ``sample_attention_<m>`` columns
(HKD-MER-style attentive fusion).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from emodistill.checkpoint import save_checkpoint
from emodistill.config import compose, to_container
from emodistill.data.normalize import Standardizer
from emodistill.data.protocols import make_folds
from emodistill.data.registry import build_dataset
from emodistill.metrics import metric_names
from emodistill.models import build_method
from emodistill.report.tables import aggregate

MODS = ["text", "audio", "vision"]


def write_run(run_dir: Path, *, method: str = "late_fusion", target: str = "sentiment",
              seed: int = 1111, edges: bool = False, attention: bool = False,
              dataset_overrides: tuple[str, ...] = ()) -> Path:
    """One run folder (fold ``standard``) with config, results, metrics, predictions, model."""
    cfg = compose(dataset="synthetic", method=method, overrides=[
        f"dataset.target={target}", "dataset.n=120", f"seed={seed}", "method.width=16",
        *dataset_overrides])
    c = to_container(cfg)
    ds = build_dataset(c["dataset"])
    spec_t = ds.spec.target(target)
    fold = make_folds(ds, "split", split="standard")[0]
    rng = np.random.default_rng(seed)
    fold_dir = run_dir / "standard"
    fold_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(c))
    (run_dir / "data.json").write_text(json.dumps(ds.summary()))
    epochs = 6
    rows = []
    for e in range(epochs):
        r = {"epoch": e, "train/task_loss": 1.5 - 0.15 * e, "val/task_loss": 1.4 - 0.1 * e,
             "lr": 1e-3}
        if spec_t.kind == "regression":
            r |= {"val/acc2_has0": 0.6 + 0.02 * e, "val/mae": 1.4 - 0.1 * e}
        else:
            r |= {"val/acc": 0.5 + 0.03 * e}
        if edges:
            for unit in ("homo", "hetero"):
                for a in MODS:
                    for b in MODS:
                        if a != b:
                            r[f"model/gd_{unit}/{a}->{b}"] = float(rng.uniform(0, 0.3))
        rows.append(r)
    pd.DataFrame(rows).to_csv(fold_dir / "metrics.csv", index=False)
    test = ds.subset(fold.test)
    y = test.targets[target].numpy()
    pred = pd.DataFrame({"id": test.ids, "target": y})
    if attention:
        w = rng.dirichlet(np.ones(3), size=len(y))
        for j, m in enumerate(MODS):
            pred[f"sample_attention_{m}"] = w[:, j]
    if spec_t.kind == "regression":
        pred["prediction"] = np.clip(y + rng.normal(0, 0.8, len(y)), -3, 3)
    else:
        names = list(spec_t.class_names)
        probs = rng.dirichlet(np.ones(len(names)), size=len(y))
        pred["target_name"] = [names[int(i)] for i in y]
        pred["prediction"] = probs.argmax(1)
        pred["prediction_name"] = [names[int(i)] for i in pred["prediction"]]
        for i, n in enumerate(names):
            pred[f"p_{n}"] = probs[:, i]
    pred.to_csv(fold_dir / "predictions.csv", index=False)
    mets = metric_names(spec_t)
    test_m = {m: float(rng.uniform(0.5, 0.9)) for m in mets}
    (fold_dir / "test_metrics.json").write_text(json.dumps(test_m))
    (run_dir / "results.json").write_text(json.dumps({
        "folds": {"standard": {"test": test_m, "best_epoch": 4, "epochs": epochs,
                               "sizes": {"train": len(fold.train)}}},
        "mean": test_m}))
    torch.manual_seed(seed)
    params = {k: v for k, v in c["method"].items() if k != "name"}
    model = build_method(method, spec=ds.spec, target=spec_t, params=params).eval()
    std = Standardizer.fit(ds.subset(fold.train))
    save_checkpoint(fold_dir / "model.pt", model, config=c, standardizer=std,
                    meta={"fold": "standard", "test_metrics": test_m, "best_epoch": 4})
    return run_dir


def write_benchmark(root: Path, entries: dict[str, dict], seeds=(1111, 1112),
                    target: str = "sentiment") -> Path:
    """A benchmark folder: per_seed.csv, summary.csv/.md and runs/<label>-seed<seed>/."""
    rows = []
    for label, kw in entries.items():
        for s in seeds:
            name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") + f"-seed{s}"
            run = write_run(root / "runs" / name, seed=s, target=target, **kw)
            res = json.loads((run / "results.json").read_text())
            rows.append({"method": label, "seed": s, "n_folds": 1, **res["mean"]})
    per_seed = pd.DataFrame(rows)
    per_seed.to_csv(root / "per_seed.csv", index=False)
    metrics = [c for c in per_seed.columns if c not in ("method", "seed", "n_folds")]
    aggregate(per_seed, metrics).to_csv(root / "summary.csv")
    return root
