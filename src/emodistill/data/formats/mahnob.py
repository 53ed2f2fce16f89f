"""MAHNOB-HCI (HCI-Tagging) loader: ``Sessions/<id>/*.bdf`` + ``session.xml``.

Each emotion-elicitation session folder holds one BioSemi BDF recording and a
``session.xml`` whose ``<session>`` element carries the self-reports as
attributes (integers 1-9): ``feltVlnc`` (valence), ``feltArsl`` (arousal),
``feltCtrl`` (dominance), ``feltPred`` (predictability), plus ``feltEmo`` (an
emotion code), ``mediaFile`` and a ``<subject id=...>`` child. Sessions without
``feltArsl`` (not emotion trials) are skipped, as TorchEEG does.

The recording covers about 30 s before the stimulus, the stimulus, and 30 s
after it. The ``Status`` (trigger) channel marks stimulus onset and offset:
its first two events, found as ``mne.find_events`` finds them (a change of the
status value, masked to its low 17 bits as MNE does for BDF, to a non-zero
value, or to a larger one). Each trial keeps ``baseline_seconds`` before the
onset (the pre-stimulus baseline, handled by the windower's ``baseline`` mode,
dropped by default) and the stimulus segment ``[onset, offset)``; everything
after the offset is discarded. Every channel is resampled to the common rate
``fs`` (default 128 Hz, TorchEEG's) with a polyphase filter.

Channel groups are named modalities built from BDF channel labels. The
defaults follow the MAHNOB-HCI recording layout: ``eeg`` (32 channels, the same
names and order as DEAP's), ``ecg`` (EXG1-EXG3), ``gsr`` (GSR1), ``resp``
(Resp) and ``temp`` (Temp). MAHNOB-HCI has **no EOG channel** (eye movements
were recorded by an eye tracker in separate files); define an ``eog`` group
from other channels with ``channels`` if your copy has one.

BDF files are read with pyEDFlib (default) or MNE (``backend="mne"``), both
from the optional ``eeg`` extra (``pip install "emodistill[eeg]"``). A file
shorter than its header declares (a truncated copy) is refused with a
:class:`~emodistill.errors.DataFormatError` naming it, whatever the backend;
so is a session whose ``cutLenSec`` (clip length in ``session.xml``) differs
from the stimulus the Status events mark by more than ``cut_tolerance``
seconds.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodistill.data._io import require_dir
from emodistill.data.dataset import MultimodalDataset, repair_nonfinite
from emodistill.data.formats._physio import PhysioOptions, TrialAccumulator
from emodistill.data.formats.deap import DEAP_EEG_CHANNELS
from emodistill.data.formats.eeg_tables import EMOTION_CODES
from emodistill.data.registry import DATASETS, data_root
from emodistill.data.spec import TargetSpec
from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "MAHNOB_CHANNELS",
    "MAHNOB_CHANNEL_GROUPS",
    "MAHNOB_RATINGS",
    "STATUS_MASK",
    "read_session_xml",
    "read_bdf",
    "find_stimulus",
    "check_bdf_size",
    "MAHNOB_OPTIONS",
    "load_mahnob",
]

log = logging.getLogger(__name__)

#: the 47 channels of a MAHNOB-HCI BDF, in file order
MAHNOB_CHANNELS: tuple[str, ...] = DEAP_EEG_CHANNELS + (
    "EXG1", "EXG2", "EXG3", "EXG4", "EXG5", "EXG6", "EXG7", "EXG8",
    "GSR1", "GSR2", "Erg1", "Erg2", "Resp", "Temp", "Status",
)
#: default modality name → channel labels
MAHNOB_CHANNEL_GROUPS: dict[str, tuple[str, ...]] = {
    "eeg": DEAP_EEG_CHANNELS,
    "ecg": ("EXG1", "EXG2", "EXG3"),
    "gsr": ("GSR1",),
    "resp": ("Resp",),
    "temp": ("Temp",),
}
#: target name → session.xml attribute
MAHNOB_RATINGS: dict[str, str] = {
    "valence": "feltVlnc",
    "arousal": "feltArsl",
    "dominance": "feltCtrl",
    "predictability": "feltPred",
}
#: MNE keeps the low 17 bits of a BDF status channel
STATUS_MASK = (1 << 17) - 1
#: MAHNOB-HCI's default window, label and feature options (4 s windows at 128 Hz)
MAHNOB_OPTIONS = PhysioOptions(chunk_size=512, cache=True)
_LAYOUT = "Sessions/<id>/*.bdf and Sessions/<id>/session.xml (MAHNOB-HCI)"
_EXTRA = 'pip install "emodistill[eeg]" (pyedflib, mne)'


def read_session_xml(path: str | Path) -> dict[str, Any]:
    """Read a ``session.xml``.

    Parameters
    ----------
    path : path
        The file.

    Returns
    -------
    dict
        The ``<session>`` attributes (strings) plus ``subject`` (the
        ``<subject id>``, or None) and ``bdf`` (the ``filename`` of a track
        ending in ``.bdf``, or None).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataFormatError(f"{path}: not a readable session.xml ({e})") from None
    if root.tag != "session":
        raise DataFormatError(f"{path}: root element is <{root.tag}>, expected <session>")
    out: dict[str, Any] = dict(root.attrib)
    subj = root.find("subject")
    out["subject"] = subj.get("id") if subj is not None else None
    out["bdf"] = next(
        (t.get("filename") for t in root.iter("track")
         if str(t.get("filename", "")).lower().endswith(".bdf")),
        None,
    )
    return out


