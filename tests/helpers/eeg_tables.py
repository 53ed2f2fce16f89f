"""Band-power tables in the MAHNOB/DEAP text layout (EEG_feature.txt, ...), written by hand."""

from __future__ import annotations

import numpy as np

__all__ = ["write_table"]


def write_table(root, x, subjects, labels):
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "EEG_feature.txt", x, delimiter="\t")
    np.savetxt(root / "subject_video.txt",
               np.c_[subjects, np.arange(len(subjects)) % 7 + 1], fmt="%d", delimiter="\t")
    np.savetxt(root / "valence_arousal_label.txt", labels, fmt="%d", delimiter="\t")
