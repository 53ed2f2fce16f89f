"""Small configs and a leaky-split dataset for the model-selection (leakage) tests."""

from __future__ import annotations

from emodistill.config import compose
from emodistill.data.formats.synthetic import make_synthetic_mer

__all__ = ["FIXED", "CARVE", "small_cfg", "carved_leaky"]

FIXED = ["train.selection=last", "train.scheduler=none",
         "train.recipe_from=mosi_raw_features poria (test)"]


def small_cfg(tmp_path, *overrides, method="late_fusion", dataset="synthetic"):
    small = [] if method in ("hinton_kd", "logistic") else ["method.width=8"]
    return compose(dataset=dataset, method=method, overrides=[
        *small, "train.max_epochs=2", "train.progress_bar=false",
        "train.save_checkpoint=false", f"output_dir={tmp_path}", *overrides])


def carved_leaky(n=160):
    """Synthetic data whose `standard` train rows are label-seen for text; valid carved."""
    ds = make_synthetic_mer(n, seed=1)
    lab = ds.splits["standard"].copy()
    lab[lab == "valid"] = "train"
    ds.splits["standard"] = lab
    ds.info["leaky_splits"] = {"standard": {"train": ["text"]}}
    return ds


CARVE = ["+protocol.valid_group=video"]
