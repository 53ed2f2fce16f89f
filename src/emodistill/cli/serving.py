"""``emodistill evaluate``, ``predict`` and ``export``: using a trained checkpoint.

::

    emodistill evaluate CHECKPOINT [--split test] [-d DATASET] [key=value ...]
    emodistill predict CHECKPOINT --input FILE.npz [--modalities text,audio] [--output F]
    emodistill export CHECKPOINT --format onnx|torchscript [--output FILE]

Only argparse is imported here; each command imports what it needs when run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from emodistill.training.evaluate import evaluate_checkpoint

    if a.dataset:  # another dataset: every sample, beside its majority class
        from emodistill.training.transfer import evaluate_on_dataset

        print(json.dumps(evaluate_on_dataset(a.checkpoint, a.dataset, a.overrides), indent=2))
        return 0
    metrics = evaluate_checkpoint(a.checkpoint, split=a.split, overrides=a.overrides)
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from emodistill.serving.predict import load

    pred = load(a.checkpoint)
    mods = [m for m in a.modalities.split(",") if m] if a.modalities else None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        res = pred.predict(a.input, modalities=mods, batch_size=a.batch_size)
    for w in caught:  # e.g. arrays of the file the model does not use: one line each
        print(f"emodistill: warning: {w.message}", file=sys.stderr)
    if a.output:
        out = Path(a.output)
        if out.suffix == ".csv":
            res.to_frame().to_csv(out, index=False)
        else:
            out.write_text(json.dumps(res.to_records(), indent=2))
        print(f"{len(res)} predictions of {pred.target.name!r} written to {out}")
    else:
        for rec in res.to_records():
            print(json.dumps(rec))
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from emodistill.serving.export import export_model

    ext = ".onnx" if a.format == "onnx" else ".torchscript.pt"
    out = Path(a.output) if a.output else Path(a.checkpoint).with_suffix(ext)
    path = export_model(a.checkpoint, out, format=a.format,
                        include_normalizer=not a.no_normalizer, opset=a.opset,
                        dynamo=not a.legacy_onnx)
    print(f"exported to {path} (description: {path.name}.json)")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``evaluate``, ``predict`` and ``export`` to the CLI's sub-parsers."""
    e = sub.add_parser("evaluate", help="evaluate a saved checkpoint on its split")
    e.add_argument("checkpoint")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("-d", "--dataset", default=None,
                   help="evaluate on all samples of another dataset config (e.g. a DEAP model "
                        "on mahnob_bandpower); refused when layout or labels differ")
    e.add_argument("overrides", nargs="*", help="e.g. dataset.root=PATH if the data moved")
    e.set_defaults(fn=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict with a trained checkpoint (any modality subset)")
    p.add_argument("checkpoint", help="a model.pt written by training")
    p.add_argument("--input", "-i", required=True,
                   help="features in the generic npz format (<modality> arrays, optional "
                        "<modality>_lengths / _present, id)")
    p.add_argument("--modalities", default=None,
                   help="use only these modalities of the input (others count as missing)")
    p.add_argument("--output", "-o", default=None, help="write .csv or .json (default: stdout)")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(fn=_cmd_predict)

    e = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript")
    e.add_argument("checkpoint")
    e.add_argument("--format", "-f", choices=["onnx", "torchscript"], default="onnx")
    e.add_argument("--output", "-o", default=None,
                   help="output file (default: beside the checkpoint)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset")
    e.add_argument("--no-normalizer", action="store_true",
                   help="leave the training normalisation out of the graph")
    e.add_argument("--legacy-onnx", action="store_true",
                   help="use torch's legacy TorchScript-based ONNX exporter")
    e.set_defaults(fn=_cmd_export)
