"""``emodistill report``: a self-contained HTML report of a run or benchmark folder.

::

    emodistill report RUN_OR_BENCHMARK_DIR [--output FILE] [--embedding pca|tsne|none]
                      [--max-points N] [key=value ...]

Reading the folder and drawing the page need no model; ``--embedding pca|tsne``
(the default ``pca``) adds the one step that loads each method's ``model.pt`` and
rebuilds its test data (:mod:`emodistill.report.embedding`); ``none`` skips it.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def _cmd_report(a: argparse.Namespace) -> int:
    from emodistill.report.html import build_report

    out = build_report(a.folder, output=a.output, embedding=a.embedding,
                       overrides=a.overrides, max_points=a.max_points)
    print(f"report written to {out}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``report`` to the CLI's sub-parsers."""
    r = sub.add_parser("report", help="self-contained HTML report of a run or benchmark folder")
    r.add_argument("folder", help="a run folder or a benchmark folder")
    r.add_argument("--output", "-o", default=None, help="default: <folder>/report.html")
    r.add_argument("--embedding", choices=["pca", "tsne", "none"], default="pca")
    r.add_argument("--max-points", type=int, default=2000)
    r.add_argument("overrides", nargs="*",
                   help="overrides of the stored config to rebuild the test data, e.g. "
                        "dataset.root=PATH")
    r.set_defaults(fn=_cmd_report)
