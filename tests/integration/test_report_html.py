import base64
import re

import numpy as np
import pandas as pd
import pytest

from emodistill.cli import main
from emodistill.errors import DataNotFoundError
from emodistill.report.html import attention_columns, build_report, edge_tables, find_runs
from helpers.report_runs import MODS, write_benchmark, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    uni = {"method": "unimodal", "dataset_overrides": ("method.modality=text",)}
    return write_benchmark(root, {"dmd_like": {"edges": True}, "hkd_like": {"attention": True},
                                  "unimodal(text)": uni})


def test_benchmark_report_is_self_contained_and_complete(bench):
    out = build_report(bench)
    page = out.read_text()
    assert out == bench / "report.html"
    # results table: one row per method, mean ± std over the 2 seeds, best value in bold
    table = re.search(r'<table class="results">.*?</table>', page, re.S).group(0)
    assert table.count("<tr>") == 4 and "±" in table and "<b>" in table
    summary = pd.read_csv(bench / "summary.csv", index_col=0)
    mae = summary.loc["dmd_like", "mae_mean"], summary.loc["dmd_like", "mae_std"]
    assert f"{mae[0]:.4f} ± {mae[1]:.4f}" in table
    # figures: curves + confusion + embedding per method, edges for dmd_like, attention for hkd
    imgs = _images(page)
    assert len(imgs) == 3 * 3 + 1 + 1 and all(i.startswith(PNG) for i in imgs)
    assert page.count("Distillation-graph edges") == 1 and page.count("Modality attention") == 1
    assert page.count("Learned features") == 3 and "explained variance" in page
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page


def test_runs_are_matched_to_benchmark_labels(bench):
    kind, runs = find_runs(bench)
    assert kind == "benchmark"
    assert [(r.label, r.seed) for r in runs] == [
        (m, s) for m in ("dmd_like", "hkd_like", "unimodal(text)") for s in (1111, 1112)]
    assert runs[4].config["method"]["name"] == "unimodal"


def test_run_folder_report_classification_and_cli(tmp_path):
    run = write_run(tmp_path / "run", target="sentiment3")
    assert main(["report", str(run), "--embedding", "tsne", "--output",
                 str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "3 classes" in page and "t-SNE" in page and "selected epoch" in page
    assert len(_images(page)) == 3


def test_embedding_is_skipped_with_a_reason_when_data_cannot_be_rebuilt(tmp_path):
    run = write_run(tmp_path / "run")
    out = build_report(run, overrides=["dataset.n=5"])  # cannot give the stored fold's rows
    page = out.read_text()
    assert "embedding skipped" in page and "dataset.root=PATH" in page
    assert len(_images(page)) == 2
    assert len(_images(build_report(run, embedding="none").read_text())) == 2


def test_edge_tables_parse_names_and_pick_the_selected_epoch():
    df = pd.DataFrame({"epoch": [0, 1, 2],
                       "model/gd_homo/text->audio": [0.1, 0.2, 0.3],
                       "model/gd_homo/vision->text": [0.5, 0.6, 0.7],
                       "model/hetero_L_to_V": [0.9, 0.8, 0.7],
                       "model/attention_text": [0.3, 0.3, 0.3],  # not an edge
                       "val/mae": [1, 1, 1]})
    t = edge_tables(df, MODS, epoch=1)
    assert set(t) == {"gd_homo", "hetero"}
    assert t["gd_homo"].loc["text", "audio"] == 0.2 and t["gd_homo"].loc["vision", "text"] == 0.6
    assert np.isnan(t["gd_homo"].loc["audio", "text"])
    assert t["hetero"].loc["text", "vision"] == 0.8  # L = language = text, V = vision
    assert edge_tables(df[["epoch", "val/mae"]], MODS) == {}


def test_attention_columns_named_or_indexed():
    pred = pd.DataFrame({"sample_attention_0": [0.2], "sample_attention_1": [0.8], "x": [1]})
    assert list(attention_columns(pred, ["text", "audio"]).columns) == ["text", "audio"]
    named = pd.DataFrame({"sample_attention_audio": [1.0]})
    assert list(attention_columns(named, MODS).columns) == ["audio"]
    assert attention_columns(pd.DataFrame({"target": [1]}), MODS) is None


def test_not_a_run_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="neither a benchmark folder"):
        build_report(tmp_path)


def test_render_needs_no_embeddings_and_the_model_step_is_explicit(tmp_path):
    from emodistill.report.embedding import compute_embeddings
    from emodistill.report.html import render_report
    from emodistill.report.reader import read_report

    run = write_run(tmp_path / "run", target="sentiment3")
    data = read_report(run)
    assert compute_embeddings(data, "none") == {}
    page = render_report(data)
    assert "Confusion matrices" in page and "Learned features" not in page
    embs = compute_embeddings(data, "pca", max_points=50)
    (emb,) = embs.values()
    assert emb.points.shape == (min(50, len(data.runs[0].records[0].predictions)), 2)
    assert "Learned features" in render_report(data, embs)
    # a method without a checkpoint gets the reason instead of a plot (rendered as a note, as
    # in test_embedding_is_skipped_with_a_reason_when_data_cannot_be_rebuilt)
    (run / "standard" / "model.pt").rename(run / "standard" / "moved.pt")
    try:
        assert list(compute_embeddings(read_report(run), "pca").values()) == [
            "no model.pt (train.save_checkpoint=false): embedding skipped"]
    finally:
        (run / "standard" / "moved.pt").rename(run / "standard" / "model.pt")
