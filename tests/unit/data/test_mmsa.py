"""MMSA pickles through the real loader: small files with the exact real layout.

Layout (../shared/reference/dmd_mmsa.md §3): top-level keys train/valid/test; per split
``raw_text``, ``id`` ("<video>$_$<clip>"), ``text`` N×T×768 float32, ``text_bert`` N×3×T,
``audio`` N×T_a×D_a (real MOSI/MOSEI audio holds -inf), ``vision`` N×T_v×D_v,
``regression_labels``, ``annotations``, ``classification_labels``; unaligned files add
``audio_lengths`` / ``vision_lengths``.
"""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest

from emodistill.config import compose
from emodistill.data.formats.mmsa import load_mmsa
from emodistill.data.registry import build_dataset
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError, UnsafePickleError
from emodistill.training.run import prepare
from helpers.mmsa import LAYOUTS, SIZES, make_mmsa, write


@pytest.fixture
def aligned_pkl(tmp_path):
    return write(tmp_path / "aligned_50.pkl", make_mmsa("mosi_aligned", n_inf=5))


def test_aligned_file_matches_the_contract(aligned_pkl):
    raw = pickle.loads(aligned_pkl.read_bytes())
    ds = load_mmsa(aligned_pkl, name="mosi")
    n = sum(SIZES.values())
    assert len(ds) == n
    assert [(m.name, m.seq_len, m.dim) for m in ds.spec.modalities] == [
        ("text", 50, 768), ("audio", 50, 5), ("vision", 50, 20)]
    assert ds.info["aligned"] is True
    for m in ("text", "audio", "vision"):
        assert ds.features[m].shape == (n, 50, ds.spec.modality(m).dim)
        assert ds.mask[m].all() and ds.present[m].all()
    # rows keep the file's order: train, valid, test
    ids = np.concatenate([raw[s]["id"] for s in ("train", "valid", "test")]).astype(str)
    np.testing.assert_array_equal(ds.ids, ids)
    np.testing.assert_array_equal(
        ds.splits["standard"], ["train"] * 7 + ["valid"] * 3 + ["test"] * 4)
    np.testing.assert_array_equal(ds.groups["video"], [i.split("$_$")[0] for i in ids])
    y = np.concatenate([raw[s]["regression_labels"] for s in ("train", "valid", "test")])
    np.testing.assert_array_equal(ds.targets["sentiment"].numpy(), y)
    # polarity is MMSA's Has0 binarisation: a label of exactly 0 is non-negative
    np.testing.assert_array_equal(ds.targets["polarity"].numpy(), (y >= 0).astype(int))
    assert ds.targets["polarity"][0] == 1 and y[0] == 0
    assert ds.spec.target("sentiment").value_range == (-3.0, 3.0)
    np.testing.assert_allclose(ds.features["vision"][7:10].numpy(), raw["valid"]["vision"])


def test_nonfinite_audio_is_repaired_counted_and_logged(aligned_pkl, caplog):
    raw = pickle.loads(aligned_pkl.read_bytes())
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        ds = load_mmsa(aligned_pkl, name="mosi")
    assert ds.info["nonfinite_repaired"] == {"audio": 5}
    assert any("audio" in r.getMessage() and " 5 " in r.getMessage() for r in caplog.records)
    a = ds.features["audio"][:7].numpy()
    bad = ~np.isfinite(raw["train"]["audio"])
    assert bad.sum() == 5 and np.isfinite(a).all()
    assert (a[bad] == 0).all()  # MMSA's rule: -inf -> 0
    np.testing.assert_array_equal(a[~bad], raw["train"]["audio"][~bad])


def test_clean_file_logs_no_repair(tmp_path, caplog):
    p = write(tmp_path / "clean.pkl", make_mmsa())
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        ds = load_mmsa(p)
    assert ds.info["nonfinite_repaired"] == {}
    assert not [r for r in caplog.records if "non-finite" in r.getMessage()]


@pytest.mark.parametrize("layout", ["mosi_unaligned", "sims_unaligned"])
def test_unaligned_lengths_become_padding_masks(tmp_path, layout):
    raw = make_mmsa(layout, seed=1)
    p = write(tmp_path / f"{layout}.pkl", raw)
    ds = load_mmsa(p, name="sims" if layout.startswith("sims") else "mosi")
    t_text, (ta, da), (tv, dv), _, bound = LAYOUTS[layout]
    assert ds.info["aligned"] is False
    assert ds.spec.modality("audio").seq_len == ta and ds.spec.modality("audio").dim == da
    assert ds.spec.modality("vision").seq_len == tv and ds.spec.modality("vision").dim == dv
    for m in ("audio", "vision"):
        ln = np.concatenate([raw[s][f"{m}_lengths"] for s in SIZES])
        mask = ds.mask[m].numpy()
        np.testing.assert_array_equal(mask.sum(1), ln)
        # real steps first, padding after; padding is exactly zero
        np.testing.assert_array_equal(mask, np.arange(mask.shape[1])[None] < ln[:, None])
        assert (ds.features[m].numpy()[~mask] == 0).all()
    # text keeps all steps by default, as MMSA/DMD models see them
    assert ds.mask["text"].all()
    assert ds.spec.target("sentiment").value_range == (-bound, bound)


