"""A corrupt cache entry is a miss (warned, deleted, recomputed); `emodistill cache ls|prune`."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from emodistill.cli import main
from emodistill.cli.cache import parse_size
from emodistill.data.cache import FeatureCache


def _compute(calls):
    def f():
        calls.append(1)
        return {"y": np.arange(1000, dtype=np.float64)}
    return f


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_entry_is_a_miss_that_is_deleted_and_recomputed(tmp_path, caplog, damage):
    cache, calls = FeatureCache(tmp_path), []
    x = {"x": np.arange(5.0)}
    cache.get_or_compute(x, {"k": 1}, _compute(calls))
    (npz,) = cache.dir.glob("*.npz")
    data = npz.read_bytes()
    npz.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a zip" * 10,
                     "empty": b""}[damage])
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        out = cache.get_or_compute(x, {"k": 1}, _compute(calls))
    assert len(calls) == 2 and cache.misses == 2
    np.testing.assert_array_equal(out["y"], np.arange(1000))
    assert "unreadable" in caplog.text and npz.name in caplog.text
    again = FeatureCache(tmp_path)
    again.get_or_compute(x, {"k": 1}, _compute(calls))
    assert len(calls) == 2 and again.hits == 1  # rewritten whole


def test_cache_ls_and_prune(tmp_path, capsys):
    cache = FeatureCache(tmp_path)
    for i in range(3):
        cache.get_or_compute({"x": np.arange(i + 1.0)}, {"k": i}, _compute([]),
                             description=f"entry {i}")
    old = cache.entries()[0]
    for path in cache.paths(old["key"]):  # ten days old
        os.utime(path, (time.time() - 10 * 86400,) * 2)
    assert main(["cache", "ls", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "entry 2" in out and "KiB" in out
    assert main(["cache", "prune", "--dir", str(tmp_path)]) == 2
    assert "--older-than" in capsys.readouterr().err
    assert main(["cache", "prune", "--dir", str(tmp_path), "--older-than", "5"]) == 0
    assert "deleted 1 entry" in capsys.readouterr().out
    assert old["key"] not in {e["key"] for e in cache.entries()}
    size = cache.entries()[-1]["bytes"]
    assert main(["cache", "prune", "--dir", str(tmp_path), "--max-size", str(size)]) == 0
    assert [e["description"] for e in cache.entries()] == ["entry 2"]  # oldest went first
    assert main(["cache", "prune", "--dir", str(tmp_path), "--all"]) == 0
    assert cache.entries() == [] and not list(cache.dir.iterdir())


def test_parse_size():
    assert parse_size("2G") == 2 * 1024**3 and parse_size("500m") == 500 * 1024**2
    assert parse_size("1.5KiB") == 1536 and parse_size("1000") == 1000
    with pytest.raises(Exception, match="500 bytes"):
        parse_size("500 bytes")
