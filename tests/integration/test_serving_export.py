import json

import numpy as np
import pytest
import torch

from emodistill.cli import main
from emodistill.serving.export import ExportWrapper, export_model, input_names, load_torchscript
from emodistill.serving.predict import load
from helpers.checkpoints import make_checkpoint, synthetic

BASELINES = [("unimodal", {"modality": "text"}, "sentiment"),
             ("early_fusion", {}, "sentiment3"),
             ("feature_fusion", {}, "polarity"),
             ("late_fusion", {}, "sentiment")]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    out = {name: make_checkpoint(root / name / "model.pt", name, params=params, target=target)
           for name, params, target in BASELINES}
    # vectors keep the torch.export-based ONNX test fast (sequences: TorchScript, legacy ONNX)
    out["late_fusion_vec"] = make_checkpoint(root / "lf_vec" / "model.pt", "late_fusion",
                                             vectors=True)
    return out


def _raw_inputs(pred, rows, missing=()):
    """Raw padded tensors of the export signature, plus the same data for Predictor."""
    ds = synthetic(vectors=all(pred.spec.modality(m).seq_len == 1
                               for m in pred.modalities)).subset(rows)
    tensors, arrays, lengths, present = [], {}, {}, {}
    for m in pred.modalities:
        x, mk = ds.features[m], ds.mask[m]
        p = torch.ones(len(ds), dtype=torch.bool)
        if m in missing:
            p[:] = False
            p[-1] = True  # one sample keeps it: presence is per sample
        tensors += [x, mk, p]
        arrays[m], lengths[m], present[m] = x.numpy(), mk.sum(1).numpy(), p.numpy()
    return tuple(tensors), dict(arrays=arrays, lengths=lengths, present=present)


@pytest.mark.parametrize("name", [b[0] for b in BASELINES])
def test_wrapper_and_torchscript_match_pytorch(ckpts, name, tmp_path):
    pred = load(ckpts[name])
    out = export_model(ckpts[name], tmp_path / "m.pt", format="torchscript")
    ts = load_torchscript(out)
    wrapper = ExportWrapper(pred).eval()
    for rows, missing in (([3], ()), ([0, 1, 2, 5], ("audio",))):
        tensors, kw = _raw_inputs(pred, rows, missing if len(pred.modalities) > 1 else ())
        want = pred.predict(kw["arrays"], lengths=kw["lengths"], present=kw["present"]).values
        with torch.no_grad():
            np.testing.assert_allclose(wrapper(*tensors).numpy(), want, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(ts(*tensors).numpy(), want, rtol=1e-5, atol=1e-5)
    desc = json.loads((tmp_path / "m.pt.json").read_text())
    assert desc["input_names"] == input_names(pred.modalities)
    assert desc["target"]["name"] == pred.target.name and desc["includes_normalizer"]


def test_onnx_parity_batch_one_and_missing_modality(ckpts, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'export' extra")
    pred = load(ckpts["late_fusion_vec"])
    path = export_model(ckpts["late_fusion_vec"], tmp_path / "lf.onnx", format="onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == input_names(pred.modalities)
    for rows, missing in (([4], ()), ([0, 1, 2], ("audio",)), ([6, 7], ("text",))):
        tensors, kw = _raw_inputs(pred, rows, missing)
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, tensors, strict=True)})[0]
        want = pred.predict(kw["arrays"], lengths=kw["lengths"], present=kw["present"]).values
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_legacy_onnx_exporter_classification_probabilities(ckpts, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra")
    pred = load(ckpts["early_fusion"])
    path = export_model(pred, tmp_path / "ef.onnx", dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tensors, kw = _raw_inputs(pred, [1])
    got = sess.run(None, {n: t.numpy() for n, t in zip(input_names(pred.modalities), tensors,
                                                      strict=True)})[0]
    want = pred.predict(kw["arrays"], lengths=kw["lengths"]).values
    assert got.shape == (1, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    desc = json.loads(path.with_name("ef.onnx.json").read_text())
    assert desc["target"]["class_names"] == ["negative", "neutral", "positive"]
    assert desc["outputs"][0]["meaning"] == "class probabilities"


def test_export_cli_and_bad_format(ckpts, tmp_path):
    out = tmp_path / "cli.pt"
    assert main(["export", str(ckpts["unimodal"]), "--format", "torchscript",
                 "--output", str(out)]) == 0
    assert out.is_file() and out.with_name("cli.pt.json").is_file()
    from emodistill.errors import ConfigError

    with pytest.raises(ConfigError, match="onnx or torchscript"):
        export_model(ckpts["unimodal"], tmp_path / "x", format="tflite")


def test_bool_where_is_rewritten_for_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra")
    from emodistill.serving.export import _patch_bool_where

    class BoolWhere(torch.nn.Module):
        def forward(self, x, m):
            keep = torch.where(m.any(1), m[:, 0], ~m[:, 0])  # a bool-valued where
            return x.sum(1) * keep.float()

    x, m = torch.randn(3, 4), torch.tensor([[True, False], [False, False], [False, True]])
    path = tmp_path / "w.onnx"
    torch.onnx.export(BoolWhere(), (x, m), str(path), input_names=["x", "m"], dynamo=False)
    assert _patch_bool_where(path) == 1
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy(), "m": m.numpy()})[0]
    np.testing.assert_allclose(got, BoolWhere()(x, m).numpy(), atol=1e-6)
    assert _patch_bool_where(path) == 0  # idempotent


@pytest.mark.parametrize("method", ["hinton_kd", "kd_feature", "physio_teacher"])
def test_students_and_transformer_teacher_export(method, tmp_path):
    """Students load without their teacher and export like baselines; the physio teacher's
    nn.TransformerEncoder exports (its fused inference fast path is turned off for export)."""
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra")
    from emodistill.checkpoint import save_checkpoint
    from emodistill.config import compose, to_container
    from emodistill.data.normalize import Standardizer
    from emodistill.models import build_method

    ds = synthetic()
    cfg = to_container(compose(dataset="synthetic", method=method,
                               overrides=["dataset.target=sentiment"]))
    small = {"width": 16, "layers": 1, "heads": 2, "head_width": 16}  # keep the test fast
    for d in (cfg["method"], cfg["method"].get("student") or {}):
        d.update({k: v for k, v in small.items() if k in d})
    params = {k: v for k, v in cfg["method"].items() if k != "name"}
    if "modality" in params:  # the student's modality
        params["modality"] = cfg["method"]["modality"] = "text"
    if "teacher" in params:
        params["teacher"] = None  # as load_checkpoint builds a deployed student
    torch.manual_seed(0)
    model = build_method(method, spec=ds.spec, target=ds.spec.target("sentiment"),
                         params=params).eval()
    ck = save_checkpoint(tmp_path / "model.pt", model, config=cfg,
                         standardizer=Standardizer.fit(ds), meta={"fold": "standard"})
    pred = load(ck)
    tensors, kw = _raw_inputs(pred, [0, 1, 2], ("audio",) if "audio" in pred.modalities else ())
    want = pred.predict(kw["arrays"], lengths=kw["lengths"], present=kw["present"]).values
    ts = load_torchscript(export_model(pred, tmp_path / "m.pt", format="torchscript"))
    np.testing.assert_allclose(ts(*tensors).detach().numpy(), want, rtol=1e-4, atol=1e-5)
    onnx_path = export_model(pred, tmp_path / "m.onnx", dynamo=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(input_names(pred.modalities), tensors,
                                                        strict=True)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
