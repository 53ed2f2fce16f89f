"""``emodistill features text|audio``: features from raw transcripts or audio.

::

    emodistill features text --input FILE.csv --column text [--id-column id] --output F.npz
    emodistill features audio --input A.wav [B.wav ...] --output F.npz

Only argparse is imported here; the extractors (extras ``text``, ``audio``) load when run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _save_features(path: str, modality: str, feats: Any, lengths: Any, ids: list[str],
                   extra: dict[str, Any] | None = None) -> None:
    import numpy as np

    from emodistill._fs import atomic_write

    arrays = {"modalities": np.array([modality], dtype=str), modality: feats,
              f"{modality}_lengths": lengths, "id": np.array(ids, dtype=str),
              **(extra or {})}
    atomic_write(path, lambda f: np.savez(f, **arrays), mode="wb")


def _cmd_features_text(a: argparse.Namespace) -> int:
    import pandas as pd

    from emodistill.data._io import refuse_wrong_kind
    from emodistill.errors import DataFormatError, DataNotFoundError
    from emodistill.features.text import TextEncoder

    if not Path(a.input).is_file():
        raise DataNotFoundError(f"--input {a.input!r}: no such file")
    refuse_wrong_kind(a.input, expected="a CSV text file", accept=("text",))
    try:
        df = pd.read_csv(a.input, dtype=str, keep_default_na=False,
                         header=None if a.no_header else "infer")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataFormatError(f"{a.input}: not a readable CSV ({str(e).strip()})") from None
    col: Any = int(a.column) if a.no_header else a.column
    if col not in df.columns:
        raise DataFormatError(f"{a.input}: no column {a.column!r}; columns: {list(df.columns)}")
    ids = (df[int(a.id_column) if a.no_header else a.id_column].astype(str).tolist()
           if a.id_column else [str(i) for i in range(len(df))])
    tf = TextEncoder(a.model).encode(df[col].tolist(), level=a.level, max_tokens=a.max_tokens)
    _save_features(a.output, a.modality, tf.features, tf.lengths, ids)
    print(f"{len(ids)} transcripts -> {a.modality} {tuple(tf.features.shape)} ({tf.level}, "
          f"{tf.model}) written to {a.output}")
    return 0


def _cmd_features_audio(a: argparse.Namespace) -> int:
    import numpy as np

    from emodistill.features.audio import AudioExtractor

    files = []
    for item in a.input:
        p = Path(item)
        files += sorted(p.glob("*.wav")) if p.is_dir() else [p]
    ex = AudioExtractor(a.feature_set, level=a.level)
    af = ex.extract(files)
    ids = [f.stem for f in files]
    _save_features(a.output, a.modality, af.features, af.lengths, ids,
                   {f"{a.modality}_feature_names": np.array(af.names, dtype=str)})
    print(f"{len(ids)} recordings -> {a.modality} {tuple(af.features.shape)} "
          f"({af.feature_set} {af.level}) written to {a.output}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``features text`` and ``features audio`` to the CLI's sub-parsers."""
    f = sub.add_parser("features", help="extract features from raw transcripts or audio")
    fsub = f.add_subparsers(dest="features_command", required=True)
    t = fsub.add_parser("text", help="sentence embeddings (local all-MiniLM-L6-v2, offline)")
    t.add_argument("--input", "-i", required=True, help="a CSV file of transcripts")
    t.add_argument("--column", default="text", help="transcript column (index if --no-header)")
    t.add_argument("--id-column", default=None, help="id column (default: row numbers)")
    t.add_argument("--no-header", action="store_true", help="the CSV has no header row")
    t.add_argument("--level", choices=["pooled", "tokens"], default="pooled")
    t.add_argument("--max-tokens", type=int, default=50)
    t.add_argument("--model", default=None, help="a local model folder (default: packaged)")
    t.add_argument("--modality", default="text", help="array name in the npz")
    t.add_argument("--output", "-o", required=True, help="the .npz to write")
    t.set_defaults(fn=_cmd_features_text)
    au = fsub.add_parser("audio", help="openSMILE features (eGeMAPS by default)")
    au.add_argument("--input", "-i", required=True, nargs="+",
                    help="audio files, or folders of .wav files")
    au.add_argument("--feature-set", default="eGeMAPSv02")
    au.add_argument("--level", choices=["functionals", "lld"], default="functionals")
    au.add_argument("--modality", default="audio", help="array name in the npz")
    au.add_argument("--output", "-o", required=True, help="the .npz to write")
    au.set_defaults(fn=_cmd_features_audio)
