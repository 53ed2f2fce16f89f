"""Issue 15: predict refuses guesses and names what it ignores; npz errors say what the file is."""

import gzip
import zipfile

import numpy as np
import pytest

from emodistill.cli import main
from emodistill.data.formats.npz import save_npz
from emodistill.errors import DataFormatError
from emodistill.serving.predict import load
from helpers.checkpoints import make_checkpoint, synthetic


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {"late_fusion": make_checkpoint(root / "lf" / "model.pt", "late_fusion"),
            "unimodal": make_checkpoint(root / "uni" / "model.pt", "unimodal",
                                        params={"modality": "audio"})}


def _arrays(p, n=3):
    ds = synthetic()
    return {m: ds.features[m][:n].numpy() for m in p.modalities}


def test_every_modality_absent_is_refused(ckpts):
    p = load(ckpts["late_fusion"])
    arrays = _arrays(p)
    with pytest.raises(DataFormatError, match=r"3 of 3 sample\(s\) have none of the model's"):
        p.predict(arrays, present={m: False for m in p.modalities})
    # one sample without any modality: named, the whole call refused
    pres = {m: [True, False, True] for m in p.modalities}
    with pytest.raises(DataFormatError, match=r"1 of 3 .*ids \['1'\]"):
        p.predict(arrays, present=pres)


def test_only_modality_all_nan_is_absent_and_refused(ckpts, caplog):
    p = load(ckpts["unimodal"])
    a = _arrays(p)["audio"].copy()
    a[1] = np.nan
    with pytest.raises(DataFormatError, match=r"ids \['1'\]"):
        p.predict(audio=a)
    # with another present modality the NaN one is absent for that sample, not zeros
    lf = load(ckpts["late_fusion"])
    arrays = _arrays(lf)
    arrays["audio"][1] = np.nan
    with caplog.at_level("WARNING"):
        res = lf.predict(arrays)
    assert res.to_records()[1]["modalities"] == ["text", "vision"]
    assert "only NaN/inf" in caplog.text
    alone = lf.predict({"text": arrays["text"][1:2], "vision": arrays["vision"][1:2]})
    np.testing.assert_allclose(res.values[1], alone.values[0], rtol=1e-5, atol=1e-6)


def test_cli_refuses_all_absent_with_one_line(ckpts, tmp_path, capsys):
    ds = synthetic().subset(range(4))
    for m in ds.present:
        ds.present[m][:] = False
        ds.mask[m][:] = False
    path = save_npz(ds, tmp_path / "absent.npz")
    assert main(["predict", str(ckpts["late_fusion"]), "--input", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emodistill: error:") and "none of the model's modalities" in err
    assert len(err.splitlines()) == 1


def test_extra_npz_arrays_are_named(ckpts, tmp_path, capsys):
    ds = synthetic().subset(range(4))
    path = save_npz(ds, tmp_path / "all.npz")
    p = load(ckpts["unimodal"])
    with pytest.warns(UserWarning, match=r"arrays \['text', 'vision'\] are not inputs"):
        assert len(p.predict(path)) == 4
    assert main(["predict", str(ckpts["unimodal"]), "--input", str(path)]) == 0
    err = capsys.readouterr().err
    assert "emodistill: warning:" in err and "['text', 'vision']" in err and "ignored" in err


@pytest.mark.parametrize("kind,write,says", [
    ("empty", lambda f: f.write_bytes(b""), "an empty file"),
    ("text", lambda f: f.write_text("id,text\n1,hello\n"), "a plain-text file, not an .npz"),
    ("gzip", lambda f: f.write_bytes(gzip.compress(b"abc")), "gzip-compressed"),
    ("npy", lambda f: np.save(f.open("wb"), np.zeros(3)), r"single array \(.npy\)"),
])
def test_npz_input_that_is_something_else(ckpts, tmp_path, kind, write, says):
    f = tmp_path / f"{kind}.npz"
    write(f)
    with pytest.raises(DataFormatError, match=says) as e:
        load(ckpts["late_fusion"]).predict(f)
    assert str(f) in str(e.value) and "pickle" not in str(e.value)


def test_truncated_and_foreign_zip(tmp_path):
    from emodistill.data.formats.npz import load_npz

    good = save_npz(synthetic().subset(range(4)), tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="truncated or damaged"):
        load_npz(cut)
    z = tmp_path / "plain.npz"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(DataFormatError, match="zip archive without .npy arrays"):
        load_npz(z)
