"""How much of the full-cap teacher's decision can a headset student learn? (benchmarks/eeg.md §9)

Per LOSO fold (subject-wise normalised as the runs): the teacher is the full-cap logistic
regression (C chosen by the validation log-loss, as the ``logistic`` row's
val/task_loss, from the ``eeg_hinton_kd_logistic`` grid, as
the teacher of the KD runs); its decision function ``d(x_cap)`` is the logit the KD term
distils. A ridge regression from the headset's features to ``d`` (alpha chosen on the
validation part) is the best *linear* headset imitation of the teacher; its R² on the held-out
test subject says how much of the teacher's judgement the headset's inputs carry, on real
trials and on mixed pairs of test trials (function matching's points, ``lam ~ U(0, 1)``).
Beside it: the test accuracy of the teacher, of the headset logistic fitted on the labels
(``logistic`` on the montage) and of the teacher's imitation (sign of the ridge prediction).

Usage (from the repository root)::

    python benchmarks/eeg_teacher_learnable.py --root ../shared/data/eeg_bandpower/MAHNOB-HCI \
        [--montage frontal4] [--dataset mahnob_bandpower] [--target valence]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, r2_score

from emodistill.config import compose, to_container
from emodistill.data.registry import build_dataset
from emodistill.training.run import config_fold_parts, prepare

C_GRID = (0.001, 0.01, 0.1, 1.0)  # eeg_hinton_kd_logistic's teacher grid
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def arrays(part, mod: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` pooled features of ``mod`` and ``[N]`` labels of a fold part."""
    x = part.features[mod].reshape(len(part), -1).numpy().astype(np.float64)
    return x, part.targets[target].numpy().astype(int)


def best_logistic(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray,
                  yv: np.ndarray) -> LogisticRegression:
    """The logistic fit of the C grid with the lowest validation log-loss (as ``logistic``)."""
    fits = [LogisticRegression(C=c, max_iter=2000).fit(xt, yt) for c in C_GRID]
    return min(fits, key=lambda f: log_loss(yv, f.predict_proba(xv), labels=[0, 1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--dataset", default="mahnob_bandpower")
    ap.add_argument("--target", default="valence")
    ap.add_argument("--montage", default="frontal4")
    ap.add_argument("--seed", type=int, default=1111)
    a = ap.parse_args()
    cfg = compose(dataset=a.dataset, method="logistic", experiment="eeg_bandpower", overrides=[
        f"dataset.root={a.root}", f"dataset.target={a.target}",
        "dataset.montages=[frontal4,emotiv14]", "protocol.subject_norm=transductive",
        f"seed={a.seed}"])
    ds = build_dataset(to_container(cfg.dataset))
    prep = prepare(cfg, ds)
    rng = np.random.default_rng(a.seed)
    rows = []
    for fold in prep.folds:
        parts, _ = config_fold_parts(cfg, ds, fold)
        (ct, yt), (cv, yv), (cs, ys) = (arrays(parts[k], "eeg", a.target)
                                        for k in ("train", "valid", "test"))
        ht, hv, hs = (arrays(parts[k], a.montage, a.target)[0] for k in ("train", "valid", "test"))

        teacher = best_logistic(ct, yt, cv, yv)
        headset = best_logistic(ht, yt, hv, yv)
        dt, dv, ds_ = (teacher.decision_function(x) for x in (ct, cv, cs))
        imit = max((Ridge(alpha=al).fit(ht, dt) for al in ALPHAS),
                   key=lambda r: r2_score(dv, r.predict(hv)))
        lam = rng.uniform(size=len(ys))[:, None]
        perm = rng.permutation(len(ys))
        cm, hm = lam * cs + (1 - lam) * cs[perm], lam * hs + (1 - lam) * hs[perm]
        rows.append({
            "n": len(ys),
            "teacher_acc": teacher.score(cs, ys),
            "headset_acc": headset.score(hs, ys),
            "imitation_acc": float(np.mean((imit.predict(hs) > 0).astype(int) == ys)),
            "r2_train": r2_score(dt, imit.predict(ht)),
            "r2_test": r2_score(ds_, imit.predict(hs)),
            "r2_test_mixed": r2_score(teacher.decision_function(cm), imit.predict(hm)),
            "teacher_agrees_headset": float(np.mean(teacher.predict(cs) == headset.predict(hs))),
        })
    keys = [k for k in rows[0] if k != "n"]
    print(f"| {a.dataset} {a.target} {a.montage}, {len(rows)} LOSO folds | "
          + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    med = {k: float(np.median([r[k] for r in rows])) for k in keys}
    print("| mean over folds | " + " | ".join(f"{mean[k]:.3f}" for k in keys) + " |")
    print("| median over folds | " + " | ".join(f"{med[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
