"""EEG electrode order, 10-20 positions and montage presets (wearable headsets).

The EEG band-feature tables (``deap_bandpower``, ``mahnob_bandpower``) and DEAP's
preprocessed EEG hold 32 electrodes in the **Geneva order** of DEAP's documentation
(:data:`DEAP_32`). How that order was established for both tables is in
``docs/data/eeg.md`` (and ``benchmarks/eeg_electrode_order.py`` re-checks it from the data).

A *montage* is a named list of electrodes. :func:`resolve_montage` turns a preset name
(:data:`PRESETS`) or a user list into the electrode names, checked against the order, and
:func:`select_band_major` cuts those electrodes out of a band-major feature vector, so a
headset becomes a modality of its own (``frontal4``: 4 electrodes x 5 bands = 20 values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emodistill.errors import ConfigError

__all__ = ["DEAP_32", "PRESETS", "POSITIONS", "resolve_montage", "electrode_index",
           "select_band_major", "positions"]

#: DEAP's documented EEG channel order (Geneva order), used by both band-feature tables
DEAP_32: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1",
    "Oz", "Pz", "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2",
    "P4", "P8", "PO4", "O2",
)

#: wearable montages as named presets
PRESETS: dict[str, tuple[str, ...]] = {
    # a frontal headband (e.g. Muse-like placement over AF/F sites)
    "frontal4": ("AF3", "AF4", "F7", "F8"),
    # the Emotiv EPOC 14-channel layout
    "emotiv14": ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4",
                 "F8", "AF4"),
    "full32": DEAP_32,
}

#: unit-sphere 10-20 positions (x: right, y: nose, z: up) of the 32 electrodes, from MNE's
#: ``standard_1020`` template montage (normalised to unit length, 3 decimals)
POSITIONS: dict[str, tuple[float, float, float]] = {
    "Fp1": (-0.330, 0.941, -0.078), "AF3": (-0.389, 0.888, 0.245),
    "F3": (-0.595, 0.629, 0.500), "F7": (-0.848, 0.512, -0.138),
    "FC5": (-0.929, 0.224, 0.294), "FC1": (-0.375, 0.287, 0.881),
    "C3": (-0.707, -0.126, 0.696), "T7": (-0.977, -0.186, -0.108),
    "CP5": (-0.818, -0.479, 0.318), "CP1": (-0.326, -0.435, 0.839),
    "P3": (-0.481, -0.715, 0.508), "P7": (-0.702, -0.712, -0.024),
    "PO3": (-0.322, -0.888, 0.327), "O1": (-0.252, -0.965, 0.076),
    "Oz": (0.001, -0.992, 0.127), "Pz": (0.003, -0.701, 0.714),
    "Fp2": (0.331, 0.940, -0.078), "AF4": (0.404, 0.880, 0.249),
    "Fz": (0.004, 0.661, 0.751), "F4": (0.607, 0.636, 0.478),
    "F8": (0.846, 0.515, -0.139), "FC6": (0.930, 0.233, 0.286),
    "FC2": (0.386, 0.293, 0.875), "Cz": (0.004, -0.091, 0.996),
    "C4": (0.721, -0.117, 0.683), "T8": (0.979, -0.173, -0.109),
    "CP6": (0.831, -0.460, 0.311), "CP2": (0.352, -0.431, 0.831),
    "P4": (0.499, -0.704, 0.507), "P8": (0.707, -0.707, -0.025),
    "PO4": (0.324, -0.890, 0.321), "O2": (0.256, -0.964, 0.076),
}

_LOWER = {c.lower(): c for c in DEAP_32}


def resolve_montage(spec: str | Sequence[str], *, order: Sequence[str] = DEAP_32) -> list[str]:
    """Electrode names of a preset name or a user list, checked against ``order``.

    Parameters
    ----------
    spec : str or sequence of str
        A preset name (:data:`PRESETS`) or electrode names (case-insensitive).
    order : sequence of str
        The electrodes the data holds.

    Returns
    -------
    list of str
        Canonical electrode names, in the given order (a preset keeps its own order).
    """
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(
                f"montage {spec!r} is not a preset ({', '.join(sorted(PRESETS))}); give a "
                f"preset name or a list of electrode names from {list(order)}")
        names = list(PRESETS[spec])
    else:
        names = [str(n) for n in spec]
    if not names:
        raise ConfigError("montage: the electrode list is empty")
    canon = {c.lower(): c for c in order}
    unknown = [n for n in names if n.lower() not in canon]
    if unknown:
        raise ConfigError(f"montage: electrode(s) {unknown} are not in the data's order "
                          f"{list(order)}")
    out = [canon[n.lower()] for n in names]
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(f"montage: electrode(s) {dup} listed twice")
    return out


def electrode_index(names: Sequence[str], order: Sequence[str] = DEAP_32) -> np.ndarray:
    """Positions of ``names`` in ``order`` (``[E]`` int64)."""
    pos = {c: i for i, c in enumerate(order)}
    return np.asarray([pos[n] for n in resolve_montage(list(names), order=order)], np.int64)


def select_band_major(x: np.ndarray, names: Sequence[str], *, n_bands: int,
                      order: Sequence[str] = DEAP_32) -> np.ndarray:
    """Cut electrodes ``names`` out of band-major features.

    Parameters
    ----------
    x : ndarray
        ``[N, n_bands * C]`` features, index ``k * C + c`` = band ``k`` of electrode ``c``.
    names : sequence of str
        Electrodes to keep (``E`` of them).
    n_bands : int
        Number of bands ``K``.

    Returns
    -------
    ndarray
        ``[N, K * E]``, band-major over the kept electrodes.
    """
    c = len(order)
    if x.shape[-1] != n_bands * c:
        raise ConfigError(f"select_band_major: {x.shape[-1]} features, expected "
                          f"{n_bands} bands x {c} electrodes")
    idx = electrode_index(names, order)
    return x.reshape(x.shape[0], n_bands, c)[:, :, idx].reshape(x.shape[0], -1)


def positions(names: Sequence[str]) -> np.ndarray:
    """``[E, 3]`` unit-sphere 10-20 positions of ``names`` (see :data:`POSITIONS`)."""
    missing = [n for n in names if n not in POSITIONS]
    if missing:
        raise ConfigError(f"no 10-20 position for electrode(s) {missing}; known: "
                          f"{sorted(POSITIONS)}")
    return np.asarray([POSITIONS[n] for n in names], np.float64)
