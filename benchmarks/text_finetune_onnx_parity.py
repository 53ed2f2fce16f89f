"""ONNX parity of a checkpoint whose MiniLM text encoder was fine-tuned (raw text → ids).

    python benchmarks/text_finetune_onnx_parity.py runs/.../standard/model.pt

Exports with the torch.export-based exporter, runs onnxruntime on two raw transcripts
(tokenised by ``Predictor.make_batch``) and compares with ``Predictor.predict``.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emodistill import load
from emodistill.serving.export import export_model, onnx_session

p = load(sys.argv[1])
t = time.time()
out = export_model(p, Path(tempfile.mkdtemp()) / "model.onnx", format="onnx")
print("export s", round(time.time() - t, 1))
sess = onnx_session(out, threads=1)
texts = ["what a wonderful film", "boring and way too long , i did not like it"]
audio = np.random.default_rng(0).standard_normal((2, 73)).astype(np.float32)
want = p.predict(text=texts, audio=audio).values
b = p.make_batch({"text": texts, "audio": audio})
feeds = {"text": b.inputs["text"].numpy(), "text_mask": b.mask["text"].numpy(),
         "text_present": b.present["text"].numpy(),
         "audio": audio[:, None, :], "audio_mask": np.ones((2, 1), bool),
         "audio_present": np.ones(2, bool)}
got = sess.run(None, feeds)[0]
print("predict", want, "onnx", got, "max diff", float(np.abs(got - want).max()))
