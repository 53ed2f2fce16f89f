"""The CLI package: ``-m`` entries split like the docs say; light commands never import torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emodistill.cli import main
from emodistill.config import split_method_entries, split_top_level
from emodistill.errors import ConfigError

SRC = Path(__file__).resolve().parents[2] / "src"


def test_commas_inside_brackets_and_quotes_do_not_split():
    assert split_top_level("a=1,b=[1,2],c='x,y',d={p: 1, q: [2,3]}") == [
        "a=1", "b=[1,2]", "c='x,y'", "d={p: 1, q: [2,3]}"]
    assert split_top_level("note=it's,b=2") == ["note=it's", "b=2"]  # not a quote: a word
    assert split_top_level("a,,b") == ["a", "", "b"]
    for bad, what in (("a=[1,2", "never closed"), ("a=1]", "unbalanced"),
                      ("a='x,y", "never closed"), ("a=(1]", "unbalanced")):
        with pytest.raises(ConfigError, match=what):
            split_top_level(bad)


def test_method_entries_carry_several_overrides_and_list_values():
    assert split_method_entries("unimodal,early_fusion") == ["unimodal", "early_fusion"]
    assert split_method_entries(
        "unimodal:modality=audio,late_fusion:aux_weight=0.5,dropout=0.1,hidden=[8,16],"
        "early_fusion") == ["unimodal:modality=audio",
                            "late_fusion:aux_weight=0.5,dropout=0.1,hidden=[8,16]",
                            "early_fusion"]
    assert split_method_entries("a,,b,") == ["a", "b"]  # empty items ignored, as before
    with pytest.raises(ConfigError, match=r"after 'unimodal'.*unimodal:modality=text"):
        split_method_entries("unimodal,modality=text")
    with pytest.raises(ConfigError, match="comes first"):
        split_method_entries("dropout=0.1,late_fusion")


def test_expand_methods_keeps_list_values_whole():
    from emodistill.training.benchmark import expand_methods

    [e] = expand_methods(["late_fusion:width=[8,16],dropout=0.1"], ["text"])
    assert e.overrides == ["method.width=[8,16]", "method.dropout=0.1"]
    assert e.label == "late_fusion(width=[8,16],dropout=0.1)"


def test_expand_methods_passes_train_keys_to_the_train_section():
    from emodistill.training.benchmark import expand_methods

    [e] = expand_methods(["hinton_kd:kd_mixup=1.0,train.max_epochs=80,train.patience=20"],
                         ["eeg"])
    assert e.overrides == ["method.kd_mixup=1.0", "train.max_epochs=80", "train.patience=20"]
    assert e.label == "hinton_kd(kd_mixup=1.0,train.max_epochs=80,train.patience=20)"
    [e] = expand_methods(["hinton_kd:+teacher.train.selection=best,+train.x=1"], ["eeg"])
    assert e.overrides == ["+method.teacher.train.selection=best", "+train.x=1"]


def test_benchmark_command_hands_whole_entries_to_the_benchmark(monkeypatch, capsys):
    import emodistill.training.benchmark as bm

    seen = {}

    def fake(**kw):
        seen.update(kw)
        raise ConfigError("stop here")

    monkeypatch.setattr(bm, "run_benchmark", fake)
    rc = main(["benchmark", "-d", "synthetic", "-m",
               "unimodal,late_fusion:aux_weight=0.5,dropout=0.1", "--seeds", "1"])
    assert rc == 2 and "stop here" in capsys.readouterr().err
    assert seen["methods"] == ["unimodal", "late_fusion:aux_weight=0.5,dropout=0.1"]


# (``cache ls`` would belong here too, but ``emodistill.data.__init__`` imports the loaders)
@pytest.mark.parametrize("argv", [["--help"], ["list", "experiments"], ["report", "--help"],
                                  ["benchmark", "--help"]])
def test_light_commands_do_not_import_torch(argv, tmp_path):
    code = ("import sys\nfrom emodistill.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "EMODISTILL_CACHE_DIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr


def test_python_dash_m_runs_the_cli():
    for mod in ("emodistill", "emodistill.cli"):
        p = subprocess.run([sys.executable, "-m", mod, "--version"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
        assert p.returncode == 0 and p.stdout.startswith("emodistill "), p.stderr


def test_bare_unimodal_follows_a_global_modality_override():
    from emodistill.training.benchmark import expand_methods

    entries = expand_methods(["unimodal", "late_fusion"], ["text", "audio"],
                             ["method.modality=audio"])
    assert [e.label for e in entries] == ["unimodal(audio)", "late_fusion"]
    assert [e.label for e in expand_methods(["unimodal"], ["text", "audio"])] == [
        "unimodal(text)", "unimodal(audio)"]
