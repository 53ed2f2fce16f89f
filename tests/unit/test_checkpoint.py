"""Self-describing checkpoints: content, safe loading, atomic writes, clear errors."""

from __future__ import annotations

import pytest
import torch

import emodistill
from emodistill import checkpoint as ck_mod
from emodistill.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.data.normalize import Standardizer
from emodistill.errors import DataFormatError, DataNotFoundError
from emodistill.models import build_method


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_mer(40, seed=2, samples_per_video=4)


def _model(ds, target="sentiment3", **params):
    torch.manual_seed(0)
    p = {"width": 8, "layers": 1, "modalities": ["text", "vision"], **params}
    return build_method("late_fusion", spec=ds.spec, target=ds.spec.target(target), params=p)


def _cfg(**method):
    return {"seed": 5, "method": {"name": "late_fusion", "width": 8, "layers": 1,
                                  **method}, "dataset": {"name": "synthetic"}}


def test_payload_is_plain_and_complete(ds, tmp_path):
    model = _model(ds)
    std = Standardizer.fit(ds)
    p = save_checkpoint(tmp_path / "model.pt", model, config=_cfg(), standardizer=std,
                        meta={"fold": "standard", "test_metrics": {"acc": 0.5}})
    raw = torch.load(p, weights_only=True)  # no arbitrary code needed to read it
    assert raw["format"] == "emodistill-checkpoint" and raw["format_version"] == FORMAT_VERSION
    assert raw["emodistill_version"] == emodistill.__version__
    assert raw["torch_version"] == str(torch.__version__)
    assert raw["method"] == "late_fusion" and raw["method_params"]["width"] == 8
    assert raw["config"]["seed"] == 5
    assert raw["modalities"] == ["text", "vision"]
    assert [m["name"] for m in raw["spec"]["modalities"]] == ["text", "vision"]
    assert raw["target"] == {"name": "sentiment3", "kind": "multiclass", "value_range": None,
                             "class_names": ["negative", "neutral", "positive"]}
    assert set(raw["normalizer"]["mean"]) == {"text", "audio", "vision"}
    assert raw["meta"]["test_metrics"] == {"acc": 0.5}
    assert set(raw["state_dict"]) == set(model.state_dict())


def test_load_rebuilds_an_equal_model(ds, tmp_path):
    model = _model(ds, target="sentiment").eval()
    p = save_checkpoint(tmp_path / "m.pt", model, config=_cfg(), standardizer=None)
    ck = load_checkpoint(p)
    assert ck.standardizer is None and ck.config["seed"] == 5 and ck.meta == {}
    assert ck.target.value_range == (-3.0, 3.0) and ck.model.modalities == ["text", "vision"]
    batch = ds.batch(range(12), "sentiment")
    with torch.no_grad():
        torch.testing.assert_close(ck.model(batch).preds, model(batch).preds)


def test_teacher_entry_is_dropped_for_inference(ds, tmp_path, monkeypatch):
    seen = {}
    real = ck_mod.build_method

    def spy(name, *, spec, target, params=None):
        seen.update(params)
        params = {k: v for k, v in params.items() if k != "teacher"}
        return real(name, spec=spec, target=target, params=params)

    p = save_checkpoint(tmp_path / "s.pt", _model(ds),
                        config=_cfg(teacher={"method": {"name": "late_fusion"}}),
                        standardizer=None)
    monkeypatch.setattr(ck_mod, "build_method", spy)
    load_checkpoint(p)
    assert seen["teacher"] is None


def test_write_is_atomic(ds, tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    save_checkpoint(target, _model(ds), config=_cfg(), standardizer=None)
    before = target.read_bytes()

    def boom(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck_mod.torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(target, _model(ds), config=_cfg(), standardizer=None)
    assert target.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["model.pt"]


def test_load_errors(ds, tmp_path):
    with pytest.raises(DataNotFoundError, match="absent.pt"):
        load_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataFormatError, match="junk.pt.*weights_only"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(DataFormatError, match="no 'format' marker"):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    p = save_checkpoint(newer, _model(ds), config=_cfg(), standardizer=None)
    raw = torch.load(p, weights_only=True)
    raw["format_version"] = FORMAT_VERSION + 1
    torch.save(raw, newer)
    with pytest.raises(DataFormatError, match="newer.*upgrade emodistill"):
        load_checkpoint(newer)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_checkpoint_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "emodistill-checkpoint", "x": _Evil()}, p)
    with pytest.raises(DataFormatError, match="weights_only"):
        load_checkpoint(p)
