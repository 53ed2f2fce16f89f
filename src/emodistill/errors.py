"""Exception types raised by emodistill.

Every error names the offending value and says how to fix it. They subclass the
built-in exception a caller would expect (``ValueError``, ``FileNotFoundError``,
``KeyError``) so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "EmodistillError",
    "ConfigError",
    "UnknownNameError",
    "DataFormatError",
    "DataNotFoundError",
    "UnsafePickleError",
    "EmptySplitError",
    "LeakageError",
    "UtteranceOrderError",
    "VideoSplitError",
    "EmptyTranscriptError",
]


class EmodistillError(Exception):
    """Base class of every error raised on purpose by emodistill."""


class ConfigError(EmodistillError, ValueError):
    """A configuration value is missing, malformed or inconsistent."""


class UnknownNameError(EmodistillError, KeyError):
    """A name (method, dataset, protocol, encoder, ...) is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DataFormatError(EmodistillError, ValueError):
    """A data file exists but its layout, shapes, dtypes or labels are wrong."""


class DataNotFoundError(EmodistillError, FileNotFoundError):
    """A data file or folder that the loader needs does not exist."""


class UnsafePickleError(DataFormatError):
    """A pickle holds something other than the plain data the format allows."""


class EmptySplitError(DataFormatError):
    """A protocol produced a split without samples."""


class LeakageError(EmodistillError, AssertionError):
    """A protocol would put one group (subject, video, trial) in two splits."""


class UtteranceOrderError(DataFormatError):
    """Utterance ids give no order inside their video (no index, or one index twice)."""


class VideoSplitError(LeakageError):
    """The utterances of one video fall in two parts of a fold (context would leak)."""


class EmptyTranscriptError(DataFormatError):
    """An utterance of a video has an empty transcript."""
