"""Nothing lost: a killed `train` continues from its last checkpoint (kill -9 of a real
subprocess) and ends with the metrics of an uninterrupted run; `benchmark --resume`
continues unfinished runs, and finds the unfinished benchmark folder by itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pandas as pd
import pytest

import emodistill.training.run as run_module
from emodistill.errors import ConfigError
from emodistill.training.benchmark import _unfinished_folder

SRC = Path(__file__).resolve().parents[2] / "src"
# plateau scheduler with patience 0 and early stopping with patience 2: both states matter
TINY = ["-m", "late_fusion", "dataset.n=120", "train.max_epochs=5", "train.patience=2",
        "train.scheduler_patience=0", "train.lr=0.03", "train.batch_size=16",
        "train.progress_bar=false",
        "method.width=8", "method.layers=1", "run_name=r"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    import lightning as L
    import emodistill.training.run as R
    from emodistill.cli import main

    class KillMidEpoch(L.Callback):  # kill -9 in the middle of the third epoch
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    orig = R._trainer
    R._trainer = lambda cfg, callbacks, root: orig(cfg, [*callbacks, KillMidEpoch()], root)
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture
def one_thread():
    """Run in-process fits on one thread, as the subprocess (OMP_NUM_THREADS=1) does.

    Float reductions depend on the thread count, so byte-equal metrics need the same one.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_killed_by_sigkill_resumes_to_the_uninterrupted_metrics(cli, tmp_path,
                                                                      one_thread):
    assert cli("train", *TINY, f"output_dir={tmp_path / 'ref'}")[0] == 0
    ref = tmp_path / "ref" / "r"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, "train", *TINY,
                           f"output_dir={tmp_path / 'int'}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    killed = tmp_path / "int" / "r"
    assert sorted(p.name for p in (killed / "standard" / "checkpoints").iterdir()) == [
        "best.ckpt", "last.ckpt"]
    assert not (killed / "results.json").exists()
    assert not (killed / "standard" / "metrics.csv").exists()
    run_dir = tmp_path / "moved" / "r"  # a run folder moved before it is continued
    shutil.move(killed, run_dir)
    ckpts = run_dir / "standard" / "checkpoints"

    rc, out, err = cli("train", "--resume", run_dir)
    assert rc == 0, err
    assert f"run folder: {run_dir}" in out
    for name in ("metrics.csv", "predictions.csv", "test_metrics.json"):
        assert (run_dir / "standard" / name).read_bytes() == (ref / "standard" / name).read_bytes()
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, run_dir))
    assert a == b
    epochs = pd.read_csv(ref / "standard" / "metrics.csv")
    assert epochs["lr"].nunique() > 1  # the scheduler state mattered
    assert not ckpts.exists()  # a finished fold keeps model.pt only
    # nothing of the run outside its folder
    assert not any((tmp_path / "int").iterdir())
    assert sorted(p.name for p in (tmp_path / "moved").iterdir()) == ["r"]

    rc, _, err = cli("train", "--resume", run_dir)
    assert rc == 2 and "finished" in err
    rc, _, err = cli("train", "--resume", run_dir, "train.lr=0.1")
    assert rc == 2 and "train.lr=0.1" in err


def test_train_resume_is_not_a_config_key(cli, tmp_path):
    rc, _, err = cli("train", *TINY, "+train.resume=true", f"output_dir={tmp_path}")
    assert rc == 2 and "--resume RUN_DIR" in err
    rc, _, err = cli("train", *TINY, "+train.resum=true", f"output_dir={tmp_path}")
    assert rc == 2 and "train.resum" in err and "nothing would read it" in err
    assert not any(tmp_path.iterdir())
    rc, _, err = cli("train", "--resume", tmp_path / "nothing")
    assert rc == 2 and "no such run folder" in err


class _Interrupted(RuntimeError):
    pass


class _Interrupt(L.Callback):
    """Raise in the second epoch of the n-th fit (an in-process stand-in for a kill)."""

    fits = 0

    def __init__(self, nth: int) -> None:
        self.nth = nth

    def on_train_start(self, trainer, module):
        _Interrupt.fits += 1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if _Interrupt.fits == self.nth and trainer.current_epoch == 1 and batch_idx == 1:
            raise _Interrupted


