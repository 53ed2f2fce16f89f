"""Issue 15: MOSI utterance CSVs written here with a short row, an empty cell, gzip... are named."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest

from emodistill.data.formats.mosi_utterance import load_mosi_utterance
from emodistill.errors import DataFormatError

N = {"train": 6, "test": 4}


def _rows(a):
    return "\n".join(",".join(repr(float(v)) if not float(v).is_integer() else str(int(v))
                              for v in r) for r in a) + "\n"


def _write(root):
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    (root / "video").mkdir()
    n = sum(N.values())
    labels = rng.integers(0, 2, n)
    (root / "transcripts.csv").write_text("".join(
        f"vid{i // 2}_{i},SOME WORDS {i},{i // 2},{labels[i]}\n" for i in range(n)))
    start = 0
    for part, k in N.items():
        rows = np.arange(start, start + k)
        y = labels[rows][:, None]
        (root / f"text_{part}.csv").write_text(
            _rows(np.hstack([rows[:, None], rng.standard_normal((k, 100)).round(3)])))
        (root / "audio" / f"audio_{part}0.csv").write_text(
            _rows(np.hstack([rng.standard_normal((k, 73)).round(3), y])))
        (root / "video" / f"video_{part}0.csv").write_text(
            _rows(np.hstack([rng.standard_normal((k, 100)).round(3), y])))
        start += k
    return root


def _edit_line(path, line, fn):
    lines = path.read_text().splitlines()
    lines[line - 1] = fn(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def test_clean_files_load(tmp_path):
    ds = load_mosi_utterance(_write(tmp_path))
    assert len(ds) == 10 and ds.spec.modality("audio").dim == 73


def test_short_row_names_file_line_and_column(tmp_path):
    root = _write(tmp_path)
    f = root / "audio" / "audio_train0.csv"
    _edit_line(f, 3, lambda s: ",".join(s.split(",")[:50]))
    with pytest.raises(DataFormatError, match=r"audio_train0.csv: line 3, column 51: the row has "
                                              r"50 of 74 fields \(a short row\)"):
        load_mosi_utterance(root)


def test_empty_cell_names_file_line_and_column(tmp_path):
    root = _write(tmp_path)
    f = root / "video" / "video_test0.csv"
    _edit_line(f, 2, lambda s: ",".join("" if i == 7 else v for i, v in enumerate(s.split(","))))
    with pytest.raises(DataFormatError, match=r"video_test0.csv: line 2, column 8: empty cell"):
        load_mosi_utterance(root)


def test_non_number_and_long_row(tmp_path):
    root = _write(tmp_path)
    f = root / "text_test.csv"
    _edit_line(f, 4, lambda s: ",".join("abc" if i == 5 else v for i, v in enumerate(s.split(","))))
    with pytest.raises(DataFormatError, match=r"text_test.csv: line 4, column 6: 'abc' is not a"):
        load_mosi_utterance(root)
    root = _write(tmp_path / "b")
    _edit_line(root / "text_test.csv", 3, lambda s: s + ",1.0")
    with pytest.raises(DataFormatError, match=r"text_test.csv: line 3: the row has 102 fields, "
                                              r"most rows have 101"):
        load_mosi_utterance(root)


def test_literal_nan_is_repaired_with_file_line_and_column(tmp_path, caplog):
    root = _write(tmp_path)
    f = root / "audio" / "audio_test0.csv"
    _edit_line(f, 2, lambda s: ",".join("nan" if i == 4 else v for i, v in enumerate(s.split(","))))
    with caplog.at_level(logging.WARNING):
        ds = load_mosi_utterance(root)
    assert "audio_test0.csv: 1 NaN/inf value(s), the first at line 2, column 5" in caplog.text
    assert ds.info["nonfinite_repaired"] == {"audio": 1}


def test_transcripts_label_and_other_formats(tmp_path):
    root = _write(tmp_path)
    _edit_line(root / "transcripts.csv", 5, lambda s: s.rsplit(",", 1)[0] + ",")
    with pytest.raises(DataFormatError, match=r"transcripts.csv: line 5, column 4: '' is not a "
                                              r"valid label"):
        load_mosi_utterance(root)
    root = _write(tmp_path / "b")
    f = root / "audio" / "audio_test0.csv"
    f.write_bytes(gzip.compress(f.read_bytes()))
    with pytest.raises(DataFormatError, match=r"audio_test0.csv: is a gzip-compressed file, not "
                                              r"a CSV text file"):
        load_mosi_utterance(root)
    f.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"audio_test0.csv: is an empty file"):
        load_mosi_utterance(root)


def test_standard_label_file_cells_are_named(tmp_path):
    root = _write(tmp_path)
    ids = [ln.split(",")[0] for ln in (root / "transcripts.csv").read_text().splitlines()]
    rows = [f"{i},words,{0.5 if k % 2 else -1.2},{('train', 'dev', 'test')[k % 3]}"
            for k, i in enumerate(ids)]
    f = root / "mosi_standard_labels.csv"
    f.write_text("id,text,label,mode\n" + "\n".join(rows) + "\n")
    assert "standard" in load_mosi_utterance(root, target="sentiment").splits
    rows[3] = rows[3].replace(",0.5,", ",,")
    f.write_text("id,text,label,mode\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"mosi_standard_labels.csv: line 5, column 3 "
                                              r"\(label\): empty cell is not a number"):
        load_mosi_utterance(root, target="sentiment")
    rows[3] = rows[3].replace(",,", ",0.5,").replace(",train", ",trian")
    f.write_text("id,text,label,mode\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"line 5, column 4 \(mode\): 'trian' is not one of"):
        load_mosi_utterance(root)
