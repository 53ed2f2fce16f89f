"""Per-modality head accuracy, attention and dominant choice of HKD-MER runs.

HKD-MER gives every modality its own head; its test predictions are written per
sample to ``<run>/<fold>/predictions.csv`` (``sample_head_<m>[_<class>]``), with
the fusion attention (``sample_attention_<m>``) and the dominant modality chosen
on the fold's validation part (``<fold>/dominant.json``). This script reads the
run folders of one or more ``emodistill benchmark`` outputs and reports, as
mean ± sample std over seeds (each seed = mean over its folds):

* the fused metric and each modality's own head metric, per method config;
* the paired per-seed effect of KD on each weak (non-dominant) head:
  ``hkd_mer`` (or any KD variant) minus ``hkd_mer_no_kd`` with the same seed;
* the mean attention per modality and the dominant modality chosen;
* the ``unimodal`` baselines of the same benchmark, for reference.

Nothing is recomputed from the model: only the saved test predictions are
read. Usage (from the repository root)::

    python benchmarks/hkd_mer_heads.py runs/benchmarks/hkd_mer-mosi_utterance [more ...]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from emodistill.metrics import classification_metrics, mer_regression_metrics
from emodistill.report.tables import PERCENT_METRICS

BASELINE = "hkd_mer_no_kd"
#: keys that only change the KD terms (a variant differing elsewhere is not paired)
_KD_KEYS = {"name", "feature_weight", "label_weight", "feature_kd", "feature_temperature",
            "kd_adapter", "label_temperature", "label_kd_regression"}


def _head_columns(df: pd.DataFrame, m: str) -> list[str]:
    cols = [c for c in df.columns if c == f"sample_head_{m}" or
            c.startswith(f"sample_head_{m}_") and c[len(f"sample_head_{m}_"):].isdigit()]
    return sorted(cols, key=lambda c: (len(c), c))


def _metrics(pred: np.ndarray, target: np.ndarray, regression: bool) -> dict[str, float]:
    p, t = torch.tensor(np.array(pred)), torch.tensor(np.array(target))
    if regression:
        return mer_regression_metrics(p, t)
    return classification_metrics(p, t, pred.shape[1])


def fold_record(fold_dir: Path, modalities: list[str]) -> dict[str, float | str]:
    """Metrics of one fold: ``fused/<metric>``, ``head_<m>/<metric>``, ``attention_<m>``."""
    df = pd.read_csv(fold_dir / "predictions.csv")
    regression = not any(c.startswith("p_") for c in df.columns)
    target = df["target"].to_numpy()
    rec: dict[str, float | str] = {}
    if regression:
        fused = df["prediction"].to_numpy(dtype=float)
    else:
        fused = df[[c for c in df.columns if c.startswith("p_")]].to_numpy(dtype=float)
    rec |= {f"fused/{k}": v for k, v in _metrics(fused, target, regression).items()}
    for m in modalities:
        cols = _head_columns(df, m)
        if cols:
            pred = df[cols].to_numpy(dtype=float)
            pred = pred[:, 0] if regression else pred
            rec |= {f"head_{m}/{k}": v for k, v in _metrics(pred, target, regression).items()}
        if f"sample_attention_{m}" in df:
            rec[f"attention_{m}"] = float(df[f"sample_attention_{m}"].mean())
    dom = fold_dir / "dominant.json"
    if dom.is_file():
        rec["dominant"] = json.loads(dom.read_text())["dominant"]
    return rec


def collect(bench_dirs: list[Path]) -> tuple[pd.DataFrame, list[str], bool]:
    """One row per (benchmark, method label, seed), averaged over folds."""
    rows = []
    modalities: list[str] = []
    regression = False
    for bench in bench_dirs:
        for run in sorted((bench / "runs").iterdir()):
            cfg_file = run / "config.yaml"
            if not cfg_file.is_file() or not (run / "results.json").is_file():
                continue  # an unfinished run
            cfg = yaml.safe_load(cfg_file.read_text())
            name = cfg["method_config"]
            if name == "unimodal":
                name = f"unimodal({cfg['method']['modality']})"
            elif not name.startswith("hkd_mer"):
                continue
            elif cfg.get("run_name"):  # the benchmark's entry label, overrides included
                name = re.sub(r"-seed\d+$", "", str(cfg["run_name"]))
            mods = list(cfg["method"].get("modalities") or cfg["dataset"].get("modalities")
                        or json.loads((run / "data.json").read_text())["modalities"])
            modalities += [m for m in mods if m not in modalities]
            folds = [d for d in sorted(run.iterdir()) if (d / "predictions.csv").is_file()]
            recs = [fold_record(fd, mods) for fd in folds]
            if not recs:
                continue
            regression = regression or "fused/mae" in recs[0]
            # everything but the KD settings: variants are paired with hkd_mer_no_kd only
            # when this matches (so a concat-fusion variant is not read as a KD effect)
            arch = {k: v for k, v in cfg["method"].items() if k not in _KD_KEYS}
            row: dict[str, float | str] = {"benchmark": bench.name, "method": name,
                                           "seed": int(cfg["seed"]), "n_folds": len(recs),
                                           "arch": json.dumps(arch, sort_keys=True)}
            for k in recs[0]:
                vals = [r[k] for r in recs if k in r]
                if isinstance(vals[0], str):
                    row[k] = "/".join(sorted(set(map(str, vals))))
                else:
                    row[k] = float(np.mean(vals))
            rows.append(row)
    return pd.DataFrame(rows), modalities, regression


def _fmt(values: pd.Series, metric: str) -> str:
    v = values.dropna().astype(float)
    if v.empty:
        return ""
    scale, digits = (100.0, 2) if metric in PERCENT_METRICS else (1.0, 3)
    s = f"{v.mean() * scale:.{digits}f}"
    if len(v) > 1 and not math.isnan(v.std(ddof=1)):
        s += f" ± {v.std(ddof=1) * scale:.{digits}f}"
    return s


def report(df: pd.DataFrame, modalities: list[str], regression: bool) -> str:
    """Markdown tables (one block per benchmark folder)."""
    metric = "acc2_non0" if regression else "acc"
    extra = "mae" if regression else "f1_macro"
    out: list[str] = []
    for bench, d in df.groupby("benchmark", sort=False):
        out += [f"### {bench}: {metric} (%) of the fused prediction and of each modality's "
                "own head, test part, mean ± std over seeds", ""]
        cols = ["method", "seeds", f"fused {metric}", f"fused {extra}",
                *[f"head {m}" for m in modalities], *[f"attention {m}" for m in modalities],
                "dominant (per seed)"]
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for method, g in d.groupby("method", sort=False):
            is_uni = method.startswith("unimodal(")
            cells = [method, str(len(g)), _fmt(g[f"fused/{metric}"], metric),
                     _fmt(g[f"fused/{extra}"], extra)]
            cells += ["" if is_uni else _fmt(g.get(f"head_{m}/{metric}", pd.Series(dtype=float)),
                                              metric) for m in modalities]
            cells += [_fmt(g[f"attention_{m}"], "acc") if f"attention_{m}" in g else ""
                      for m in modalities]
            dom = g["dominant"].value_counts().to_dict() if "dominant" in g else {}
            cells.append(", ".join(f"{k}×{v}" for k, v in dom.items()))
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Attention columns: mean fusion weight over the test samples "
                "(×100, sums to 100 across modalities).", ""]
        out += _kd_effect(d, modalities, metric)
    return "\n".join(out) + "\n"


def _kd_effect(d: pd.DataFrame, modalities: list[str], metric: str) -> list[str]:
    base = d[d["method"] == BASELINE].set_index("seed")
    if base.empty:
        return [f"(no {BASELINE} runs: no paired KD effect)", ""]
    out = [f"KD effect on each modality's own head: paired per-seed difference "
           f"(variant − {BASELINE}) of test {metric} in points, mean ± std, and the number "
           "of seeds where the head improved. The dominant modality's head is the teacher "
           "(it receives no KD gradient).", "",
           "| variant | " + " | ".join(f"Δ head {m}" for m in modalities) + " | Δ fused |",
           "|" + "---|" * (len(modalities) + 2)]
    skipped = []
    for method, g in d.groupby("method", sort=False):
        if not method.startswith("hkd_mer") or method == BASELINE:
            continue
        if set(g["arch"]) != set(base["arch"]):
            skipped.append(method)
            continue
        g = g.set_index("seed")
        seeds = g.index.intersection(base.index)
        cells = [method]
        for key in [f"head_{m}/{metric}" for m in modalities] + [f"fused/{metric}"]:
            if key not in g or key not in base:
                cells.append("")
                continue
            diff = (g.loc[seeds, key] - base.loc[seeds, key]).astype(float) * 100
            sd = diff.std(ddof=1) if len(diff) > 1 else float("nan")
            cells.append(f"{diff.mean():+.2f} ± {sd:.2f} ({int((diff > 0).sum())}/{len(diff)})")
        out.append("| " + " | ".join(cells) + " |")
    dominant = defaultdict(int)
    for v in d.get("dominant", pd.Series(dtype=str)).dropna():
        dominant[v] += 1
    if skipped:
        out += ["", f"Not paired (they differ from {BASELINE} in more than the KD settings): "
                f"{', '.join(skipped)}."]
    out += ["", f"Dominant modality chosen on validation over all HKD-MER runs: "
            f"{dict(dominant)}.", ""]
    return out


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", nargs="+", type=Path, help="emodistill benchmark output folder(s)")
    ap.add_argument("--csv", type=Path, help="also write the per-seed rows to this CSV")
    a = ap.parse_args()
    df, modalities, regression = collect(a.bench)
    if df.empty:
        raise SystemExit(f"no finished runs under {[str(b) for b in a.bench]}")
    if a.csv:
        df.to_csv(a.csv, index=False)
    print(report(df, modalities, regression))


if __name__ == "__main__":
    main()