def test_benchmark_resume_continues_the_unfinished_folder_and_run(cli, capsys, tmp_path,
                                                                   monkeypatch):
    # one Lightning fit per run (the parallel path keeps no training checkpoints)
    common = ["-d", "synthetic", "-m", "late_fusion", "--seeds", "3,4", "--output", tmp_path,
              "--parallel", "off", *TINY[2:-1]]
    rc, out, err = cli("benchmark", *common)
    assert rc == 0 and "benchmark folder:" in err
    first = tmp_path / "synthetic-polarity"
    orig = run_module._trainer
    _Interrupt.fits = 0
    monkeypatch.setattr(run_module, "_trainer",
                        lambda cfg, cbs, root: orig(cfg, [*cbs, _Interrupt(2)], root))
    with pytest.raises(_Interrupted):  # killed during seed 4
        cli("benchmark", *common)
    err = capsys.readouterr().err
    second = tmp_path / "synthetic-polarity-1"
    assert f"benchmark folder: {second}" in err  # printed at the start
    seed4 = second / "runs" / "late_fusion-seed4"
    assert (seed4 / "standard" / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setattr(run_module, "_trainer", orig)
    rc, out, err = cli("benchmark", *common, "--resume")  # no --name: the unfinished one
    assert rc == 0, err
    assert f"benchmark folder: {second} (resumed)" in err and "continues" in err
    a = pd.read_csv(first / "per_seed.csv")
    b = pd.read_csv(second / "per_seed.csv")
    pd.testing.assert_frame_equal(a, b)
    for seed in (3, 4):
        name = f"runs/late_fusion-seed{seed}/standard/metrics.csv"
        assert (first / name).read_bytes() == (second / name).read_bytes()
    rc, _, err = cli("benchmark", *common, "--resume")
    assert rc == 2 and "nothing to resume" in err


def test_resume_without_name_asks_when_several_folders_are_unfinished(tmp_path):
    base = tmp_path / "synthetic-polarity"
    for name in ("synthetic-polarity", "synthetic-polarity-1", "synthetic-polarity-2",
                 "synthetic-polarity-other"):
        (tmp_path / name).mkdir()
    (base / "summary.md").write_text("done")
    with pytest.raises(ConfigError, match="synthetic-polarity-1, synthetic-polarity-2"):
        _unfinished_folder(base)
    (tmp_path / "synthetic-polarity-1" / "summary.md").write_text("done")
    assert _unfinished_folder(base) == tmp_path / "synthetic-polarity-2"


PARALLEL_KILLER = textwrap.dedent("""
    import os, signal, sys
    import emodistill.training.parallel as P
    from emodistill.cli import main

    chunks, steps = [], [0]
    orig_chunk, orig_step = P._train_chunk, P._StackedAdam.step

    def chunk(setups, dev):
        chunks.append(len(setups))
        return orig_chunk(setups, dev)

    def step(self, *a, **k):  # kill -9 at the third optimiser step of the second chunk
        if len(chunks) == 2:
            steps[0] += 1
            if steps[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        return orig_step(self, *a, **k)

    P._train_chunk, P._StackedAdam.step = chunk, step
    sys.exit(main(sys.argv[1:]))
""")


def test_parallel_benchmark_killed_mid_chunk_resumes_to_the_uninterrupted_table(
        cli, capsys, tmp_path, monkeypatch, one_thread):
    import emodistill.training.parallel as P

    # chunks of one member: seed 3 finishes, seed 4 is killed (SIGKILL) in its chunk
    common = ["-d", "synthetic", "-m", "late_fusion", "--seeds", "3,4", "--output", tmp_path,
              "--parallel", "1", *TINY[2:-1]]
    rc, _, err = cli("benchmark", *common)
    assert rc == 0 and "trained in parallel (chunk 1)" in err
    first = tmp_path / "synthetic-polarity"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PARALLEL_KILLER, "benchmark",
                           *map(str, common)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    second = tmp_path / "synthetic-polarity-1"
    runs = second / "runs"
    done3 = runs / "late_fusion-seed3" / "standard" / "fold_result.json"
    assert done3.is_file() and not (runs / "late_fusion-seed3" / "results.json").exists()
    assert not (runs / "late_fusion-seed4" / "standard" / "fold_result.json").exists()
    stamp = done3.stat().st_mtime_ns
    trained: list[list[str]] = []
    orig = P._train_chunk

    def counting(setups, dev):
        trained.append([str(s.member.out) for s in setups])
        return orig(setups, dev)

    monkeypatch.setattr(P, "_train_chunk", counting)
    rc, _, err = cli("benchmark", *common, "--resume")
    assert rc == 0, err
    assert f"benchmark folder: {second} (resumed)" in err
    assert "2 interrupted run(s) continued" in err and "read back" in err
    # the finished member is not trained again; the killed one is, on the parallel path
    assert trained == [[str(runs / "late_fusion-seed4" / "standard")]]
    assert done3.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pd.read_csv(first / "per_seed.csv"),
                                  pd.read_csv(second / "per_seed.csv"))
    for seed in (3, 4):
        for name in ("metrics.csv", "predictions.csv", "test_metrics.json"):
            rel = f"runs/late_fusion-seed{seed}/standard/{name}"
            assert (first / rel).read_bytes() == (second / rel).read_bytes()
        rel = f"runs/late_fusion-seed{seed}/results.json"
        assert json.loads((first / rel).read_text()) == json.loads((second / rel).read_text())
