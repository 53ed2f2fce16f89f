"""Report: a killed run is refused with a clear message; teacher vs student for KD runs;
whole-epoch ticks and fraction axes capped at 1."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from emodistill.cli import main
from emodistill.report import plots
from emodistill.report.html import build_report
from helpers.report_runs import write_run


def test_report_on_a_killed_run_says_it_did_not_finish(tmp_path, capsys):
    run = write_run(tmp_path / "r")
    (run / "results.json").unlink()  # killed: a train leaves no results.json
    shutil.rmtree(run / "standard")
    (run / "standard" / "checkpoints").mkdir(parents=True)
    rc = main(["report", str(run), "--embedding", "none"])
    err = capsys.readouterr().err
    assert rc == 2 and "did not finish" in err and f"train --resume {run}" in err
    assert not (run / "report.html").exists()
    bench = tmp_path / "b"
    (bench / "runs").mkdir(parents=True)  # a benchmark killed before its tables
    rc = main(["report", str(bench), "--embedding", "none"])
    assert rc == 2 and "--resume --name b" in capsys.readouterr().err


def test_kd_run_report_puts_the_teacher_beside_the_student(tmp_path):
    run = write_run(tmp_path / "r")
    student = json.loads((run / "results.json").read_text())["folds"]["standard"]["test"]
    teacher = {k: v + 0.05 for k, v in student.items()}
    (run / "standard" / "teacher").mkdir()
    (run / "standard" / "teacher" / "test_metrics.json").write_text(json.dumps(teacher))
    page = build_report(run, embedding="none").read_text()
    assert "Teacher vs student" in page
    m = next(iter(student))
    assert f"<td>{teacher[m]:.4f}</td><td>{student[m]:.4f}</td><td>-0.0500</td>" in page
    plain = build_report(write_run(tmp_path / "p"), embedding="none").read_text()
    assert "Teacher vs student" not in plain


def test_learning_curves_have_whole_epochs_and_fractions_up_to_one():
    df = pd.DataFrame({"epoch": [0, 1, 2], "train/task_loss": [1.0, 0.8, 0.7],
                       "val/task_loss": [1.1, 0.9, 0.8], "val/acc": [0.5, 0.9, 1.0]})
    fig = plots.learning_curves({"seed 1": df})
    ax_loss, ax_metric = fig.axes[:2]
    for ax in (ax_loss, ax_metric):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax_metric.get_ylim()[1] <= 1.0 and ax_metric.get_ylim()[0] >= 0.0
