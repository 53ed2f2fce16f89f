"""Small file helpers shared by the loaders."""

from __future__ import annotations

from pathlib import Path

from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = ["require_dir", "require_file", "describe_file", "refuse_wrong_kind"]


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


#: leading bytes of formats a user may hand over by mistake
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip archive
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x93NUMPY", "npy"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"\x80", "pickle"),  # protocol 2+
)


def describe_file(path: str | Path) -> str:
    """Say what kind of file ``path`` is, from its first bytes.

    Returns one of ``"empty"``, ``"zip"``, ``"gzip"``, ``"bzip2"``, ``"xz"``,
    ``"npy"``, ``"hdf5"``, ``"pickle"``, ``"text"`` or ``"binary"``.
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a multi-byte character cut at 512 bytes
            return "binary"
    return "text" if b"\x00" not in head else "binary"


KIND_NAMES = {
    "empty": "an empty file (0 bytes)",
    "zip": "a zip archive",
    "gzip": "a gzip-compressed file",
    "bzip2": "a bzip2-compressed file",
    "xz": "an xz-compressed file",
    "npy": "a single numpy array (.npy)",
    "hdf5": "an HDF5 file",
    "pickle": "a pickle",
    "text": "a plain-text file",
    "binary": "a binary file of unknown format",
}


def refuse_wrong_kind(path: str | Path, *, expected: str, accept: tuple[str, ...],
                      hint: str = "") -> str:
    """Raise :class:`DataFormatError` unless ``path`` is one of the ``accept`` kinds.

    Parameters
    ----------
    path : path
        The file (it must exist).
    expected : str
        What the file should be, for the message (e.g. ``"an .npz archive"``).
    accept : tuple of str
        Kinds of :func:`describe_file` that may be what is expected.
    hint : str
        Appended to the message (how to make the right file).

    Returns
    -------
    str
        The kind found.
    """
    kind = describe_file(path)
    if kind not in accept:
        extra = ""
        if kind in ("gzip", "bzip2", "xz"):
            extra = f"; decompress it first (e.g. {'gunzip' if kind == 'gzip' else kind} FILE)"
        raise DataFormatError(
            f"{path}: is {KIND_NAMES[kind]}, not {expected}{extra}" + (f". {hint}" if hint else "")
        )
    return kind
