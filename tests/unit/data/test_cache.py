import json

import numpy as np
import pytest

import emodistill
from emodistill.data.cache import CACHE_DIR_ENV, FeatureCache, default_cache_dir, hash_array
from emodistill.data.formats.physio_synthetic import make_synthetic_physio


class Counter:
    def __init__(self, value):
        self.calls = 0
        self.value = value

    def __call__(self):
        self.calls += 1
        return {"y": self.value * 2, "n": np.arange(3)}


def _inputs():
    return {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}


def test_second_call_reads_the_entry_without_computing(tmp_path):
    cache = FeatureCache(tmp_path)
    compute = Counter(np.ones(4))
    a = cache.get_or_compute(_inputs(), {"kind": "de", "fs": 128.0}, compute)
    b = cache.get_or_compute(_inputs(), {"fs": 128.0, "kind": "de"}, compute)  # key order free
    assert compute.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(a["y"], b["y"])
    assert b["n"].dtype == a["n"].dtype


@pytest.mark.parametrize("change", ["recipe", "input", "version"])
def test_a_changed_recipe_input_or_version_never_reuses_the_entry(tmp_path, monkeypatch, change):
    cache = FeatureCache(tmp_path)
    compute = Counter(np.ones(4))
    cache.get_or_compute(_inputs(), {"kind": "de"}, compute)
    inputs, recipe = _inputs(), {"kind": "de"}
    if change == "recipe":
        recipe = {"kind": "band_power"}
    elif change == "input":
        inputs["x"][2, 3] += 1e-3
    else:
        monkeypatch.setattr(emodistill, "__version__", "999.0")
    cache.get_or_compute(inputs, recipe, compute)
    assert compute.calls == 2
    assert len(cache.manifests()) == 2


def test_manifest_is_readable_json_describing_the_entry(tmp_path):
    cache = FeatureCache(tmp_path, namespace="physio")
    cache.get_or_compute(_inputs(), {"kind": "de", "bands": {"alpha": [8, 14]}},
                         Counter(np.ones(2)), description="s01.dat")
    (man,) = cache.manifests()
    files = sorted(p.name for p in (tmp_path / "physio").iterdir())
    assert files == [f"{man['key']}.json", f"{man['key']}.npz"]
    on_disk = json.loads((tmp_path / "physio" / f"{man['key']}.json").read_text())
    assert on_disk == man
    assert man["recipe"] == {"kind": "de", "bands": {"alpha": [8, 14]}}
    assert man["inputs"]["x"] == {"shape": [3, 4], "dtype": "float32",
                                  "sha256": hash_array(_inputs()["x"])}
    assert man["outputs"]["y"] == {"shape": [2], "dtype": "float64"}
    assert man["versions"]["emodistill"] == emodistill.__version__
    assert man["description"] == "s01.dat"


def test_corrupt_or_tampered_entries_are_recomputed(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    compute = Counter(np.ones(3))
    cache.get_or_compute(_inputs(), {"k": 1}, compute)
    (man,) = cache.manifests()
    npz, js = cache.paths(man["key"])
    npz.write_bytes(b"not an npz")
    out = cache.get_or_compute(_inputs(), {"k": 1}, compute)
    assert compute.calls == 2 and "unreadable" in caplog.text
    np.testing.assert_array_equal(out["y"], np.full(3, 2.0))
    tampered = json.loads(js.read_text())
    tampered["recipe"] = {"k": 2}
    js.write_text(json.dumps(tampered))
    cache.get_or_compute(_inputs(), {"k": 1}, compute)
    assert compute.calls == 3


def test_hash_array_sees_dtype_and_shape():
    x = np.zeros(4, dtype=np.float32)
    assert hash_array(x) != hash_array(x.astype(np.float64))
    assert hash_array(x) != hash_array(x.reshape(2, 2))
    assert hash_array(x) == hash_array(x.copy())


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "emodistill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir().parts[-2:] == (".cache", "emodistill")


def test_dataset_features_are_cached_and_a_new_recipe_gets_a_new_entry(tmp_path):
    kw = dict(n_subjects=2, n_trials=3, trial_seconds=2.0, eeg_channels=3, chunk_size=128,
              features="de", cache=True, cache_dir=str(tmp_path))
    a = make_synthetic_physio(**kw)
    b = make_synthetic_physio(**kw)
    assert a.fingerprint() == b.fingerprint()
    assert len(FeatureCache(tmp_path).manifests()) == 1
    c = make_synthetic_physio(**{**kw, "chunk_size": 64})
    assert len(FeatureCache(tmp_path).manifests()) == 2
    assert c.spec.modality("eeg").seq_len == 4  # 2 s / 0.5 s windows
    recipes = [m["recipe"]["window"]["chunk_size"] for m in FeatureCache(tmp_path).manifests()]
    assert sorted(recipes) == [64, 128]