def find_stimulus(status: np.ndarray, *, mask: int = STATUS_MASK) -> tuple[int, int]:
    """Stimulus onset and offset samples from a BDF status channel.

    Events are found as ``mne.find_events`` finds them by default
    (``consecutive="increasing"``): a sample whose masked value differs from
    the previous one and is non-zero, where the previous one was zero or
    smaller. A non-zero value at sample 0 is not an event.

    Parameters
    ----------
    status : np.ndarray
        ``[T]`` status channel (digital values).
    mask : int
        Bits kept (MNE keeps the low 17 bits of BDF status channels).

    Returns
    -------
    onset, offset : int
        Samples of the first two events.
    """
    s = np.bitwise_and(np.rint(np.asarray(status)).astype(np.int64), mask)
    prev, cur = s[:-1], s[1:]
    events = np.flatnonzero((cur != prev) & (cur != 0) & ((prev == 0) | (cur > prev))) + 1
    if len(events) < 2:
        raise DataFormatError(
            f"status channel holds {len(events)} event(s); MAHNOB-HCI marks stimulus onset and "
            "offset with two"
        )
    return int(events[0]), int(events[1])


def _import(backend: str) -> Any:
    try:
        if backend == "pyedflib":
            import pyedflib

            return pyedflib
        if backend == "mne":
            import mne

            return mne
    except ImportError:
        raise ImportError(
            f"reading MAHNOB-HCI BDF files with backend={backend!r} needs the 'eeg' extra: "
            f"{_EXTRA}"
        ) from None
    raise ConfigError(f"backend={backend!r}; use pyedflib or mne")


def read_bdf(
    path: str | Path, channels: Sequence[str], *, backend: Literal["pyedflib", "mne"] = "pyedflib"
) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray, float]:
    """Read channels and the status channel of a BDF file.

    Parameters
    ----------
    path : path
        The ``.bdf`` file.
    channels : sequence of str
        Channel labels to read.
    backend : {"pyedflib", "mne"}
        Reader. Both return physical values in the file's units (microvolts
        for EEG; MNE's conversion to volts is undone).

    Returns
    -------
    signals : dict
        Label → ``[T_c]`` float64 samples.
    rates : dict
        Label → sampling rate in Hz.
    status : np.ndarray
        ``[T_s]`` status channel (digital values, unmasked for pyedflib,
        masked to 17 bits by MNE).
    status_rate : float
        Its sampling rate in Hz.
    """
    lib = _import(backend)
    check_bdf_size(path)
    try:
        return _read_bdf(lib, path, channels, backend)
    except (DataFormatError, ImportError):
        raise
    except (OSError, ValueError, RuntimeError) as e:  # what the readers raise on a bad file
        raise DataFormatError(
            f"{path}: not a readable BDF file ({backend}: {type(e).__name__}: {e})") from None


