"""Linear reference probes on exactly the folds emodistill's protocols produce.

For orientation next to the trained baselines: the majority class of each
fold's training part and a standardised logistic regression fitted on the
training part (C chosen on the fold's validation part from a small grid),
both scored on the fold's test part, averaged over folds. Deterministic.

Usage (from the repository root)::

    python benchmarks/reference_probes.py --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler

from emodistill.data.formats.eeg_tables import load_eeg_bandpower
from emodistill.data.formats.mosi_utterance import load_mosi_utterance
from emodistill.data.protocols import make_folds


def probe(ds, target: str, mods: list[str], protocol: str, **params) -> dict[str, float]:
    """Mean over folds of majority-class and logistic-regression test scores."""
    X = np.concatenate([ds.features[m].numpy().reshape(len(ds), -1) for m in mods], 1)
    y = ds.targets[target].numpy()
    out: dict[str, list[float]] = {"majority_acc": [], "lr_acc": [], "lr_f1_weighted": [],
                                   "lr_f1_macro": []}
    for f in make_folds(ds, protocol, **params):
        maj = np.bincount(y[f.train]).argmax()
        out["majority_acc"].append(float((y[f.test] == maj).mean()))
        sc = StandardScaler().fit(X[f.train])
        best = None
        for c in (0.001, 0.01, 0.1, 1.0):
            clf = LogisticRegression(C=c, max_iter=5000).fit(sc.transform(X[f.train]), y[f.train])
            va = accuracy_score(y[f.valid], clf.predict(sc.transform(X[f.valid])))
            if best is None or va > best[0]:
                best = (va, clf)
        pred = best[1].predict(sc.transform(X[f.test]))
        out["lr_acc"].append(accuracy_score(y[f.test], pred))
        out["lr_f1_weighted"].append(f1_score(y[f.test], pred, average="weighted"))
        out["lr_f1_macro"].append(f1_score(y[f.test], pred, average="macro"))
    return {k: float(np.mean(v)) for k, v in out.items()}


def per_subject_probe(ds, target: str, k: int = 5) -> float:
    """One logistic regression per subject, random k-fold over its trials (seed 0)."""
    from sklearn.model_selection import KFold

    X, y = ds.features["eeg"].numpy().reshape(len(ds), -1), ds.targets[target].numpy()
    subj = ds.groups["subject"]
    accs = []
    for s in np.unique(subj):
        rows = np.flatnonzero(subj == s)
        for tr, te in KFold(k, shuffle=True, random_state=0).split(rows):
            a, b = rows[tr], rows[te]
            if len(np.unique(y[a])) < 2:
                accs.append(float((y[b] == y[a][0]).mean()))
                continue
            sc = StandardScaler().fit(X[a])
            clf = LogisticRegression(max_iter=5000).fit(sc.transform(X[a]), y[a])
            accs.append(clf.score(sc.transform(X[b]), y[b]))
    return float(np.mean(accs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    a = ap.parse_args()
    root = Path(a.data)
    rows = []
    mosi = load_mosi_utterance(root / "mosi_utterance")
    split = dict(split="poria", valid_group="video", valid_fraction=0.15, valid_seed=0)
    for mods in (["text"], ["audio"], ["vision"], ["text", "audio", "vision"]):
        rows.append(("mosi_utterance poria", "polarity", "+".join(mods),
                     probe(mosi, "polarity", mods, "split", **split)))
    deap = load_eeg_bandpower(root / "eeg_bandpower" / "DEAP")
    for target in ("valence", "arousal"):
        rows.append(("deap_bandpower subject_dependent k=5", target, "eeg",
                     probe(deap, target, ["eeg"], "subject_dependent", k=5)))
        rows.append(("deap_bandpower loso", target, "eeg", probe(deap, target, ["eeg"], "loso")))
    print("| data / protocol | target | features | majority acc | LR acc | LR F1 (weighted) "
          "| LR F1 (macro) |")
    print("|---|---|---|---|---|---|---|")
    for name, target, feats, r in rows:
        print(f"| {name} | {target} | {feats} | {100 * r['majority_acc']:.2f} | "
              f"{100 * r['lr_acc']:.2f} | {100 * r['lr_f1_weighted']:.2f} | "
              f"{100 * r['lr_f1_macro']:.2f} |")
    print()
    print("| DEAP per-subject LR, random 5-fold within subject | valence | arousal |")
    print("|---|---|---|")
    print(f"| accuracy | {100 * per_subject_probe(deap, 'valence'):.2f} | "
          f"{100 * per_subject_probe(deap, 'arousal'):.2f} |")


if __name__ == "__main__":
    main()
