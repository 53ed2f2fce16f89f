#!/usr/bin/env bash
# DEAP -> MAHNOB-HCI and back (benchmarks/eeg.md): train on one LOSO fold of the source table
# (every subject but subject 1 and the validation subjects), evaluate the checkpoint on every
# trial of the other table beside its majority class. Usage, from the repository root:
#   bash benchmarks/eeg_transfer.sh [SEEDS...]        (default seeds 1111 1112 1113)
set -euo pipefail
D=../shared/data/eeg_bandpower
OUT=runs/transfer
SEEDS=${*:-1111 1112 1113}
mkdir -p "$OUT"
for pair in "deap_bandpower DEAP mahnob_bandpower MAHNOB-HCI" "mahnob_bandpower MAHNOB-HCI deap_bandpower DEAP"; do
  set -- $pair
  for sn in none transductive; do
    for m in logistic unimodal; do
      for seed in $SEEDS; do
        name="$1-$m-$sn-seed$seed"
        emodistill train -e eeg_bandpower -d "$1" -m "$m" method.modality=eeg dataset.root="$D/$2" \
          protocol.fold=subject1 protocol.subject_norm=$sn train.save_checkpoint=true seed=$seed \
          output_dir=$OUT run_name="$name" > /dev/null
        emodistill evaluate "$OUT/$name/subject1/model.pt" -d "$3" dataset.root="$D/$4" \
          > "$OUT/$name.$3.json"
        if [ "$m" = logistic ]; then break; fi   # deterministic: one seed is every seed
      done
    done
  done
done
python - <<'PY'
import glob, json, collections
rows = collections.defaultdict(list)
for f in sorted(glob.glob("runs/transfer/*.json")):
    r = json.load(open(f))
    src, m, sn = f.split("/")[-1].split("-")[:3]
    rows[(r["trained_on"], r["dataset"], m, sn)].append(r)
print("| trained on | tested on | method | subject_norm | seeds | acc | f1_macro | majority acc | majority f1_macro |")
print("|---|---|---|---|---|---|---|---|---|")
for (a, b, m, sn), rs in sorted(rows.items()):
    import numpy as np
    acc = np.array([r["acc"] for r in rs]) * 100
    f1 = np.array([r["f1_macro"] for r in rs]) * 100
    sd = lambda v: f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""
    print(f"| {a} | {b} | {m} | {sn} | {len(rs)} | {acc.mean():.2f}{sd(acc)} | {f1.mean():.2f}{sd(f1)} | "
          f"{100 * rs[0]['majority_acc']:.2f} | {100 * rs[0]['majority_f1_macro']:.2f} |")
PY
