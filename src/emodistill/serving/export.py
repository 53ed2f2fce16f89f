"""Export a trained checkpoint to ONNX or TorchScript for deployment.

The exported graph is :class:`ExportWrapper`: it takes plain tensors, three per
modality the model was trained on, in the order of ``Predictor.modalities``::

    <m>          [B, T, D] float32   raw (un-normalised) features, right-padded to T
                 [B, T]    int64     for a token modality (text encoder inside the model):
                                     token ids, padding 0
    <m>_mask     [B, T]    bool      True on real steps
    <m>_present  [B]       bool      False where the modality is missing

and returns ``prediction``: ``[B]`` regression values or ``[B, C]`` class
probabilities. The training normalisation is part of the graph (unless
``include_normalizer=False``), and an absent modality is handled exactly as
in PyTorch (zero features, presence False). The batch axis is dynamic; ``T``
is the trained maximum length. A JSON file next to the export
(``<file>.json``) lists the inputs, the output and what it means (target,
range, class names), so a serving process needs nothing from emodistill.

ONNX needs the ``export`` extra (``pip install 'emodistill[export]'``:
onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from emodistill import __version__
from emodistill._fs import atomic_write
from emodistill.data.batch import Batch
from emodistill.errors import ConfigError
from emodistill.serving.predict import Predictor, load

__all__ = ["ExportWrapper", "export_model", "example_inputs", "input_names", "ExportFormat",
           "load_torchscript", "onnx_session"]

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "torchscript"]


def _missing_extra(pkg: str, e: ImportError) -> ImportError:
    return ImportError(
        f"ONNX export needs {pkg!r}, which is not installed ({e}); install the export "
        "extra: pip install 'emodistill[export]'"
    )


class ExportWrapper(nn.Module):
    """A model with a plain-tensor signature (see the module docstring).

    Parameters
    ----------
    predictor : Predictor
        The loaded model (its normaliser is copied into buffers).
    include_normalizer : bool
        Apply the training normalisation inside the graph (inputs are raw
        features); when False the inputs must already be normalised.
    """

    def __init__(self, predictor: Predictor, *, include_normalizer: bool = True) -> None:
        super().__init__()
        self.model = predictor.model.eval()
        self.modalities = list(predictor.modalities)
        std = predictor.standardizer if include_normalizer else None
        self.normalize = std is not None
        self.token_modalities = [m for m in self.modalities if predictor.spec.modality(m).is_tokens]
        for m in self.modalities:
            if m in self.token_modalities:  # token ids: no normalisation
                continue
            d = predictor.spec.modality(m).dim
            mean = std.mean[m].float() if std is not None else torch.zeros(d)
            sd = std.std[m].float() if std is not None else torch.ones(d)
            self.register_buffer(f"mean_{m}", mean.clone())
            self.register_buffer(f"std_{m}", sd.clone())

    def forward(self, *tensors: Tensor) -> Tensor:
        """``(x_m, mask_m, present_m for m in modalities)`` → predictions ``[B]`` / ``[B, C]``."""
        inputs, mask, present = {}, {}, {}
        for i, m in enumerate(self.modalities):
            x, mk, p = tensors[3 * i], tensors[3 * i + 1], tensors[3 * i + 2]
            mk = mk & p[:, None]
            if m in self.token_modalities:  # int64 ids, zero on padding
                inputs[m] = x * mk.to(x.dtype)
                mask[m], present[m] = mk, p
                continue
            if self.normalize:
                x = (x - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
            inputs[m] = x * mk[..., None].to(x.dtype)
            mask[m], present[m] = mk, p
        first = tensors[0]
        batch = Batch(inputs, mask, present,
                      target=first.new_zeros(first.shape[0]),
                      index=torch.zeros_like(first[:, 0] if first.ndim == 2 else first[:, 0, 0],
                                             dtype=torch.long))
        return self.model.predict_values(self.model(batch))


def _patch_bool_where(path: Path) -> int:
    """Rewrite ONNX ``Where`` nodes with bool data through uint8 casts; return how many.

    torch exports ``torch.where(c, a, b)`` on bool tensors as a bool ``Where``,
    which onnxruntime's CPU provider does not implement ("Could not find an
    implementation for Where(16)"). Casting the two data inputs to uint8 and the
    result back to bool is exact.
    """
    import onnx
    from onnx import TensorProto, helper, shape_inference

    model = onnx.load(str(path))
    inferred = shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types |= {t.name: t.data_type for t in model.graph.initializer}
    nodes, n = [], 0
    for node in model.graph.node:
        if node.op_type == "Where" and types.get(node.output[0]) == TensorProto.BOOL:
            n += 1
            cond, a, b = node.input
            a8, b8, w8 = (f"{node.name}__{k}_u8" for k in ("a", "b", "out"))
            nodes += [helper.make_node("Cast", [a], [a8], to=TensorProto.UINT8),
                      helper.make_node("Cast", [b], [b8], to=TensorProto.UINT8),
                      helper.make_node("Where", [cond, a8, b8], [w8], name=node.name),
                      helper.make_node("Cast", [w8], [node.output[0]], to=TensorProto.BOOL)]
        else:
            nodes.append(node)
    if n:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.save(model, str(path))
    return n


def input_names(modalities: list[str]) -> list[str]:
    """Graph input names, in order: ``<m>, <m>_mask, <m>_present`` per modality."""
    return [n for m in modalities for n in (m, f"{m}_mask", f"{m}_present")]


def example_inputs(predictor: Predictor, batch_size: int = 2, *,
                   seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs of the export signature (every modality present, full length)."""
    g = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    for m in predictor.modalities:
        ms = predictor.spec.modality(m)
        x = (torch.randint(1, ms.dim, (batch_size, ms.seq_len), generator=g) if ms.is_tokens
             else torch.randn(batch_size, ms.seq_len, ms.dim, generator=g))
        out += [x,
                torch.ones(batch_size, ms.seq_len, dtype=torch.bool),
                torch.ones(batch_size, dtype=torch.bool)]
    return tuple(out)