def test_text_lengths_from_bert_attention_mask(tmp_path):
    raw = make_mmsa("mosi_unaligned", seed=2)
    p = write(tmp_path / "u.pkl", raw)
    ds = load_mmsa(p, use_text_mask=True)
    want = np.concatenate([raw[s]["text_bert"][:, 1].sum(1) for s in SIZES]).astype(int)
    np.testing.assert_array_equal(ds.mask["text"].numpy().sum(1), want)


def test_sims_range_is_minus_one_to_one(tmp_path):
    raw = make_mmsa("sims_unaligned", seed=3)
    ds = load_mmsa(write(tmp_path / "sims.pkl", raw), name="sims")
    assert ds.spec.target("sentiment").value_range == (-1.0, 1.0)
    raw["test"]["regression_labels"][1] = 1.6  # valid for MOSI, not for SIMS
    with pytest.raises(DataFormatError, match=r"outside \[-1.0, 1.0\]"):
        load_mmsa(write(tmp_path / "sims_bad.pkl", raw), name="sims")


def test_protocol_2_pickle_from_numpy_1_loads(tmp_path):
    raw = pickle.dumps(make_mmsa(), protocol=2)
    p = tmp_path / "old.pkl"
    p.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert len(load_mmsa(p)) == sum(SIZES.values())


def test_through_registry_config_and_protocol(aligned_pkl):
    ds = build_dataset({"name": "mosei", "path": str(aligned_pkl), "target": "sentiment"})
    assert ds.spec.name == "mosei"
    cfg = compose(dataset="mosi", method="late_fusion",
                  overrides=[f"dataset.path={aligned_pkl}", "method.width=8"])
    prep = prepare(cfg)
    (fold,) = prep.folds
    assert (len(fold.train), len(fold.valid), len(fold.test)) == (7, 3, 4)
    assert prep.target.name == "sentiment"


# ------------------------------------------------------------------ bad input
def test_missing_file_and_missing_path(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope.pkl"):
        load_mmsa(tmp_path / "nope.pkl")
    with pytest.raises(ConfigError, match="dataset.path"):
        load_mmsa(None)


def test_missing_key_names_key_and_split(tmp_path):
    raw = make_mmsa()
    del raw["valid"]["vision"]
    with pytest.raises(DataFormatError, match=r"'valid'.*\['vision'\]"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


def test_missing_split(tmp_path):
    raw = make_mmsa()
    del raw["test"]
    with pytest.raises(DataFormatError, match="train/valid/test"):
        load_mmsa(write(tmp_path / "a.pkl", raw))
    with pytest.raises(DataFormatError, match="list"):
        load_mmsa(write(tmp_path / "b.pkl", [1, 2]))


@pytest.mark.parametrize("bad", ["2d", "rows"])
def test_wrong_dims(tmp_path, bad):
    raw = make_mmsa()
    a = raw["train"]["audio"]
    raw["train"]["audio"] = a[:, :, 0] if bad == "2d" else a[:-1]
    with pytest.raises(DataFormatError, match=r"a.pkl: split 'train'/audio has shape"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


def test_feature_dim_differs_across_splits(tmp_path):
    raw = make_mmsa()
    raw["test"]["vision"] = raw["test"]["vision"][:, :, :7]
    with pytest.raises(DataFormatError, match=r"vision feature dim differs.*\[7, 20\]"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


def test_label_count_mismatch(tmp_path):
    raw = make_mmsa()
    raw["valid"]["regression_labels"] = raw["valid"]["regression_labels"][:2]
    with pytest.raises(DataFormatError, match="regression_labels has 2 values, not 3"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


def test_labels_out_of_range_name_value_and_id(tmp_path):
    raw = make_mmsa()
    raw["valid"]["regression_labels"][2] = 4.5
    with pytest.raises(DataFormatError, match=r"4\.5.*vidvalid1\$_\$2"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


def test_nan_label_is_refused(tmp_path):
    raw = make_mmsa()
    raw["train"]["regression_labels"][3] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


class NotData:
    pass


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickle_with_class_instance_is_refused(tmp_path):
    raw = make_mmsa()
    raw["train"]["extra"] = NotData()
    with pytest.raises(UnsafePickleError, match="NotData"):
        load_mmsa(write(tmp_path / "a.pkl", raw))


def test_pickle_with_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    raw = make_mmsa()
    raw["train"]["id"] = _Touch(str(marker))
    with pytest.raises(UnsafePickleError):
        load_mmsa(write(tmp_path / "a.pkl", raw))
    assert not marker.exists()


def test_truncated_file(tmp_path):
    data = pickle.dumps(make_mmsa(), protocol=4)
    p = tmp_path / "trunc.pkl"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="trunc.pkl.*not a readable data pickle"):
        load_mmsa(p)
