import json

from emodistill.checkpoint import load_checkpoint
from emodistill.config import compose
from emodistill.training.run import run_experiment


def test_train_writes_complete_run_folder(tmp_path):
    cfg = compose(dataset="synthetic", method="late_fusion", overrides=[
        "dataset.n=300", "train.max_epochs=3", "train.progress_bar=false",
        f"output_dir={tmp_path}",
    ])
    res = run_experiment(cfg)
    fold = res.folds[0]
    for f in ("metrics.csv", "test_metrics.json", "predictions.csv", "model.pt"):
        assert (fold.path / f).is_file(), f
    assert (res.path / "config.yaml").is_file()
    results = json.loads((res.path / "results.json").read_text())
    assert set(results["mean"]) == {"acc", "f1_macro", "f1_weighted"}
    ck = load_checkpoint(fold.path / "model.pt")
    assert ck.meta["fold"] == "standard"
    assert ck.model.modalities == ["text", "audio", "vision"]