def _describe(predictor: Predictor, fmt: str, include_normalizer: bool) -> dict[str, Any]:
    t = predictor.target
    inputs = []
    for m in predictor.modalities:
        ms = predictor.spec.modality(m)
        first = ({"name": m, "shape": ["batch", ms.seq_len], "dtype": "int64",
                  "meaning": f"token ids (vocabulary of {ms.dim}, padding 0), right-padded"}
                 if ms.is_tokens else
                 {"name": m, "shape": ["batch", ms.seq_len, ms.dim], "dtype": "float32",
                  "meaning": "raw features" if include_normalizer else "normalised features"})
        inputs += [
            first,
            {"name": f"{m}_mask", "shape": ["batch", ms.seq_len], "dtype": "bool",
             "meaning": "True on real (unpadded) steps"},
            {"name": f"{m}_present", "shape": ["batch"], "dtype": "bool",
             "meaning": "False where the modality is missing"},
        ]
    output = {"name": "prediction",
              "shape": ["batch"] if t.kind == "regression" else ["batch", t.num_classes],
              "meaning": "regression value" if t.kind == "regression" else "class probabilities"}
    return {
        "format": fmt,
        "emodistill_version": __version__,
        "torch_version": str(torch.__version__),
        "method": predictor.method,
        "modalities": predictor.modalities,
        "target": {"name": t.name, "kind": t.kind,
                   "value_range": list(t.value_range) if t.value_range else None,
                   "class_names": list(t.class_names) if t.class_names else None},
        "includes_normalizer": include_normalizer and predictor.standardizer is not None,
        "inputs": inputs,
        "outputs": [output],
        "checkpoint_meta": {k: v for k, v in predictor.meta.items()
                            if k in ("fold", "test_metrics", "data_fingerprint", "best_epoch")},
    }


