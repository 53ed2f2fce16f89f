"""Seeding every random stream a fit draws from, without importing Lightning.

:func:`seed_everything` does what Lightning's ``seed_everything(seed, workers=True)`` does
(a test compares the two), so the sequential fit, the members-in-parallel path and the
Ray workers start from the same state whether or not Lightning is loaded; importing
Lightning costs seconds that the parallel path otherwise does not need.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from emodistill.config import check_seed

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy's global stream and torch (every device).

    Also sets ``PL_GLOBAL_SEED`` and ``PL_SEED_WORKERS=1`` in the environment, as
    Lightning does, so a Lightning ``Trainer`` started afterwards seeds its DataLoader
    workers the same way.

    Parameters
    ----------
    seed : int
        An integer in ``[0, 2**32 - 1]`` (NumPy's range); anything else raises
        :class:`~emodistill.errors.ConfigError` naming the value.

    Returns
    -------
    int
        The seed.
    """
    seed = check_seed(seed)
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"
    return seed
