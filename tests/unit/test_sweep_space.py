"""Issue 15: search spaces resolve by name from the package, and by path when a file exists."""

import pytest

from emodistill.cli import main
from emodistill.errors import ConfigError, UnknownNameError
from emodistill.training.sweep import load_space, resolve_space


def test_space_by_name_and_by_readme_path_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no src/ here: an installed package
    by_name = resolve_space("fusion_small")
    assert by_name.is_file() and by_name.parent.name == "sweep"
    assert resolve_space("src/emodistill/configs/sweep/fusion_small.yaml") == by_name
    assert resolve_space("fusion_small.yaml") == by_name
    assert load_space("fusion_small") == load_space(by_name)


def test_own_file_wins_and_unknown_lists_valid_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "fusion_small.yaml"
    own.write_text("train.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    assert resolve_space("fusion_small.yaml").resolve() == own
    assert load_space(own) == {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}
    with pytest.raises(UnknownNameError, match=r"Did you mean 'fusion_small'.*Packaged spaces: "
                                               r".*fusion_small"):
        resolve_space("fusion_smal")
    with pytest.raises(UnknownNameError, match="no such file"):
        resolve_space("elsewhere/fusion_small.yaml")  # a path that is not there: not guessed
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_space(bad)


def test_cli_unknown_space(capsys):
    rc = main(["sweep", "-d", "synthetic", "-m", "late_fusion", "--space", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "Packaged spaces: fusion_small" in err
