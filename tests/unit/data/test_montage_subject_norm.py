"""Electrode order and montage presets of the EEG tables; subject-wise normalisation."""

from __future__ import annotations

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
from helpers import shared_path
from helpers.eeg_tables import write_table as _write_table


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
