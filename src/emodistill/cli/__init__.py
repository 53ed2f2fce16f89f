"""The ``emodistill`` command line.

Sub-commands::

    emodistill train [-e EXP] [-d DATASET] [-m METHOD] [--config FILE] [key=value ...]
    emodistill train --resume RUN_DIR
    emodistill evaluate CHECKPOINT [--split test] [-d DATASET] [key=value ...]
    emodistill benchmark -d DATASET -m M1,M2 [--seeds 1111-1115] [--reference M1]
                         [key=value ...]
    emodistill sweep -d DATASET -m METHOD --space SPACE.yaml [--trials N] [--storage URL]
                     [--backend ray [--workers N] [--address auto]]
    emodistill data verify -d DATASET [key=value ...]
    emodistill list [datasets|methods|experiments|protocols|encoders]
    emodistill predict CHECKPOINT --input FILE.npz [--modalities a,b] [--output FILE]
    emodistill export CHECKPOINT --format onnx|torchscript [--output FILE]
    emodistill report RUN_OR_BENCHMARK_DIR [--embedding pca|tsne|none] [key=value ...]
    emodistill features text|audio --input ... --output FILE.npz
    emodistill cache ls|prune [--older-than DAYS] [--max-size SIZE] [--all]

One module per command group (``train``: train, benchmark, sweep; ``serving``:
evaluate, predict, export; ``report``; ``features``; ``data``; ``listing``: list;
``cache``), each with an ``add_commands(sub)``. They import only argparse and
the small :mod:`emodistill.errors` at module level; torch, Lightning and the
data loaders load inside the handler of the command that needs them, so
``emodistill --help`` never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from emodistill.cli import cache, data, features, listing, report, serving, train
from emodistill.errors import EmodistillError

__all__ = ["main", "build_parser"]

log = logging.getLogger("emodistill")


def _setup_logging(verbose: bool) -> None:
    if not any(getattr(h, "_emodistill_cli", False) for h in log.handlers):  # once per process
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._emodistill_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    level = logging.INFO if verbose else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # protocol.valid_fraction=0: no validation part, by design (the run folder says so)
    warnings.filterwarnings("ignore", message=".*validation_step` but have no `val_dataloader.*")
    # a resumed run continues in its own checkpoints folder
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for docs and tests)."""
    from emodistill import __version__

    p = argparse.ArgumentParser(prog="emodistill", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"emodistill {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show Lightning's logs")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (train, serving, report, features, data, listing, cache):
        group.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emodistill`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # ``evaluate CKPT -d DATASET key=value``: overrides after an option land in ``extra``
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in x and not x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    try:
        return int(args.fn(args))
    except EmodistillError as e:
        print(f"emodistill: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `emodistill predict ... | head`: the reader has gone
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe

