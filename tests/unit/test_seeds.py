"""Issue 15: seeds are validated up front, before any run folder exists."""

import pytest

from emodistill.cli import main
from emodistill.config import check_seed
from emodistill.errors import ConfigError
from emodistill.training.benchmark import parse_seeds


def test_check_seed():
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1 and check_seed("42") == 42
    for bad in (-1, 2**32, "abc", 1.5, True, None, "-1"):
        with pytest.raises(ConfigError, match=r"seed=.*integer in \[0, 4294967295\]"):
            check_seed(bad)


@pytest.mark.parametrize("text,says", [
    ("-1", "'-1'"), ("1,,2", "empty item"), ("1,", "empty item"), ("abc", "'abc'"),
    ("5-3", "descending"), ("1,1", "repeats"), ("4294967296", "integer in"), ("0-x", "'x'"),
])
def test_parse_seeds_refuses(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_seeds(text)


@pytest.mark.parametrize("seed", ["-1", "abc", "1.5", "4294967296"])
def test_train_refuses_bad_seed_before_the_run_folder(tmp_path, capsys, seed):
    rc = main(["train", "-d", "synthetic", "-m", "late_fusion", f"seed={seed}",
               f"output_dir={tmp_path / 'runs'}", "dataset.n=40"])
    err = capsys.readouterr().err
    assert rc == 2 and "emodistill: error: seed=" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seeds", ["-1", "1,,2"])
def test_benchmark_refuses_bad_seeds_before_any_folder(tmp_path, capsys, seeds):
    rc = main(["benchmark", "-d", "synthetic", "-m", "late_fusion", f"--seeds={seeds}",
               "--output", str(tmp_path / "b"), "dataset.n=40"])
    assert rc == 2 and "seeds=" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