def export_model(
    checkpoint: str | Path | Predictor,
    output: str | Path,
    *,
    format: ExportFormat = "onnx",
    include_normalizer: bool = True,
    opset: int | None = None,
    dynamo: bool = True,
) -> Path:
    """Export a checkpoint to ONNX or TorchScript.

    Parameters
    ----------
    checkpoint : path or Predictor
        A ``model.pt`` (or a loaded :class:`Predictor`).
    output : path
        The file to write (``.onnx`` or ``.pt``); a ``<output>.json``
        description is written beside it.
    format : {"onnx", "torchscript"}
        Target format. TorchScript is produced by tracing (``torch.jit.trace``).
    include_normalizer : bool
        Put the training normalisation into the graph.
    opset : int, optional
        ONNX opset (default: the exporter's).
    dynamo : bool
        Use the ``torch.export``-based ONNX exporter (default, recommended);
        False uses the legacy TorchScript-based exporter.

    Returns
    -------
    Path
        The written model file.
    """
    if format not in ("onnx", "torchscript"):
        raise ConfigError(f"export format={format!r}; use onnx or torchscript")
    pred = checkpoint if isinstance(checkpoint, Predictor) else load(checkpoint)
    context = str(dict(pred.config.get("method") or {}).get("context") or "none")
    if context != "none":  # the exported graph takes utterances, not videos with a layout
        raise ConfigError(
            f"this model was trained with utterance context (method.context={context}); the "
            "exported graph would see every utterance alone, which it was not trained for. "
            "Serve it with emodistill.load(...).predict(..., videos=...) instead"
        )
    pred.model.to("cpu")
    wrapper = ExportWrapper(pred, include_normalizer=include_normalizer).eval()
    args = example_inputs(pred, batch_size=2)
    out = Path(output).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(pred.modalities)
    # nn.TransformerEncoderLayer's inference fast path is a fused kernel that neither ONNX
    # exporter supports (aten::_transformer_encoder_layer_fwd): trace the plain ops instead
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    if mha is not None:
        mha.set_fastpath_enabled(False)
    log.info("exporting %s to %s as %s%s: tracing the graph, this can take a few minutes "
             "for the larger methods (DMD, DHMD)", pred.method, out, format,
             f" (opset {opset})" if format == "onnx" else "")
    start = time.perf_counter()
    try:
        _export(wrapper, args, out, names, format=format, opset=opset, dynamo=dynamo)
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)
    desc = _describe(pred, format, include_normalizer)
    desc["input_names"] = names
    atomic_write(out.with_name(out.name + ".json"), lambda f: json.dump(desc, f, indent=2))
    log.info("exported %s to %s in %.1f s", pred.method, out, time.perf_counter() - start)
    return out


def _export(wrapper: ExportWrapper, args: tuple[Tensor, ...], out: Path, names: list[str], *,
            format: str, opset: int | None, dynamo: bool) -> None:
    if format == "torchscript":
        # torch.jit is deprecated upstream in favour of torch.export (ONNX here); tracing
        # also warns on python-level shape logic, which is constant per model
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, args, check_trace=False)
            atomic_write(out, lambda f: torch.jit.save(traced, f), mode="wb")
    else:
        try:
            import onnx  # noqa: F401
        except ImportError as e:
            raise _missing_extra("onnx", e) from None
        if dynamo:
            try:
                import onnxscript  # noqa: F401
            except ImportError as e:
                raise _missing_extra("onnxscript", e) from None
        tmp = out.with_name(f".{out.name}.tmp")
        quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" notices
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    batch = torch.export.Dim("batch", min=1)
                    shapes = tuple({0: batch} for _ in args)
                    prog = torch.onnx.export(wrapper, args, dynamic_shapes=(shapes,),
                                             input_names=names, output_names=["prediction"],
                                             opset_version=opset, dynamo=True, verbose=False,
                                             optimize=True)
                    prog.save(str(tmp))  # weights embedded: one self-contained file
                else:
                    torch.onnx.export(wrapper, args, str(tmp), input_names=names,
                                      output_names=["prediction"], opset_version=opset,
                                      dynamic_axes={n: {0: "batch"} for n in
                                                    [*names, "prediction"]},
                                      dynamo=False)
            patched = _patch_bool_where(tmp)
            if patched:
                log.info("rewrote %d bool Where node(s) for onnxruntime", patched)
            tmp.replace(out)
        finally:
            quiet.setLevel(level)
            if tmp.exists():
                tmp.unlink()


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load an exported TorchScript file (CPU)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
        return torch.jit.load(str(path), map_location="cpu")


def onnx_session(path: str | Path, *, threads: int | None = None) -> Any:
    """Open an exported file in an ``onnxruntime.InferenceSession`` on CPU.

    Parameters
    ----------
    path : path
        The ``.onnx`` file.
    threads : int, optional
        Intra-op threads (default: onnxruntime's choice).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise _missing_extra("onnxruntime", e) from None
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])
