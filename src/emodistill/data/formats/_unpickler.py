"""A restricted unpickler for dataset pickles (MMSA ``.pkl``, DEAP ``sXX.dat``).

Dataset pickles are external input. Plain :func:`pickle.load` would execute any
callable the file names; this loader resolves only the globals that plain
containers and numpy arrays need and refuses everything else.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from emodistill.data._io import describe_file, refuse_wrong_kind
from emodistill.errors import DataFormatError, UnsafePickleError

__all__ = ["safe_load_pickle", "ALLOWED_GLOBALS"]

#: (module, name) pairs a data pickle may reference. Everything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # protocol-2 pickles store array bytes through this
    }
)
# Protocol-2 pickles (Python 2, or Python 3 with fix_imports) name builtins "__builtin__";
# the base class maps them back to "builtins" after this check.
ALLOWED_GLOBALS = ALLOWED_GLOBALS | frozenset(
    ("__builtin__", name) for module, name in ALLOWED_GLOBALS if module == "builtins"
)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a data pickle: only containers and numpy "
            "arrays are allowed. If you trust this file, convert it to the documented npz "
            "format first."
        )


def safe_load_pickle(path: str | Path, *, encoding: str = "ASCII") -> Any:
    """Load a data pickle, refusing anything but containers and numpy arrays.

    Parameters
    ----------
    path : path
        The pickle file.
    encoding : str
        Passed to :class:`pickle.Unpickler`; DEAP's Python-2 pickles need ``"latin1"``.

    Raises
    ------
    UnsafePickleError
        The pickle references a callable outside :data:`ALLOWED_GLOBALS`.
    DataFormatError
        The file is not a readable pickle.
    """
    refuse_wrong_kind(path, expected="a data pickle", accept=("pickle", "text", "binary"))
    data = Path(path).read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # truncated or not a pickle at all
        what = "a plain-text file, not a pickle" if describe_file(path) == "text" else (
            "not a readable data pickle (truncated or another format)")
        raise DataFormatError(f"{path}: {what} ({type(e).__name__}: {e})") from None
