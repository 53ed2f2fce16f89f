"""Issue 15: a file of the wrong kind is called what it is (empty, zip, gzip, text, npy)."""

import gzip
import zipfile

import numpy as np
import pytest

from emodistill.data._io import describe_file, refuse_wrong_kind
from emodistill.data.formats.eeg_tables import load_eeg_bandpower
from emodistill.errors import DataFormatError


def test_describe_file(tmp_path):
    cases = {"empty": b"", "gzip": gzip.compress(b"x"), "text": "é,1,2\n".encode(),
             "binary": bytes(range(256)), "npy": None, "zip": None}
    for kind, data in cases.items():
        f = tmp_path / kind
        if kind == "npy":
            np.save(f.open("wb"), np.zeros(2))
        elif kind == "zip":
            with zipfile.ZipFile(f, "w") as z:
                z.writestr("a", "b")
        else:
            f.write_bytes(data)
        assert describe_file(f) == kind
    with pytest.raises(DataFormatError, match=r"gzip: is a gzip-compressed file, not a table; "
                                              r"decompress it first \(e.g. gunzip FILE\)"):
        refuse_wrong_kind(tmp_path / "gzip", expected="a table", accept=("text",))


def test_eeg_table_that_is_gzip_or_empty(tmp_path):
    for name in ("EEG_feature.txt", "subject_video.txt", "valence_arousal_label.txt"):
        (tmp_path / name).write_text("1 2\n")
    (tmp_path / "EEG_feature.txt").write_bytes(gzip.compress(b"1 2\n"))
    with pytest.raises(DataFormatError, match=r"EEG_feature.txt: is a gzip-compressed file"):
        load_eeg_bandpower(tmp_path, name="deap_bandpower")
    (tmp_path / "EEG_feature.txt").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"EEG_feature.txt: is an empty file"):
        load_eeg_bandpower(tmp_path, name="deap_bandpower")


def test_checkpoint_that_is_text_or_empty(tmp_path):
    from emodistill.checkpoint import load_checkpoint

    f = tmp_path / "model.pt"
    f.write_text("not a model\n")
    with pytest.raises(DataFormatError, match=r"model.pt: not an emodistill checkpoint .*\(it is "
                                              r"a plain-text file\)"):
        load_checkpoint(f)
    f.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"\(it is an empty file"):
        load_checkpoint(f)


def test_features_text_input_that_is_gzip(tmp_path, capsys):
    from emodistill.cli import main

    f = tmp_path / "t.csv"
    f.write_bytes(gzip.compress(b"id,text\n1,hello\n"))
    assert main(["features", "text", "--input", str(f), "--output", str(tmp_path / "o.npz")]) == 2
    assert "t.csv: is a gzip-compressed file, not a CSV text file" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
