"""Where the time of one small fit goes: ``fit_fold`` (Lightning) taken apart, one run.

Times, for each of ``--repeats`` fits of one fold (data loaded once before):

* ``data``: the fold's subsets and standardisation (``fit_fold``'s own preparation);
* ``trainer``: building the ``L.Trainer``;
* ``train``: the training batches (Lightning's loop around forward/backward/step);
* ``valid``: the validation loop of every epoch;
* ``ckpt``: ``ModelCheckpoint`` writing the best weights to disk;
* ``test``: the test pass (loads the selected checkpoint);
* ``rest``: everything else of ``fit_fold`` (model build, callbacks, files written);
* ``arith``: the same number of optimiser steps and validation batches of the same
  model in a bare loop (no Lightning): the arithmetic the fit cannot avoid.

Usage (from the repository root)::

    python benchmarks/fit_overhead.py -e deap_eeg -d deap_bandpower -m unimodal \\
        --out benchmarks/fit_overhead.md dataset.root=../shared/data/eeg_bandpower/DEAP
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

import lightning as L
import torch

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.training import run as run_mod
from emodistill.training.lit import make_optimizer
from emodistill.training.loaders import batch_loader


class _Clock(L.Callback):
    def __init__(self, t: dict[str, float]) -> None:
        self.t = t
        self.start = 0.0

    def on_train_epoch_start(self, *a: object) -> None:  # noqa: D102
        self.start = time.perf_counter()

    def on_validation_epoch_start(self, *a: object) -> None:  # noqa: D102
        now = time.perf_counter()
        self.t["train"] += now - self.start
        self.start = now

    def on_validation_epoch_end(self, *a: object) -> None:  # noqa: D102
        self.t["valid"] += time.perf_counter() - self.start

    def on_test_start(self, *a: object) -> None:  # noqa: D102
        self.start = time.perf_counter()

    def on_test_end(self, *a: object) -> None:  # noqa: D102
        self.t["test"] += time.perf_counter() - self.start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-d", "--dataset", required=True)
    p.add_argument("-e", "--experiment", default=None)
    p.add_argument("-m", "--method", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    cfg = compose(dataset=a.dataset, method=a.method, experiment=a.experiment,
                  overrides=[*a.overrides, "train.progress_bar=false"])
    ds = build_dataset(to_container(cfg.dataset))
    prep = run_mod.prepare(cfg, ds)
    fold = prep.folds[0]
    t = dict.fromkeys(("total", "data", "trainer", "train", "valid", "ckpt", "test", "arith"),
                      0.0)
    epochs = steps = vsteps = 0
    real_trainer, real_subset = run_mod._trainer, type(ds).subset
    ckpt_cls = L.pytorch.callbacks.ModelCheckpoint
    real_save = ckpt_cls._save_checkpoint

    def timed_trainer(cfg_, callbacks, root):  # noqa: ANN001, ANN202
        s = time.perf_counter()
        tr = real_trainer(cfg_, [*callbacks, _Clock(t)], root)
        t["trainer"] += time.perf_counter() - s
        return tr

    def timed_subset(self, index):  # noqa: ANN001, ANN202
        s = time.perf_counter()
        out = real_subset(self, index)
        t["data"] += time.perf_counter() - s
        return out

    def timed_save(self, trainer, filepath):  # noqa: ANN001, ANN202
        s = time.perf_counter()
        real_save(self, trainer, filepath)
        t["ckpt"] += time.perf_counter() - s

    run_mod._trainer = timed_trainer
    type(ds).subset = timed_subset
    ckpt_cls._save_checkpoint = timed_save
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(a.repeats):
                s = time.perf_counter()
                res = run_mod.fit_fold(prep, fold, Path(tmp) / str(r))
                t["total"] += time.perf_counter() - s
                epochs += res.epochs
                steps += res.epochs * -(-res.sizes["train"] // int(cfg.train.batch_size))
                vsteps += res.epochs * -(-res.sizes["valid"] // int(cfg.train.batch_size))
    finally:
        run_mod._trainer, type(ds).subset = real_trainer, real_subset
        ckpt_cls._save_checkpoint = real_save
    # the bare arithmetic: the same number of steps of the same model, no Lightning
    parts = {k: ds.subset(getattr(fold, k)) for k in ("train", "valid")}
    from emodistill.models import build_method

    params = to_container(cfg.method)
    name = params.pop("name")
    params.setdefault("modalities", prep.modalities)
    model = build_method(name, spec=parts["train"].spec, target=prep.target, params=params)
    opt = make_optimizer(model.parameters(), to_container(cfg.train))
    bs = int(cfg.train.batch_size)
    train_b = list(batch_loader(parts["train"], prep.target.name, batch_size=bs, shuffle=True))
    valid_b = list(batch_loader(parts["valid"], prep.target.name, batch_size=bs, shuffle=False))
    s = time.perf_counter()
    for i in range(steps):
        b = train_b[i % len(train_b)]
        model.train()
        loss = model.loss(b, model(b))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.eval()
        for i in range(vsteps):
            b = valid_b[i % len(valid_b)]
            model.loss(b, model(b))
    t["arith"] = time.perf_counter() - s
    n = a.repeats
    rest = (t["total"] - t["data"] - t["trainer"] - t["train"] - t["valid"] - t["ckpt"]
            - t["test"])
    rows = [("whole fit_fold", t["total"]), ("data preparation (subsets, standardise)",
                                             t["data"]),
            ("Trainer construction", t["trainer"]), ("training epochs (Lightning loop)",
                                                     t["train"]),
            ("validation epochs", t["valid"]), ("best-checkpoint writes", t["ckpt"]),
            ("test pass (loads the checkpoint)", t["test"]),
            ("rest (model build, callbacks, files)", rest),
            ("bare arithmetic of the same steps (no Lightning)", t["arith"])]
    md = [
        f"# Where one small fit's time goes: {a.dataset} / {cfg.dataset.target} / "
        f"{a.method}, fold {fold.name}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch thread(s), torch {torch.__version__}, shared with other jobs at the time.",
        "",
        "Command: `python " + " ".join(shlex.quote(x) for x in [sys.argv[0],
                                                              *(argv or sys.argv[1:])]) + "`",
        "",
        f"{n} fits of the same fold; {epochs / n:.1f} epochs, {steps / n:.0f} optimiser steps "
        f"and {vsteps / n:.0f} validation batches per fit on average.",
        "",
        "| part | s per fit | share |",
        "|---|---|---|",
        *(f"| {k} | {v / n:.3f} | {100 * v / t['total']:.0f}% |" for k, v in rows),
        "",
    ]
    Path(a.out).write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
