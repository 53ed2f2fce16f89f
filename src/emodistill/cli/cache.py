"""``emodistill cache ls|prune``: see and trim the feature cache (:mod:`emodistill.data.cache`).

::

    emodistill cache ls [--dir DIR]
    emodistill cache prune [--dir DIR] (--older-than DAYS | --max-size SIZE | --all)
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

__all__ = ["add_commands", "parse_size"]

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``"500M"``, ``"2G"``, ``"1.5g"``, ``"1000"`` (bytes) → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m:
        from emodistill.errors import ConfigError

        raise ConfigError(f"--max-size {text!r}; use e.g. 500M or 2G")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _cache(a: argparse.Namespace) -> Any:
    from emodistill.data.cache import FeatureCache

    return FeatureCache(a.dir)


def _cmd_ls(a: argparse.Namespace) -> int:
    cache = _cache(a)
    entries = cache.entries()
    now = time.time()
    for e in entries:
        age = (now - e["created"]) / 86400.0
        print(f"{e['key']}  {_human(e['bytes']):>10}  {age:6.1f} d  {e['description']}")
    total = sum(e["bytes"] for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {_human(total)} in "
          f"{cache.dir}")
    return 0


def _cmd_prune(a: argparse.Namespace) -> int:
    if a.older_than is None and a.max_size is None and not a.all:
        from emodistill.errors import ConfigError

        raise ConfigError("cache prune: say what to delete: --older-than DAYS, --max-size SIZE "
                          "or --all")
    cache = _cache(a)
    gone = cache.prune(older_than_days=a.older_than,
                       max_bytes=parse_size(a.max_size) if a.max_size else None,
                       everything=a.all)
    print(f"deleted {len(gone)} entr{'y' if len(gone) == 1 else 'ies'} "
          f"({_human(sum(e['bytes'] for e in gone))}) from {cache.dir}")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``cache ls`` and ``cache prune`` on the ``emodistill`` sub-parsers."""
    c = sub.add_parser("cache", help="list or prune the feature cache")
    csub = c.add_subparsers(dest="cache_command", required=True)
    help_dir = "cache folder (default $EMODISTILL_CACHE_DIR or ~/.cache/emodistill)"
    ls = csub.add_parser("ls", help="entries with size, age and description")
    ls.add_argument("--dir", default=None, help=help_dir)
    ls.set_defaults(fn=_cmd_ls)
    pr = csub.add_parser("prune", help="delete old entries")
    pr.add_argument("--dir", default=None, help=help_dir)
    pr.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    pr.add_argument("--max-size", default=None, metavar="SIZE",
                    help="then delete the oldest entries until the rest fit, e.g. 2G")
    pr.add_argument("--all", action="store_true", help="delete every entry")
    pr.set_defaults(fn=_cmd_prune)
