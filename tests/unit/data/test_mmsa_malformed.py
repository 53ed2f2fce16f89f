"""Issue 15: malformed MMSA pickles written here are refused with file, split, key and shapes."""

from __future__ import annotations

import datetime
import logging

import numpy as np
import pytest

from emodistill.cli import main
from emodistill.config import compose
from emodistill.data.formats.mmsa import load_mmsa
from emodistill.errors import DataFormatError, UnsafePickleError
from helpers.mmsa import make_mmsa, write


def test_audio_dim_differs_in_one_split_names_file_splits_and_shapes(tmp_path):
    raw = make_mmsa()
    a = raw["valid"]["audio"]
    raw["valid"]["audio"] = np.concatenate([a, a[:, :, :1]], axis=2)  # 6 features, not 5
    f = write(tmp_path / "a6.pkl", raw)
    with pytest.raises(DataFormatError) as e:
        load_mmsa(f)
    msg = str(e.value)
    assert str(f) in msg and "audio feature dim differs" in msg
    assert "train (7, 50, 5)" in msg and "valid (3, 50, 6)" in msg


def test_unpublished_dim_is_a_warning(tmp_path, caplog):
    raw = make_mmsa()
    for s in raw.values():
        s["audio"] = np.concatenate([s["audio"], s["audio"][:, :, :1]], axis=2)
    f = write(tmp_path / "a6.pkl", raw)
    with caplog.at_level(logging.WARNING, logger="emodistill.data.formats.mmsa"):
        ds = load_mmsa(f, name="mosi")
    assert ds.spec.modality("audio").dim == 6
    assert "audio has 6 features per step; the published MMSA mosi files have 5" in caplog.text


def test_ragged_split_names_split_and_key(tmp_path):
    raw = make_mmsa()
    audio = list(raw["test"]["audio"])
    audio[2] = audio[2][:, :4]
    raw["test"]["audio"] = audio
    f = write(tmp_path / "ragged.pkl", raw)
    with pytest.raises(DataFormatError, match=r"split 'test'/audio: samples have different"):
        load_mmsa(f)


def test_empty_valid_split_fails_loading_and_data_verify(tmp_path, capsys):
    raw = make_mmsa()
    raw["valid"] = {k: v[:0] for k, v in raw["valid"].items()}
    f = write(tmp_path / "novalid.pkl", raw)
    with pytest.raises(DataFormatError, match=r"novalid.pkl: split 'valid' holds no samples"):
        load_mmsa(f)
    assert main(["data", "verify", "-d", "mosi", f"dataset.path={f}"]) == 2
    err = capsys.readouterr().err
    assert "split 'valid' holds no samples" in err and "OK:" not in capsys.readouterr().out


def test_label_errors_name_file_split_and_row(tmp_path):
    raw = make_mmsa()
    raw["test"]["regression_labels"][3] = np.nan
    f = write(tmp_path / "nan.pkl", raw)
    with pytest.raises(DataFormatError, match=r"nan.pkl: split 'test'/regression_labels.*row 3"):
        load_mmsa(f)
    raw = make_mmsa()
    del raw["train"]["regression_labels"]
    with pytest.raises(DataFormatError, match=r"nolab.pkl: split 'train' lacks keys"):
        load_mmsa(write(tmp_path / "nolab.pkl", raw))


def test_unsafe_pickle_refusal_names_the_file(tmp_path):
    raw = make_mmsa()
    raw["train"]["extra"] = datetime.date(2020, 1, 1)
    f = write(tmp_path / "evil.pkl", raw)
    with pytest.raises(UnsafePickleError, match=r"evil.pkl: refusing to load datetime.date"):
        load_mmsa(f)


@pytest.mark.parametrize("kind,content,says", [
    ("empty", b"", "an empty file"),
    ("gzip", b"\x1f\x8b\x08\x00rest", "a gzip-compressed file, not a data pickle; decompress"),
    ("zip", b"PK\x03\x04rest", "a zip archive, not a data pickle"),
    ("text", b"id,label\n1,0.5\n", "a plain-text file, not a pickle"),
])
def test_pickle_that_is_something_else(tmp_path, kind, content, says):
    f = tmp_path / f"{kind}.pkl"
    f.write_bytes(content)
    with pytest.raises(DataFormatError, match=says) as e:
        load_mmsa(f)
    assert str(f) in str(e.value)


def test_sims_per_modality_targets(tmp_path):
    raw = make_mmsa("sims_unaligned", seed=5)
    rng = np.random.default_rng(0)
    for s in raw.values():
        for k in ("T", "A", "V"):
            s[f"regression_labels_{k}"] = np.round(rng.uniform(-1, 1, len(s["id"])), 1)
    f = write(tmp_path / "sims.pkl", raw)
    ds = load_mmsa(f, name="sims")
    names = [t.name for t in ds.spec.targets]
    assert names == ["sentiment", "polarity", "sentiment_text", "sentiment_audio",
                     "sentiment_vision"]
    y = np.concatenate([raw[s]["regression_labels_A"] for s in ("train", "valid", "test")])
    np.testing.assert_allclose(ds.targets["sentiment_audio"].numpy(), y, rtol=1e-6)
    assert ds.spec.target("sentiment_vision").value_range == (-1.0, 1.0)
    from emodistill.training.run import prepare

    prep = prepare(compose(dataset="sims", method="late_fusion",
                           overrides=[f"dataset.path={f}", "dataset.target=sentiment_audio"]))
    assert prep.target.name == "sentiment_audio"
    del raw["test"]["regression_labels_T"]
    with pytest.raises(DataFormatError, match=r"regression_labels_T is missing from split"):
        load_mmsa(write(tmp_path / "sims_bad.pkl", raw), name="sims")
