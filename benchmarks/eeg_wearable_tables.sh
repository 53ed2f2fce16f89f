#!/bin/bash
# One wearable-student KD table of benchmarks/eeg.md section 11, everything paired in one
# benchmark folder: the reference rows, the full-cap teacher (with checkpoints), the headset
# student alone and the KD rows taught by that teacher of the same seed and fold; one row at a
# time (its wall time and load appended to $TIMES), then the table with the paired difference
# to the student alone. Run from the repository root:
#   DS=mahnob|deap [T=valence|arousal] [P=loso|subject_dependent] [MONT=frontal4|emotiv14] \
#     [EXTRA_ROWS="eeg_mkd"] [SEEDS=1111-1115] [NAME=...] bash benchmarks/eeg_wearable_tables.sh
# The teacher is trained WITH dataset.montages (a teacher without them has another data
# fingerprint and is refused when a student loads it).
set -e
TIMES=${TIMES:-eeg_wearable_times.txt}
. "$(dirname "$0")/_eeg_common.sh"
P=${P:-loso}; T=${T:-valence}; MONT=${MONT:-frontal4}; SEEDS=${SEEDS:-1111-1115}
NAME=${NAME:-i14l_${DS}_${P}_${T}_${MONT}}
B=runs/benchmarks/$NAME/runs
TU="teacher.checkpoint=$B/unimodal_modality=eeg-seed\${seed}"
ROWS=${ROWS:-"majority logistic unimodal:modality=eeg unimodal:modality=$MONT eeg_hinton_kd eeg_kd_feature eeg_kd_feature_hkd trees:modality=$MONT"}
ROWS="$ROWS ${EXTRA_ROWS:-}"
COMMON=(dataset.root=$R/$F dataset.target=$T "dataset.montages=[frontal4,emotiv14]"
        protocol.name=$P protocol.subject_norm=transductive method.modality=$MONT
        train.save_checkpoint=true)
ALL=()
for m in $ROWS; do
  case $m in eeg_*kd*|eeg_mkd*) m="$m:$TU";; esac  # KD rows: taught by this folder's teacher
  ALL+=("$m")
  timed_row $NAME -m "$m" --seeds $SEEDS "${COMMON[@]}"
done
emodistill benchmark -e eeg_bandpower -d $D -m "$(IFS=,; echo "${ALL[*]}")" --seeds $SEEDS \
  --parallel auto --output runs/benchmarks --name $NAME --resume \
  --reference "unimodal(modality=$MONT)" "${COMMON[@]}"