def _read_bdf(lib: Any, path: str | Path, channels: Sequence[str], backend: str
              ) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray, float]:
    if backend == "pyedflib":
        f = lib.EdfReader(str(path))
        try:
            labels = [lab.strip() for lab in f.getSignalLabels()]
            _check_labels(path, labels, channels)
            idx = {lab: i for i, lab in enumerate(labels)}
            signals = {c: f.readSignal(idx[c]).astype(np.float64) for c in channels}
            rates = {c: float(f.getSampleFrequency(idx[c])) for c in channels}
            status = f.readSignal(idx["Status"], digital=True)
            status_rate = float(f.getSampleFrequency(idx["Status"]))
        finally:
            f.close()
        return signals, rates, status, status_rate
    raw = lib.io.read_raw_bdf(str(path), preload=False, stim_channel="Status", verbose="error")
    _check_labels(path, list(raw.ch_names), channels)
    units = getattr(raw, "_orig_units", {}) or {}
    scale = {"uV": 1e6, "µV": 1e6, "mV": 1e3}
    data = raw.get_data(picks=list(channels) + ["Status"])
    sf = float(raw.info["sfreq"])
    signals = {c: data[i] * scale.get(units.get(c, ""), 1.0) for i, c in enumerate(channels)}
    return signals, {c: sf for c in channels}, data[-1], sf


