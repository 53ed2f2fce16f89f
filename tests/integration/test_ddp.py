"""CPU DDP smoke test: two processes, one run folder, the whole test part tested once."""

import json
import os
import subprocess
import sys

import pandas as pd
import torch.distributed as dist


def test_two_process_cpu_ddp_writes_one_complete_run(tmp_path):
    assert dist.is_available()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "emodistill.cli", "train", "train.strategy=ddp",
           "train.devices=2", "train.accelerator=cpu", "dataset.n=200", "train.max_epochs=2",
           "train.progress_bar=false", f"output_dir={tmp_path}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1, runs  # rank 1 wrote nothing of its own
    fold = runs[0] / "standard"
    preds = pd.read_csv(fold / "predictions.csv")
    assert len(preds) == 40 and preds["id"].is_unique  # 200 samples, 20% test videos
    metrics = json.loads((fold / "test_metrics.json").read_text())
    assert 0.0 <= metrics["acc"] <= 1.0
