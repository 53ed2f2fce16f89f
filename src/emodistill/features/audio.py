"""Acoustic features with openSMILE (eGeMAPS by default), from files or signals.

* ``functionals``: one vector per recording (eGeMAPSv02: 88 features such as
  F0 mean, jitter, shimmer, loudness, MFCC statistics);
* ``lld``: the frame-level low-level descriptors (eGeMAPSv02: 25 per 10 ms
  frame) as a sequence ``[T, 25]``.

openSMILE's features are hand-designed, not learned, so they never leak labels.
Multichannel audio is mixed down to mono by default. Needs the ``audio``
extra (``pip install 'emodistill[audio]'``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodistill.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = ["AudioFeatures", "AudioExtractor", "extract_audio", "AudioLevel"]

log = logging.getLogger(__name__)

AudioLevel = Literal["functionals", "lld"]

_INSTALL = "pip install 'emodistill[audio]'  (opensmile)"


@dataclass
class AudioFeatures:
    """openSMILE features of a list of recordings.

    Attributes
    ----------
    features : np.ndarray
        ``[N, D]`` (functionals) or ``[N, T, D]`` (lld, right-padded) float32.
    lengths : np.ndarray
        ``[N]`` frames per recording (1 for functionals).
    names : list of str
        ``[D]`` feature names.
    level : {"functionals", "lld"}
        Which output.
    feature_set : str
        openSMILE feature set.
    """

    features: np.ndarray
    lengths: np.ndarray
    names: list[str]
    level: AudioLevel
    feature_set: str


class AudioExtractor:
    """An openSMILE extractor.

    Parameters
    ----------
    feature_set : str
        openSMILE feature set name (``eGeMAPSv02``, ``GeMAPSv01b``, ``ComParE_2016``...).
    level : {"functionals", "lld"}
        One vector per recording, or frame-level descriptors.
    mixdown : bool
        Average the channels of multichannel audio (else channel 0 is used).

    Examples
    --------
    >>> ex = AudioExtractor()  # doctest: +SKIP
    >>> ex.extract(["clip.wav"]).features.shape  # doctest: +SKIP
    (1, 88)
    """

    def __init__(self, feature_set: str = "eGeMAPSv02", *, level: AudioLevel = "functionals",
                 mixdown: bool = True) -> None:
        try:
            import opensmile
        except ImportError as e:
            raise ImportError(
                f"audio features need 'opensmile' ({e}); install the audio extra: {_INSTALL}"
            ) from None
        if level not in ("functionals", "lld"):
            raise ConfigError(f"audio level={level!r}; use 'functionals' or 'lld'")
        sets = [s.name for s in opensmile.FeatureSet]
        if feature_set not in sets:
            raise ConfigError(f"openSMILE feature_set={feature_set!r}; valid: {sets}")
        flevel = (opensmile.FeatureLevel.Functionals if level == "functionals"
                  else opensmile.FeatureLevel.LowLevelDescriptors)
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                                     feature_level=flevel, mixdown=mixdown)
        self.feature_set, self.level = feature_set, level

    @property
    def names(self) -> list[str]:
        """Feature names, in column order."""
        return list(self.smile.feature_names)

    @property
    def dim(self) -> int:
        """Number of features ``D``."""
        return len(self.smile.feature_names)

    def _one(self, item: str | Path | tuple[np.ndarray, int]) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "segment too short" → NaN rows
            if isinstance(item, tuple):
                signal, sr = item
                x = np.asarray(signal, dtype=np.float32)
                if x.ndim == 2 and x.shape[0] > x.shape[1]:  # [samples, channels] → [C, S]
                    x = x.T
                df = self.smile.process_signal(x, int(sr))
            else:
                p = Path(item).expanduser()
                if not p.is_file():
                    raise DataNotFoundError(f"audio file {str(p)!r} does not exist")
                try:
                    df = self.smile.process_file(str(p))
                except RuntimeError as e:
                    raise DataFormatError(f"{p}: openSMILE cannot read it ({e})") from None
        return df.to_numpy(dtype=np.float32)

    def extract(self, items: Sequence[str | Path | tuple[np.ndarray, int]]) -> AudioFeatures:
        """Features of each recording.

        Parameters
        ----------
        items : sequence
            Audio file paths (any format openSMILE/audiofile reads: wav, flac,
            mp3...), or ``(signal, sampling_rate)`` tuples with ``signal``
            ``[samples]`` or ``[channels, samples]``.

        Returns
        -------
        AudioFeatures
            Non-finite values (openSMILE's NaN for too-short segments) are
            replaced by 0, and the count is logged.
        """
        from emodistill.data.dataset import repair_nonfinite

        if isinstance(items, str | Path) or (
            isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], np.ndarray)
        ):
            items = [items]  # type: ignore[list-item]
        rows = [self._one(it) for it in items]
        if self.level == "functionals":
            feats = np.stack([r[0] for r in rows]) if rows else np.zeros((0, self.dim))
            lengths = np.ones(len(rows), dtype=np.int64)
        else:
            T = max((len(r) for r in rows), default=0)
            feats = np.zeros((len(rows), T, self.dim), dtype=np.float32)
            for i, r in enumerate(rows):
                feats[i, :len(r)] = r
            lengths = np.array([len(r) for r in rows], dtype=np.int64)
        feats, _ = repair_nonfinite(feats, what=f"openSMILE {self.feature_set} {self.level}")
        return AudioFeatures(feats, lengths, self.names, self.level, self.feature_set)

    def recipe(self) -> dict[str, Any]:
        """Return what determines the features (for caches and manifests)."""
        import opensmile

        return {"opensmile": opensmile.__version__, "feature_set": self.feature_set,
                "level": self.level}


def extract_audio(
    items: Sequence[str | Path | tuple[np.ndarray, int]] | str | Path,
    *,
    feature_set: str = "eGeMAPSv02",
    level: AudioLevel = "functionals",
) -> AudioFeatures:
    """OpenSMILE features of audio files or signals (see :class:`AudioExtractor`)."""
    return AudioExtractor(feature_set, level=level).extract(items)  # type: ignore[arg-type]
