#!/bin/bash
# The reference + neural table of benchmarks/eeg.md for one dataset, target and subject norm,
# one method at a time (its wall time appended to $TIMES), then the table with the paired
# difference to the logistic row. Run from the repository root:
#   DS=mahnob|deap T=valence|arousal SN=none|transductive|train [P=loso|subject_dependent] \
#     [PS=1] bash benchmarks/eeg_tables.sh
# PS=1 (subject_dependent only): one model per subject (+protocol.per_subject=true), folder
# suffix _persubject; the folds and test trials are those of the pooled table.
set -e
TIMES=${TIMES:-eeg_tables_times.txt}
. "$(dirname "$0")/_eeg_common.sh"
P=${P:-loso}
M="majority,logistic:modality=eeg,unimodal:modality=eeg,eeg_mlp_ens:modality=eeg,trees:modality=eeg"
NAME=i14_${DS}_${P}_${T}_${SN}
EXTRA=()
if [ "${PS:-0}" = 1 ]; then NAME=${NAME}_persubject; EXTRA=(+protocol.per_subject=true); fi
for m in ${M//,/ }; do
  timed_row $NAME -m $m --seeds 1111-1115 dataset.root=$R/$F dataset.target=$T protocol.name=$P \
    protocol.subject_norm=$SN "${EXTRA[@]}"
done
emodistill benchmark -e eeg_bandpower -d $D -m $M --reference logistic --seeds 1111-1115 --parallel auto --output runs/benchmarks --name $NAME \
    --resume dataset.root=$R/$F dataset.target=$T protocol.name=$P protocol.subject_norm=$SN "${EXTRA[@]}"
