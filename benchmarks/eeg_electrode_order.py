"""Check from the data which electrode order the EEG band-feature tables use.

Neighbouring electrodes carry correlated band power (volume conduction), so under the right
order the across-trial correlation of two electrodes' features falls with their distance on
the scalp. For each table this prints the Spearman correlation between the electrode-pair
feature correlation (log band power, each subject's trials standardised, averaged over the
5 bands) and the negative 10-20 distance, for DEAP's documented Geneva order, the BioSemi
"Twente" 32-channel order (MNE's ``biosemi32``), and random orders.

Usage: python benchmarks/eeg_electrode_order.py --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from emodistill.data.formats.eeg_tables import load_eeg_bandpower
from emodistill.data.montage import DEAP_32, positions

TWENTE = ("Fp1 AF3 F7 F3 FC1 FC5 T7 C3 CP1 CP5 P7 P3 Pz PO3 O1 Oz O2 PO4 P4 P8 CP6 CP2 C4 "
          "T8 FC6 FC2 F4 F8 AF4 Fp2 Fz Cz").split()


def order_score(x: np.ndarray, subj: np.ndarray, order: list[str]) -> float:
    """Spearman(feature correlation of electrode pairs, -distance) under ``order``."""
    z = np.log(np.clip(x, 1e-12, None)).reshape(len(x), 5, 32)
    for s in np.unique(subj):
        r = subj == s
        z[r] = (z[r] - z[r].mean(0)) / (z[r].std(0) + 1e-9)
    corr = np.mean([np.corrcoef(z[:, k, :].T) for k in range(5)], 0)
    d = np.linalg.norm(positions(order)[:, None] - positions(order)[None], axis=-1)
    iu = np.triu_indices(32, 1)
    return float(spearmanr(corr[iu], -d[iu]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    root = Path(ap.parse_args().data) / "eeg_bandpower"
    rng = np.random.default_rng(0)
    for name in ("DEAP", "MAHNOB-HCI"):
        ds = load_eeg_bandpower(root / name)
        x = ds.features["eeg"].numpy().reshape(len(ds), 160).astype(np.float64)
        subj = ds.groups["subject"]
        rand = [order_score(x, subj, list(rng.permutation(DEAP_32))) for _ in range(20)]
        print(f"{name}: Geneva (DEAP doc) {order_score(x, subj, list(DEAP_32)):.3f}  "
              f"Twente (biosemi32) {order_score(x, subj, TWENTE):.3f}  "
              f"random orders {np.mean(rand):.3f} ± {np.std(rand):.3f} (max {np.max(rand):.3f})")


if __name__ == "__main__":
    main()
