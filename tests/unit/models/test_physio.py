import pytest
import torch

from emodistill.data.batch import Batch
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, UnknownNameError
from emodistill.models import build_method
from emodistill.models.physio import (
    ConvTokenizer,
    LinearTokenizer,
    PhysioTeacher,
    VectorTokenizer,
    build_tokenizer,
)

TARGET = TargetSpec("valence", "binary", class_names=("low", "high"))
SMALL = dict(width=16, layers=2, heads=2, head_width=16)


def physio_spec() -> DatasetSpec:
    return DatasetSpec(
        "toy_physio",
        (ModalitySpec("eeg", 4, 64), ModalitySpec("eog", 2, 64), ModalitySpec("gsr", 1, 64)),
        (TARGET,), ("subject", "trial"),
    )


def make_batch(spec: DatasetSpec, n: int = 5, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        inputs={m.name: torch.randn(n, m.seq_len, m.dim, generator=g) for m in spec.modalities},
        mask={m.name: torch.ones(n, m.seq_len, dtype=torch.bool) for m in spec.modalities},
        present={m.name: torch.ones(n, dtype=torch.bool) for m in spec.modalities},
        target=torch.randint(0, 2, (n,), generator=g),
        index=torch.arange(n),
    )


def test_conv_tokenizer_has_emotionkd_token_count():
    tok = ConvTokenizer(28, 512, width=64, kernel_size=32, stride=8)
    h, mask = tok(torch.randn(3, 512, 28), torch.ones(3, 512, dtype=torch.bool))
    assert h.shape == (3, 61, 64) and tok.n_tokens == 61  # (512 - 32) / 8 + 1
    assert mask.shape == (3, 61) and mask.all()


def test_conv_tokenizer_masks_tokens_of_padding_only():
    tok = ConvTokenizer(2, 64, width=8, kernel_size=16, stride=8)
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 32:] = False  # second sample: the last half is padding
    _, tmask = tok(torch.randn(2, 64, 2), mask)
    assert tmask[0].all()
    # token t covers steps [8t, 8t + 16): real iff 8t < 32
    assert tmask[1].tolist() == [8 * t < 32 for t in range(tok.n_tokens)]


def test_auto_tokenizer_choice():
    kw = dict(width=8, kernel_size=32, stride=8, vector_tokens=3, dropout=0.0)
    assert isinstance(build_tokenizer("auto", ModalitySpec("a", 73, 1), **kw), VectorTokenizer)
    assert isinstance(build_tokenizer("auto", ModalitySpec("a", 32, 5), **kw), LinearTokenizer)
    assert isinstance(build_tokenizer("auto", ModalitySpec("a", 2, 128), **kw), ConvTokenizer)
    with pytest.raises(ConfigError, match="length-1"):
        build_tokenizer("vector", ModalitySpec("a", 2, 128), **kw)
    with pytest.raises(UnknownNameError, match="unknown tokenizer 'nope'.*conv, linear, vector"):
        build_tokenizer("nope", ModalitySpec("a", 2, 128), **kw)  # type: ignore[arg-type]


def test_student_uses_one_modality_and_zeroes_absent_samples():
    spec = physio_spec()
    model = build_method("physio_student", spec=spec, target=TARGET,
                         params={"modality": "eog", **SMALL, "kernel_size": 16})
    assert model.modalities == ["eog"]
    b = make_batch(spec)
    b.present["eog"][1] = False
    model.eval()
    out = model(b)
    assert out.preds.shape == (5, 2)
    assert out.fused.shape == (5, 16) and set(out.features) == {"eog"}
    assert torch.all(out.fused[1] == 0)


def test_student_needs_a_modality_on_multimodal_data():
    with pytest.raises(ConfigError, match="method.modality"):
        build_method("physio_student", spec=physio_spec(), target=TARGET, params=SMALL)


def test_teacher_gates_fused_width_and_backward():
    spec = physio_spec()
    model = build_method("physio_teacher", spec=spec, target=TARGET,
                         params={**SMALL, "kernel_size": 16})
    assert isinstance(model, PhysioTeacher) and model.fused_dim == 3 * 16
    b = make_batch(spec)
    out = model(b)
    assert out.fused.shape == (5, 48) and out.aux["gates"].shape == (5, 3)
    assert ((out.aux["gates"] > 0) & (out.aux["gates"] < 1)).all()
    model.loss(b, out)["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_teacher_absent_modality_gets_zero_gate_and_no_nan():
    spec = physio_spec()
    model = build_method("physio_teacher", spec=spec, target=TARGET,
                         params={**SMALL, "kernel_size": 16, "fusion": "sum"})
    assert model.fused_dim == 16
    b = make_batch(spec)
    b.present["gsr"][:] = False
    b.present["eeg"][0] = False
    model.eval()
    out = model(b)
    assert torch.isfinite(out.preds).all()
    assert torch.all(out.aux["gates"][:, 2] == 0) and out.aux["gates"][0, 0] == 0
    assert model.epoch_logs() == {}  # forward has no side effects
    model.loss(b, out)  # validation loss records the gates
    logs = model.epoch_logs()
    assert set(logs) == {"gate_eeg", "gate_eog", "gate_gsr"} and logs["gate_gsr"] == 0.0
    assert model.epoch_logs() == {}  # reset after reading


def test_batch_of_one_in_train_mode_and_vector_inputs():
    spec = DatasetSpec("vec", (ModalitySpec("audio", 73, 1), ModalitySpec("vision", 100, 1)),
                       (TARGET,))
    model = build_method("physio_teacher", spec=spec, target=TARGET, params=SMALL)
    out = model(make_batch(spec, n=1))
    assert out.preds.shape == (1, 2)


@pytest.mark.parametrize("params,match", [
    ({"width": 10, "heads": 4}, "not divisible"),
    ({"layers": 0}, "at least one block"),
    ({"score_norm": "group"}, "score_norm"),
    ({"fusion": "max"}, "fusion"),
])
def test_bad_hyper_parameters_are_named(params, match):
    with pytest.raises(ConfigError, match=match):
        build_method("physio_teacher", spec=physio_spec(), target=TARGET,
                     params={**SMALL, **params})


def test_batch_norm_score_gates_option():
    spec = physio_spec()
    model = build_method("physio_student", spec=spec, target=TARGET,
                         params={"modality": "eeg", **SMALL, "score_norm": "batch",
                                 "kernel_size": 16})
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert model(make_batch(spec)).preds.shape == (5, 2)
