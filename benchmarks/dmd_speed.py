"""DMD training speed and peak memory: eager vs each optimisation, in one run.

Data: synthetic data shaped like MMSA's aligned CMU-MOSI (1284 training samples,
50 steps, text 768-d, audio 5-d, vision 20-d, regression target in [-3, 3]) plus
256 held-out samples for the metric check. Model: ``dmd`` with the reference MOSI
configuration. Training: the reference recipe (batch 16, gradient accumulation
10, clipping by value 0.6, Adam lr 1e-4) in a direct loop (no Lightning), full
batches only.

Variants (each in its own subprocess, so peak memory is per variant):

* ``eager_loop_margin``: eager fp32 with the reference-style per-anchor Python
  loop margin loss (host syncs every step);
* ``eager``: eager fp32, vectorised margin loss — the baseline of every ratio;
* ``bf16``: eager under ``torch.autocast(bfloat16)``;
* ``compile``: ``model.compile()`` (TorchInductor), fp32;
* ``compile_bf16``: both;
* ``grouped``: eager fp32 with ``grouped_transformers=true`` (the six cross-modal,
  the three memory and the three self-attention transformers each run as one
  batched module; same weights);
* ``grouped_compile``: both;
* ``eager_host_data`` (CUDA only): data kept on the host and copied per batch
  (every other variant keeps the whole dataset on the device).

Reported per variant: training samples/s over the timed mini-batches (after
warm-up; compilation happens in warm-up and is reported separately), peak
memory (CPU: the process's peak RSS from model construction on — the peak is
reset through ``/proc/self/clear_refs`` after the data is built — minus the RSS
at that point, i.e. model, optimiser state, activations and compiled code;
CUDA: ``torch.cuda.max_memory_allocated``, data included), and two checks that the
optimisation keeps the numbers: the largest prediction difference to eager on
the held-out set with the *initial* weights (eval mode), and the held-out MAE /
Acc-2 after the timed training (same seed, same batches; dropout random streams
differ between eager and compiled code, so those agree within tolerance, not
bit for bit).

Also reported: CPU time per timed mini-batch (``time.process_time`` of the worker),
which other jobs on a shared machine inflate far less than wall time. ``--rounds R``
runs the variant list ``R`` times, interleaved, and reports medians;
``--baseline-src DIR`` adds ``eager@baseline``: the eager variant with ``DIR/src``
(another checkout, e.g. main before a change) on ``PYTHONPATH``, so "today's eager"
is measured in the same invocation as the new code.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/dmd_speed.py --markdown benchmarks/dmd_speed.md
    OMP_NUM_THREADS=1 python benchmarks/dmd_speed.py --variants eager,grouped --rounds 3 \
        --baseline-src ../main --markdown benchmarks/dmd_step_cpu.md
    python benchmarks/dmd_speed.py --device cuda --batches 200 --markdown ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

VARIANTS = ("eager_loop_margin", "eager", "grouped", "bf16", "compile", "compile_bf16",
            "grouped_compile")
N_TRAIN, N_EVAL, BATCH, ACCUM, CLIP, LR = 1284, 256, 16, 10, 0.6, 1e-4
SHAPES = {"text": (50, 768, 1.0), "audio": (50, 5, 0.3), "vision": (50, 20, 0.3)}


def _proc_status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` memory line (``VmHWM``, ``VmRSS``) in MiB; None if unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; falls back to ru_maxrss)."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else float("nan")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(variant: str, device: str, batches: int, warmup: int, outdir: Path,
           tag: str | None = None) -> dict:
    """Run one variant; save held-out predictions; return the measurements."""
    from emodistill.data.formats.synthetic import make_synthetic_mer
    from emodistill.metrics.functional import acc2_non0, mae
    from emodistill.models import build_method

    torch.manual_seed(0)
    dev = torch.device(device)
    ds = make_synthetic_mer(N_TRAIN + N_EVAL, seed=0, modalities=SHAPES, variable_length=False)
    train = ds.subset(range(N_TRAIN))
    evalset = ds.subset(range(N_TRAIN, N_TRAIN + N_EVAL))
    on_device = variant != "eager_host_data"
    if on_device:
        train, evalset = train.to(dev), evalset.to(dev)
    import gc

    gc.collect()
    rss0 = _current_rss_mb()  # data (and the interpreter) already resident
    peak_reset = _reset_peak_rss()
    params = {"margin_impl": "loop" if variant == "eager_loop_margin" else "vectorized",
              "grouped_transformers": variant.startswith("grouped")}
    model = build_method("dmd", spec=ds.spec, target=ds.spec.target("sentiment"),
                         params=params).to(dev)
    if "compile" in variant:
        model.compile()
    bf16 = variant.endswith("bf16")
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def run(idx: torch.Tensor, ds_) -> torch.Tensor:
        b = ds_.batch(idx.to(ds_.targets["sentiment"].device), "sentiment")
        if not on_device:
            b = b.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(b)
            return out, model.loss(b, out)

    def predict(ds_) -> torch.Tensor:
        model.eval()
        outs = []
        with torch.no_grad():
            for a in range(0, len(ds_), 64):
                idx = torch.arange(a, min(a + 64, len(ds_)))
                b = ds_.batch(idx.to(ds_.targets["sentiment"].device), "sentiment").to(dev)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    outs.append(model(b).preds.float())
        model.train()
        return torch.cat(outs).cpu()

    init_preds = predict(evalset)
    g = torch.Generator().manual_seed(1111)
    order = torch.randperm(N_TRAIN, generator=g)
    n_full = N_TRAIN // BATCH
    schedule = [order[(i % n_full) * BATCH:(i % n_full + 1) * BATCH]
                for i in range(warmup + batches)]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    opt.zero_grad(set_to_none=True)
    losses = []

    def step(i: int) -> None:
        _, terms = run(schedule[i], train)
        (terms["loss"] / ACCUM).backward()
        losses.append(terms["loss"].detach())
        if (i + 1) % ACCUM == 0:
            torch.nn.utils.clip_grad_value_(model.parameters(), CLIP)
            opt.step()
            opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync()
    warm_s = time.perf_counter() - t0
    sync_warnings = None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            step(warmup)
            torch.cuda.set_sync_debug_mode("default")
        sync_warnings = sum("synchroniz" in str(w.message) for w in caught)
        first = warmup + 1
    else:
        first = warmup
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(first, warmup + batches):
        step(i)
    sync()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_timed = warmup + batches - first
    trained_preds = predict(evalset)
    torch.save({"init": init_preds, "trained": trained_preds,
                "target": evalset.targets["sentiment"].cpu()}, outdir / f"{tag or variant}.pt")
    y = evalset.targets["sentiment"].cpu()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else _peak_rss_mb() - rss0 if peak_reset else float("nan"))
    return {
        "variant": tag or variant, "device": device, "timed_batches": n_timed,
        "cpu_ms_per_batch": 1000 * cpu / max(n_timed, 1),
        "samples_per_s": n_timed * BATCH / elapsed, "ms_per_batch": 1000 * elapsed / n_timed,
        "warmup_s": warm_s, "peak_mem_mb": peak, "peak_rss_total_mb": _peak_rss_mb(),
        "rss_before_model_mb": rss0,
        "host_sync_warnings_per_step": sync_warnings,
        "final_train_loss": float(torch.stack(losses[-ACCUM:]).mean()),
        "eval_mae": float(mae(trained_preds, y)),
        "eval_acc2_non0": float(acc2_non0(trained_preds, y)),
    }


def _table(rows: list[dict], outdir: Path) -> str:
    by = {r["variant"]: r for r in rows}
    base = by.get("eager")
    ref = torch.load(outdir / "eager.pt") if (outdir / "eager.pt").is_file() else None
    lines = ["| variant | samples/s | ms / batch | speed-up vs eager | CPU ms / batch | "
             "CPU speed-up vs eager | peak memory (MiB) | "
             "warm-up (s) | max abs Δ pred vs eager (init weights) | held-out MAE | "
             "|Δ MAE| vs eager | held-out Acc-2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r["variant"]
        p = torch.load(outdir / f"{v}.pt")
        d_init = (p["init"] - ref["init"]).abs().max().item() if ref is not None else float("nan")
        d_mae = abs(r["eval_mae"] - base["eval_mae"]) if base else float("nan")
        speed = r["samples_per_s"] / base["samples_per_s"] if base else float("nan")
        cpu_speed = (base.get("cpu_ms_per_batch", float("nan"))
                     / r.get("cpu_ms_per_batch", float("nan")) if base else float("nan"))
        lines.append(
            f"| {v} | {r['samples_per_s']:.1f} | {r['ms_per_batch']:.0f} | {speed:.2f}× | "
            f"{r.get('cpu_ms_per_batch', float('nan')):.0f} | "
            f"{cpu_speed:.2f}× | "
            f"{r['peak_mem_mb']:.0f} | {r['warmup_s']:.1f} | {d_init:.2e} | "
            f"{r['eval_mae']:.4f} | {d_mae:.4f} | {100 * r['eval_acc2_non0']:.1f} |")
    return "\n".join(lines)


def _median_row(rs: list[dict]) -> dict:
    """One variant's rounds: the median speed figures, the first round's other values."""
    import statistics

    row = dict(rs[0])
    for k in ("samples_per_s", "ms_per_batch", "cpu_ms_per_batch"):
        row[k] = statistics.median(r[k] for r in rs)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--variants", default=None, help="comma list (default: all for the device)")
    p.add_argument("--batches", type=int, default=40, help="timed + warm-up mini-batches")
    p.add_argument("--warmup", type=int, default=10, help="untimed mini-batches (compilation)")
    p.add_argument("--json", default=None, help="write the raw measurements here")
    p.add_argument("--markdown", default=None, help="write a results Markdown file here")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the variant list this many times, interleaved; medians reported")
    p.add_argument("--baseline-src", default=None,
                   help="another checkout (e.g. ../main): adds variant eager@baseline, the "
                        "eager variant run with that checkout's src/ on PYTHONPATH (today's "
                        "code, measured in the same invocation)")
    p.add_argument("--tag", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--outdir", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if a.worker:
        res = worker(a.worker, device, a.batches, a.warmup, Path(a.outdir), a.tag)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    variants = a.variants.split(",") if a.variants else [
        *VARIANTS, *(["eager_host_data"] if device == "cuda" else [])]
    if "eager" not in variants:
        variants.insert(0, "eager")
    if a.baseline_src:
        variants.insert(0, "eager@baseline")
    runs: dict[str, list[dict]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dmd-speed-") as tmp:
        for _ in range(a.rounds):
            for v in variants:
                name, _, where = v.partition("@")
                cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                       "--tag", v, "--device", device, "--batches", str(a.batches),
                       "--warmup", str(a.warmup), "--outdir", tmp]
                env = dict(os.environ)
                if where:
                    env["PYTHONPATH"] = str(Path(a.baseline_src).resolve() / "src")
                print(f"[dmd_speed] {v} ...", file=sys.stderr, flush=True)
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not line:
                    print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"variant {v} failed (exit {proc.returncode})")
                runs.setdefault(v, []).append(json.loads(line[0][7:]))
                loads.append(os.getloadavg()[0])
                print(f"[dmd_speed] {v}: {runs[v][-1]['samples_per_s']:.1f} samples/s, "
                      f"{runs[v][-1]['cpu_ms_per_batch']:.0f} CPU ms/batch",
                      file=sys.stderr, flush=True)
        rows = [_median_row(rs) for rs in runs.values()]
        table = _table(rows, Path(tmp))
        table += (f"\n\n{a.rounds} interleaved round(s), medians per variant; load average "
                  f"(1 min) between runs {min(loads):.1f}-{max(loads):.1f}.")
    print(table)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    if a.markdown:
        dev_name = (torch.cuda.get_device_name() if device == "cuda"
                    else f"CPU ({platform.processor() or platform.machine()}), "
                         f"{torch.get_num_threads()} thread(s)")
        cmd = "python benchmarks/dmd_speed.py " + " ".join(argv if argv is not None
                                                           else sys.argv[1:])
        md = [
            "# DMD training speed and peak memory",
            "",
            "What: DMD (reference MOSI configuration, 4.4 M parameters) trained with the reference "
            f"recipe (batch {BATCH}, accumulation {ACCUM}, clip-by-value {CLIP}, Adam lr {LR}) on "
            f"synthetic MOSI-aligned-shaped data ({N_TRAIN} samples, 50 steps, text 768 / "
            "audio 5 / vision 20). Each variant runs in its own process; ratios are against "
            "`eager` measured in the same invocation (details: docstring of "
            "`benchmarks/dmd_speed.py`).",
            "",
            f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {cmd}`",
            "",
            f"Machine: {dev_name}; torch {torch.__version__}; "
            f"{'2-core CPU, no GPU (shared with other jobs)' if device == 'cpu' else device}",
            "",
            f"Date: {dt.date.today().isoformat()}",
            "",
            table,
            "",
        ]
        Path(a.markdown).write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
