"""Atomic file writes: a file is either complete or absent, never partial."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "unique_dir"]


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], *, mode: str = "w") -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give what open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # read it (the only portable way), then put it back
    os.umask(mask)
    return mask


def unique_dir(path: str | Path) -> Path:
    """Create and return ``path``, or ``path-1``, ``path-2``... if it exists (never clobbers)."""
    path = Path(path)
    candidate, i = path, 0
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            i += 1
            candidate = path.with_name(f"{path.name}-{i}")
