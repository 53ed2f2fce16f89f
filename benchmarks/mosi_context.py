"""Utterance context on MOSI: methods × context modes × seeds, fixed recipe (no selection).

Every run trains for a fixed number of epochs and is tested with its *last* weights:
nothing is selected on the validation part (on ``mosi_utterance`` it is leaked; see
issue 13). This is the fixed recipe ``train.selection=last`` of the engine, done
here with the package's own pieces (protocol, normalisation, context plan,
method, LightningModule) so that it runs before that option is merged; the
validation videos are carved out of train exactly as the engine does and left unused.

Also prints linear reference probes on the Poria split: logistic regression on
the three utterance vectors, and on them plus the mean of the *other* utterances
of the same video (a context probe), for a few fixed ``C`` (no selection).

Usage (from the repository root, ``../shared/data`` beside it)::

    python benchmarks/mosi_context.py --methods late_fusion,hkd_mer,dmd,dhmd \
        --contexts none,birnn,attention,sequence --seeds 1111-1115 --epochs 6 \
        --out runs/benchmarks/mosi_context
    python benchmarks/mosi_context.py --probes-only        # Poria CNN features
    python benchmarks/mosi_context.py --probes-only --dataset mosi_raw_features  # MiniLM+openSMILE

Results are appended to ``<out>/runs.csv`` as each run finishes (a stopped run
keeps what it measured) and summarised in ``<out>/summary.md``: mean ± sample std
over seeds, and the paired difference to the same method without context per seed
with the count of seeds where context helps.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd

from emodistill.config import compose, to_container
from emodistill.data.normalize import Standardizer
from emodistill.data.registry import build_dataset
from emodistill.models import build_method
from emodistill.training.benchmark import parse_seeds
from emodistill.training.context_data import context_plan
from emodistill.training.lit import LitMER
from emodistill.training.run import prepare

#: per-method overrides of the fixed recipe (hkd_mer: the dominant modality fixed to text,
#: never chosen on the leaked validation part)
METHOD_OVERRIDES = {"hkd_mer": ["method.dominant=text"]}


def fixed_recipe(cfg, ds, epochs: int) -> tuple[dict[str, float], float]:
    """Train ``epochs`` epochs on the fold's train part, test the last weights once."""
    prep = prepare(cfg, ds)
    fold = prep.folds[0]
    seed = int(cfg.seed)
    L.seed_everything(seed, workers=True, verbose=False)
    parts = {k: ds.subset(getattr(fold, k)) for k in ("train", "test")}
    std = Standardizer.fit(parts["train"])
    parts = {k: std.transform(v) for k, v in parts.items()}
    plan = context_plan(to_container(cfg.method), ds)
    parts = {k: plan.transform(v) for k, v in parts.items()}
    params = to_container(cfg.method)
    name = params.pop("name")
    params.setdefault("modalities", prep.modalities)
    model = build_method(name, spec=parts["train"].spec, target=prep.target, params=params)
    lit = LitMER(model, to_container(cfg.train))
    trainer = L.Trainer(max_epochs=epochs, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    bs = int(cfg.train.batch_size)
    t0 = time.perf_counter()
    trainer.fit(lit, plan.loader(parts["train"], prep.target.name, batch_size=bs,
                                 shuffle=True, seed=seed))
    secs = time.perf_counter() - t0
    trainer.test(lit, plan.loader(parts["test"], prep.target.name, batch_size=bs,
                                  shuffle=False), verbose=False)
    test = {k[5:]: float(v) for k, v in trainer.callback_metrics.items()
            if k.startswith("test/")}
    test["n_test"] = float(len(parts["test"]))
    return test, secs


def probes(ds) -> list[dict[str, object]]:
    """Logistic-regression probes on the Poria split, without and with a video-mean context.

    Works on any dataset of utterance vectors with a ``poria`` split and a ``polarity``
    target (``mosi_utterance``; ``mosi_raw_features`` with pooled text), on all its modalities.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = np.concatenate([ds.features[m][:, 0].numpy() for m in ds.features], 1)
    y = ds.targets["polarity"].numpy()
    video = ds.groups["video"]
    ctx = np.zeros_like(X)
    for v in np.unique(video):
        rows = np.flatnonzero(video == v)
        total = X[rows].sum(0)
        ctx[rows] = (total[None] - X[rows]) / max(len(rows) - 1, 1)
    tr = ds.splits["poria"] == "train"
    te = ds.splits["poria"] == "test"
    out = []
    for label, feats in (("probe: utterance", X), ("probe: utterance + mean of other "
                                                     "utterances of the video", np.c_[X, ctx])):
        sc = StandardScaler().fit(feats[tr])
        for c in (0.001, 0.01, 0.1, 1.0):
            clf = LogisticRegression(C=c, max_iter=5000).fit(sc.transform(feats[tr]), y[tr])
            acc = float((clf.predict(sc.transform(feats[te])) == y[te]).mean())
            out.append({"probe": label, "C": c, "acc": round(100 * acc, 2)})
    return out


def summarise(rows: pd.DataFrame, metric: str) -> str:
    """Mean ± std per (method, context) and paired differences to context=none."""
    extra = [c for c in ("f1_macro", "mae", "corr") if c in rows and rows[c].notna().any()]
    lines = [f"| method | context | {metric} | {' | '.join(extra)}{' | ' if extra else ''}"
             "seeds | Δ vs none (paired) | seeds Δ>0 | train s/run |",
             "|---|---|---|" + "---|" * len(extra) + "---|---|---|---|"]
    for (method, context), g in rows.groupby(["method", "context"], sort=False):
        v = 100 * g[metric]
        diff, pos = "", ""
        if context != "none":
            ref = rows[(rows.method == method) & (rows.context == "none")].set_index("seed")
            both = g.set_index("seed")[[metric]].join(
                ref[[metric]].rename(columns={metric: f"{metric}_ref"}), how="inner")
            if len(both):
                d = 100 * (both[metric] - both[f"{metric}_ref"])
                sd = f" ± {d.std():.2f}" if len(d) > 1 else ""
                diff, pos = f"{d.mean():+.2f}{sd}", f"{int((d > 0).sum())}/{len(d)}"
        sd = f" ± {v.std():.2f}" if len(v) > 1 else ""
        cols = "".join(f"{100 * g[c].mean():.2f} | " if c == "f1_macro"
                       else f"{g[c].mean():.3f} | " for c in extra)
        lines.append(f"| {method} | {context} | {v.mean():.2f}{sd} | {cols}{len(v)} | {diff} | "
                     f"{pos} | {g['train_s'].mean():.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--dataset", default="mosi_utterance",
                    choices=["mosi_utterance", "mosi_raw_features"])
    ap.add_argument("--methods", default="late_fusion,hkd_mer,dmd,dhmd")
    ap.add_argument("--contexts", default="none,birnn,attention")
    ap.add_argument("--seeds", default="1111-1115")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32,
                    help="utterances per batch (with context: whole videos packed up to it)")
    ap.add_argument("--window", type=int, default=3, help="sequence mode: utterances per side")
    ap.add_argument("--out", default="runs/benchmarks/mosi_context")
    ap.add_argument("--probes-only", action="store_true")
    ap.add_argument("--no-probes", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides (a=b)")
    ap.add_argument("--summarise", default=None,
                    help="only summarise every runs.csv below this folder (runs split over "
                         "several processes)")
    a = ap.parse_args()
    if a.summarise:
        rows = pd.concat([pd.read_csv(f) for f in sorted(Path(a.summarise).rglob("runs.csv"))])
        for name, g in rows.groupby("dataset", sort=False):
            metric = "acc" if name == "mosi_utterance" else "acc2_non0"
            print(f"\n### {name} ({metric}, %)\n")
            print(summarise(g, metric))
        return
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = Path(a.data) / "mosi_utterance"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.probes_only and a.dataset == "mosi_raw_features":
        base = build_dataset({"name": "mosi_raw_features", "root": str(root),
                              "target": "polarity"})
        found = probes(base)
        for r in found:
            print(r, flush=True)
        pd.DataFrame(found).to_csv(out / "probes.csv", index=False)
        return
    if a.dataset == "mosi_utterance":
        if not a.no_probes:
            base = build_dataset({"name": "mosi_utterance", "root": str(root)})
            found = probes(base)
            for r in found:
                print(r, flush=True)
            pd.DataFrame(found).to_csv(out / "probes.csv", index=False)
            if a.probes_only:
                return
        exp, ds_over = "mosi_poria", [f"dataset.root={root}"]
        metric = "acc"
    else:
        exp, ds_over = None, [f"dataset.root={root}"]
        metric = "acc2_non0"
    ds = None
    log_path = out / "runs.csv"
    for seed in parse_seeds(a.seeds):
        for method in a.methods.split(","):
            for context in a.contexts.split(","):
                bs = a.batch_size
                over = [*ds_over, f"seed={seed}", f"train.lr={a.lr}", "train.scheduler=none",
                        f"method.context={context}", "train.progress_bar=false",
                        f"train.batch_size={bs}", *METHOD_OVERRIDES.get(method, []), *a.set]
                if context == "sequence":
                    over.append(f"method.context_params.window={a.window}")
                cfg = compose(experiment=exp, dataset=a.dataset, method=method, overrides=over)
                if ds is None:
                    ds = build_dataset(to_container(cfg.dataset))
                test, secs = fixed_recipe(cfg, ds, a.epochs)
                row = {"dataset": a.dataset, "method": method, "context": context,
                       "seed": seed, "epochs": a.epochs, "train_s": round(secs, 1), **test}
                print(row, flush=True)
                new = not log_path.exists()
                with log_path.open("a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    if new:
                        w.writeheader()
                    w.writerow(row)
    rows = pd.read_csv(log_path)
    rows = rows[rows.dataset == a.dataset]
    (out / "summary.md").write_text(summarise(rows, metric) + "\n")
    print(summarise(rows, metric))


if __name__ == "__main__":
    main()
