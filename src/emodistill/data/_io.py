"""Small file helpers shared by the loaders."""

from __future__ import annotations

from pathlib import Path

from emodistill.errors import ConfigError, DataNotFoundError

__all__ = ["require_dir", "require_file"]


def require_dir(root: str | Path | None, *, dataset: str, layout: str) -> Path:
    """Return ``root`` as a Path, or raise a clear error naming the expected layout."""
    if root is None or str(root) == "":
        raise ConfigError(
            f"dataset {dataset!r} needs a data folder: set dataset.root=PATH "
            f"(expected layout: {layout})"
        )
    p = Path(root).expanduser()
    if not p.is_dir():
        raise DataNotFoundError(
            f"dataset {dataset!r}: folder {str(p)!r} does not exist; set dataset.root to the "
            f"folder holding {layout}"
        )
    return p


def require_file(path: Path, *, dataset: str, what: str) -> Path:
    """Return ``path`` if it is a file, else raise naming what it should hold."""
    if not path.is_file():
        raise DataNotFoundError(
            f"dataset {dataset!r}: missing file {str(path)!r} ({what})"
        )
    return path