def check_bdf_size(path: str | Path) -> None:
    """Refuse a BDF/EDF file shorter than its header declares (a truncated copy).

    Reads only the header: ``n_records`` data records of ``sum(samples per
    record)`` samples of 3 bytes (BDF) or 2 bytes (EDF) follow the header.

    Raises
    ------
    DataFormatError
        The file is truncated, or its header is not a BDF/EDF header.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(256)
        try:
            if len(head) < 256:
                raise ValueError(f"{len(head)} bytes, a BDF header has at least 256")
            ns = int(head[252:256].decode("ascii").strip())
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            f.seek(256 + ns * 216)
            per_record = sum(int(f.read(8).decode("ascii").strip() or "x") for _ in range(ns))
        except (ValueError, UnicodeDecodeError) as e:
            raise DataFormatError(
                f"{p}: not a BDF file, or its header is truncated ({e})") from None
    width = 3 if head[:1] == b"\xff" else 2  # BDF: 24-bit samples; EDF: 16-bit
    if n_records < 0:  # unknown record count (allowed while recording)
        return
    want = header_bytes + n_records * per_record * width
    if size < want:
        raise DataFormatError(
            f"{p}: truncated BDF file: {size} bytes, but its header declares {n_records} data "
            f"records ({want} bytes); copy the file again from the original download"
        )


def _check_labels(path: str | Path, labels: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in list(wanted) + ["Status"] if c not in labels]
    if missing:
        raise DataFormatError(
            f"{path}: channel(s) {missing} not in the BDF; it has {list(labels)}. Choose "
            "channels with dataset.channels={group: [labels]}"
        )


def _resample(x: np.ndarray, src: float, dst: float) -> np.ndarray:
    if src == dst:
        return x
    from scipy.signal import resample_poly

    r = Fraction(dst / src).limit_denominator(1000)
    return resample_poly(x, r.numerator, r.denominator, axis=-1)


def _session_dirs(root: str | Path | None, sessions: Sequence[int | str] | None) -> list[Path]:
    base = require_dir(root, dataset="mahnob", layout=_LAYOUT)
    if (base / "Sessions").is_dir():
        base = base / "Sessions"
    dirs = [p for p in base.iterdir() if p.is_dir() and (p / "session.xml").is_file()]
    dirs.sort(key=lambda p: (int(p.name) if p.name.isdigit() else 10**9, p.name))
    if sessions is not None:
        want = {str(s) for s in sessions}
        dirs = [p for p in dirs if p.name in want]
        missing = sorted(want - {p.name for p in dirs})
        if missing:
            raise DataNotFoundError(f"dataset 'mahnob': session(s) {missing} not found in {base}")
    if not dirs:
        raise DataNotFoundError(
            f"dataset 'mahnob': no session folder with a session.xml in {str(base)!r}; set "
            f"dataset.root to the folder holding {_LAYOUT}"
        )
    return dirs


def _groups(groups: Sequence[str], channels: Mapping[str, Sequence[str]] | None
            ) -> dict[str, list[str]]:
    chosen = {k: list(v) for k, v in MAHNOB_CHANNEL_GROUPS.items()}
    chosen.update({k: [str(c) for c in v] for k, v in (channels or {}).items()})
    out = {}
    for g in groups:
        if g not in chosen or not chosen[g]:
            raise ConfigError(
                f"channel_groups: unknown MAHNOB-HCI group {g!r}; valid: "
                f"{sorted(MAHNOB_CHANNEL_GROUPS)} or one defined with channels: {{{g}: [labels]}}"
                + (" (MAHNOB-HCI has no EOG channel)" if g == "eog" else "")
            )
        out[g] = chosen[g]
    return out


def _check_cut_length(meta: Mapping[str, Any], onset: int, offset: int, rate: float,
                      tolerance: float | None, session: Path, bdf: Path) -> None:
    """Refuse a session whose ``cutLenSec`` disagrees with its Status events."""
    if tolerance is None or meta.get("cutLenSec") in (None, ""):
        return
    try:
        cut = float(meta["cutLenSec"])
    except ValueError:
        raise DataFormatError(
            f"{session / 'session.xml'}: cutLenSec={meta['cutLenSec']!r} is not a number"
        ) from None
    found = (offset - onset) / rate
    if abs(found - cut) > tolerance:
        raise DataFormatError(
            f"mahnob session {session.name}: session.xml says cutLenSec={cut:g} s but the Status "
            f"events of {bdf.name} mark a {found:.2f} s stimulus (samples {onset} to {offset} "
            f"at {rate:g} Hz), more than cut_tolerance={tolerance:g} s apart: the XML or the "
            "recording is of another session, or the triggers are damaged. Fix or leave out "
            "the session (dataset.sessions=[...]), or set dataset.cut_tolerance=null to skip "
            "the check"
        )


def _rating(meta: Mapping[str, Any], attr: str, where: Path) -> float:
    try:
        v = float(meta[attr])
    except (KeyError, TypeError, ValueError):
        raise DataFormatError(
            f"{where}: attribute {attr}={meta.get(attr)!r} is not a number"
        ) from None
    return v


def load_mahnob(
    root: str | Path | None,
    *,
    channel_groups: Sequence[str] = ("eeg",),
    channels: Mapping[str, Sequence[str]] | None = None,
    sessions: Sequence[int | str] | None = None,
    fs: float = 128.0,
    baseline_seconds: float = 30.0,
    backend: Literal["pyedflib", "mne"] = "pyedflib",
    status_mask: int = STATUS_MASK,
    cut_tolerance: float | None = 1.0,
    name: str = "mahnob",
    options: PhysioOptions | None = None,
    **option_values: Any,
) -> MultimodalDataset:
    """Load MAHNOB-HCI emotion sessions as whole trials, windowed after the split.

    Parameters
    ----------
    root : path
        Folder holding ``Sessions/`` (or the ``Sessions`` folder itself).
    channel_groups : sequence of str
        Modalities to load (see :data:`MAHNOB_CHANNEL_GROUPS`).
    channels : mapping, optional
        Group → BDF channel labels, overriding or adding groups.
    sessions : sequence, optional
        Session folder names to load; default all.
    fs : float
        Common sampling rate every channel is resampled to.
    baseline_seconds : float
        Pre-stimulus seconds kept before the onset as the trial's baseline.
    backend : {"pyedflib", "mne"}
        BDF reader.
    status_mask : int
        Bits of the status channel used to find the stimulus events.
    cut_tolerance : float or None
        Largest difference in seconds allowed between ``cutLenSec`` of
        ``session.xml`` (the clip length) and the stimulus found from the
        ``Status`` events; a session that differs more is refused with an error
        naming it. ``None`` skips the check (for copies whose XML is known to be
        off). Default 1 s (a reconstruction choice: no published tolerance).
    name : str
        Dataset name in the spec.
    options : PhysioOptions, optional
        Window, label and feature options (default :data:`MAHNOB_OPTIONS`), in
        samples at ``fs``; features are computed per session at load time and
        cached. TorchEEG keeps 30 one-second windows per trial
        (``chunk_size=128, max_windows=30``) and calls ``rating >= 5`` high.
    **option_values
        Any :class:`~emodistill.data.formats._physio.PhysioOptions` field
        (``chunk_size``, ``overlap``, ``baseline``, ``max_windows``, ``threshold``,
        ``comparison``, ``features``, ``bands``, ``welch_seconds``,
        ``feature_layout``, ``cache``, ``cache_dir``), replacing ``options``'.

    Returns
    -------
    MultimodalDataset
        One row per session (ids ``session<id>``); targets ``valence``,
        ``arousal`` (+ ``dominance``, ``predictability`` when every session
        has them), binary, their ``<name>_rating`` regressions, and
        ``emotion`` (multiclass, ``feltEmo``) when every session has it;
        groups ``subject``, ``trial`` (the session) and ``video`` (the media
        file). ``info["skipped"]`` lists sessions left out and why.
    """
    opts = (options or MAHNOB_OPTIONS).updated("load_mahnob", option_values)
    dirs = _session_dirs(root, sessions)
    groups = _groups(list(channel_groups), channels)
    b = int(round(baseline_seconds * fs))
    acc = TrialAccumulator(list(groups), opts, fs=fs, baseline_samples=b)
    wanted = [c for g in groups.values() for c in g]
    metas: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for d in dirs:
        meta = read_session_xml(d / "session.xml")
        if "feltArsl" not in meta or "feltVlnc" not in meta:
            skipped[d.name] = "no feltArsl/feltVlnc in session.xml (not an emotion trial)"
            continue
        bdf = d / meta["bdf"] if meta.get("bdf") and (d / meta["bdf"]).is_file() else None
        if bdf is None:
            found = sorted(d.glob("*.bdf"))
            bdf = found[0] if found else None
        if bdf is None:
            skipped[d.name] = "no .bdf file"
            continue
        signals, rates, status, status_rate = read_bdf(bdf, wanted, backend=backend)
        try:
            onset, offset = find_stimulus(status, mask=status_mask)
        except DataFormatError as e:
            skipped[d.name] = f"{bdf.name}: {e}"
            continue
        _check_cut_length(meta, onset, offset, status_rate, cut_tolerance, d, bdf)
        on = int(round(onset * fs / status_rate))
        off = int(round(offset * fs / status_rate))
        if on < b:
            raise DataFormatError(
                f"{bdf}: only {on / fs:.2f} s before the stimulus onset, fewer than "
                f"baseline_seconds={baseline_seconds}; lower baseline_seconds"
            )
        trial: dict[str, np.ndarray] = {}
        for g, chans in groups.items():
            cols = [_resample(signals[c], rates[c], fs)[on - b: off] for c in chans]
            n = min(len(c) for c in cols)
            trial[g], _ = repair_nonfinite(np.stack([c[:n] for c in cols], axis=-1),
                                           what=f"{name} session {d.name} {g}")
        n = min(x.shape[0] for x in trial.values())
        acc.add({g: x[None, :n] for g, x in trial.items()}, np.array([n]),
                description=f"{name} session {d.name} ({bdf.name})")
        meta["session"] = d.name
        metas.append(meta)
    if not metas:
        raise DataNotFoundError(
            f"dataset 'mahnob': no usable emotion session under {root}; skipped: {skipped}"
        )
    if skipped:
        log.warning("%s: %d sessions skipped: %s", name, len(skipped), skipped)
    where = Path(str(root))
    present = [t for t, a in MAHNOB_RATINGS.items() if all(a in m for m in metas)]
    ratings = {t: np.array([_rating(m, MAHNOB_RATINGS[t], where / m["session"]) for m in metas])
               for t in present}
    extra: dict[str, tuple[np.ndarray, TargetSpec]] = {}
    if all("feltEmo" in m for m in metas):
        codes = np.array([int(float(m["feltEmo"])) for m in metas])
        known = sorted(set(codes.tolist()))
        unknown = [c for c in known if c not in EMOTION_CODES]
        if unknown:
            raise DataFormatError(f"{name}: unknown feltEmo code(s) {unknown}")
        extra["emotion"] = (np.searchsorted(known, codes), TargetSpec(
            "emotion", "multiclass", class_names=tuple(EMOTION_CODES[c] for c in known)))
    info: dict[str, Any] = {
        "source": str(root),
        "fs": fs,
        "backend": backend,
        "channels": groups,
        "features": acc.kinds,
        "baseline_samples": b,
        "label_rule": f"rating {opts.comparison} {opts.threshold} is high",
        "skipped": skipped,
    }
    subj = [f"s{int(m['subject']):02d}" if str(m.get("subject", "")).isdigit()
            else str(m.get("subject")) for m in metas]
    return acc.build(
        name,
        ratings=ratings,
        ids=[f"session{m['session']}" for m in metas],
        groups={"subject": np.array(subj),
                "trial": np.array([m["session"] for m in metas]),
                "video": np.array([str(m.get("mediaFile", "")) for m in metas])},
        info=info,
        extra_targets=extra,
    )

@DATASETS.register("mahnob")
def _mahnob(**p: Any) -> MultimodalDataset:
    return load_mahnob(data_root(p, "mahnob"), **p)
