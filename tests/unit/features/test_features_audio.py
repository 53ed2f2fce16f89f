import numpy as np
import pytest

from helpers import shared_path

pytest.importorskip("opensmile", reason="audio features need the 'audio' extra")

from emodistill.errors import ConfigError, DataNotFoundError  # noqa: E402
from emodistill.features.audio import AudioExtractor, extract_audio  # noqa: E402


@pytest.fixture(scope="module")
def clip():
    return shared_path("mosi_raw_samples", "03bSnISJMiM_1.wav")


def test_egemaps_functionals_of_the_real_clip(clip):
    af = extract_audio(clip)
    assert af.features.shape == (1, 88) and len(af.names) == 88
    assert np.isfinite(af.features).all()
    f0 = af.names.index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert 20 < af.features[0, f0] < 50  # a speaking voice, in semitones above 27.5 Hz
    loud = af.names.index("loudness_sma3_amean")
    assert af.features[0, loud] > 0


def test_lld_sequence_of_the_real_clip(clip):
    af = AudioExtractor(level="lld").extract([clip, clip])
    assert af.features.shape[0] == 2 and af.features.shape[2] == 25
    # 10 ms hop over a 3.3 s clip
    assert 300 <= af.lengths[0] == af.lengths[1] == af.features.shape[1] <= 340


def test_signal_input_matches_file(clip):
    soundfile = pytest.importorskip("soundfile")
    x, sr = soundfile.read(str(clip), dtype="float32")  # [samples, channels]
    ex = AudioExtractor()
    from_file = ex.extract([clip]).features
    from_signal = ex.extract([(x, sr)]).features
    np.testing.assert_allclose(from_signal, from_file, rtol=1e-4, atol=1e-4)


def test_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        extract_audio(tmp_path / "missing.wav")
    with pytest.raises(ConfigError, match="feature_set"):
        AudioExtractor("eGeMAPSv99")
    with pytest.raises(ConfigError, match="functionals"):
        AudioExtractor(level="frames")


def test_features_cli_audio(clip, tmp_path):
    from emodistill.cli import main
    from emodistill.serving.predict import read_inputs_npz

    out = tmp_path / "a.npz"
    assert main(["features", "audio", "--input", str(clip), "--output", str(out)]) == 0
    inputs, lengths, _, ids = read_inputs_npz(out)
    assert ids == ["03bSnISJMiM_1"] and inputs["audio"].shape == (1, 88)
