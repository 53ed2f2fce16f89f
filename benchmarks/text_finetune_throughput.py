"""Training throughput of the fine-tuned text path (samples/s, CPU): dynamic vs fixed padding.

One process, the same model and optimiser settings, the MOSI standard-split training
transcripts tokenised once; for each padding mode (fixed 50, dynamic, dynamic with
length buckets), ``--batches`` training steps of
late fusion (MiniLM fine-tuned, forward + backward + AdamW step, batch 32) after one
warm-up step. The two modes are interleaved round by round so that a change in the
machine's load hits both. Writes one JSON line per round and a summary.

    python benchmarks/text_finetune_throughput.py --root ../shared/data/mosi_utterance
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from emodistill.data.formats.mosi_raw import load_mosi_raw_features
from emodistill.data.protocols import make_folds
from emodistill.models import build_method
from emodistill.training.lit import make_optimizer
from emodistill.training.loaders import BucketBatchSampler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="../shared/data/mosi_utterance")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8, help="timed steps per mode and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    modes = {
        # fixed: every utterance padded (and truncated) to 50 tokens, the stored width
        "fixed50": (50, "max_length"),
        # dynamic: ids up to 128, each batch cut to its longest utterance
        "dynamic": (128, "longest"),
        # dynamic + length buckets (train.length_buckets=20): batches of similar lengths
        "dynamic_bucketed": (128, "longest"),
    }
    setups = {}
    for name, (max_ids, padding) in modes.items():
        ds = load_mosi_raw_features(args.root, text_level="ids", max_ids=max_ids)
        fold = make_folds(ds, "split", split="standard", valid_group="video")[0]
        train = ds.subset(fold.train)
        torch.manual_seed(args.seed)
        model = build_method("late_fusion", spec=train.spec, target=train.spec.target("sentiment"),
                             params={"text_encoder": {"mode": "finetune", "padding": padding,
                                                      "warmup_steps": 0}})
        opt = make_optimizer(model.parameters(), {"lr": 1e-3, "weight_decay": 1e-4})
        setups[name] = (train, model.train(), opt)
    rng = np.random.default_rng(args.seed)
    times: dict[str, list[float]] = {k: [] for k in modes}
    counts: dict[str, int] = {k: 0 for k in modes}
    tokens: dict[str, list[int]] = {k: [] for k in modes}
    for r in range(args.rounds):
        order = rng.permutation(len(setups[next(iter(modes))][0]))
        for name, (train, model, opt) in setups.items():
            rows = [order[i * args.batch_size:(i + 1) * args.batch_size]
                    for i in range(args.batches + 1)]
            if name == "dynamic_bucketed":  # the training loader's bucketed batches
                sampler = BucketBatchSampler(train.mask["text"].sum(1), args.batch_size, 20,
                                             torch.Generator().manual_seed(args.seed + r))
                rows = [np.asarray(b) for b in sampler][: args.batches + 1]
            for i, idx in enumerate(rows):
                batch = train.batch(idx, "sentiment")
                t0 = time.perf_counter()
                opt.zero_grad()
                model.loss(batch, model(batch))["loss"].backward()
                opt.step()
                dt = time.perf_counter() - t0
                if i == 0:
                    continue  # warm-up step
                times[name].append(dt)
                counts[name] += len(idx)
                width = (batch.mask["text"].shape[1] if name == "fixed50"
                         else int(batch.mask["text"].sum(1).max()))
                tokens[name].append(width)
            print(json.dumps({"round": r, "mode": name,
                              "samples_per_s": round(counts[name] / sum(times[name]), 2)}))
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"threads {torch.get_num_threads()}",
        "batch_size": args.batch_size, "timed_steps_per_mode": len(times["dynamic"]),
        **{f"{k}_samples_per_s": round(counts[k] / sum(times[k]), 2) for k in modes},
        **{f"{k}_mean_width": round(float(np.mean(tokens[k])), 1) for k in modes},
    }
    for k in ("dynamic", "dynamic_bucketed"):
        summary[f"speedup_{k}_over_fixed50"] = round(
            summary[f"{k}_samples_per_s"] / summary["fixed50_samples_per_s"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
