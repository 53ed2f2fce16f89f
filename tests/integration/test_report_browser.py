"""End to end: a small real benchmark → HTML report → rendered by headless Chromium.

Needs a Chromium binary (Debian: ``apt-get install -y chromium chromium-driver``);
the test is skipped with that instruction when none is found.
"""

import re
import shutil
import subprocess

import pytest

from emodistill.report.html import build_report
from emodistill.training.benchmark import run_benchmark

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def chromium():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (install it with: apt-get install -y chromium "
                "chromium-driver); the HTML report is still tested in tests/unit/report")


def _browser(chromium, tmp_path, *args):
    cmd = [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_benchmark_report_renders_table_and_images(chromium, tmp_path):
    bench = run_benchmark(
        dataset="synthetic", methods=["late_fusion", "feature_fusion"], seeds=[1, 2],
        overrides=["dataset.n=200", "train.max_epochs=2", "train.progress_bar=false",
                   "method.width=16"],
        output_dir=tmp_path, name="bench",
    )
    report = build_report(bench.path)
    url = report.resolve().as_uri()
    dom = _browser(chromium, tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    total = int(re.search(r'data-images-total="(\d+)"', body).group(1))
    rendered = int(re.search(r'data-images-rendered="(\d+)"', body).group(1))
    assert total == rendered == 6  # curves, confusion matrices, embedding x 2 methods
    table = re.search(r'<table class="results">.*?</table>', dom, re.S).group(0)
    assert "late_fusion" in table and "feature_fusion" in table and "±" in table
    shot = tmp_path / "report.png"
    _browser(chromium, tmp_path, "--window-size=1200,1800", f"--screenshot={shot}", url)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a page, not a blank image
