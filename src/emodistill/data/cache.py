"""A content-addressed cache for derived arrays (per-window physiological features).

An entry's key is the SHA-256 of three things: the hashes of the input arrays
(dtype, shape and bytes), the recipe (every preprocessing setting, as
canonical JSON) and the versions of emodistill, NumPy and SciPy. Changing any
input value, any setting or any of those versions gives a new key, so a
changed recipe never reads a stale entry (TorchEEG reuses its ``io_path``
whatever the parameters; this cache cannot).

Each entry is two files in the cache folder::

    <key>.npz    the outputs (numpy.savez, read back with allow_pickle=False)
    <key>.json   a readable manifest: key, creation time, versions, the full
                 recipe, input shapes/dtypes/hashes, output shapes/dtypes and a
                 description

On a read the manifest is checked against the recipe, the versions and the
input hashes again; any mismatch or unreadable file counts as a miss and the
entry is recomputed and rewritten. Files are written atomically.

The default folder is ``$EMODISTILL_CACHE_DIR``, else
``$XDG_CACHE_HOME/emodistill``, else ``~/.cache/emodistill`` (nothing is
created until an entry is written).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from emodistill._fs import atomic_write
from emodistill.errors import ConfigError

__all__ = ["CACHE_DIR_ENV", "default_cache_dir", "hash_array", "cache_key", "FeatureCache"]

log = logging.getLogger(__name__)

#: environment variable naming the cache folder
CACHE_DIR_ENV = "EMODISTILL_CACHE_DIR"


def default_cache_dir() -> Path:
    """Return the cache folder used when none is configured (see the module docstring)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "emodistill"
    return Path.home() / ".cache" / "emodistill"


def hash_array(x: np.ndarray) -> str:
    """SHA-256 (hex) of an array's dtype, shape and C-ordered bytes."""
    x = np.ascontiguousarray(np.asarray(x))
    h = hashlib.sha256()
    h.update(f"{x.dtype.str}|{x.shape}|".encode())
    h.update(memoryview(x).cast("B") if x.size else b"")
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import scipy

    from emodistill import __version__

    return {"emodistill": __version__, "numpy": np.__version__, "scipy": scipy.__version__}


def _canonical(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"cache recipe must be plain JSON data (str, number, bool, list, dict): {e}"
        ) from None


def cache_key(
    input_hashes: Mapping[str, str], recipe: Mapping[str, Any], versions: Mapping[str, str]
) -> str:
    """Key of an entry: SHA-256 over input hashes, recipe and versions (hex, 32 chars)."""
    blob = _canonical(
        {"inputs": dict(input_hashes), "recipe": dict(recipe), "versions": dict(versions)}
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class FeatureCache:
    """Content-addressed array cache with readable manifests.

    Parameters
    ----------
    root : path, optional
        Cache folder; default :func:`default_cache_dir`.
    namespace : str
        Sub-folder, so unrelated kinds of entries stay apart.

    Attributes
    ----------
    hits, misses : int
        Counters of :meth:`get_or_compute` results (for logs and tests).
    """

    def __init__(self, root: str | Path | None = None, *, namespace: str = "features") -> None:
        self.dir = (Path(root).expanduser() if root else default_cache_dir()) / namespace
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.dir)!r}, hits={self.hits}, misses={self.misses})"

    def paths(self, key: str) -> tuple[Path, Path]:
        """Return the ``(npz, manifest)`` files of entry ``key``."""
        return self.dir / f"{key}.npz", self.dir / f"{key}.json"

    def _read(self, key: str, expect: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        data_path, man_path = self.paths(key)
        if not (data_path.is_file() and man_path.is_file()):
            return None
        try:
            manifest = json.loads(man_path.read_text())
            for field in ("recipe", "versions", "inputs"):
                if _canonical(manifest.get(field)) != _canonical(expect[field]):
                    log.warning("cache entry %s: manifest %s differs; recomputing", key, field)
                    return None
            with np.load(data_path, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
            if sorted(out) != sorted(manifest.get("outputs", {})):
                log.warning("cache entry %s: outputs differ from its manifest; recomputing", key)
                return None
            return out
        except (OSError, ValueError, KeyError) as e:
            log.warning("cache entry %s unreadable (%s); recomputing", key, e)
            return None

    def get_or_compute(
        self,
        arrays: Mapping[str, np.ndarray],
        recipe: Mapping[str, Any],
        compute: Callable[[], Mapping[str, np.ndarray]],
        *,
        description: str = "",
    ) -> dict[str, np.ndarray]:
        """Return the cached outputs for ``arrays`` + ``recipe``, computing them on a miss.

        Parameters
        ----------
        arrays : mapping of str to array
            The inputs the outputs are computed from (hashed, never stored).
        recipe : mapping
            Every setting that influences the outputs, as plain JSON data.
        compute : callable
            Returns the outputs (name → array) when the entry is missing.
        description : str
            Free text stored in the manifest (e.g. the source file).

        Returns
        -------
        dict of str to np.ndarray
            The outputs.
        """
        inputs = {
            k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype),
                "sha256": hash_array(v)}
            for k, v in sorted(arrays.items())
        }
        versions = _versions()
        key = cache_key({k: v["sha256"] for k, v in inputs.items()}, recipe, versions)
        expect = {"recipe": dict(recipe), "versions": versions, "inputs": inputs}
        found = self._read(key, expect)
        if found is not None:
            self.hits += 1
            log.info("feature cache hit %s (%s)", key, description)
            return found
        self.misses += 1
        out = {k: np.asarray(v) for k, v in compute().items()}
        data_path, man_path = self.paths(key)
        atomic_write(data_path, lambda f: np.savez(f, **out), mode="wb")
        manifest = {
            "key": key,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "description": description,
            "versions": versions,
            "recipe": dict(recipe),
            "inputs": inputs,
            "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in out.items()},
        }
        atomic_write(man_path, lambda f: json.dump(manifest, f, indent=2, sort_keys=True))
        log.info("feature cache miss %s: computed and stored (%s)", key, description)
        return out

    def manifests(self) -> list[dict[str, Any]]:
        """Every readable manifest in the cache folder, oldest first."""
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda m: m.get("created", ""))
