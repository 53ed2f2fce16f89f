"""Electrode order and montage presets of the EEG tables; subject-wise normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emodistill.config import compose
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.formats.eeg_tables import ELECTRODE_ORDERS, load_eeg_bandpower
from emodistill.data.montage import DEAP_32, PRESETS, positions, resolve_montage
from emodistill.data.protocols import make_folds
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.data.subject_norm import subject_normalize
from emodistill.errors import ConfigError
from emodistill.training.run import prepare, run_experiment
from helpers import shared_path


def _write_table(root, x, subjects, labels):
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "EEG_feature.txt", x, delimiter="\t")
    np.savetxt(root / "subject_video.txt",
               np.c_[subjects, np.arange(len(subjects)) % 7 + 1], fmt="%d", delimiter="\t")
    np.savetxt(root / "valence_arousal_label.txt", labels, fmt="%d", delimiter="\t")


def test_presets_and_user_lists_resolve_against_the_order():
    assert resolve_montage("frontal4") == ["AF3", "AF4", "F7", "F8"]
    assert len(resolve_montage("emotiv14")) == 14
    assert set(PRESETS["emotiv14"]) <= set(DEAP_32)
    assert resolve_montage(["fz", "CZ"]) == ["Fz", "Cz"]
    assert positions(DEAP_32).shape == (32, 3)
    with pytest.raises(ConfigError, match=r"\['Xx'\] are not in the data's order"):
        resolve_montage(["Fz", "Xx"])
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_montage(["Fz", "fz"])
    with pytest.raises(ConfigError, match="not a preset"):
        resolve_montage("muse")


def test_table_is_reordered_to_geneva_and_montages_cut_band_major(tmp_path):
    # column k*32 + c of the file holds 100*k + (index of the electrode in the Twente order)
    twente = ELECTRODE_ORDERS["twente"]
    row = np.array([100 * k + c for k in range(5) for c in range(32)], float)
    _write_table(tmp_path, np.tile(row, (4, 1)), [1, 1, 2, 2], [[1, 2], [2, 1], [1, 1], [2, 2]])
    ds = load_eeg_bandpower(tmp_path, electrode_order="twente",
                            montages=["frontal4", "emotiv14"] + [], name="t")
    ds2 = load_eeg_bandpower(tmp_path, electrode_order="twente", montages={"mine": ["Oz", "fz"]})
    eeg = ds.features["eeg"][0, 0].numpy().reshape(5, 32)
    for c, name in enumerate(DEAP_32):  # Geneva position c now holds electrode `name`
        assert eeg[2, c] == 200 + twente.index(name)
    f4 = ds.features["frontal4"][0, 0].numpy().reshape(5, 4)
    np.testing.assert_array_equal(f4[0], [twente.index(n) for n in ("AF3", "AF4", "F7", "F8")])
    np.testing.assert_array_equal(f4[4], 400 + f4[0])
    assert ds.spec.modality("emotiv14").dim == 70
    np.testing.assert_array_equal(ds2.features["mine"][0, 0].numpy()[:2],
                                  [twente.index("Oz"), twente.index("Fz")])
    assert ds.info["electrodes"]["frontal4"] == ["AF3", "AF4", "F7", "F8"]
    bands = load_eeg_bandpower(tmp_path, layout="bands", montages=["frontal4"])
    assert bands.spec.modality("frontal4").seq_len == 5
    assert bands.spec.modality("frontal4").dim == 4
    with pytest.raises(ConfigError, match="electrode_order='biosemi'"):
        load_eeg_bandpower(tmp_path, electrode_order="biosemi")


def _subjects_data(n_subj=4, per=10, seed=0):
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), per).astype(str)
    x = rng.normal(size=(len(subj), 1, 6)) * (1 + np.arange(n_subj).repeat(per))[:, None, None]
    x += np.arange(n_subj).repeat(per)[:, None, None] * 10.0  # a large subject offset
    y = rng.integers(0, 2, len(subj))
    spec = DatasetSpec("subj", (ModalitySpec("eeg", 6, 1),),
                       (TargetSpec("valence", "binary", class_names=("low", "high")),),
                       ("subject", "trial"))
    return MultimodalDataset(spec, {"eeg": x}, targets={"valence": y},
                             ids=[f"r{i}" for i in range(len(subj))],
                             groups={"subject": subj, "trial": np.arange(len(subj)).astype(str)})


def test_subject_norm_reads_no_label_and_uses_each_subjects_own_statistics():
    ds = _subjects_data()
    fold = make_folds(ds, "loso", valid_fraction=0.25)[0]
    parts = {k: ds.subset(getattr(fold, k)) for k in ("train", "valid", "test")}
    normed, info = subject_normalize(parts, mode="transductive")
    # the same features with other labels give bit-identical output: labels never enter
    flipped = {}
    for k, v in parts.items():
        w = v.subset(np.arange(len(v)))
        w.targets = {"valence": 1 - w.targets["valence"]}
        flipped[k] = w
    again, _ = subject_normalize(flipped, mode="transductive")
    for k in normed:
        assert torch.equal(normed[k].features["eeg"], again[k].features["eeg"])
    # the held-out subject is standardised with its own (unlabelled) trials
    t = normed["test"].features["eeg"][:, 0].double()
    np.testing.assert_allclose(t.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(t.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    raw = parts["test"].features["eeg"][:, 0].double()
    np.testing.assert_allclose(t.numpy(), ((raw - raw.mean(0)) / raw.std(0, unbiased=False))
                               .numpy(), atol=1e-5)
    assert info["transductive"] and not info["labels_used"]
    with pytest.raises(ConfigError, match="no training samples"):
        subject_normalize(parts, mode="train")


def test_subject_norm_is_a_protocol_option_recorded_in_the_run(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    subj = np.repeat([1, 2, 3, 4], 8)
    _write_table(root, rng.gamma(2.0, size=(32, 160)) + subj[:, None], subj,
                 rng.integers(1, 3, size=(32, 2)))
    over = [f"dataset.root={root}", f"output_dir={tmp_path / 'runs'}",
            "dataset.montages=[frontal4]", "protocol.fold=subject1", "train.progress_bar=false"]
    cfg = compose(dataset="mahnob_bandpower", method="logistic",
                  overrides=[*over, "protocol.subject_norm=transductive",
                             "method.modality=frontal4"])
    res = run_experiment(cfg)
    rec = json.loads((res.folds[0].path / "subject_norm.json").read_text())
    assert rec["mode"] == "transductive" and rec["statistics_from"] == ["train", "valid", "test"]
    assert rec["samples_per_subject"] == {"1": 8, "2": 8, "3": 8, "4": 8}
    assert "subject_norm: transductive" in (res.path / "config.yaml").read_text()
    bad = compose(dataset="mahnob_bandpower", method="logistic",
                  overrides=[*over, "protocol.subject_norm=train"])
    with pytest.raises(ConfigError, match="subject_norm=train: in fold"):
        prepare(bad)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["DEAP", "MAHNOB-HCI"])
def test_configured_electrode_order_matches_the_scalp(name):
    """Neighbouring electrodes correlate: the configured order must fit the 10-20 geometry."""
    from scipy.stats import spearmanr

    cfg = compose(dataset="deap_bandpower" if name == "DEAP" else "mahnob_bandpower")
    ds = load_eeg_bandpower(shared_path("eeg_bandpower", name),
                            electrode_order=cfg.dataset.electrode_order)
    z = np.log(ds.features["eeg"].numpy().reshape(len(ds), 5, 32).astype(float))
    for s in np.unique(ds.groups["subject"]):
        r = ds.groups["subject"] == s
        z[r] = (z[r] - z[r].mean(0)) / (z[r].std(0) + 1e-9)
    corr = np.mean([np.corrcoef(z[:, k].T) for k in range(5)], 0)
    p = positions(DEAP_32)
    iu = np.triu_indices(32, 1)
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)[iu]
    assert spearmanr(corr[iu], -d).statistic > 0.4  # random orders: 0.0 ± 0.06


def test_parallel_members_apply_subject_norm_as_the_sequential_fit(tmp_path):
    from emodistill.config import to_container
    from emodistill.data.registry import build_dataset
    from emodistill.training.parallel import run_parallel

    root = tmp_path / "data"
    rng = np.random.default_rng(2)
    subj = np.repeat([1, 2, 3, 4], 8)
    _write_table(root, rng.gamma(2.0, size=(32, 160)) + 3 * subj[:, None], subj,
                 rng.integers(1, 3, size=(32, 2)))
    cfg = compose(dataset="mahnob_bandpower", method="unimodal", overrides=[
        f"dataset.root={root}", "protocol.subject_norm=transductive", "protocol.fold=subject1",
        "method.hidden=8", "train.max_epochs=2", "train.progress_bar=false", "seed=1"])
    ds = build_dataset(to_container(cfg.dataset))
    seq = run_experiment(cfg, dataset=ds, output_dir=tmp_path / "seq")
    par = run_parallel([cfg], dataset=ds, output_dir=tmp_path / "par")[0]
    assert (par.folds[0].path / "subject_norm.json").is_file()
    assert par.folds[0].test == pytest.approx(seq.folds[0].test, abs=1e-4)
