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
input hashes again; any mismatch counts as a miss and the entry is recomputed
and rewritten. An unreadable entry (a truncated or corrupt ``.npz``, a broken
manifest) is a miss too: a warning names it, its files are deleted and it is
recomputed. Files are written atomically.

Old entries are never removed by a run: ``emodistill cache ls`` lists them
(size, age, description) and ``emodistill cache prune --older-than DAYS |
--max-size SIZE | --all`` removes them (:meth:`FeatureCache.prune`).

The default folder is ``$EMODISTILL_CACHE_DIR``, else
``$XDG_CACHE_HOME/emodistill``, else ``~/.cache/emodistill`` (nothing is
created until an entry is written).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from emodistill._fs import atomic_write
from emodistill.errors import ConfigError

__all__ = ["CACHE_DIR_ENV", "default_cache_dir", "text_cache_dir", "cached_text_arrays",
           "hash_array", "cache_key", "FeatureCache"]

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


def text_cache_dir() -> Path:
    """Folder of the text-embedding and token-id caches (``mosi_raw_features``).

    ``$EMODISTILL_CACHE_DIR``, else ``~/.cache/emodistill``. Unlike
    :func:`default_cache_dir` it does not read ``XDG_CACHE_HOME`` (as it never did, so
    caches written before are found).
    """
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emodistill"


def cached_text_arrays(
    ids: list[str],
    texts: list[str],
    recipe: dict[str, Any],
    compute: Callable[[], tuple[np.ndarray, np.ndarray]],
    *,
    stem: str,
    array: str,
    what: str,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Arrays computed from transcripts, through a cache file keyed by recipe and inputs.

    The key hashes ``recipe`` plus the ids and texts; a hit must also hold the same ids
    in order. Text embeddings (``mosi_raw_features``) and token ids use it.

    Parameters
    ----------
    ids, texts : list of str
        ``N`` sample ids and their transcripts.
    recipe : dict
        Everything else that determines the arrays (model files, settings, version).
    compute : callable
        Returns ``(values, lengths)``: ``[N, ...]`` and ``[N]``, on a miss.
    stem, array, what : str
        The cache file's path under the root, less ``-<key>.npz`` (``"tokens/tokens"``),
        the values' array name in the file, and what to call them in log lines.
    cache_dir : path, optional
        Cache root; default :func:`text_cache_dir`.
    use_cache : bool
        False computes and writes nothing.

    Returns
    -------
    values : np.ndarray
    lengths : np.ndarray
    manifest : dict
        The full recipe and the cache file (written beside it as JSON).
    """
    h = hashlib.sha256()
    for i, t in zip(ids, texts, strict=True):
        h.update(f"{i}\x00{t}\x01".encode())
    recipe = {**recipe, "inputs": h.hexdigest()[:16], "n": len(ids)}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir else text_cache_dir()
    path = root / f"{stem}-{key}.npz"
    manifest = {"cache_file": str(path), **recipe}
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if [str(x) for x in z["id"]] == list(ids):
                log.info("%s: cache hit %s", what, path)
                return z[array], z["lengths"], manifest
        log.warning("%s: cache %s does not match its recipe; recomputing", what, path)
    values, lengths = compute()
    if use_cache:
        def write(f: Any) -> None:
            np.savez(f, **{array: values}, lengths=lengths, id=np.array(ids, dtype=str))

        atomic_write(path, write, mode="wb")
        atomic_write(path.with_suffix(".json"), lambda f: json.dump(manifest, f, indent=2))
    return values, lengths, manifest


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
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            log.warning("cache entry %s unreadable (%s: %s); deleting and recomputing it",
                        data_path, type(e).__name__, e)
            for path in (data_path, man_path):
                path.unlink(missing_ok=True)
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

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first: ``key``, ``bytes``, ``created`` (epoch s), ``description``.

        Files of an entry whose manifest is missing or unreadable are listed
        with ``description="(no readable manifest)"`` so that prune removes them too.
        """
        if not self.dir.is_dir():
            return []
        keys = {p.name.split(".", 1)[0] for p in self.dir.iterdir()
                if p.is_file() and not p.name.startswith(".")}
        out = []
        for key in sorted(keys):
            files = [p for p in self.paths(key) if p.is_file()]
            try:
                manifest = json.loads(self.paths(key)[1].read_text())
                desc = str(manifest.get("description", ""))
            except (OSError, ValueError):
                desc = "(no readable manifest)"
            out.append({"key": key, "bytes": sum(p.stat().st_size for p in files),
                        "created": min(p.stat().st_mtime for p in files),
                        "description": desc})
        return sorted(out, key=lambda e: e["created"])

    def prune(
        self,
        *,
        older_than_days: float | None = None,
        max_bytes: int | None = None,
        everything: bool = False,
    ) -> list[dict[str, Any]]:
        """Delete entries; return those deleted (as :meth:`entries` lists them).

        Parameters
        ----------
        older_than_days : float, optional
            Delete entries written more than this many days ago.
        max_bytes : int, optional
            Then delete the oldest entries until the rest take at most this many bytes.
        everything : bool
            Delete every entry.
        """
        if older_than_days is None and max_bytes is None and not everything:
            raise ConfigError("cache prune: say what to delete (older_than_days, max_bytes or "
                              "everything)")
        entries = self.entries()
        doomed: list[dict[str, Any]] = []
        if everything:
            doomed = list(entries)
        else:
            if older_than_days is not None:
                cutoff = time.time() - float(older_than_days) * 86400.0
                doomed = [e for e in entries if e["created"] < cutoff]
            if max_bytes is not None:
                kept = [e for e in entries if e not in doomed]
                total = sum(e["bytes"] for e in kept)
                for e in kept:  # oldest first
                    if total <= max_bytes:
                        break
                    doomed.append(e)
                    total -= e["bytes"]
        for e in doomed:
            for path in self.paths(e["key"]):
                path.unlink(missing_ok=True)
        if self.dir.is_dir():  # temporary files of writes killed half-way
            for tmp in self.dir.glob(".*.tmp"):
                if tmp.stat().st_mtime < time.time() - 3600:
                    tmp.unlink(missing_ok=True)
        return doomed
