"""DMD training step, separate vs grouped transformers, interleaved in one process (CPU time).

One DMD (reference MOSI configuration) on MOSI-aligned-shaped synthetic batches
(batch 16, 50 steps, text 768 / audio 5 / vision 20); each repetition times one
forward + backward + Adam step with ``grouped_transformers`` off, then on (the same
weights: the flag only changes how the transformers run), alternating, so that a
machine shared with other jobs affects both alike. Reports process CPU time and wall
time per step and their ratios, and the largest prediction difference between the two
modes (eval, same weights).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/dmd_grouped_step.py --reps 6 \
        --out benchmarks/dmd_grouped_step.md
    python benchmarks/dmd_grouped_step.py --device cuda --reps 50 --out ...
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from emodistill.data.formats.synthetic import make_synthetic_mer
    from emodistill.models import build_method

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    shapes = {"text": (50, 768, 1.0), "audio": (50, 5, 0.3), "vision": (50, 20, 0.3)}
    ds = make_synthetic_mer(4 * a.batch, seed=0, modalities=shapes, variable_length=False).to(dev)
    model = build_method("dmd", spec=ds.spec, target=ds.spec.target("sentiment"),
                         params={}).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = ds.batch(torch.arange(a.batch, device=dev), "sentiment")
    model.eval()
    with torch.no_grad():
        model.grouped_transformers = False
        ref = model(batch).preds
        model.grouped_transformers = True
        grp = model(batch).preds
    diff = float((ref - grp).abs().max())
    model.train()

    def step(grouped: bool) -> tuple[float, float]:
        model.grouped_transformers = grouped
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        sync()
        w, c = time.perf_counter(), time.process_time()
        loss = model.loss(batch, model(batch))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - w, time.process_time() - c

    step(False), step(True)  # warm-up
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(a.reps):
        for g in (False, True):
            times[g].append(step(g))
    med = {g: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for g, v in times.items()}
    lines = [
        "# DMD training step: separate vs grouped transformers (interleaved, one process)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch thread(s), torch {torch.__version__}, device {dev}"
        f"{' (' + torch.cuda.get_device_name() + ')' if dev.type == 'cuda' else ''}; shared "
        "with other jobs at the time (CPU time is this process's own).",
        "",
        "Command: `python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]) + "`",
        "",
        f"DMD reference MOSI configuration, batch {a.batch} x 50 steps (text 768 / audio 5 / "
        f"vision 20), forward + backward + Adam step; {a.reps} interleaved repetitions each "
        "(medians). Max |prediction difference| grouped vs separate (eval, same weights): "
        f"{diff:.2e}.",
        "",
        "| transformers | CPU s / step | wall s / step |",
        "|---|---|---|",
        f"| separate (today's eager) | {med[False][1]:.3f} | {med[False][0]:.3f} |",
        f"| grouped (`grouped_transformers=true`) | {med[True][1]:.3f} | {med[True][0]:.3f} |",
        "",
        f"**Grouped / separate speed: {med[False][1] / med[True][1]:.2f}x in CPU time, "
        f"{med[False][0] / med[True][0]:.2f}x in wall time.**",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
