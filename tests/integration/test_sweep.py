import pytest

from emodistill.errors import ConfigError
from emodistill.training.sweep import load_space, run_sweep

pytest.importorskip("optuna")


def test_sweep_optimises_validation_not_test(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    study = run_sweep(
        dataset="synthetic", method="feature_fusion", space=load_space(space), n_trials=2,
        overrides=["dataset.n=200", "train.max_epochs=1", "train.progress_bar=false",
                   "train.save_checkpoint=false"],
        output_dir=tmp_path / "runs",
    )
    assert len(study.trials) == 2
    for t in study.trials:
        # the objective is the selected validation loss; test numbers are only attributes
        assert t.value == pytest.approx(t.value) and t.value > 0
        assert "acc" in t.user_attrs["test_mean"]


def test_space_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train.lr: {type: gaussian}\n")
    with pytest.raises(ConfigError, match="train.lr"):
        load_space(bad)
