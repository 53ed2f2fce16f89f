"""The electrode-aware EEG model and wearable students distilled from the full cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.checkpoint import load_checkpoint
from emodistill.config import compose
from emodistill.data.batch import Batch
from emodistill.data.formats.eeg_tables import load_eeg_bandpower
from emodistill.data.montage import DEAP_32
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError
from emodistill.models import build_method
from emodistill.serving.predict import Predictor
from emodistill.training.run import run_experiment

TARGET = TargetSpec("valence", "binary", class_names=("low", "high"))


def _spec(**mods):
    return DatasetSpec("t", tuple(ModalitySpec(k, d, t) for k, (t, d) in mods.items()),
                       (TARGET,), ("subject",))


def _batch(x: dict[str, torch.Tensor]) -> Batch:
    b = next(iter(x.values())).shape[0]
    return Batch(inputs=x, mask={k: torch.ones(b, v.shape[1], dtype=torch.bool)
                                 for k, v in x.items()},
                 present={k: torch.ones(b, dtype=torch.bool) for k in x},
                 target=torch.zeros(b, dtype=torch.long), index=torch.arange(b))


def test_nodes_are_electrodes_with_band_features_in_both_layouts():
    flat = build_method("eeg_graph", spec=_spec(eeg=(1, 160)), target=TARGET, params={})
    bands = build_method("eeg_graph", spec=_spec(eeg=(5, 32)), target=TARGET, params={})
    assert flat.electrodes == list(DEAP_32) and flat.n_bands == 5
    x = torch.arange(160.0).reshape(1, 1, 160)
    n = flat.nodes(x)  # [1, 32, 5]: node c, band k = column k*32 + c
    assert n[0, 3, 2] == 2 * 32 + 3
    torch.testing.assert_close(bands.nodes(x.reshape(1, 5, 32)), n)
    with pytest.raises(ConfigError, match="cannot tell the electrodes"):
        build_method("eeg_graph", spec=_spec(eeg=(1, 21)), target=TARGET, params={})


def test_the_same_weights_run_on_any_montage():
    full = build_method("eeg_graph", spec=_spec(eeg=(1, 160)), target=TARGET, params={})
    head = build_method("eeg_graph", spec=_spec(frontal4=(1, 20)), target=TARGET, params={})
    assert head.electrodes == ["AF3", "AF4", "F7", "F8"]
    head.load_state_dict(full.state_dict())  # positions are derived, not stored
    full.eval()
    head.eval()
    x = torch.randn(3, 1, 160)
    idx = [DEAP_32.index(e) for e in head.electrodes]
    sub = x.reshape(3, 5, 32)[:, :, idx].reshape(3, 1, 20)
    # with a very narrow distance prior every electrode attends to itself only, so the
    # montage's nodes get the same states as in the full cap
    for m in (full, head):
        for blk in m.blocks:
            blk.log_sigma.data.fill_(np.log(1e-3))
    hf = full.band_in(full.nodes(x)) + full.pos_in(full.pos)[None]
    hh = head.band_in(head.nodes(sub)) + head.pos_in(head.pos)[None]
    for bf, bh in zip(full.blocks, head.blocks, strict=True):
        hf, att = bf(hf, full.dist2)
        hh, _ = bh(hh, head.dist2)
    torch.testing.assert_close(hf[:, idx], hh, atol=1e-5, rtol=1e-5)
    assert att.shape == (3, 4, 32, 32)


def _table(root, n_subj=4, per=12, seed=0):
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(1, n_subj + 1), per)
    y = rng.integers(0, 2, len(subj))
    x = rng.gamma(2.0, size=(len(subj), 160)) + y[:, None] * 0.5
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "EEG_feature.txt", x, delimiter="\t")
    np.savetxt(root / "subject_video.txt", np.c_[subj, np.arange(len(subj)) % per + 1],
               fmt="%d", delimiter="\t")
    np.savetxt(root / "valence_arousal_label.txt", np.c_[2 - y, 2 - y], fmt="%d",
               delimiter="\t")


@pytest.mark.parametrize("method", ["eeg_hinton_kd", "eeg_kd_feature"])
def test_wearable_student_from_the_full_cap_predicts_from_its_electrodes_only(tmp_path, method):
    _table(tmp_path / "data")
    cfg = compose(dataset="mahnob_bandpower", method=method, overrides=[
        f"dataset.root={tmp_path / 'data'}", "dataset.montages=[frontal4]",
        "protocol.fold=subject1", "train.max_epochs=2", "train.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}", "protocol.subject_norm=transductive",
    ])
    res = run_experiment(cfg)
    fold = res.folds[0].path
    teacher = load_checkpoint(fold / "teacher" / "model.pt")
    assert teacher.model.modalities == ["eeg"]  # the teacher saw the full cap only
    ck = load_checkpoint(fold / "model.pt")
    assert ck.model.modalities == ["frontal4"]
    assert ck.model.spec.modality("frontal4").dim == 20
    pred = Predictor.from_checkpoint(ck).predict(frontal4=np.random.rand(3, 20))
    assert len(pred) == 3  # four electrodes x five bands are all the student needs
    ds = load_eeg_bandpower(tmp_path / "data", montages=["frontal4"])
    np.testing.assert_array_equal(
        ds.features["frontal4"][:, 0].numpy(),
        ds.features["eeg"][:, 0].numpy().reshape(-1, 5, 32)[:, :, [1, 17, 3, 20]].reshape(-1, 20))


def test_a_checkpoint_carries_to_another_table_only_when_layout_and_labels_match(tmp_path):
    from emodistill.training.transfer import evaluate_on_dataset

    _table(tmp_path / "a", seed=1)
    _table(tmp_path / "b", n_subj=3, seed=2)
    cfg = compose(dataset="mahnob_bandpower", method="logistic", overrides=[
        f"dataset.root={tmp_path / 'a'}", "dataset.montages=[frontal4]", "method.C=0.1",
        "method.modality=frontal4", "protocol.fold=subject1", "train.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}", "protocol.subject_norm=transductive",
    ])
    ckpt = run_experiment(cfg).folds[0].path / "model.pt"
    res = evaluate_on_dataset(ckpt, "deap_bandpower", [f"dataset.root={tmp_path / 'b'}"])
    from emodistill.cli import main  # the syntax: overrides after -d

    assert main(["evaluate", str(ckpt), "-d", "deap_bandpower",
                 f"dataset.root={tmp_path / 'b'}"]) == 0
    assert res["n"] == 36 and res["trained_on"] == "mahnob_bandpower"
    assert res["subject_norm"] == "transductive"
    y = load_eeg_bandpower(tmp_path / "b").targets["valence"].numpy()
    assert res["majority_acc"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    assert 0.0 <= res["acc"] <= 1.0 and "f1_macro" in res
    with pytest.raises(ConfigError, match="no modality 'frontal4'"):
        evaluate_on_dataset(ckpt, "deap_bandpower",
                            [f"dataset.root={tmp_path / 'b'}", "dataset.montages=[emotiv14]"])
    with pytest.raises(ConfigError, match=r"reads \[1 x 20\] features"):
        evaluate_on_dataset(ckpt, "deap_bandpower",
                            [f"dataset.root={tmp_path / 'b'}", "dataset.layout=bands"])
    with pytest.raises(ConfigError, match="synthetic has no modality 'frontal4'"):
        evaluate_on_dataset(ckpt, "synthetic", [])
