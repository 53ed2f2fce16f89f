"""The restricted unpickler: plain data loads, anything executable is refused unrun."""

from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from emodistill.data.formats._unpickler import safe_load_pickle
from emodistill.errors import DataFormatError, UnsafePickleError


def _data() -> dict:
    return {
        "train": {
            "id": np.array(["a$_$1", "b$_$2"], dtype=object),
            "raw_text": ["hello", "world"],
            "text": np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32),
            "audio": np.array([[[-np.inf, 1.0]], [[np.nan, 2.0]]], dtype=np.float64),
            "labels": np.array([0.5, -1.0], dtype=np.float32),
            "lengths": np.array([1, 1], dtype=np.int64),
            "scalar": np.float32(1.5),
            "meta": collections.OrderedDict(a=(1, 2), b={3, 4}, c=frozenset({5})),
        }
    }


def _same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    else:
        assert a == b or (isinstance(a, float) and np.isnan(a) and np.isnan(b))


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_plain_data_round_trips(tmp_path, protocol):
    p = tmp_path / "d.pkl"
    p.write_bytes(pickle.dumps(_data(), protocol=protocol))
    _same(_data(), safe_load_pickle(p))


def test_pickles_from_numpy_1_module_paths_load(tmp_path):
    # MMSA files were written with numpy 1.x, whose arrays reference numpy.core.multiarray
    raw = pickle.dumps({"x": np.arange(6.0).reshape(2, 3)}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    p = tmp_path / "old.pkl"
    p.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    out = safe_load_pickle(p, encoding="latin1")
    np.testing.assert_array_equal(out["x"], np.arange(6.0).reshape(2, 3))


class Gadget:  # a class instance is not data
    def __init__(self) -> None:
        self.x = 1


class _RunsCommand:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Evals:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_os_system_payload_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = {"train": {"id": np.array(["a"]), "audio": _RunsCommand(f"touch {marker}")}}
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"(posix|nt|os)\.system"):
        safe_load_pickle(p)
    assert not marker.exists()


def test_payload_is_live_under_plain_pickle(tmp_path):
    # documents that the refused payload above is a real exploit, not a dud
    marker = tmp_path / "live"
    pickle.loads(pickle.dumps(_RunsCommand(f"touch {marker}")))
    assert marker.exists()


def test_eval_payload_is_refused(tmp_path):
    marker = tmp_path / "evaled"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps([_Evals(f"open({str(marker)!r}, 'w')")]))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_load_pickle(p)
    assert not marker.exists()


def test_class_instance_is_refused(tmp_path):
    p = tmp_path / "obj.pkl"
    p.write_bytes(pickle.dumps({"train": Gadget()}))
    with pytest.raises(UnsafePickleError, match="Gadget") as e:
        safe_load_pickle(p)
    assert "npz" in str(e.value)  # says how to fix it


def test_object_array_holding_a_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = "fine", _RunsCommand(f"touch {marker}")
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"id": arr}))
    with pytest.raises(UnsafePickleError):
        safe_load_pickle(p)
    assert not marker.exists()


def test_unsafe_error_is_a_data_format_error():
    assert issubclass(UnsafePickleError, DataFormatError)


@pytest.mark.parametrize(
    "content", [b"", b"not a pickle at all", pickle.dumps(_data(), protocol=4)[:-40]],
    ids=["empty", "garbage", "truncated"],
)
def test_unreadable_files_raise_data_format_error(tmp_path, content):
    p = tmp_path / "bad.pkl"
    p.write_bytes(content)
    with pytest.raises(DataFormatError, match="bad.pkl") as e:
        safe_load_pickle(p)
    assert not isinstance(e.value, UnsafePickleError)
