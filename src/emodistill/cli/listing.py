"""``emodistill list``: the packaged configs and the registered names.

::

    emodistill list [datasets|methods|experiments|protocols|encoders]

Each group imports only what fills it: ``list experiments`` reads config files
(no torch); datasets, protocols, methods and encoders import the modules that
register them (torch, today: ``data.dataset`` and the model modules import it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["add_commands", "GROUPS"]


def _datasets() -> tuple[str, list[str], list[str] | None]:
    from emodistill.config import list_configs
    from emodistill.data.registry import DATASETS

    return "dataset configs", list_configs("dataset"), DATASETS.names()


def _methods() -> tuple[str, list[str], list[str] | None]:
    from emodistill.config import list_configs
    from emodistill.models import METHODS

    return "method configs", list_configs("method"), METHODS.names()


def _experiments() -> tuple[str, list[str], list[str] | None]:
    from emodistill.config import list_configs

    return "experiment configs", list_configs("experiment"), None


def _protocols() -> tuple[str, list[str], list[str] | None]:
    from emodistill.data.protocols import PROTOCOLS

    return "protocols", PROTOCOLS.names(), None


def _encoders() -> tuple[str, list[str], list[str] | None]:
    from emodistill.models import ENCODERS

    return "encoders", ENCODERS.names(), None


#: group → loader of (title, names, registered names or None), in the printed order
GROUPS: dict[str, Callable[[], tuple[str, list[str], list[str] | None]]] = {
    "datasets": _datasets,
    "methods": _methods,
    "experiments": _experiments,
    "protocols": _protocols,
    "encoders": _encoders,
}


def _cmd_list(a: argparse.Namespace) -> int:
    for key, load in GROUPS.items():
        if a.what and a.what != key:
            continue
        title, names, registered = load()
        print(f"{title}: {', '.join(names)}")
        if registered is not None:
            print(f"  registered {key}: {', '.join(registered)}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``list`` to the CLI's sub-parsers."""
    ls = sub.add_parser("list", help="list configs and registered names")
    ls.add_argument("what", nargs="?", default=None, choices=list(GROUPS))
    ls.set_defaults(fn=_cmd_list)
