"""The members-in-parallel path runs without Lightning.

Importing Lightning (which imports torchmetrics and its text and audio extras) costs
seconds per command; a benchmark whose methods all train on the parallel path must not
pay it. A test of the seeding shows that the Lightning-free
``seed_everything`` leaves every stream as Lightning's does.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from emodistill.seeding import seed_everything

SRC = Path(__file__).resolve().parents[3] / "src"


def _streams() -> tuple:
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
            os.environ.get("PL_GLOBAL_SEED"), os.environ.get("PL_SEED_WORKERS"))


def test_seed_everything_leaves_every_stream_as_lightnings_does(monkeypatch):
    from lightning.fabric.utilities.seed import seed_everything as lightning_seed

    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    for seed in (0, 1111, 2**32 - 1):
        lightning_seed(seed, workers=True, verbose=False)
        want = _streams()
        random.seed(7), np.random.seed(7), torch.manual_seed(7)  # move every stream away
        assert seed_everything(seed) == seed
        assert _streams() == want


def test_a_parallel_path_benchmark_never_imports_lightning(tmp_path):
    code = (
        "import sys\nfrom emodistill.cli import main\n"
        "main(['benchmark', '-d', 'synthetic', '-m', 'unimodal:modality=text', '--seeds', '1',\n"
        f"      '--output', {str(tmp_path)!r}, '--name', 'b', 'train.max_epochs=1',\n"
        "      'train.progress_bar=false'])\n"
        "heavy = sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    per_seed = (tmp_path / "b" / "per_seed.csv").read_text()
    assert "parallel" in per_seed  # unimodal took the parallel path, so it was exercised
