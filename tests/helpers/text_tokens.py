"""A tiny token-id dataset (eight sentences, text + audio) for the text-encoder tests.

Needs the 'text' extra (transformers, the packaged MiniLM); import it after
``pytest.importorskip("transformers")``.
"""

from __future__ import annotations

import numpy as np

from emodistill.data.dataset import MultimodalDataset
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.data.tokens import tokenize_texts

__all__ = ["TEXTS", "Y", "token_dataset"]

TEXTS = ["it was really good", "terrible film , i hated it",
         "the acting was fine but the plot was boring and way too long", "great",
         "not bad at all", "awful", "i loved every minute of it", "so dull"]


Y = np.array([2.0, -3.0, -1.0, 3.0, 1.0, -2.0, 2.6, -1.8], dtype=np.float32)


def token_dataset(texts=TEXTS, y=Y, pad_to=None) -> MultimodalDataset:
    ids, ln = tokenize_texts(texts, pad_to=pad_to)
    n = len(texts)
    spec = DatasetSpec(
        "tiny", (ModalitySpec("text", 30522, ids.shape[1], kind="tokens"),
                 ModalitySpec("audio", 5, 1)),
        (TargetSpec("sentiment", "regression", value_range=(-3.0, 3.0)),), ("video",))
    rng = np.random.default_rng(0)
    part = np.array(["train"] * (n - 2) + ["valid", "test"])
    part[: n - 2][::3] = "valid"
    part[1] = "test"
    return MultimodalDataset(spec, {"text": ids, "audio": rng.standard_normal((n, 5))},
                             targets={"sentiment": y}, ids=[f"v{i}_{i}" for i in range(n)],
                             groups={"video": np.array([f"v{i}" for i in range(n)])},
                             lengths={"text": ln}, splits={"standard": part})
