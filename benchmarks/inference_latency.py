"""CPU inference latency per sample at batch size 1: PyTorch, TorchScript, ONNX Runtime.

For every checkpoint given, one random sample with every modality present is
run ``--repeats`` times (after ``--warmup`` runs) through

* ``predict``: ``Predictor.predict`` end to end (numpy arrays in, labelled
  prediction out: input checks, padding, normalisation, model, label names);
* ``eager``: the PyTorch model on a ready, normalised batch (model only);
* ``torchscript``: the traced export (plain tensors, normalisation inside);
* ``onnxruntime``: the ONNX export (torch.export-based exporter) in
  onnxruntime's CPU provider;

with ``--threads`` intra-op threads everywhere (default 1, the deployment case
of one sample at a time on a small CPU). Prints and optionally writes a
Markdown table of p50 / p95 / mean latency in milliseconds.

Usage::

    python benchmarks/inference_latency.py CKPT [CKPT ...] [--repeats 500] \
        [--threads 1] [--output benchmarks/inference_latency_table.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from emodistill.serving.export import export_model, input_names, load_torchscript, onnx_session
from emodistill.serving.predict import load


def _timeit(fn, repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def bench_checkpoint(path: Path, *, repeats: int, warmup: int, threads: int,
                     tmp: Path, dynamo: bool = True) -> list[dict]:
    pred = load(path)
    rng = np.random.default_rng(0)
    arrays = {m: rng.standard_normal((1, pred.spec.modality(m).seq_len,
                                      pred.spec.modality(m).dim)).astype(np.float32)
              for m in pred.modalities}
    batch = pred.make_batch(arrays)
    tensors = []
    for m in pred.modalities:
        tensors += [torch.from_numpy(arrays[m]), batch.mask[m], batch.present[m]]
    feeds = {n: t.numpy() for n, t in zip(input_names(pred.modalities), tensors, strict=True)}
    n_params = sum(p.numel() for p in pred.model.parameters())
    label = f"{pred.method} (" + " + ".join(
        f"{m}[{pred.spec.modality(m).seq_len}x{pred.spec.modality(m).dim}]"
        for m in pred.modalities) + ")"
    rows = []

    def row(backend: str, t: np.ndarray) -> None:
        rows.append({"model": label, "params": n_params, "backend": backend,
                     "p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95)),
                     "mean": float(t.mean())})

    with torch.inference_mode():
        row("predict", _timeit(lambda: pred.predict(arrays), repeats, warmup))
        row("eager", _timeit(lambda: pred.model(batch), repeats, warmup))
        ts_path = export_model(pred, tmp / f"{path.parent.parent.name}.pt", format="torchscript")
        ts = load_torchscript(ts_path)
        row("torchscript", _timeit(lambda: ts(*tensors), repeats, warmup))
    onnx_path = export_model(pred, tmp / f"{path.parent.parent.name}.onnx", format="onnx",
                             dynamo=dynamo)
    sess = onnx_session(onnx_path, threads=threads)
    got = sess.run(None, feeds)[0]
    want = pred.predict(arrays).values
    assert np.allclose(got, want, atol=1e-4), (got, want)  # same numbers as PyTorch
    row("onnxruntime", _timeit(lambda: sess.run(None, feeds), repeats, warmup))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--legacy-onnx", action="store_true",
                    help="export with torch's legacy ONNX exporter (faster to export big models)")
    ap.add_argument("--output", type=Path, default=None, help="write the Markdown table here")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for ck in a.checkpoints:
            rows += bench_checkpoint(ck, repeats=a.repeats, warmup=a.warmup, threads=a.threads,
                                     tmp=Path(tmp), dynamo=not a.legacy_onnx)
    import onnxruntime

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    head = (f"Measured {dt.date.today()} on {platform.machine()} with {os.cpu_count()} CPU "
            f"cores (load average at the end: {load}), torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, {a.threads} thread(s), batch 1, {a.repeats} timed runs "
            f"after {a.warmup} warm-up runs; ONNX exporter: "
            f"{'legacy' if a.legacy_onnx else 'torch.export'}; milliseconds per sample.\n\n")
    lines = ["| model | parameters | backend | p50 ms | p95 ms | mean ms |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['backend']} | {r['p50']:.3f} | "
                     f"{r['p95']:.3f} | {r['mean']:.3f} |")
    table = head + "\n".join(lines) + "\n"
    print(table)
    if a.output:
        a.output.write_text(table)


if __name__ == "__main__":
    main()
