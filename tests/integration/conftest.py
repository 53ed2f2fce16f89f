"""Fixtures of the integration tests (the end-to-end CLI runs)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from emodistill.cli import main


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    """Remove the stream handler ``emodistill.cli.main`` adds, so no test sees another's."""
    yield
    log = logging.getLogger("emodistill")
    for h in [h for h in log.handlers if getattr(h, "_emodistill_cli", False)]:
        log.removeHandler(h)


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Run ``emodistill ARGV...`` in-process: ``rc, out, err = cli("train", ...)``."""

    def run(*argv: object) -> tuple[int, str, str]:
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
