"""``emodistill data verify``: check a dataset's files, shapes, labels and splits.

::

    emodistill data verify -d DATASET [key=value ...]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_commands"]


def _cmd_data_verify(a: argparse.Namespace) -> int:
    from emodistill.config import compose, to_container
    from emodistill.data.registry import build_dataset
    from emodistill.training.run import prepare

    cfg = compose(dataset=a.dataset, overrides=a.overrides)
    ds = build_dataset(to_container(cfg.dataset))
    prep = prepare(cfg, ds, check_training=False)
    summary = ds.summary()
    summary["info"] = ds.info
    summary["protocol"] = {
        "name": cfg.protocol.name,
        "folds": {f.name: {"train": len(f.train), "valid": len(f.valid), "test": len(f.test)}
                  for f in prep.folds},
        "group_disjoint": True,
        # modalities whose features were learned with labels on the validation rows
        "valid_leaked": prep.valid_leaked,
    }
    print(json.dumps(summary, indent=2, default=str))
    print(f"OK: {ds.spec.name} verified, fingerprint {summary['fingerprint']}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``data verify`` to the CLI's sub-parsers."""
    d = sub.add_parser("data", help="data utilities")
    dsub = d.add_subparsers(dest="data_command", required=True)
    v = dsub.add_parser("verify", help="check files, shapes, labels, splits; print a fingerprint")
    v.add_argument("-d", "--dataset", required=True)
    v.add_argument("overrides", nargs="*")
    v.set_defaults(fn=_cmd_data_verify)
