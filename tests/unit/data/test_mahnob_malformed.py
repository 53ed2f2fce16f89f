"""Issue 15: a truncated MAHNOB BDF and a session whose cutLenSec disagrees with its triggers."""

import warnings

import pytest

pytest.importorskip("pyedflib", reason="the 'eeg' extra (pyedflib) is not installed")

from emodistill.data.formats.mahnob import check_bdf_size, load_mahnob, read_bdf  # noqa: E402
from emodistill.errors import DataFormatError  # noqa: E402
from helpers.mahnob import PRE  # noqa: E402
from helpers.mahnob import write_bdf as _write_bdf  # noqa: E402
from helpers.mahnob import write_xml as _write_xml  # noqa: E402

BDF = "Part_1_S_Trial2_emotion.bdf"


def _session(root, sid="2", secs=4.0, cut=4.0):
    folder = root / "Sessions" / sid
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _write_bdf(folder / BDF, secs, 6)
    _write_xml(folder / "session.xml", sid, 1, 6, 4, 5, 5, 4, "52.avi", BDF, cut=cut)
    return folder / BDF


def _load(root, **kw):
    return load_mahnob(root, baseline_seconds=PRE, chunk_size=128, cache=False, **kw)


@pytest.mark.parametrize("backend", ["pyedflib", "mne"])
@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_bdf_is_named_for_both_backends(tmp_path, backend, keep):
    if backend == "mne":
        pytest.importorskip("mne", reason="the 'eeg' extra (mne) is not installed")
    bdf = _session(tmp_path)
    data = bdf.read_bytes()
    bdf.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataFormatError, match="truncated") as e:
        read_bdf(bdf, ["Fp1"], backend=backend)
    assert str(bdf) in str(e.value)
    with pytest.raises(DataFormatError, match=f"{BDF}: .*truncated"):
        _load(tmp_path, backend=backend)


def test_not_a_bdf_and_intact_file(tmp_path):
    bdf = _session(tmp_path)
    check_bdf_size(bdf)  # intact: no error
    bad = tmp_path / "x.bdf"
    bad.write_bytes(b"hello")
    with pytest.raises(DataFormatError, match="x.bdf: not a BDF file"):
        read_bdf(bad, ["Fp1"])


def test_cut_length_disagreeing_with_status_events_names_the_session(tmp_path):
    _session(tmp_path, sid="2", secs=4.0, cut=9.5)
    with pytest.raises(DataFormatError, match=r"mahnob session 2: session.xml says cutLenSec=9.5 "
                                              r"s but the Status events .* mark a 4.00 s"):
        _load(tmp_path)
    assert len(_load(tmp_path, cut_tolerance=None)) == 1  # the documented way out
    assert len(_load(tmp_path, cut_tolerance=6.0)) == 1


def test_cut_length_within_tolerance_loads(tmp_path):
    _session(tmp_path, sid="4", secs=5.0, cut=5.4)
    assert _load(tmp_path).ids.tolist() == ["session4"]
